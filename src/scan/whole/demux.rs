//! Files laid out at offsets in one decoded stream (a CAB folder, a CHM section): emitted in
//! offset order while the stream decodes, one block at a time. Files that overlap cannot be
//! open at once, so they are split into passes, each a set that does not overlap; the caller
//! decodes the stream once per pass.

use super::out::{broken, Out, R};

#[derive(Clone, Debug)]
pub struct Span {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

impl Span {
    fn end(&self) -> u64 {
        self.offset.saturating_add(self.size)
    }
}

/// Splits `files` into passes of files that do not overlap, each in offset order.
pub fn passes(mut files: Vec<Span>) -> Vec<Vec<Span>> {
    files.sort_by_key(|f| f.offset);
    let mut all = Vec::new();
    while !files.is_empty() {
        let mut pass = Vec::new();
        let mut rest = Vec::new();
        let mut end = 0u64;
        for f in files {
            if f.offset >= end {
                end = f.end();
                pass.push(f);
            } else {
                rest.push(f);
            }
        }
        all.push(pass);
        files = rest;
    }
    all
}

/// The emission state of one pass.
pub struct Demux<'p> {
    pass: &'p [Span],
    k: usize,
    open: bool,
    pos: u64,
}

impl<'p> Demux<'p> {
    pub fn new(pass: &'p [Span]) -> Self {
        Demux { pass, k: 0, open: false, pos: 0 }
    }

    /// True once every file of the pass is out: the caller stops decoding.
    pub fn done(&self) -> bool {
        self.k >= self.pass.len()
    }

    /// The next block of the stream.
    pub fn feed(&mut self, block: &[u8], out: &mut Out) -> R {
        let pos = self.pos;
        let end = pos + block.len() as u64;
        while let Some(f) = self.pass.get(self.k) {
            let (s, e) = (f.offset, f.end());
            if s > end || (s == end && e > s) {
                break;
            }
            if !self.open {
                out.start(&f.name)?;
                self.open = true;
            }
            let (from, to) = (s.max(pos), e.min(end));
            if to > from {
                out.data(&block[(from - pos) as usize..(to - pos) as usize])?;
            }
            if e > end {
                break;
            }
            out.end()?;
            self.open = false;
            self.k += 1;
        }
        self.pos = end;
        Ok(())
    }

    /// After the stream's last block: files left (beyond the end of the stream) are broken.
    pub fn finish(mut self, broken_name: &'static str, out: &mut Out) -> R {
        self.feed(&[], out)?;
        if self.done() {
            Ok(())
        } else {
            Err(broken(broken_name))
        }
    }
}
