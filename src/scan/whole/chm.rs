//! Compiled HTML Help (ITSF): the directory's PMGL chunks list every file with its section,
//! offset and length. Section 0 files are stored; section 1 (`MSCompressed`) is one LZX stream
//! in 32 KiB frames, reset at the interval its `ControlData` gives, with frame boundaries from
//! its `ResetTable`; it is decoded once per pass (see [`super::demux`]) with the `lzxd` crate.
//! Written from the published descriptions of the ITSF/ITSP/PMGL/LZXC layouts.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::demux::{passes, Demux, Span};
use super::out::{broken, le32, le64, Out, R};

const BROKEN: &str = "Heuristics.Broken.CHM";
const FRAME_BYTES: u64 = 0x8000;
const CONTENT: &str = "::DataSpace/Storage/MSCompressed/Content";
const CONTROL: &str = "::DataSpace/Storage/MSCompressed/ControlData";
const RESET_TABLE: &str =
    "::DataSpace/Storage/MSCompressed/Transform/{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable";

struct Entry {
    name: String,
    section: u64,
    offset: u64,
    length: u64,
}

pub fn extract(data: &[u8], out: &mut Out) -> R {
    match catch_unwind(AssertUnwindSafe(|| walk(data, out))) {
        Ok(r) => r,
        Err(_) => Err(broken(BROKEN)),
    }
}

/// CHM's variable-length integer: 7 bits a byte, most significant first, high bit continues.
fn encint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..9 {
        let x = *b.get(*at)?;
        *at += 1;
        v = (v << 7) | (x & 0x7F) as u64;
        if x & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn directory(data: &[u8], members_max: u32) -> Option<(Vec<Entry>, usize)> {
    if le32(data, 4)? < 2 {
        return None;
    }
    let dir_at = usize::try_from(le64(data, 0x48)?).ok()?;
    let dir_len = le64(data, 0x50)?;
    let content_at = if le32(data, 4)? >= 3 { le64(data, 0x58)? } else { (dir_at as u64).checked_add(dir_len)? };
    let itsp = data.get(dir_at..)?;
    if !itsp.starts_with(b"ITSP") {
        return None;
    }
    let header_len = le32(itsp, 8)? as usize;
    let chunk = le32(itsp, 0x10)? as usize;
    let chunks = le32(itsp, 0x2C)? as usize;
    if !(0x20..=1 << 20).contains(&chunk) {
        return None;
    }
    let mut entries = Vec::new();
    for i in 0..chunks {
        let at = header_len.checked_add(i.checked_mul(chunk)?)?;
        let c = itsp.get(at..at.checked_add(chunk)?)?;
        if !c.starts_with(b"PMGL") {
            continue; // PMGI index chunks
        }
        let free = le32(c, 4)? as usize;
        let end = chunk.checked_sub(free)?;
        let mut p = 0x14usize;
        while p < end {
            let n = encint(c, &mut p)? as usize;
            let name = c.get(p..p.checked_add(n)?)?;
            p += n;
            let section = encint(c, &mut p)?;
            let offset = encint(c, &mut p)?;
            let length = encint(c, &mut p)?;
            entries.push(Entry { name: String::from_utf8_lossy(name).into_owned(), section, offset, length });
            if entries.len() > 4 * members_max as usize + 16 {
                return Some((entries, usize::try_from(content_at).ok()?));
            }
        }
    }
    Some((entries, usize::try_from(content_at).ok()?))
}

fn walk(data: &[u8], out: &mut Out) -> R {
    let (entries, content_at) = directory(data, out.limits().members_max).ok_or_else(|| broken(BROKEN))?;
    let stored = |e: &Entry| -> Option<&[u8]> {
        let at = content_at.checked_add(usize::try_from(e.offset).ok()?)?;
        data.get(at..at.checked_add(usize::try_from(e.length).ok()?)?)
    };
    let mut fault = false;
    // Files worth emitting: not directories, not empty, not the compressed section itself.
    let wanted = |e: &&Entry| !e.name.ends_with('/') && e.length > 0 && e.name != CONTENT;
    for e in entries.iter().filter(wanted).filter(|e| e.section == 0) {
        match stored(e) {
            Some(bytes) => out.member(e.name.trim_start_matches('/'), bytes)?,
            None => fault = true,
        }
    }
    let compressed: Vec<Span> = entries
        .iter()
        .filter(wanted)
        .filter(|e| e.section == 1)
        .map(|e| Span { name: e.name.trim_start_matches('/').to_string(), offset: e.offset, size: e.length })
        .collect();
    if !compressed.is_empty() {
        let find = |name: &str| entries.iter().find(|e| e.name == name && e.section == 0).and_then(stored);
        let (Some(content), Some(control), Some(table)) = (find(CONTENT), find(CONTROL), find(RESET_TABLE)) else {
            return Err(broken(BROKEN));
        };
        for pass in passes(compressed) {
            lzx_section(content, control, table, &pass, out)?;
        }
    }
    if fault {
        return Err(broken(BROKEN));
    }
    Ok(())
}

fn lzx_section(content: &[u8], control: &[u8], table: &[u8], pass: &[Span], out: &mut Out) -> R {
    // ControlData: size, "LZXC", version, reset interval, window size (version 2: in frames).
    if control.get(4..8) != Some(b"LZXC") {
        return Err(broken(BROKEN));
    }
    let version = le32(control, 8).ok_or_else(|| broken(BROKEN))?;
    let unit = if version >= 2 { FRAME_BYTES } else { 1 };
    let reset = le32(control, 12).ok_or_else(|| broken(BROKEN))? as u64 * unit;
    let window = le32(control, 16).ok_or_else(|| broken(BROKEN))? as u64 * unit;
    use lzxd::WindowSize as W;
    let ws = match window {
        0x8000 => W::KB32,
        0x10000 => W::KB64,
        0x20000 => W::KB128,
        0x40000 => W::KB256,
        0x80000 => W::KB512,
        0x100000 => W::MB1,
        0x200000 => W::MB2,
        _ => return Err(broken(BROKEN)),
    };
    let reset_frames = (reset / FRAME_BYTES).max(1);
    // ResetTable: version, entries, entry size, header size, uncompressed and compressed
    // lengths, block size, then one u64 compressed offset per frame.
    let n = le32(table, 4).ok_or_else(|| broken(BROKEN))? as u64;
    let header = le32(table, 12).ok_or_else(|| broken(BROKEN))? as usize;
    let total = le64(table, 0x10).ok_or_else(|| broken(BROKEN))?;
    let packed = le64(table, 0x18).ok_or_else(|| broken(BROKEN))?.min(content.len() as u64);
    if le32(table, 8) != Some(8) || n > (table.len() / 8) as u64 {
        return Err(broken(BROKEN));
    }
    let offset = |i: u64| -> Option<u64> {
        if i == n {
            Some(packed)
        } else {
            le64(table, header.checked_add(i as usize * 8)?)
        }
    };
    let mut lzx = lzxd::Lzxd::new(ws);
    let mut demux = Demux::new(pass);
    for i in 0..n {
        if demux.done() {
            break;
        }
        if i % reset_frames == 0 {
            lzx.reset();
        }
        let (Some(a), Some(b)) = (offset(i), offset(i + 1)) else { return Err(broken(BROKEN)) };
        let frame = content.get(a as usize..b as usize).ok_or_else(|| broken(BROKEN))?;
        let size = (total - (i * FRAME_BYTES).min(total)).min(FRAME_BYTES) as usize;
        let bytes = lzx.decompress_next(frame, size).map_err(|_| broken(BROKEN))?;
        out.work(bytes.len() as u64)?;
        demux.feed(bytes, out)?;
    }
    demux.finish(BROKEN, out)
}
