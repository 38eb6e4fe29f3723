//! UPX-packed Win32 PE files: the packed image is decompressed (NRV2B/2D/2E, see [`super::nrv`])
//! and its call-translation filter undone, and the image (the sections from the first one's
//! address on, as they are when the stub has run) is emitted as the member `upx`, so body
//! signatures on the code match. The PE is not rebuilt around it: hash signatures of the
//! original file do not match the member.
//!
//! Where the data is: the stub at the entry point starts `pushad; mov esi, SRC; lea edi,
//! [esi+DELTA]` (60 BE .. 8D BE ..), which gives the compressed data's address and the
//! destination; without that stub, the data is taken at the start of the `UPX1` section and
//! goes to `UPX0`'s address. The method and filter are in UPX's pack header (`UPX!`); without
//! it, each method is tried in turn. LZMA-packed files (`--lzma`) are out of reach here.

use super::nrv::{self, Method, NrvError};
use super::out::{broken, le16, le32, Out, Stop, R};
use super::{Fault, LIMIT_FILE_SIZE};

const BROKEN: &str = "Heuristics.Broken.Executable";
const UNSUPPORTED: &str = "Heuristics.Broken.Executable.UPX.Unsupported";
const HEAD_BYTES: usize = 4096;

struct Section {
    name: [u8; 8],
    vsize: u32,
    rva: u32,
    raw_size: u32,
    raw_at: u32,
}

struct Pe {
    entry: u32,
    image_base: u32,
    sections: Vec<Section>,
}

fn pe(data: &[u8]) -> Option<Pe> {
    if !data.starts_with(b"MZ") {
        return None;
    }
    let at = le32(data, 0x3C)? as usize;
    if data.get(at..at + 4)? != b"PE\0\0" {
        return None;
    }
    let n = le16(data, at + 6)? as usize;
    let opt = le16(data, at + 20)? as usize;
    let entry = le32(data, at + 24 + 16)?;
    let image_base = le32(data, at + 24 + 28)?;
    let mut sections = Vec::with_capacity(n.min(96));
    for i in 0..n.min(96) {
        let s = at + 24 + opt + 40 * i;
        sections.push(Section {
            name: data.get(s..s + 8)?.try_into().ok()?,
            vsize: le32(data, s + 8)?,
            rva: le32(data, s + 12)?,
            raw_size: le32(data, s + 16)?,
            raw_at: le32(data, s + 20)?,
        });
    }
    Some(Pe { entry, image_base, sections })
}

/// True for a PE in `head` with UPX's section names or its pack header.
pub fn is_upx(head: &[u8]) -> bool {
    let upx_names =
        pe(head).is_some_and(|p| p.sections.iter().any(|s| s.name.starts_with(b"UPX0") || s.name.starts_with(b"UPX1")));
    upx_names || memchr::memmem::find(&head[..head.len().min(HEAD_BYTES)], b"UPX!").is_some()
}

/// File offset of an RVA.
fn offset_of(p: &Pe, rva: u32) -> Option<usize> {
    p.sections.iter().find_map(|s| {
        let span = s.vsize.max(s.raw_size);
        (rva >= s.rva && rva - s.rva < span && rva - s.rva < s.raw_size)
            .then(|| s.raw_at as usize + (rva - s.rva) as usize)
    })
}

/// UPX's pack header: method and filter.
struct Header {
    method: u8,
    filter: u8,
    cto: u8,
}

fn header(data: &[u8]) -> Option<Header> {
    let at = memchr::memmem::find(&data[..data.len().min(HEAD_BYTES)], b"UPX!")?;
    let h = data.get(at..at + 32)?;
    Some(Header { method: h[6], filter: h[28], cto: h[29] })
}

pub fn extract(data: &[u8], out: &mut Out) -> R {
    let p = pe(data).ok_or_else(|| broken(BROKEN))?;
    let upx0 = p.sections.iter().find(|s| s.name.starts_with(b"UPX0"));
    let upx1 = p.sections.iter().find(|s| s.name.starts_with(b"UPX1"));
    // Source and destination from the stub, else from the sections.
    let stub = offset_of(&p, p.entry)
        .and_then(|o| data.get(o..o + 14))
        .filter(|s| s[0] == 0x60 && s[1] == 0xBE && s[6] == 0x8D && s[7] == 0xBE);
    let (src_rva, dst_rva) = match (stub, upx0, upx1) {
        (Some(s), _, _) => {
            let src = le32(s, 2).unwrap_or(0).wrapping_sub(p.image_base);
            let delta = le32(s, 8).unwrap_or(0) as i32;
            (src, src.wrapping_add(delta as u32))
        }
        (None, Some(a), Some(b)) => (b.rva, a.rva),
        _ => return Err(broken(BROKEN)),
    };
    let src_at = offset_of(&p, src_rva).ok_or_else(|| broken(BROKEN))?;
    let src = data.get(src_at..).filter(|s| !s.is_empty()).ok_or_else(|| broken(BROKEN))?;
    // The image may not pass the member limit (nor the room the sections give it).
    let room = match (upx0, upx1) {
        (Some(a), Some(b)) => a.vsize as u64 + b.vsize as u64,
        _ => p.sections.iter().map(|s| s.vsize as u64).sum(),
    };
    let cap = room.min(out.limits().member_bytes_max).min(usize::MAX as u64) as usize;
    let h = header(data);
    let methods: Vec<Method> = match h.as_ref().map(|h| h.method) {
        Some(2..=4) => vec![Method::B],
        Some(5..=7) => vec![Method::D],
        Some(8..=10) => vec![Method::E],
        Some(14) => return Err(broken(UNSUPPORTED)),
        _ => vec![Method::B, Method::D, Method::E],
    };
    let mut image = None;
    let mut limit = false;
    for m in methods {
        match nrv::decompress(m, src, cap) {
            Ok(v) => {
                image = Some(v);
                break;
            }
            Err(NrvError::Limit) => limit = true,
            Err(NrvError::Broken) => {}
        }
    }
    let Some(mut image) = image else {
        return Err(if limit && room > out.limits().member_bytes_max {
            Stop::Fault(Fault::Limit(LIMIT_FILE_SIZE))
        } else {
            broken(BROKEN)
        });
    };
    if let (Some(h), Some((base, size))) = (&h, code_range(&image)) {
        // The filter was applied to the original code section only.
        let from = base.wrapping_sub(dst_rva) as usize;
        if let Some(code) = image.get_mut(from..from.saturating_add(size as usize)) {
            unfilter(code, h.filter, h.cto);
        }
    }
    out.member("upx", &image)
}

/// The original code section (BaseOfCode, SizeOfCode) from the original PE header UPX keeps
/// after the sections in the packed image: the last `PE\0\0` with an i386 machine and a PE32
/// optional header.
fn code_range(image: &[u8]) -> Option<(u32, u32)> {
    let at = memchr::memmem::rfind_iter(image, b"PE\0\0")
        .find(|&p| le16(image, p + 4) == Some(0x14C) && le16(image, p + 24) == Some(0x10B))?;
    let size = le32(image, at + 24 + 4)?;
    let base = le32(image, at + 24 + 20)?;
    Some((base, size))
}

/// Undoes UPX's x86 call-translation filters: the 32-bit operand of a CALL (E8) or JMP (E9)
/// was stored as an absolute, big-endian target; filters 0x24-0x26 mark such operands with the
/// `cto` byte in their top byte (an operand without it was left alone), the older 0x11-0x16
/// translate every E8 (and E9 for the odd ones).
fn unfilter(b: &mut [u8], filter: u8, cto: u8) {
    let n = b.len();
    if n < 5 {
        return;
    }
    let mut i = 0usize;
    match filter {
        0x24..=0x26 => {
            while i + 5 <= n {
                let op = b[i];
                let wanted = match filter {
                    0x24 => op == 0xE8,
                    0x25 => op == 0xE9,
                    _ => op == 0xE8 || op == 0xE9,
                };
                if wanted && b[i + 1] == cto {
                    let v = (b[i + 2] as u32) << 16 | (b[i + 3] as u32) << 8 | b[i + 4] as u32;
                    let rel = v.wrapping_sub(i as u32 + 1);
                    b[i + 1..i + 5].copy_from_slice(&rel.to_le_bytes());
                    i += 5;
                } else {
                    i += 1;
                }
            }
        }
        0x11..=0x16 => {
            let e9 = filter % 2 == 0;
            while i + 5 <= n {
                if b[i] == 0xE8 || (e9 && b[i] == 0xE9) {
                    let v = u32::from_le_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]);
                    let rel = v.wrapping_sub(i as u32 + 1);
                    b[i + 1..i + 5].copy_from_slice(&rel.to_le_bytes());
                    i += 5;
                } else {
                    i += 1;
                }
            }
        }
        _ => {}
    }
}
