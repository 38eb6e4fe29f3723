//! gzip (RFC 1952), also sent as `x-gzip`: the member framing is parsed here and the deflate
//! data inside it is inflated by flate2's pure-Rust backend.
//!
//! The framing is our own rather than flate2's gzip reader because that reader keeps the
//! header's file name and comment in memory, and both are unbounded: here they are skipped as
//! they stream past, so a header costs nothing however long it is. The CRC-32 and length in
//! each member's trailer are checked (a mismatch is a corrupt stream), and members may follow
//! one another, as gzip allows and clients decode: the object is their concatenation. Anything
//! after a member that does not start a new one is [`Fault::Broken`].

use super::{Fault, Step};
use flate2::{Decompress, FlushDecompress, Status};

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The ten fixed header bytes.
    Fixed,
    /// The two-byte length of the extra field.
    ExtraLen,
    /// Skipping the extra field.
    Extra,
    /// Skipping the NUL-terminated file name.
    Name,
    /// Skipping the NUL-terminated comment.
    Comment,
    /// The two-byte header CRC.
    HeaderCrc,
    /// Inflating the member's deflate data.
    Body,
    /// CRC-32 and ISIZE, eight bytes.
    Trailer,
    /// A member ended; more input must be the next member.
    Between,
}

pub struct GzipDecoder {
    inflate: Decompress,
    state: State,
    flags: u8,
    /// Collects the fixed fields (header, extra length, header CRC, trailer).
    buf: [u8; 10],
    got: usize,
    extra_left: usize,
    header_crc: crc32fast::Hasher,
    crc: crc32fast::Hasher,
    size: u32,
    members: u64,
    /// The fault this stream met; the output made before it was returned with it, and every
    /// later call reports it again.
    pending: Option<Fault>,
}

impl GzipDecoder {
    pub fn new() -> GzipDecoder {
        GzipDecoder {
            inflate: Decompress::new(false),
            state: State::Fixed,
            flags: 0,
            buf: [0; 10],
            got: 0,
            extra_left: 0,
            header_crc: crc32fast::Hasher::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            members: 0,
            pending: None,
        }
    }

    pub fn reset(&mut self) {
        self.state = State::Fixed;
        self.got = 0;
        self.members = 0;
        self.pending = None;
        self.header_crc.reset();
    }

    /// At least one member, and nothing left half-read.
    pub fn is_complete(&self) -> bool {
        self.state == State::Between && self.members > 0 && self.pending.is_none()
    }

    /// The header part after `state`, given the member's flags.
    fn after(&self, state: State) -> State {
        let order =
            [(State::ExtraLen, FEXTRA), (State::Name, FNAME), (State::Comment, FCOMMENT), (State::HeaderCrc, FHCRC)];
        let from = order.iter().position(|(s, _)| *s == state).map_or(0, |i| i + 1);
        order[from..].iter().find(|(_, flag)| self.flags & flag != 0).map_or(State::Body, |(s, _)| *s)
    }

    /// Moves to `next`, starting the member's deflate data when it is the body.
    fn enter(&mut self, next: State) {
        self.state = next;
        self.got = 0;
        if next == State::Body {
            self.inflate.reset(false);
            self.crc.reset();
            self.size = 0;
        }
    }

    /// Copies bytes into `buf` until it holds `want`; true when it does.
    fn collect(&mut self, input: &[u8], used: &mut usize, want: usize, hash: bool) -> bool {
        let n = (want - self.got).min(input.len() - *used);
        let bytes = &input[*used..*used + n];
        self.buf[self.got..self.got + n].copy_from_slice(bytes);
        if hash {
            self.header_crc.update(bytes);
        }
        self.got += n;
        *used += n;
        self.got == want
    }

    /// Output made before a fault (a corrupt header, deflate data or trailer) is returned
    /// with it: it was decoded, so it is scanned.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        if let Some(fault) = self.pending {
            return Step::fault(0, 0, fault);
        }
        let step = self.decode_steps(input, out);
        self.pending = step.fault;
        step
    }

    fn decode_steps(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let mut used = 0;
        let mut made = 0;
        loop {
            if self.state != State::Body && used == input.len() {
                return Step::ok(used, made);
            }
            match self.state {
                State::Between => {
                    self.header_crc.reset();
                    self.enter(State::Fixed);
                }
                State::Fixed => {
                    if self.collect(input, &mut used, 10, true) {
                        let b = self.buf;
                        if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3] & FRESERVED != 0 {
                            return Step::fault(used, made, Fault::Broken);
                        }
                        self.flags = b[3];
                        let next = self.after(State::Fixed);
                        self.enter(next);
                    }
                }
                State::ExtraLen => {
                    if self.collect(input, &mut used, 2, true) {
                        self.extra_left = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
                        self.enter(State::Extra);
                    }
                }
                State::Extra => {
                    let n = self.extra_left.min(input.len() - used);
                    self.header_crc.update(&input[used..used + n]);
                    used += n;
                    self.extra_left -= n;
                    if self.extra_left == 0 {
                        let next = self.after(State::ExtraLen);
                        self.enter(next);
                    }
                }
                State::Name | State::Comment => {
                    let rest = &input[used..];
                    let (n, ended) = match memchr::memchr(0, rest) {
                        Some(i) => (i + 1, true),
                        None => (rest.len(), false),
                    };
                    self.header_crc.update(&rest[..n]);
                    used += n;
                    if ended {
                        let next = self.after(self.state);
                        self.enter(next);
                    }
                }
                State::HeaderCrc => {
                    if self.collect(input, &mut used, 2, false) {
                        let want = u16::from_le_bytes([self.buf[0], self.buf[1]]);
                        if self.header_crc.clone().finalize() as u16 != want {
                            return Step::fault(used, made, Fault::Broken);
                        }
                        self.enter(State::Body);
                    }
                }
                State::Body => {
                    let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
                    let status = self.inflate.decompress(&input[used..], &mut out[made..], FlushDecompress::None);
                    // Counted even when the data is corrupt: what was written before is output.
                    let consumed = (self.inflate.total_in() - in_before) as usize;
                    let produced = (self.inflate.total_out() - out_before) as usize;
                    self.crc.update(&out[made..made + produced]);
                    self.size = self.size.wrapping_add(produced as u32);
                    used += consumed;
                    made += produced;
                    match status {
                        Err(_) => return Step::fault(used, made, Fault::Broken),
                        Ok(Status::StreamEnd) => {}
                        Ok(_) => return Step::ok(used, made),
                    }
                    self.enter(State::Trailer);
                }
                State::Trailer => {
                    if self.collect(input, &mut used, 8, false) {
                        let b = self.buf;
                        let crc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        let size = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                        if crc != self.crc.clone().finalize() || size != self.size {
                            return Step::fault(used, made, Fault::Broken);
                        }
                        self.members += 1;
                        self.enter(State::Between);
                    }
                }
            }
        }
    }
}
