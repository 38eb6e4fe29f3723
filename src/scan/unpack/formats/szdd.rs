//! SZDD, the LZSS format of Microsoft's `compress.exe` (`setup.ex_` files): a 14-byte header
//! (magic, `A`, the name's last character, the length) and LZSS with a 4 KiB window that
//! starts filled with blanks. One member, named after the file with its last character put
//! back (`clam.ex_` gives `clam.exe`).

use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

const HEADER: usize = 14;
const WINDOW: usize = 4096;

pub struct Szdd {
    header: [u8; HEADER],
    got: usize,
    window: Box<[u8; WINDOW]>,
    pos: usize,
    flags: u8,
    bits: u8,
    /// The first byte of a match reference, while waiting for the second.
    first: Option<u8>,
    out: Vec<u8>,
    parent: String,
    started: bool,
}

impl Szdd {
    pub fn new(parent: &str) -> Szdd {
        Szdd {
            header: [0; HEADER],
            got: 0,
            window: Box::new([b' '; WINDOW]),
            pos: WINDOW - 16,
            flags: 0,
            bits: 0,
            first: None,
            out: Vec::with_capacity(8192),
            parent: parent.to_string(),
            started: false,
        }
    }

    fn put(&mut self, b: u8) {
        self.window[self.pos] = b;
        self.pos = (self.pos + 1) % WINDOW;
        self.out.push(b);
    }

    fn flush(&mut self, emit: &mut Emit<'_>) -> ControlFlow<()> {
        if self.out.is_empty() {
            return ControlFlow::Continue(());
        }
        let flow = emit(Event::Data(&self.out));
        self.out.clear();
        flow
    }
}

impl Feed for Szdd {
    fn feed(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let mut i = 0;
        if self.got < HEADER {
            let n = (HEADER - self.got).min(input.len());
            self.header[self.got..self.got + n].copy_from_slice(&input[..n]);
            self.got += n;
            i = n;
            if self.got < HEADER {
                return Ok(ControlFlow::Continue(()));
            }
        }
        if !self.started {
            self.started = true;
            let missing = self.header[9];
            let name = match self.parent.strip_suffix('_') {
                Some(stem) if missing.is_ascii_graphic() => format!("{stem}{}", missing as char),
                _ => "[szdd]".to_string(),
            };
            if emit(Event::Start(&name)).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        for &b in &input[i..] {
            if self.bits == 0 {
                self.flags = b;
                self.bits = 8;
                continue;
            }
            if self.flags & 1 != 0 {
                self.put(b);
                self.flags >>= 1;
                self.bits -= 1;
            } else if let Some(b0) = self.first.take() {
                let at = usize::from(b0) | (usize::from(b & 0xf0) << 4);
                let len = usize::from(b & 0x0f) + 3;
                for k in 0..len {
                    let c = self.window[(at + k) % WINDOW];
                    self.put(c);
                }
                self.flags >>= 1;
                self.bits -= 1;
            } else {
                self.first = Some(b);
            }
            if self.out.len() >= 8192 && self.flush(emit).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(self.flush(emit))
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if !self.started || self.first.is_some() {
            return Err(Fault::Broken("Heuristics.Broken.SZDD"));
        }
        Ok(emit(Event::End))
    }
}
