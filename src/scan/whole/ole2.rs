//! OLE2 compound files (Word, Excel, PowerPoint, MSI, embedded objects), read with the `cfb`
//! crate. Every stream is a member, named by its storage path. Beyond the raw streams:
//! - an `\x01Ole10Native` stream (an OLE1 `Package` object: a file dropped into a document) also
//!   yields its native payload, so a hash signature on the packaged file matches;
//! - a PowerPoint `PowerPoint Document` stream yields each `ExOleObjStg` record's embedded
//!   object, inflated where PowerPoint compressed it (that object is itself an OLE2 file);
//! - the modules of a VBA project yield their source, decompressed from MS-OVBA (see `ovba`).
//!
//! A password-protected document is `Heuristics.Encrypted.OLE2` once its streams are out: an
//! `EncryptedPackage` stream (an encrypted OOXML file kept in a compound file) or a Word
//! `WordDocument` stream whose FIB has `fEncrypted` set. Its streams are still emitted, as the
//! parts that are not encrypted (macros, embedded objects) may carry the threat.

use std::io::{Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::deflate::inflate;
use super::out::{broken, le16, le32, Buf, Out, PIECE_BYTES, R};
use super::ovba;

const BROKEN: &str = "Heuristics.Broken.OLE2";
const ENCRYPTED: &str = "Heuristics.Encrypted.OLE2";
/// Word's FIB: `wIdent` 0xA5EC at 0, flags at 0x0A with `fEncrypted` = 0x0100.
const FIB_MAGIC: u16 = 0xA5EC;
const FIB_ENCRYPTED: u16 = 0x0100;

pub fn extract(data: &[u8], out: &mut Out) -> R {
    // The crate is trusted not to panic, but a panic on hostile input must not take the
    // server down: it is read as a broken file.
    match catch_unwind(AssertUnwindSafe(|| walk(data, out))) {
        Ok(r) => r,
        Err(_) => Err(broken(BROKEN)),
    }
}

/// A member name from a storage path: `/`-separated, control characters (OLE uses `\x01`,
/// `\x05` prefixes for special streams) written as `\xNN`.
fn member_name(path: &std::path::Path) -> String {
    let s = path.to_string_lossy();
    let s = s.strip_prefix('/').unwrap_or(&s);
    let mut name = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            name.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            name.push(c);
        }
    }
    name
}

fn walk(data: &[u8], out: &mut Out) -> R {
    let mut cf = cfb::CompoundFile::open(Cursor::new(data)).map_err(|_| broken(BROKEN))?;
    let streams: Vec<(std::path::PathBuf, String)> =
        cf.walk().filter(|e| e.is_stream()).map(|e| (e.path().to_path_buf(), e.name().to_string())).collect();
    let cap = out.limits().member_bytes_max;
    let mut encrypted = streams.iter().any(|(_, leaf)| leaf == "EncryptedPackage");
    for (path, leaf) in &streams {
        let name = member_name(path);
        let mut stream = cf.open_stream(path).map_err(|_| broken(BROKEN))?;
        // Streams whose content is parsed further are buffered (bounded by the member limit);
        // the rest go out piece by piece.
        let special = leaf == "\u{1}Ole10Native" || leaf == "PowerPoint Document" || is_vba_module(path);
        let mut keep = Buf::new(cap);
        out.start(&name)?;
        let mut buf = vec![0u8; PIECE_BYTES];
        let mut first = true;
        loop {
            let n = stream.read(&mut buf).map_err(|_| broken(BROKEN))?;
            if n == 0 {
                break;
            }
            if first && leaf == "WordDocument" && le16(&buf[..n], 0) == Some(FIB_MAGIC) {
                encrypted |= le16(&buf[..n], 0x0A).is_some_and(|f| f & FIB_ENCRYPTED != 0);
            }
            first = false;
            out.data(&buf[..n])?;
            if special {
                keep.put_bytes(&buf[..n])?;
            }
        }
        out.end()?;
        drop(stream);
        if leaf == "\u{1}Ole10Native" {
            if let Some(payload) = ole10_native(&keep.bytes) {
                out.member(&format!("{name}/{}", payload.0), payload.1)?;
            }
        } else if leaf == "PowerPoint Document" {
            powerpoint_objects(&keep.bytes, &name, out)?;
        } else if is_vba_module(path) {
            vba_module(&mut cf, path, &keep.bytes, &name, out)?;
        }
    }
    if encrypted {
        return Err(super::out::Stop::Fault(super::Fault::Encrypted(ENCRYPTED)));
    }
    Ok(())
}

impl Buf {
    fn put_bytes(&mut self, data: &[u8]) -> R {
        super::out::Put::put(self, data)
    }
}

/// The payload of an `\x01Ole10Native` stream: the packaged file's name and bytes. The stream
/// is a u32 size, then (for a Package) u16 flags, a NUL-terminated label, a NUL-terminated
/// source path, a u32 type, a u32-length temporary path, a u32 data size and the data. Where
/// the Package layout does not fit, the bytes after the size are the native data itself.
fn ole10_native(s: &[u8]) -> Option<(String, &[u8])> {
    let total = le32(s, 0)? as usize;
    let body = s.get(4..)?;
    let body = &body[..total.min(body.len())];
    package(body).or(Some(("native".to_string(), body)))
}

fn zstr(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let nul = memchr::memchr(0, rest)?;
    Some((&rest[..nul], at + nul + 1))
}

pub fn package(b: &[u8]) -> Option<(String, &[u8])> {
    let _flags = le16(b, 0)?;
    let (label, at) = zstr(b, 2)?;
    let (_src, at) = zstr(b, at)?;
    let _kind = le32(b, at)?;
    let tmp_len = le32(b, at + 4)? as usize;
    let at = (at + 8).checked_add(tmp_len)?;
    let size = le32(b, at)? as usize;
    let data = b.get(at + 4..(at + 4).checked_add(size)?)?;
    let label = String::from_utf8_lossy(label);
    let label = label.rsplit(['\\', '/']).next().unwrap_or("package").to_string();
    Some((if label.is_empty() { "package".to_string() } else { label }, data))
}

/// Walks the PowerPoint record tree (8-byte headers; version 0xF marks a container, whose
/// children follow inline) and emits every `ExOleObjStg` (type 0x1011) payload. Instance 1 is
/// compressed: a u32 decompressed size, then a zlib stream.
fn powerpoint_objects(s: &[u8], name: &str, out: &mut Out) -> R {
    let mut at = 0usize;
    let mut n = 0u32;
    while let (Some(vi), Some(kind), Some(len)) = (le16(s, at), le16(s, at + 2), le32(s, at + 4)) {
        let body_at = at + 8;
        if vi & 0xF == 0xF {
            at = body_at; // descend into the container
            continue;
        }
        let end = body_at.saturating_add(len as usize).min(s.len());
        if kind == 0x1011 {
            n += 1;
            let body = &s[body_at..end];
            out.start(&format!("{name}/ExOleObjStg{n}"))?;
            if vi >> 4 == 1 {
                let z = body.get(4..).unwrap_or(&[]);
                inflate(z, true, true, BROKEN, out)?;
            } else {
                out.data(body)?;
            }
            out.end()?;
        }
        at = end;
        if end >= s.len() {
            break;
        }
    }
    Ok(())
}

/// True for a stream inside a `VBA` storage other than the project's own bookkeeping streams:
/// those are the modules, whose source is compressed after a p-code prefix.
fn is_vba_module(path: &std::path::Path) -> bool {
    let parent = path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().eq_ignore_ascii_case("VBA"));
    let leaf = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    parent == Some(true)
        && !leaf.eq_ignore_ascii_case("dir")
        && !leaf.starts_with("_VBA_PROJECT")
        && !leaf.starts_with("__SRP_")
}

/// Emits a VBA module's source: the `dir` stream next to it (itself compressed) gives the
/// module's source offset; without it, the offset is found by trying each position where a
/// compressed container can start.
fn vba_module(
    cf: &mut cfb::CompoundFile<Cursor<&[u8]>>,
    path: &std::path::Path,
    module: &[u8],
    name: &str,
    out: &mut Out,
) -> R {
    let leaf = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let cap = out.limits().member_bytes_max;
    let offset = path.parent().and_then(|p| {
        let mut dir = cf.open_stream(p.join("dir")).ok()?;
        let mut raw = Vec::new();
        (&mut dir).take(cap).read_to_end(&mut raw).ok()?;
        let mut plain = Buf::new(cap);
        ovba::decompress(&raw, &mut plain).ok()?;
        ovba::module_offset(&plain.bytes, &leaf)
    });
    let Some(offset) = offset else { return Ok(()) };
    let Some(src) = module.get(offset as usize..) else { return Ok(()) };
    out.start(&format!("{name}/source"))?;
    ovba::decompress(src, out)?;
    out.end()
}
