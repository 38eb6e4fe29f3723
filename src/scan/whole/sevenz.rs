//! 7-Zip archives, decoded by the `sevenz-rust2` crate (LZMA, LZMA2, PPMd, BCJ filters, Delta,
//! Copy), one thread, from the slice.
//!
//! The crate trusts the counts and sizes in an archive's header (a file count becomes a vector
//! length, a header size an allocation), so the header is walked here first (written from
//! 7-Zip's `7zFormat.txt`) and refused where a count cannot be right for its bytes, where the
//! file count passes the member limit, or where a coder's dictionary (PPMd: its model's memory)
//! passes [`DICTIONARY_BYTES_MAX`]. A compressed header is decoded here (LZMA, bounded) and walked the
//! same way before the crate reads it. Any AES-256 coder, in the header (names encrypted) or in
//! a folder, is `Heuristics.Encrypted.7Zip`; other methods the build leaves out (BZip2, Deflate,
//! Zstd) are `Heuristics.Broken.7Zip.Unsupported`.

use std::io::{Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use sevenz_rust2::{ArchiveReader, Password};

use super::out::{broken, le64, Buf, Out, Put, Stop, PIECE_BYTES, R};
use super::{Fault, LIMIT_FILES};

const BROKEN: &str = "Heuristics.Broken.7Zip";
const UNSUPPORTED: &str = "Heuristics.Broken.7Zip.Unsupported";
const ENCRYPTED: &str = "Heuristics.Encrypted.7Zip";
/// A coder dictionary (LZMA, LZMA2) larger than this is refused: it would be the decoder's
/// allocation. 64 MiB is 7-Zip's largest preset (-mx9).
pub const DICTIONARY_BYTES_MAX: u64 = 64 << 20;
/// The largest decoded header accepted (names and sizes of every file).
const HEADER_BYTES_MAX: u64 = 16 << 20;
const LIMIT_DICTIONARY: &str = "Heuristics.Limits.Exceeded.MaxDictionary";

const ID_AES: &[u8] = &[0x06, 0xF1, 0x07, 0x01];
const ID_LZMA: &[u8] = &[0x03, 0x01, 0x01];
const ID_LZMA2: &[u8] = &[0x21];
const ID_PPMD: &[u8] = &[0x03, 0x04, 0x01];
/// Methods the crate decodes in this build.
const SUPPORTED: [&[u8]; 14] = [
    ID_PPMD,
    &[0x00],
    &[0x03],
    ID_LZMA,
    ID_LZMA2,
    &[0x03, 0x03, 0x01, 0x03],
    &[0x03, 0x03, 0x01, 0x1B],
    &[0x03, 0x03, 0x02, 0x05],
    &[0x03, 0x03, 0x04, 0x01],
    &[0x03, 0x03, 0x05, 0x01],
    &[0x0A],
    &[0x03, 0x03, 0x07, 0x01],
    &[0x03, 0x03, 0x08, 0x05],
    &[0x0B],
];

pub fn extract(data: &[u8], out: &mut Out) -> R {
    validate(data, out.limits().members_max, out.limits().member_bytes_max)?;
    match catch_unwind(AssertUnwindSafe(|| read(data, out))) {
        Ok(r) => r,
        Err(_) => Err(broken(BROKEN)),
    }
}

fn read(data: &[u8], out: &mut Out) -> R {
    let mut reader = ArchiveReader::new(Cursor::new(data), Password::empty()).map_err(|e| map_err(&e))?;
    reader.set_thread_count(1);
    let mut stop: Option<Stop> = None;
    let mut buf = vec![0u8; PIECE_BYTES];
    let r = reader.for_each_entries(|entry, rd| {
        // sevenz-rust2 0.20 drops the closure's `false` between blocks and before the empty
        // entries, calling it again after we asked it to stop; a stop we already took must
        // stay taken, so the sink never hears of another member after a `Break` or a limit.
        if stop.is_some() {
            return Ok(false);
        }
        if entry.is_directory() {
            return Ok(true);
        }
        let mut step = || -> R {
            out.start(entry.name())?;
            loop {
                let n = rd.read(&mut buf).map_err(|_| broken(BROKEN))?;
                if n == 0 {
                    break;
                }
                out.data(&buf[..n])?;
            }
            out.end()
        };
        match step() {
            Ok(()) => Ok(true),
            Err(s) => {
                stop = Some(s);
                Ok(false)
            }
        }
    });
    if let Some(s) = stop {
        return Err(s);
    }
    r.map_err(|e| map_err(&e))
}

fn map_err(e: &sevenz_rust2::Error) -> Stop {
    match e {
        sevenz_rust2::Error::PasswordRequired | sevenz_rust2::Error::MaybeBadPassword(_) => {
            Stop::Fault(Fault::Encrypted(ENCRYPTED))
        }
        sevenz_rust2::Error::UnsupportedCompressionMethod(_) | sevenz_rust2::Error::ExternalUnsupported => {
            broken(UNSUPPORTED)
        }
        _ => broken(BROKEN),
    }
}

/// A reader over header bytes; every read past the end is `Broken`.
struct H<'a> {
    b: &'a [u8],
    at: usize,
}

fn bad() -> Stop {
    broken(BROKEN)
}

impl<'a> H<'a> {
    fn byte(&mut self) -> R<u8> {
        let v = *self.b.get(self.at).ok_or_else(bad)?;
        self.at += 1;
        Ok(v)
    }
    fn bytes(&mut self, n: u64) -> R<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| bad())?;
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(bad)?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    /// 7z's variable-length number: leading one bits of the first byte count extra bytes.
    fn num(&mut self) -> R<u64> {
        let first = self.byte()? as u64;
        let mut mask = 0x80u64;
        let mut value = 0u64;
        for i in 0..8 {
            if first & mask == 0 {
                return Ok(value | ((first & (mask - 1)) << (8 * i)));
            }
            value |= (self.byte()? as u64) << (8 * i);
            mask >>= 1;
        }
        Ok(value)
    }
    /// A count, which must be coverable by the bytes left (each counted thing takes at least
    /// one bit of header), so no count makes an allocation larger than the header warrants.
    fn count(&mut self) -> R<u64> {
        let n = self.num()?;
        if n > 8 * (self.b.len() - self.at) as u64 + 8 {
            return Err(bad());
        }
        Ok(n)
    }
    fn rest(&self) -> usize {
        self.b.len() - self.at
    }
}

/// What the walk learns: whether any coder is AES.
#[derive(Default)]
struct Seen {
    encrypted: bool,
    unsupported: bool,
    dictionary: bool,
    /// The coders of the last folder and its unpack sizes, for a compressed header.
    coders: Vec<(Vec<u8>, Vec<u8>)>,
    unpack: Vec<u64>,
    pack_pos: u64,
    pack_sizes: Vec<u64>,
}

fn validate(data: &[u8], members_max: u32, member_bytes_max: u64) -> R {
    if data.len() < 32 || !data.starts_with(&[b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C]) {
        return Err(bad());
    }
    let off = le64(data, 12).ok_or_else(bad)?;
    let size = le64(data, 20).ok_or_else(bad)?;
    let start = off.checked_add(32).filter(|&s| s <= data.len() as u64).ok_or_else(bad)? as usize;
    let end = (start as u64).checked_add(size).filter(|&e| e <= data.len() as u64).ok_or_else(bad)? as usize;
    if size == 0 {
        // An empty archive has no header; one with its header cut off is broken.
        return if data.len() == 32 { Ok(()) } else { Err(bad()) };
    }
    let header = &data[start..end];
    let mut seen = Seen::default();
    match header[0] {
        0x01 => walk_header(&mut H { b: header, at: 1 }, &mut seen, members_max)?,
        0x17 => {
            streams_info(&mut H { b: header, at: 1 }, &mut seen, members_max)?;
            verdict(&seen)?;
            let plain = decode_header(data, &seen, member_bytes_max.min(HEADER_BYTES_MAX))?;
            if plain.first() != Some(&0x01) {
                return Err(bad());
            }
            let mut inner = Seen::default();
            walk_header(&mut H { b: &plain, at: 1 }, &mut inner, members_max)?;
            seen = inner;
        }
        _ => return Err(bad()),
    }
    verdict(&seen)
}

fn verdict(seen: &Seen) -> R {
    if seen.encrypted {
        return Err(Stop::Fault(Fault::Encrypted(ENCRYPTED)));
    }
    if seen.dictionary {
        return Err(Stop::Fault(Fault::Limit(LIMIT_DICTIONARY)));
    }
    if seen.unsupported {
        return Err(broken(UNSUPPORTED));
    }
    Ok(())
}

/// Decodes a compressed header: one folder, one LZMA coder (what 7-Zip writes), into a buffer
/// of at most `cap` bytes.
fn decode_header(data: &[u8], seen: &Seen, cap: u64) -> R<Vec<u8>> {
    let [(id, props)] = seen.coders.as_slice() else { return Err(broken(UNSUPPORTED)) };
    let (&[unpack], &[packed]) = (seen.unpack.as_slice(), seen.pack_sizes.as_slice()) else { return Err(bad()) };
    if id.as_slice() != ID_LZMA || props.len() < 5 {
        return Err(broken(UNSUPPORTED));
    }
    if unpack > cap {
        return Err(Stop::Fault(Fault::Limit(super::LIMIT_FILE_SIZE)));
    }
    let at = seen.pack_pos.checked_add(32).filter(|&a| a <= data.len() as u64).ok_or_else(bad)? as usize;
    let end = (at as u64).checked_add(packed).filter(|&e| e <= data.len() as u64).ok_or_else(bad)? as usize;
    let dict = u32::from_le_bytes(props[1..5].try_into().map_err(|_| bad())?);
    let mut lz =
        lzma_rust2::LzmaReader::new_with_props(&data[at..end], unpack, props[0], dict, None).map_err(|_| bad())?;
    let mut b = Buf::new(cap);
    let mut piece = vec![0u8; PIECE_BYTES];
    loop {
        let n = lz.read(&mut piece).map_err(|_| bad())?;
        if n == 0 {
            break;
        }
        b.put(&piece[..n])?;
    }
    if b.bytes.len() as u64 != unpack {
        return Err(bad());
    }
    Ok(b.bytes)
}

fn walk_header(h: &mut H, seen: &mut Seen, members_max: u32) -> R {
    let mut nid = h.byte()?;
    if nid == 0x02 {
        // Archive properties: type, size, bytes; until 0.
        loop {
            let t = h.byte()?;
            if t == 0 {
                break;
            }
            let n = h.num()?;
            h.bytes(n)?;
        }
        nid = h.byte()?;
    }
    if nid == 0x03 {
        streams_info(h, seen, members_max)?;
        nid = h.byte()?;
    }
    if nid == 0x04 {
        streams_info(h, seen, members_max)?;
        nid = h.byte()?;
    }
    if nid == 0x05 {
        let files = h.count()?;
        if files > members_max as u64 {
            return Err(Stop::Fault(Fault::Limit(LIMIT_FILES)));
        }
        loop {
            let t = h.byte()?;
            if t == 0 {
                break;
            }
            let n = h.num()?;
            h.bytes(n)?;
        }
        nid = h.byte()?;
    }
    if nid != 0 {
        return Err(bad());
    }
    Ok(())
}

fn digests(h: &mut H, n: u64) -> R {
    let all = h.byte()?;
    let defined = if all != 0 {
        n
    } else {
        let bits = h.bytes(n.div_ceil(8))?;
        bits.iter().map(|b| b.count_ones() as u64).sum()
    };
    h.bytes(defined.checked_mul(4).ok_or_else(bad)?)?;
    Ok(())
}

fn streams_info(h: &mut H, seen: &mut Seen, members_max: u32) -> R {
    let mut nid = h.byte()?;
    let mut folder_outs: Vec<u64> = Vec::new();
    if nid == 0x06 {
        seen.pack_pos = h.num()?;
        let n = h.count()?;
        seen.pack_sizes.clear();
        loop {
            match h.byte()? {
                0 => break,
                0x09 => {
                    for _ in 0..n {
                        let s = h.num()?;
                        seen.pack_sizes.push(s);
                    }
                }
                0x0A => digests(h, n)?,
                _ => return Err(bad()),
            }
        }
        nid = h.byte()?;
    }
    if nid == 0x07 {
        if h.byte()? != 0x0B {
            return Err(bad());
        }
        let folders = h.count()?;
        if h.byte()? != 0 {
            return Err(bad()); // "external" folders are not used by 7-Zip
        }
        for _ in 0..folders {
            folder_outs.push(folder(h, seen)?);
        }
        if h.byte()? != 0x0C {
            return Err(bad());
        }
        seen.unpack.clear();
        for &outs in &folder_outs {
            for _ in 0..outs {
                let s = h.num()?;
                seen.unpack.push(s);
            }
        }
        loop {
            match h.byte()? {
                0 => break,
                0x0A => digests(h, folders)?,
                _ => return Err(bad()),
            }
        }
        nid = h.byte()?;
    }
    if nid == 0x08 {
        let mut streams: Vec<u64> = vec![1; folder_outs.len()];
        let mut t = h.byte()?;
        if t == 0x0D {
            let mut total = 0u64;
            for s in &mut streams {
                *s = h.count()?;
                total = total.saturating_add(*s);
            }
            if total > members_max as u64 {
                return Err(Stop::Fault(Fault::Limit(LIMIT_FILES)));
            }
            t = h.byte()?;
        }
        if t == 0x09 {
            for &s in &streams {
                for _ in 1..s {
                    h.num()?;
                }
            }
            t = h.byte()?;
        }
        while t != 0 {
            if t != 0x0A {
                return Err(bad());
            }
            let total: u64 = streams.iter().sum();
            digests(h, total)?;
            t = h.byte()?;
        }
        nid = h.byte()?;
    }
    if nid != 0 {
        return Err(bad());
    }
    Ok(())
}

/// One folder's coders; returns its count of output streams.
fn folder(h: &mut H, seen: &mut Seen) -> R<u64> {
    let coders = h.count()?;
    if coders == 0 || coders > 32 {
        return Err(bad());
    }
    let (mut ins, mut outs) = (0u64, 0u64);
    seen.coders.clear();
    for _ in 0..coders {
        let flag = h.byte()?;
        let id = h.bytes((flag & 0x0F) as u64)?.to_vec();
        let (i, o) = if flag & 0x10 != 0 { (h.count()?, h.count()?) } else { (1, 1) };
        if i > 32 || o > 32 {
            return Err(bad());
        }
        ins += i;
        outs += o;
        let props = if flag & 0x20 != 0 {
            let n = h.num()?;
            h.bytes(n)?.to_vec()
        } else {
            Vec::new()
        };
        if id == ID_AES {
            seen.encrypted = true;
        } else if !SUPPORTED.contains(&id.as_slice()) {
            seen.unsupported = true;
        }
        if dictionary(&id, &props) > DICTIONARY_BYTES_MAX {
            seen.dictionary = true;
        }
        seen.coders.push((id, props));
    }
    if outs == 0 {
        return Err(bad());
    }
    let pairs = outs - 1;
    for _ in 0..pairs {
        h.num()?;
        h.num()?;
    }
    let packed = ins.checked_sub(pairs).ok_or_else(bad)?;
    if packed > 1 {
        for _ in 0..packed {
            h.num()?;
        }
    }
    let _ = h.rest();
    Ok(outs)
}

/// The dictionary a coder's properties ask for (PPMd: its model's memory; 0 for coders
/// without one).
fn dictionary(id: &[u8], props: &[u8]) -> u64 {
    match id {
        // Order (1 byte), then the model's size.
        ID_PPMD if props.len() >= 5 => u32::from_le_bytes([props[1], props[2], props[3], props[4]]) as u64,
        // Too short to say: the crate refuses it.
        ID_PPMD => 0,
        ID_LZMA if props.len() >= 5 => u32::from_le_bytes([props[1], props[2], props[3], props[4]]) as u64,
        ID_LZMA2 if !props.is_empty() => {
            let p = props[0] as u64;
            if p > 40 {
                u64::MAX
            } else if p == 40 {
                u32::MAX as u64
            } else {
                (2 | (p & 1)) << (p / 2 + 11)
            }
        }
        _ => 0,
    }
}
