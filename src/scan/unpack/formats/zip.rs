//! zip, read from its local headers as the bytes arrive (the central directory at the end is
//! not needed, so the first member is scanned before the rest of the archive has arrived).
//!
//! Each entry is a local header, its name and extra field (zip64 sizes are read from it), the
//! data, and for entries written by a streaming zipper (flag bit 3) a data descriptor after
//! the data. Methods: stored, deflate, deflate64, bzip2, LZMA and zstd; a compressed entry ends
//! where its stream ends, so an unknown size is no obstacle. A stored entry of unknown size
//! ends at the first data descriptor whose CRC-32 and size match the bytes before it. Every
//! entry's CRC-32 is checked. Encrypted entries are [`Fault::Encrypted`]; other methods
//! (implode, shrink, reduce, ppmd, ...) and a broken structure are [`Fault::Broken`];
//! an archive must reach its central directory to be complete.
//!
//! The central directory is read too, as it streams past: every entry it lists must be one the
//! local headers led to. An entry it lists elsewhere (inside another entry's data, where a
//! reader of the central directory finds it and this one would not) is
//! `Heuristics.Broken.Zip.HiddenEntry`, since its bytes have gone by unread.
//!
//! A zip this reader cannot finish (a method it lacks, a local header that disagrees with the
//! data, sizes only the central directory knows) may still be readable from its central
//! directory. So that the level can hand it to that reader ([`crate::scan::whole::zip_central`])
//! without scanning a member twice, the feeder says where the record it is reading began
//! ([`Feed::keep_from`]: the bytes before it are no longer needed) and which entries it read in
//! full ([`Feed::take_done`]).

use super::codec::{pump, Codec};
use crate::scan::unpack::{Emit, Event, Fault, Feed};
use crate::scan::whole::ZipDone;
use std::ops::ControlFlow;

const BROKEN: Fault = Fault::Broken("Heuristics.Broken.Zip");
const UNSUPPORTED: Fault = Fault::Broken("Heuristics.Unsupported.Zip.Method");
const ENCRYPTED: Fault = Fault::Encrypted("Heuristics.Encrypted.Zip");
const HIDDEN: Fault = Fault::Broken("Heuristics.Broken.Zip.HiddenEntry");

const LOCAL: [u8; 4] = *b"PK\x03\x04";
const DESCRIPTOR: [u8; 4] = *b"PK\x07\x08";
/// Signatures that end the entries: central directory, zip64 end records, end record.
const CENTRAL: [[u8; 4]; 4] = [*b"PK\x01\x02", *b"PK\x06\x06", *b"PK\x06\x07", *b"PK\x05\x06"];
const CENTRAL_HEADER: [u8; 4] = *b"PK\x01\x02";
/// A central directory header after its signature: up to the local header's offset.
const CENTRAL_FIXED_BYTES: usize = 42;
/// Markers a spanned or split archive may start with (followed by the first local header).
const MARKERS: [[u8; 4]; 2] = [*b"PK\x07\x08", *b"PK00"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Signature,
    Local,
    Name,
    Extra,
    Stored,
    /// Stored, size unknown: looking for the descriptor.
    StoredSearch,
    /// zip's LZMA header (version, properties length, the 5 properties) before the data.
    LzmaProps,
    Compressed,
    Descriptor,
    /// In the central directory, after a header's signature: its fixed fields.
    CentralFixed,
    /// Its name, extra field and comment (`hold` collects the extra field).
    CentralVar,
    /// Between central directory headers.
    CentralSig,
    /// Past the central directory headers: nothing after them is read.
    Done,
}

pub struct Zip {
    state: State,
    /// Fixed-size fields being collected.
    buf: [u8; CENTRAL_FIXED_BYTES],
    got: usize,
    flags: u16,
    method: u16,
    crc_want: u32,
    csize: u64,
    usize_: u64,
    name_len: usize,
    extra_len: usize,
    name: Vec<u8>,
    extra: Vec<u8>,
    zip64: bool,
    /// Compressed bytes of the entry left (known size), and taken so far.
    left: u64,
    taken: u64,
    crc: crc32fast::Hasher,
    made: u64,
    codec: Option<Codec>,
    out: Box<[u8]>,
    /// Stored-with-descriptor staging.
    hold: Vec<u8>,
    entries: u64,
    first: bool,
    lzma_memory_max: u64,
    /// Bytes given to `feed` so far (every `run` input is a suffix of them).
    fed: u64,
    /// Offset of the record being read: the current entry's local header, or the signature
    /// being collected between entries.
    record_at: u64,
    /// Offset of the current entry's local header.
    entry_at: u64,
    /// Entries read in full, by increasing offset.
    done: Vec<ZipDone>,
    /// The archive began with a spanning marker (its offsets may not be from its first byte).
    marked: bool,
    /// The central directory header being read: what is left of its name, extra field and
    /// comment, and the local header offset it gives.
    central_left: (usize, usize, usize),
    central_offset: u64,
    central_sizes: (u64, u64),
}

impl Zip {
    pub fn new(out_bytes: usize, lzma_memory_max: u64) -> Zip {
        Zip {
            state: State::Signature,
            buf: [0; CENTRAL_FIXED_BYTES],
            got: 0,
            flags: 0,
            method: 0,
            crc_want: 0,
            csize: 0,
            usize_: 0,
            name_len: 0,
            extra_len: 0,
            name: Vec::with_capacity(256),
            extra: Vec::new(),
            zip64: false,
            left: 0,
            taken: 0,
            crc: crc32fast::Hasher::new(),
            made: 0,
            codec: None,
            out: vec![0; out_bytes].into_boxed_slice(),
            hold: Vec::new(),
            entries: 0,
            first: true,
            lzma_memory_max,
            fed: 0,
            record_at: 0,
            entry_at: 0,
            done: Vec::new(),
            marked: false,
            central_left: (0, 0, 0),
            central_offset: 0,
            central_sizes: (0, 0),
        }
    }

    fn collect(&mut self, input: &[u8], used: &mut usize, want: usize) -> bool {
        let n = (want - self.got).min(input.len() - *used);
        self.buf[self.got..self.got + n].copy_from_slice(&input[*used..*used + n]);
        self.got += n;
        *used += n;
        self.got == want
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.buf[at], self.buf[at + 1]])
    }
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"))
    }
    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.buf[at..at + 8].try_into().expect("8 bytes"))
    }

    fn sizes_known(&self) -> bool {
        self.flags & 0x08 == 0 || self.zip64_sizes_given()
    }

    fn zip64_sizes_given(&self) -> bool {
        self.zip64 && self.csize != 0 && self.csize != u64::from(u32::MAX)
    }

    /// Reads the zip64 extra field (id 1): the sizes that are `0xffffffff` in the header.
    fn read_extra(&mut self) -> Result<(), Fault> {
        let mut x = &self.extra[..];
        while x.len() >= 4 {
            let id = u16::from_le_bytes([x[0], x[1]]);
            let len = usize::from(u16::from_le_bytes([x[2], x[3]]));
            let body = x.get(4..4 + len).ok_or(BROKEN)?;
            if id == 1 {
                self.zip64 = true;
                let mut f = body;
                let mut next = || -> Option<u64> {
                    let v = u64::from_le_bytes(f.get(..8)?.try_into().ok()?);
                    f = &f[8..];
                    Some(v)
                };
                if self.usize_ == u64::from(u32::MAX) {
                    self.usize_ = next().ok_or(BROKEN)?;
                }
                if self.csize == u64::from(u32::MAX) {
                    self.csize = next().ok_or(BROKEN)?;
                }
            }
            x = &x[4 + len..];
        }
        Ok(())
    }

    /// The header, name and extra field are read: start the entry.
    fn begin_entry(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        self.read_extra()?;
        if self.flags & 0x01 != 0 {
            return Err(ENCRYPTED);
        }
        self.codec = match self.method {
            0 => None,
            8 => Some(Codec::inflate()),
            9 => Some(Codec::inflate64()),
            12 => Some(Codec::bzip2()),
            14 => None, // set up once its properties are read
            93 => Some(Codec::zstd()),
            _ => return Err(UNSUPPORTED),
        };
        self.crc.reset();
        self.made = 0;
        self.taken = 0;
        self.left = self.csize;
        let known = self.sizes_known();
        self.state = match (self.method, known) {
            (0, true) => State::Stored,
            (0, false) => {
                self.hold.clear();
                State::StoredSearch
            }
            (14, _) => State::LzmaProps,
            _ => State::Compressed,
        };
        self.entries += 1;
        let name = String::from_utf8_lossy(&self.name);
        Ok(emit(Event::Start(&name)))
    }

    /// The entry's data ended; check it and move on.
    fn end_data(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        self.got = 0;
        if self.flags & 0x08 != 0 && self.state != State::StoredSearch {
            self.state = State::Descriptor;
            return Ok(ControlFlow::Continue(()));
        }
        self.check_entry(self.crc_want, self.made)?;
        let csize = if self.state == State::StoredSearch { self.made } else { self.taken };
        self.entry_done(self.crc_want, csize);
        self.state = State::Signature;
        Ok(emit(Event::End))
    }

    /// The entry at `entry_at` was read in full and checked.
    fn entry_done(&mut self, crc: u32, csize: u64) {
        self.done.push(ZipDone { offset: self.entry_at, crc, csize });
    }

    /// Notes where the record being read began, once between records.
    fn mark(&mut self, input_len: usize, used: usize) {
        if self.state == State::Signature && self.got == 0 {
            self.record_at = self.fed - (input_len - used) as u64;
        }
    }

    fn check_entry(&self, crc: u32, size: u64) -> Result<(), Fault> {
        if self.crc.clone().finalize() != crc || (size != self.made) {
            return Err(BROKEN);
        }
        Ok(())
    }

    fn data(&mut self, piece: &[u8], emit: &mut Emit<'_>) -> bool {
        self.crc.update(piece);
        self.made += piece.len() as u64;
        emit(Event::Data(piece)).is_break()
    }

    fn run(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let mut used = 0;
        while used < input.len() {
            self.mark(input.len(), used);
            match self.state {
                State::Done => return Ok(ControlFlow::Continue(())),
                State::CentralSig => {
                    if !self.collect(input, &mut used, 4) {
                        break;
                    }
                    self.got = 0;
                    let sig: [u8; 4] = self.buf[..4].try_into().expect("4 bytes");
                    self.state = if sig == CENTRAL_HEADER { State::CentralFixed } else { State::Done };
                }
                State::CentralFixed => {
                    if !self.collect(input, &mut used, CENTRAL_FIXED_BYTES) {
                        break;
                    }
                    self.got = 0;
                    self.central_sizes = (u64::from(self.u32_at(20)), u64::from(self.u32_at(16)));
                    self.central_offset = u64::from(self.u32_at(38));
                    let len = |at| usize::from(self.u16_at(at));
                    self.central_left = (len(24), len(26), len(28));
                    self.hold.clear();
                    self.state = State::CentralVar;
                }
                State::CentralVar => {
                    let (name, extra, comment) = self.central_left;
                    let avail = input.len() - used;
                    if name > 0 {
                        let n = name.min(avail);
                        self.central_left.0 -= n;
                        used += n;
                    } else if extra > 0 {
                        let n = extra.min(avail);
                        self.hold.extend_from_slice(&input[used..used + n]);
                        self.central_left.1 -= n;
                        used += n;
                    } else {
                        let n = comment.min(avail);
                        self.central_left.2 -= n;
                        used += n;
                    }
                    if self.central_left == (0, 0, 0) {
                        self.check_central()?;
                        self.state = State::CentralSig;
                    }
                }
                State::Signature => {
                    if !self.collect(input, &mut used, 4) {
                        break;
                    }
                    self.got = 0;
                    let sig: [u8; 4] = self.buf[..4].try_into().expect("4 bytes");
                    if sig == LOCAL {
                        self.entry_at = self.record_at;
                        self.state = State::Local;
                    } else if sig == CENTRAL_HEADER && !self.first {
                        self.state = State::CentralFixed;
                    } else if CENTRAL.contains(&sig) && !self.first {
                        self.state = State::Done;
                    } else if self.first && MARKERS.contains(&sig) {
                        self.marked = true;
                    } else {
                        return Err(BROKEN);
                    }
                    self.first = false;
                }
                State::Local => {
                    if !self.collect(input, &mut used, 26) {
                        break;
                    }
                    self.flags = self.u16_at(2);
                    self.method = self.u16_at(4);
                    self.crc_want = self.u32_at(10);
                    self.csize = u64::from(self.u32_at(14));
                    self.usize_ = u64::from(self.u32_at(18));
                    self.name_len = usize::from(self.u16_at(22));
                    self.extra_len = usize::from(self.u16_at(24));
                    self.zip64 = false;
                    self.name.clear();
                    self.extra.clear();
                    self.got = 0;
                    self.state = State::Name;
                }
                State::Name => {
                    let n = (self.name_len - self.name.len()).min(input.len() - used);
                    self.name.extend_from_slice(&input[used..used + n]);
                    used += n;
                    if self.name.len() == self.name_len {
                        self.state = State::Extra;
                    }
                }
                State::Extra => {
                    let n = (self.extra_len - self.extra.len()).min(input.len() - used);
                    self.extra.extend_from_slice(&input[used..used + n]);
                    used += n;
                    if self.extra.len() == self.extra_len && self.begin_entry(emit)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                State::Stored => {
                    let n = usize::try_from(self.left).unwrap_or(usize::MAX).min(input.len() - used);
                    let piece = &input[used..used + n];
                    used += n;
                    self.left -= n as u64;
                    self.taken += n as u64;
                    if n > 0 && self.data(piece, emit) {
                        return Ok(ControlFlow::Break(()));
                    }
                    if self.left == 0 && self.end_data(emit)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                State::StoredSearch => {
                    self.hold.extend_from_slice(&input[used..]);
                    used = input.len();
                    if let Some(rest) = self.search(emit)? {
                        if self.end_data(emit)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                        return self.run(&rest, emit);
                    }
                    if self.made == u64::MAX {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                State::LzmaProps => {
                    if !self.collect(input, &mut used, 9) {
                        break;
                    }
                    self.got = 0;
                    self.taken += 9;
                    if self.sizes_known() {
                        self.left = self.left.checked_sub(9).ok_or(BROKEN)?;
                    }
                    if self.u16_at(2) != 5 {
                        return Err(BROKEN);
                    }
                    let props: [u8; 5] = self.buf[4..9].try_into().expect("5 bytes");
                    self.codec = Some(Codec::lzma1(&props, self.lzma_memory_max).ok_or(UNSUPPORTED)?);
                    self.state = State::Compressed;
                }
                State::Compressed => {
                    let known = self.sizes_known();
                    let avail = input.len() - used;
                    let n = if known { usize::try_from(self.left).unwrap_or(usize::MAX).min(avail) } else { avail };
                    let mut codec = self.codec.take().expect("set for compressed entries");
                    let mut out = std::mem::take(&mut self.out);
                    let mut stop = false;
                    let r = pump(&mut codec, &mut out, &input[used..used + n], &mut |piece| {
                        stop = self.data(piece, emit);
                        stop
                    });
                    self.out = out;
                    self.codec = Some(codec);
                    let Some((took, ended)) = r.map_err(|()| BROKEN)? else { return Ok(ControlFlow::Break(())) };
                    used += took;
                    self.taken += took as u64;
                    if known {
                        self.left -= took as u64;
                    }
                    if ended {
                        if known && self.left != 0 {
                            return Err(BROKEN);
                        }
                        if self.end_data(emit)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    } else if known && self.left == 0 {
                        // Raw LZMA without an end marker ends with its size; others must end.
                        if self.method != 14 {
                            return Err(BROKEN);
                        }
                        if self.end_data(emit)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                State::Descriptor => {
                    if self.got < 4 && !self.collect(input, &mut used, 4) {
                        break;
                    }
                    let signed = self.buf[..4] == DESCRIPTOR;
                    let width = if self.zip64 { 8 } else { 4 };
                    let want = usize::from(signed) * 4 + 4 + 2 * width;
                    if !self.collect(input, &mut used, want) {
                        break;
                    }
                    let at = usize::from(signed) * 4;
                    let crc = self.u32_at(at);
                    let size = if self.zip64 { self.u64_at(at + 12) } else { u64::from(self.u32_at(at + 8)) };
                    self.check_entry(crc, size)?;
                    self.entry_done(crc, self.taken);
                    self.got = 0;
                    self.state = State::Signature;
                    if emit(Event::End).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
        }
        self.mark(input.len(), used);
        Ok(ControlFlow::Continue(()))
    }

    /// A central directory header was read: the entry it lists must be one the local headers
    /// led to (its offset among those read in full).
    fn check_central(&mut self) -> Result<(), Fault> {
        let mut offset = self.central_offset;
        if offset == u64::from(u32::MAX) {
            // zip64: the extra field (id 1) holds, in order, the fields that are all ones.
            let mut x = &self.hold[..];
            while x.len() >= 4 {
                let id = u16::from_le_bytes([x[0], x[1]]);
                let len = usize::from(u16::from_le_bytes([x[2], x[3]]));
                let body = x.get(4..4 + len).ok_or(BROKEN)?;
                if id == 1 {
                    let skip = 8
                        * (usize::from(self.central_sizes.0 == u64::from(u32::MAX))
                            + usize::from(self.central_sizes.1 == u64::from(u32::MAX)));
                    offset = u64::from_le_bytes(body.get(skip..skip + 8).ok_or(BROKEN)?.try_into().expect("8 bytes"));
                }
                x = &x[4 + len..];
            }
        }
        self.hold.clear();
        if self.marked || self.done.binary_search_by_key(&offset, |d| d.offset).is_ok() {
            return Ok(());
        }
        Err(HIDDEN)
    }

    /// Stored data of unknown size, staged in `hold`: emits what cannot be a descriptor, and
    /// when the descriptor is found returns the bytes after it. `made == u64::MAX` marks a stop.
    fn search(&mut self, emit: &mut Emit<'_>) -> Result<Option<Vec<u8>>, Fault> {
        const LEN: usize = 16;
        let mut from = 0;
        let mut hold = std::mem::take(&mut self.hold);
        let result: Option<()> = loop {
            if hold.len() < from + LEN {
                break None;
            }
            let Some(p) = memchr::memmem::find(&hold[from..hold.len() - LEN + 4], &DESCRIPTOR).map(|p| from + p) else {
                from = hold.len() - LEN + 1;
                break None;
            };
            let d = &hold[p..p + LEN];
            let crc = u32::from_le_bytes(d[4..8].try_into().expect("4"));
            let csize = u32::from_le_bytes(d[8..12].try_into().expect("4"));
            let mut c = self.crc.clone();
            c.update(&hold[..p]);
            let size = self.made + p as u64;
            if c.finalize() == crc && u64::from(csize) == size & 0xffff_ffff {
                if p > 0 && self.data(&hold[..p], emit) {
                    hold.clear();
                    self.made = u64::MAX;
                    break None;
                }
                // The descriptor is checked by `end_data` against the data's CRC and size.
                self.crc_want = crc;
                let rest = hold.split_off(p + LEN);
                hold.clear();
                self.hold = hold;
                return Ok(Some(rest));
            }
            from = p + 1;
        };
        if result.is_none() && from > 0 && self.made != u64::MAX {
            // Everything before `from` is data.
            let stop = self.data(&hold[..from], emit);
            hold.drain(..from);
            if stop {
                self.made = u64::MAX;
            }
        }
        self.hold = hold;
        Ok(None)
    }
}

impl Feed for Zip {
    fn feed(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        self.fed += input.len() as u64;
        self.run(input, emit)
    }

    fn keep_from(&self) -> Option<u64> {
        // Past the last entry nothing can fail but a missing end, which a rescue cannot mend.
        let central = matches!(self.state, State::CentralFixed | State::CentralVar | State::CentralSig | State::Done);
        (!central).then_some(self.record_at)
    }

    fn take_done(&mut self) -> Vec<ZipDone> {
        std::mem::take(&mut self.done)
    }

    fn finish(&mut self, _emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        // Cut inside the central directory, every entry was read: not broken.
        if !matches!(self.state, State::Done | State::CentralSig | State::CentralFixed | State::CentralVar) {
            return Err(BROKEN);
        }
        Ok(ControlFlow::Continue(()))
    }
}
