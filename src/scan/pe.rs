//! The few facts about a PE (Windows executable) that ClamAV signatures refer to: the file
//! offset of the entry point and the file ranges of the sections.
//!
//! Only the headers are read, from the first bytes of the object, so the facts are known
//! early in the stream. Anything that does not parse is simply "not a PE": a signature that
//! needs these facts does not match an object that lacks them, as in ClamAV.

/// A section's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub raw_offset: u64,
    pub raw_size: u64,
}

/// What the headers say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeInfo {
    /// The entry point's relative virtual address.
    pub ep_rva: u64,
    /// Its file offset, when a section (or the headers) holds it.
    pub ep_offset: Option<u64>,
    pub sections: Vec<Section>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Most sections read (the PE format allows 96).
pub const SECTIONS_MAX: usize = 96;

/// Parses the headers at the start of `head`; `None` if it is not a PE or the headers lie
/// beyond `head`.
pub fn parse(head: &[u8]) -> Option<PeInfo> {
    if !head.starts_with(b"MZ") {
        return None;
    }
    let pe = u32_at(head, 0x3c)? as usize;
    if head.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let coff = pe + 4;
    let nsections = usize::from(u16_at(head, coff + 2)?);
    let opt_size = usize::from(u16_at(head, coff + 16)?);
    let opt = coff + 20;
    let magic = u16_at(head, opt)?;
    if magic != 0x10b && magic != 0x20b {
        return None;
    }
    let ep_rva = u64::from(u32_at(head, opt + 16)?);
    // Like the Windows loader (and ClamAV), raw data pointers are rounded down to the file
    // alignment when it is a sane one (a multiple of 512 up to 64 KiB).
    let file_align = u64::from(u32_at(head, opt + 36).unwrap_or(0));
    let align = |raw: u64| {
        if (0x200..=0x10000).contains(&file_align) && file_align % 0x200 == 0 {
            raw / file_align * file_align
        } else {
            raw
        }
    };
    let table = opt + opt_size;
    let mut sections = Vec::with_capacity(nsections.min(SECTIONS_MAX));
    let mut ep_offset = None;
    for i in 0..nsections.min(SECTIONS_MAX) {
        let s = table + 40 * i;
        let vsize = u64::from(u32_at(head, s + 8)?);
        let va = u64::from(u32_at(head, s + 12)?);
        let raw_size = u64::from(u32_at(head, s + 16)?);
        let raw_offset = align(u64::from(u32_at(head, s + 20)?));
        let span = vsize.max(raw_size);
        if ep_offset.is_none() && ep_rva >= va && ep_rva < va + span && ep_rva - va < raw_size {
            ep_offset = Some(raw_offset + (ep_rva - va));
        }
        sections.push(Section { raw_offset, raw_size });
    }
    if ep_offset.is_none() && sections.first().is_none_or(|s| ep_rva < s.raw_offset) {
        // An entry point inside the headers maps to the same file offset.
        ep_offset = Some(ep_rva);
    }
    Some(PeInfo { ep_rva, ep_offset, sections })
}

/// Builds a minimal PE image with the given sections' raw data and an entry point inside the
/// first one at `ep_delta` (for tests).
pub fn build_test_pe(sections: &[&[u8]], ep_delta: u32) -> Vec<u8> {
    let mut out = vec![0u8; 0x400];
    out[0..2].copy_from_slice(b"MZ");
    out[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    out[0x80..0x84].copy_from_slice(b"PE\0\0");
    let coff = 0x84;
    out[coff..coff + 2].copy_from_slice(&0x14cu16.to_le_bytes());
    out[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    out[coff + 16..coff + 18].copy_from_slice(&0xe0u16.to_le_bytes());
    let opt = coff + 20;
    out[opt..opt + 2].copy_from_slice(&0x10bu16.to_le_bytes());
    out[opt + 16..opt + 20].copy_from_slice(&(0x1000 + ep_delta).to_le_bytes());
    let table = opt + 0xe0;
    let mut raw = 0x400u32;
    for (i, data) in sections.iter().enumerate() {
        let s = table + 40 * i;
        out[s..s + 5].copy_from_slice(b".sect");
        let len = data.len() as u32;
        out[s + 8..s + 12].copy_from_slice(&len.to_le_bytes());
        out[s + 12..s + 16].copy_from_slice(&(0x1000 * (i as u32 + 1)).to_le_bytes());
        out[s + 16..s + 20].copy_from_slice(&len.to_le_bytes());
        out[s + 20..s + 24].copy_from_slice(&raw.to_le_bytes());
        raw += len;
    }
    for data in sections {
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sections_and_entry_point() {
        let pe = build_test_pe(&[b"first section", b"second"], 6);
        let info = parse(&pe).unwrap();
        assert_eq!(
            info.sections,
            vec![Section { raw_offset: 0x400, raw_size: 13 }, Section { raw_offset: 0x40d, raw_size: 6 }]
        );
        assert_eq!(info.ep_offset, Some(0x406));
        assert_eq!(&pe[0x406..0x40d], b"section");
        assert_eq!(parse(b"MZ"), None);
        assert_eq!(parse(&pe[..0x100]), None);
        let mut bad = pe.clone();
        bad[0x80] = b'X';
        assert_eq!(parse(&bad), None);
    }
}
