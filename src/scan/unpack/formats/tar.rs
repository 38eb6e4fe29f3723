//! tar (POSIX ustar, GNU, pax): 512-byte headers, each followed by its data padded to 512.
//!
//! Regular files (and GNU sparse and contiguous ones, whose stored bytes are scanned as they
//! are) are members; the name comes from a pax `path` record, a GNU long-name entry, or the
//! header's prefix and name. Other entries' data (links, directories, devices, global pax
//! headers) is skipped. Sizes may be octal or GNU base-256; every header's checksum is
//! checked. The archive ends at a zero block; a header that fails its checksum, or an archive
//! cut inside an entry, is broken.

use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

const BROKEN: Fault = Fault::Broken("Heuristics.Broken.Tar");
const BLOCK: usize = 512;
/// Longest GNU long name or pax header kept (longer ones are cut or skipped).
const META_BYTES_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    /// A member's data.
    Data,
    /// A GNU long name or a pax header: collected for the next entry.
    Meta,
    /// Data of an entry that is no member.
    Skip,
    /// Padding to the next block.
    Pad,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetaKind {
    LongName,
    Pax,
}

pub struct Tar {
    state: State,
    header: Box<[u8; BLOCK]>,
    got: usize,
    left: u64,
    pad: usize,
    meta: Vec<u8>,
    meta_kind: MetaKind,
    /// The name the next entry takes from a long-name entry or a pax header.
    next_name: Option<String>,
    entries: u64,
}

impl Tar {
    pub fn new() -> Tar {
        Tar {
            state: State::Header,
            header: Box::new([0; BLOCK]),
            got: 0,
            left: 0,
            pad: 0,
            meta: Vec::new(),
            meta_kind: MetaKind::LongName,
            next_name: None,
            entries: 0,
        }
    }

    /// After `size` bytes of data, the padding to the block boundary.
    fn set_size(&mut self, size: u64) {
        self.left = size;
        self.pad = ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize;
    }

    fn after_data(&mut self) {
        self.state = if self.pad > 0 { State::Pad } else { State::Header };
    }

    fn header(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let header = self.header.clone();
        let h = &*header;
        if h.iter().all(|&b| b == 0) {
            self.state = State::End;
            return Ok(ControlFlow::Continue(()));
        }
        let stored = octal(&h[148..156]).ok_or(BROKEN)?;
        let unsigned: u64 =
            h.iter().enumerate().map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b })).sum();
        let signed: i64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| i64::from(if (148..156).contains(&i) { b' ' as i8 } else { b as i8 }))
            .sum();
        if stored != unsigned && stored as i64 != signed {
            return Err(BROKEN);
        }
        let size = size_field(&h[124..136]).ok_or(BROKEN)?;
        self.set_size(size);
        let kind = h[156];
        match kind {
            b'0' | 0 | b'7' | b'S' => {
                let name = match self.next_name.take() {
                    Some(n) => n,
                    None => {
                        let name = cstr(&h[0..100]);
                        let prefix = if &h[257..262] == b"ustar" { cstr(&h[345..500]) } else { &[] };
                        if prefix.is_empty() {
                            String::from_utf8_lossy(name).into_owned()
                        } else {
                            format!("{}/{}", String::from_utf8_lossy(prefix), String::from_utf8_lossy(name))
                        }
                    }
                };
                self.entries += 1;
                if emit(Event::Start(&name)).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                self.state = State::Data;
                if size == 0 {
                    self.after_data();
                    return Ok(emit(Event::End));
                }
            }
            b'L' | b'x' => {
                self.meta.clear();
                self.meta_kind = if kind == b'L' { MetaKind::LongName } else { MetaKind::Pax };
                self.state = if size == 0 { State::Header } else { State::Meta };
            }
            _ => {
                self.next_name = None;
                self.state = if size == 0 { State::Header } else { State::Skip };
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn meta_done(&mut self) {
        let meta = &self.meta;
        self.next_name = match self.meta_kind {
            MetaKind::LongName => Some(String::from_utf8_lossy(cstr(meta)).into_owned()),
            MetaKind::Pax => pax_path(meta).map(|p| String::from_utf8_lossy(p).into_owned()).or(self.next_name.take()),
        };
    }
}

/// A NUL-terminated field's bytes.
fn cstr(f: &[u8]) -> &[u8] {
    &f[..memchr::memchr(0, f).unwrap_or(f.len())]
}

/// An octal field (leading blanks, then digits up to a NUL or blank).
fn octal(f: &[u8]) -> Option<u64> {
    let f = cstr(f);
    let f = f.trim_ascii();
    if f.is_empty() {
        return Some(0);
    }
    f.iter().try_fold(0u64, |n, &b| {
        (b'0'..=b'7').contains(&b).then(|| n.checked_mul(8)).flatten().map(|n| n + u64::from(b - b'0'))
    })
}

/// A size field: octal, or GNU base-256 (high bit of the first byte set).
fn size_field(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        if f[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut n = u64::from(f[0] & 0x3f);
        for &b in &f[1..] {
            n = n.checked_mul(256)? | u64::from(b);
        }
        return Some(n);
    }
    octal(f)
}

/// The value of the `path` record of a pax header (`"<len> path=<value>\n"` records).
fn pax_path(mut meta: &[u8]) -> Option<&[u8]> {
    while !meta.is_empty() {
        let sp = memchr::memchr(b' ', meta)?;
        let len: usize = std::str::from_utf8(&meta[..sp]).ok()?.parse().ok()?;
        let record = meta.get(sp + 1..len)?;
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(v) = record.strip_prefix(b"path=") {
            return Some(v);
        }
        meta = &meta[len..];
    }
    None
}

impl Feed for Tar {
    fn feed(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let mut used = 0;
        while used < input.len() {
            let avail = input.len() - used;
            match self.state {
                State::End => return Ok(ControlFlow::Continue(())),
                State::Header => {
                    let n = (BLOCK - self.got).min(avail);
                    self.header[self.got..self.got + n].copy_from_slice(&input[used..used + n]);
                    self.got += n;
                    used += n;
                    if self.got == BLOCK {
                        self.got = 0;
                        if self.header(emit)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                State::Data | State::Meta | State::Skip => {
                    let n = usize::try_from(self.left).unwrap_or(usize::MAX).min(avail);
                    let piece = &input[used..used + n];
                    used += n;
                    self.left -= n as u64;
                    match self.state {
                        State::Data if emit(Event::Data(piece)).is_break() => {
                            return Ok(ControlFlow::Break(()));
                        }
                        State::Meta => {
                            let room = META_BYTES_MAX.saturating_sub(self.meta.len()).min(piece.len());
                            self.meta.extend_from_slice(&piece[..room]);
                        }
                        _ => {}
                    }
                    if self.left == 0 {
                        match self.state {
                            State::Data => {
                                self.after_data();
                                if emit(Event::End).is_break() {
                                    return Ok(ControlFlow::Break(()));
                                }
                            }
                            State::Meta => {
                                self.meta_done();
                                self.after_data();
                            }
                            _ => self.after_data(),
                        }
                    }
                }
                State::Pad => {
                    let n = self.pad.min(avail);
                    used += n;
                    self.pad -= n;
                    if self.pad == 0 {
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&mut self, _emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        // An archive that stops at a block boundary after whole entries is read to its end.
        match self.state {
            State::End => Ok(ControlFlow::Continue(())),
            State::Header if self.got == 0 && self.entries > 0 => Ok(ControlFlow::Continue(())),
            _ => Err(BROKEN),
        }
    }
}
