//! The PDF stream filters a scanner needs to reach the bytes a reader would see: ASCIIHexDecode,
//! ASCII85Decode, LZWDecode, RunLengthDecode (FlateDecode is [`super::deflate`]), and the PNG and
//! TIFF predictors of `/DecodeParms`. Each writes into a [`Put`] through a bounded buffer; each
//! stops at its end-of-data marker or at the end of the input. Written from the PDF 1.7
//! reference (ISO 32000-1, 7.4).

use super::out::{broken, Put, PIECE_BYTES, R};

pub const BROKEN: &str = "Heuristics.Broken.PDF";

/// Output buffered to [`PIECE_BYTES`] before it is handed on.
struct Pending<'a> {
    buf: Vec<u8>,
    put: &'a mut dyn Put,
}

impl<'a> Pending<'a> {
    fn new(put: &'a mut dyn Put) -> Self {
        Pending { buf: Vec::with_capacity(PIECE_BYTES), put }
    }
    fn push(&mut self, b: u8) -> R {
        self.buf.push(b);
        if self.buf.len() >= PIECE_BYTES {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> R {
        if !self.buf.is_empty() {
            self.put.put(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0C | 0)
}

/// ASCIIHexDecode: pairs of hex digits, white space ignored, `>` ends; an odd last digit is
/// followed by an implied 0.
pub fn ascii_hex(input: &[u8], put: &mut dyn Put) -> R {
    let mut p = Pending::new(put);
    let mut high: Option<u8> = None;
    for &b in input {
        if b == b'>' {
            break;
        }
        if is_space(b) {
            continue;
        }
        let v = hex_val(b).ok_or_else(|| broken(BROKEN))?;
        match high.take() {
            Some(h) => p.push(h << 4 | v)?,
            None => high = Some(v),
        }
    }
    if let Some(h) = high {
        p.push(h << 4)?;
    }
    p.flush()
}

/// ASCII85Decode: groups of five characters `!`..`u` make four bytes, `z` is four zeros, `~>`
/// ends; a final group of n characters makes n-1 bytes.
pub fn ascii85(input: &[u8], put: &mut dyn Put) -> R {
    let mut p = Pending::new(put);
    let mut group = [0u8; 5];
    let mut n = 0usize;
    let input = input.strip_prefix(b"<~").unwrap_or(input);
    for &b in input {
        match b {
            b'~' => break,
            b'z' if n == 0 => {
                for _ in 0..4 {
                    p.push(0)?;
                }
            }
            b'!'..=b'u' => {
                group[n] = b - b'!';
                n += 1;
                if n == 5 {
                    let v = group.iter().fold(0u64, |acc, &d| acc * 85 + d as u64);
                    if v > u32::MAX as u64 {
                        return Err(broken(BROKEN));
                    }
                    for byte in (v as u32).to_be_bytes() {
                        p.push(byte)?;
                    }
                    n = 0;
                }
            }
            _ if is_space(b) => {}
            _ => return Err(broken(BROKEN)),
        }
    }
    if n == 1 {
        return Err(broken(BROKEN));
    }
    if n > 1 {
        for d in group.iter_mut().skip(n) {
            *d = 84;
        }
        let v = group.iter().fold(0u64, |acc, &d| acc * 85 + d as u64);
        if v > u32::MAX as u64 {
            return Err(broken(BROKEN));
        }
        for &byte in &(v as u32).to_be_bytes()[..n - 1] {
            p.push(byte)?;
        }
    }
    p.flush()
}

/// RunLengthDecode: a length byte L, then L+1 literal bytes (L < 128) or one byte repeated
/// 257-L times (L > 128); 128 ends.
pub fn run_length(input: &[u8], put: &mut dyn Put) -> R {
    let mut p = Pending::new(put);
    let mut i = 0usize;
    while let Some(&l) = input.get(i) {
        i += 1;
        match l {
            128 => break,
            0..=127 => {
                let n = l as usize + 1;
                let lit = input.get(i..i + n).ok_or_else(|| broken(BROKEN))?;
                for &b in lit {
                    p.push(b)?;
                }
                i += n;
            }
            _ => {
                let &b = input.get(i).ok_or_else(|| broken(BROKEN))?;
                i += 1;
                for _ in 0..(257 - l as usize) {
                    p.push(b)?;
                }
            }
        }
    }
    p.flush()
}

/// LZWDecode: codes of 9 to 12 bits, most significant bit first; 256 clears the table, 257
/// ends. With `early` (the default EarlyChange 1) the code width grows one code early.
pub fn lzw(input: &[u8], early: bool, put: &mut dyn Put) -> R {
    let mut p = Pending::new(put);
    // Each entry: the prefix code and the last byte; strings are rebuilt backwards.
    let mut prefix = vec![0u16; 4096];
    let mut last = vec![0u8; 4096];
    let mut first = vec![0u8; 4096];
    for c in 0..256 {
        last[c] = c as u8;
        first[c] = c as u8;
    }
    let mut next = 258usize;
    let mut width = 9u32;
    let mut prev: Option<u16> = None;
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut stack = Vec::with_capacity(4096);
    for &b in input {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= width {
            let code = ((acc >> (bits - width)) & ((1 << width) - 1)) as usize;
            bits -= width;
            acc &= (1 << bits) - 1;
            match code {
                256 => {
                    next = 258;
                    width = 9;
                    prev = None;
                    continue;
                }
                257 => return p.flush(),
                _ => {}
            }
            let emit_first;
            stack.clear();
            if code < next && code != 256 && code != 257 {
                let mut c = code;
                while c >= 258 {
                    stack.push(last[c]);
                    c = prefix[c] as usize;
                }
                stack.push(c as u8);
                emit_first = first[code];
            } else if code == next {
                // The KwKwK case: the previous string plus its own first byte.
                let Some(pc) = prev else { return Err(broken(BROKEN)) };
                let pf = first[pc as usize];
                stack.push(pf);
                let mut c = pc as usize;
                while c >= 258 {
                    stack.push(last[c]);
                    c = prefix[c] as usize;
                }
                stack.push(c as u8);
                emit_first = pf;
            } else {
                return Err(broken(BROKEN));
            }
            for &s in stack.iter().rev() {
                p.push(s)?;
            }
            if let Some(pc) = prev {
                if next < 4096 {
                    prefix[next] = pc;
                    last[next] = emit_first;
                    first[next] = first[pc as usize];
                    next += 1;
                }
            }
            prev = Some(code as u16);
            let grow = if early { next + 1 } else { next };
            width = match grow {
                0..=511 => 9,
                512..=1023 => 10,
                1024..=2047 => 11,
                _ => 12,
            };
        }
    }
    p.flush()
}

/// `/DecodeParms` predictor settings for Flate and LZW.
#[derive(Clone, Copy, Debug)]
pub struct Predictor {
    pub kind: i64,
    pub colors: i64,
    pub bits: i64,
    pub columns: i64,
}

impl Predictor {
    /// Bytes per row (without the PNG tag byte) and bytes per pixel (at least 1), or `None`
    /// for settings out of range.
    fn geometry(&self) -> Option<(usize, usize)> {
        if !(1..=32).contains(&self.colors)
            || ![1, 2, 4, 8, 16].contains(&self.bits)
            || !(1..=1 << 20).contains(&self.columns)
        {
            return None;
        }
        let row = (self.colors * self.bits * self.columns + 7) / 8;
        let bpp = ((self.colors * self.bits + 7) / 8).max(1);
        Some((row as usize, bpp as usize))
    }
}

/// A [`Put`] that undoes a predictor row by row before handing bytes on. PNG predictors (10 and
/// up: a tag byte per row picks None, Sub, Up, Average or Paeth) and TIFF predictor 2 at 8 bits
/// are undone; other settings pass bytes through unchanged.
pub struct Unpredict<'a> {
    next: &'a mut dyn Put,
    png: bool,
    row: usize,
    bpp: usize,
    cur: Vec<u8>,
    prev: Vec<u8>,
    active: bool,
}

impl<'a> Unpredict<'a> {
    pub fn new(p: Predictor, next: &'a mut dyn Put) -> Self {
        let geometry = p.geometry();
        let png = p.kind >= 10;
        let active = match geometry {
            Some(_) if png => true,
            Some(_) => p.kind == 2 && p.bits == 8,
            None => false,
        };
        let (row, bpp) = geometry.unwrap_or((1, 1));
        Unpredict { next, png, row, bpp, cur: Vec::new(), prev: vec![0; if active { row } else { 0 }], active }
    }

    fn row_done(&mut self) -> R {
        let bpp = self.bpp;
        if self.png {
            let tag = self.cur[0];
            let row = &mut self.cur[1..];
            for i in 0..row.len() {
                let left = if i >= bpp { row[i - bpp] } else { 0 };
                let up = self.prev[i];
                let up_left = if i >= bpp { self.prev[i - bpp] } else { 0 };
                row[i] = row[i].wrapping_add(match tag {
                    1 => left,
                    2 => up,
                    3 => ((left as u16 + up as u16) / 2) as u8,
                    4 => paeth(left, up, up_left),
                    _ => 0,
                });
            }
            self.prev.copy_from_slice(row);
            self.next.put(row)?;
        } else {
            let row = &mut self.cur[..];
            for i in bpp..row.len() {
                row[i] = row[i].wrapping_add(row[i - bpp]);
            }
            self.next.put(row)?;
        }
        self.cur.clear();
        Ok(())
    }

    /// Hands on a last partial row as it is.
    pub fn finish(&mut self) -> R {
        if !self.cur.is_empty() {
            let skip = usize::from(self.png).min(self.cur.len());
            self.next.put(&self.cur[skip..])?;
            self.cur.clear();
        }
        Ok(())
    }
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = a as i16 + b as i16 - c as i16;
    let (pa, pb, pc) = ((p - a as i16).abs(), (p - b as i16).abs(), (p - c as i16).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

impl Put for Unpredict<'_> {
    fn put(&mut self, mut data: &[u8]) -> R {
        if !self.active {
            return self.next.put(data);
        }
        let full = self.row + usize::from(self.png);
        while !data.is_empty() {
            let take = (full - self.cur.len()).min(data.len());
            self.cur.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.cur.len() == full {
                self.row_done()?;
            }
        }
        Ok(())
    }
}
