//! uuencode: `begin <mode> <name>`, lines of a length character and groups of four
//! characters for three bytes, a zero-length line, `end`. Every `begin` block is a member.
//! Lines are held in a bounded buffer; a longer line is no uuencoded line and ends the block.

use super::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

const LINE_BYTES_MAX: usize = 1024;

/// The file name of a `begin <octal mode> <name>` line.
pub fn begin_line(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"begin ")?;
    let sp = memchr::memchr(b' ', rest)?;
    let mode = &rest[..sp];
    if mode.is_empty() || mode.len() > 4 || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let name = rest[sp + 1..].trim_ascii();
    (!name.is_empty()).then_some(name)
}

pub struct Uu {
    line: Vec<u8>,
    long: bool,
    open: bool,
    out: Vec<u8>,
}

impl Uu {
    pub fn new() -> Uu {
        Uu { line: Vec::with_capacity(LINE_BYTES_MAX), long: false, open: false, out: Vec::with_capacity(64) }
    }

    fn line_done(&mut self, line: &[u8], emit: &mut Emit<'_>) -> ControlFlow<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !self.open {
            if let Some(name) = begin_line(line) {
                self.open = true;
                let name = String::from_utf8_lossy(name).into_owned();
                return emit(Event::Start(&name));
            }
            return ControlFlow::Continue(());
        }
        let Some(&first) = line.first() else {
            return ControlFlow::Continue(());
        };
        let len = usize::from(first.wrapping_sub(b' ') & 0x3f);
        if len == 0 || line == b"end" {
            self.open = false;
            return emit(Event::End);
        }
        self.out.clear();
        let value = |c: u8| u32::from(c.wrapping_sub(b' ') & 0x3f);
        for group in line[1..].chunks(4) {
            let mut acc = 0u32;
            for i in 0..4 {
                acc = (acc << 6) | group.get(i).map_or(0, |&c| value(c));
            }
            self.out.extend_from_slice(&acc.to_be_bytes()[1..]);
        }
        self.out.truncate(len);
        emit(Event::Data(&self.out))
    }
}

impl Feed for Uu {
    fn feed(&mut self, mut input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        while !input.is_empty() {
            let nl = memchr::memchr(b'\n', input);
            let piece = &input[..nl.unwrap_or(input.len())];
            if self.long || self.line.len() + piece.len() > LINE_BYTES_MAX {
                // No uuencoded line is this long: the block (if any) ends here.
                self.line.clear();
                self.long = nl.is_none();
                if self.open {
                    self.open = false;
                    if emit(Event::End).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
            } else if nl.is_some() {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                let flow = self.line_done(&line, emit);
                line.clear();
                self.line = line;
                if flow.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            } else {
                self.line.extend_from_slice(piece);
            }
            input = &input[nl.map_or(input.len(), |i| i + 1)..];
        }
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            if self.line_done(&line, emit).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        if self.open {
            self.open = false;
            if emit(Event::End).is_break() {
                return Ok(ControlFlow::Break(()));
            }
            return Err(Fault::Broken("Heuristics.Broken.Uuencode"));
        }
        Ok(ControlFlow::Continue(()))
    }
}
