//! BinHex 4.0 (Macintosh): after the banner line, text between two colons in a 64-character
//! alphabet, run-length coded (0x90), holding a header (name, type, creator, fork lengths),
//! the data fork and the resource fork. Each non-empty fork is a member. The CRCs are not
//! checked: a damaged file is scanned as far as it decodes.

use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

const BROKEN: Fault = Fault::Broken("Heuristics.Broken.BinHex");
const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
const BANNER: &[u8] = b"(This file must be converted with BinHex";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Text {
    /// Looking for the banner (kept in `seek`), then the colon that opens the data.
    Banner,
    Colon,
    Data,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    NameLen,
    Name,
    Header,
    Fork { resource: bool },
    Crc { resource: bool },
    End,
}

pub struct Binhex {
    text: Text,
    seek: usize,
    acc: u32,
    nbits: u8,
    last: u8,
    marker: bool,
    part: Part,
    name: Vec<u8>,
    name_len: usize,
    header: Vec<u8>,
    left: u64,
    rsrc_len: u64,
    crc_left: u8,
    open: bool,
    out: Vec<u8>,
    table: [u8; 256],
}

impl Binhex {
    pub fn new() -> Binhex {
        let mut table = [0xff; 256];
        for (i, &c) in ALPHABET.iter().enumerate() {
            table[usize::from(c)] = i as u8;
        }
        Binhex {
            text: Text::Banner,
            seek: 0,
            acc: 0,
            nbits: 0,
            last: 0,
            marker: false,
            part: Part::NameLen,
            name: Vec::new(),
            name_len: 0,
            header: Vec::with_capacity(21),
            left: 0,
            rsrc_len: 0,
            crc_left: 2,
            open: false,
            out: Vec::with_capacity(4096),
            table,
        }
    }

    /// One byte after run-length decoding.
    fn byte(&mut self, b: u8, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        match self.part {
            Part::NameLen => {
                self.name_len = usize::from(b);
                self.part = if b == 0 { Part::Header } else { Part::Name };
            }
            Part::Name => {
                self.name.push(b);
                if self.name.len() == self.name_len {
                    self.part = Part::Header;
                }
            }
            Part::Header => {
                // version, type, creator, flags, data length, resource length, header CRC
                self.header.push(b);
                if self.header.len() == 21 {
                    let h = &self.header;
                    self.left = u64::from(u32::from_be_bytes([h[11], h[12], h[13], h[14]]));
                    self.rsrc_len = u64::from(u32::from_be_bytes([h[15], h[16], h[17], h[18]]));
                    return self.fork(false, emit);
                }
            }
            Part::Fork { resource } => {
                self.out.push(b);
                self.left -= 1;
                if self.left == 0 {
                    if self.flush(emit)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    self.open = false;
                    self.crc_left = 2;
                    self.part = Part::Crc { resource };
                    return Ok(emit(Event::End));
                }
            }
            Part::Crc { resource } => {
                self.crc_left -= 1;
                if self.crc_left == 0 {
                    if resource {
                        self.part = Part::End;
                    } else {
                        self.left = self.rsrc_len;
                        return self.fork(true, emit);
                    }
                }
            }
            Part::End => {}
        }
        Ok(ControlFlow::Continue(()))
    }

    fn fork(&mut self, resource: bool, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if self.left == 0 {
            self.crc_left = 2;
            self.part = Part::Crc { resource };
            return Ok(ControlFlow::Continue(()));
        }
        self.part = Part::Fork { resource };
        self.open = true;
        let mut name = String::from_utf8_lossy(&self.name).into_owned();
        if resource {
            name.push_str(".rsrc");
        }
        Ok(emit(Event::Start(&name)))
    }

    fn flush(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if self.out.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let flow = emit(Event::Data(&self.out));
        self.out.clear();
        Ok(flow)
    }

    /// One decoded byte before run-length decoding.
    fn raw(&mut self, b: u8, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if self.marker {
            self.marker = false;
            if b == 0 {
                self.last = 0x90;
                return self.byte(0x90, emit);
            }
            for _ in 1..b {
                if self.byte(self.last, emit)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            return Ok(ControlFlow::Continue(()));
        }
        if b == 0x90 {
            self.marker = true;
            return Ok(ControlFlow::Continue(()));
        }
        self.last = b;
        self.byte(b, emit)
    }
}

impl Feed for Binhex {
    fn feed(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        for &c in input {
            match self.text {
                Text::Banner => {
                    self.seek = if c == BANNER[self.seek] { self.seek + 1 } else { usize::from(c == BANNER[0]) };
                    if self.seek == BANNER.len() {
                        self.text = Text::Colon;
                    }
                }
                Text::Colon => {
                    if c == b':' {
                        self.text = Text::Data;
                    }
                }
                Text::Data => {
                    if c == b':' {
                        self.text = Text::Done;
                        continue;
                    }
                    let v = self.table[usize::from(c)];
                    if v == 0xff {
                        if c.is_ascii_whitespace() {
                            continue;
                        }
                        return Err(BROKEN);
                    }
                    self.acc = (self.acc << 6) | u32::from(v);
                    self.nbits += 6;
                    if self.nbits >= 8 {
                        self.nbits -= 8;
                        let b = (self.acc >> self.nbits) as u8;
                        self.acc &= (1 << self.nbits) - 1;
                        if self.raw(b, emit)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                Text::Done => break,
            }
            if self.out.len() >= 4096 && self.flush(emit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        self.flush(emit)
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if self.open {
            if self.flush(emit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            self.open = false;
            if emit(Event::End).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        if self.part != Part::End {
            return Err(BROKEN);
        }
        Ok(ControlFlow::Continue(()))
    }
}
