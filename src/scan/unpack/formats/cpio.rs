//! cpio, in its four header variants: POSIX odc (`070707`, octal), SVR4 newc and crc
//! (`070701`/`070702`, hex; name and data padded to 4), and the old binary format in either
//! byte order (name and data padded to 2). Every entry with data is a member; the archive
//! ends at the `TRAILER!!!` entry.

use crate::scan::unpack::detect::CpioKind;
use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

const BROKEN: Fault = Fault::Broken("Heuristics.Broken.Cpio");
const TRAILER: &[u8] = b"TRAILER!!!";
/// Longest name kept (longer ones are cut; the bytes are still skipped).
const NAME_BYTES_MAX: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Name,
    NamePad,
    Data,
    DataPad,
    End,
}

pub struct Cpio {
    kind: CpioKind,
    state: State,
    buf: [u8; 110],
    got: usize,
    name: Vec<u8>,
    name_left: usize,
    left: u64,
    pad: usize,
    /// Bytes of the current entry's header and name, for padding to 4 (newc).
    header_len: usize,
    entries: u64,
}

impl Cpio {
    pub fn new(kind: CpioKind) -> Cpio {
        Cpio {
            kind,
            state: State::Header,
            buf: [0; 110],
            got: 0,
            name: Vec::with_capacity(256),
            name_left: 0,
            left: 0,
            pad: 0,
            header_len: 0,
            entries: 0,
        }
    }

    fn header_bytes(&self) -> usize {
        match self.kind {
            CpioKind::Odc => 76,
            CpioKind::Newc => 110,
            CpioKind::BinLe | CpioKind::BinBe => 26,
        }
    }

    fn align(&self) -> usize {
        match self.kind {
            CpioKind::Odc => 1,
            CpioKind::Newc => 4,
            CpioKind::BinLe | CpioKind::BinBe => 2,
        }
    }

    fn word(&self, i: usize) -> u32 {
        let b = [self.buf[2 * i], self.buf[2 * i + 1]];
        u32::from(if self.kind == CpioKind::BinLe { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
    }

    /// Reads the name length and file size from the header.
    fn parse(&mut self) -> Result<(), Fault> {
        let (namesize, filesize) = match self.kind {
            CpioKind::Odc => {
                if &self.buf[..6] != b"070707" {
                    return Err(BROKEN);
                }
                (num(&self.buf[59..65], 8)?, num(&self.buf[65..76], 8)?)
            }
            CpioKind::Newc => {
                if &self.buf[..5] != b"07070" || !matches!(self.buf[5], b'1' | b'2') {
                    return Err(BROKEN);
                }
                (num(&self.buf[94..102], 16)?, num(&self.buf[54..62], 16)?)
            }
            CpioKind::BinLe | CpioKind::BinBe => {
                if self.word(0) != 0o070707 {
                    return Err(BROKEN);
                }
                (u64::from(self.word(10)), (u64::from(self.word(11)) << 16) | u64::from(self.word(12)))
            }
        };
        self.name_left = usize::try_from(namesize).map_err(|_| BROKEN)?;
        self.left = filesize;
        self.header_len = self.header_bytes() + self.name_left;
        Ok(())
    }

    fn pad_to(&self, len: u64) -> usize {
        let a = self.align() as u64;
        ((a - len % a) % a) as usize
    }
}

fn num(f: &[u8], radix: u32) -> Result<u64, Fault> {
    let s = std::str::from_utf8(f).map_err(|_| BROKEN)?;
    u64::from_str_radix(s.trim_matches(|c: char| c == ' ' || c == '\0'), radix).map_err(|_| BROKEN)
}

impl Feed for Cpio {
    fn feed(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let mut used = 0;
        loop {
            if self.settle_pads(emit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            if used == input.len() {
                return Ok(ControlFlow::Continue(()));
            }
            let avail = input.len() - used;
            match self.state {
                State::End => return Ok(ControlFlow::Continue(())),
                State::Header => {
                    let want = self.header_bytes();
                    let n = (want - self.got).min(avail);
                    self.buf[self.got..self.got + n].copy_from_slice(&input[used..used + n]);
                    self.got += n;
                    used += n;
                    if self.got == want {
                        self.got = 0;
                        self.parse()?;
                        self.name.clear();
                        self.state = State::Name;
                    }
                }
                State::Name => {
                    let n = self.name_left.min(avail);
                    let room = NAME_BYTES_MAX.saturating_sub(self.name.len()).min(n);
                    self.name.extend_from_slice(&input[used..used + room]);
                    used += n;
                    self.name_left -= n;
                    if self.name_left == 0 {
                        self.pad = self.pad_to(self.header_len as u64);
                        self.state = State::NamePad;
                    }
                }
                State::NamePad | State::DataPad => {
                    let n = self.pad.min(avail);
                    used += n;
                    self.pad -= n;
                }
                State::Data => {
                    let n = usize::try_from(self.left).unwrap_or(usize::MAX).min(avail);
                    let piece = &input[used..used + n];
                    used += n;
                    self.left -= n as u64;
                    if emit(Event::Data(piece)).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    if self.left == 0 {
                        self.state = State::DataPad;
                        if emit(Event::End).is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
            }
        }
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if self.settle_pads(emit)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        if self.state != State::End {
            return Err(BROKEN);
        }
        Ok(ControlFlow::Continue(()))
    }
}

impl Cpio {
    /// Takes the steps that need no input (a zero-length pad, an empty entry).
    fn settle_pads(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        loop {
            match self.state {
                State::DataPad if self.pad == 0 => self.state = State::Header,
                State::NamePad if self.pad == 0 => {
                    let name = self.name.strip_suffix(b"\0").unwrap_or(&self.name);
                    if name == TRAILER {
                        self.state = State::End;
                        continue;
                    }
                    self.pad = self.pad_to(self.left);
                    if self.left == 0 {
                        self.state = State::DataPad;
                        continue;
                    }
                    self.entries += 1;
                    let name = String::from_utf8_lossy(name).into_owned();
                    if emit(Event::Start(&name)).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    self.state = State::Data;
                }
                _ => return Ok(ControlFlow::Continue(())),
            }
        }
    }
}
