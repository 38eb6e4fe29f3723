//! The few facts about a PE (Windows executable) that ClamAV signatures refer to: the file
//! offset of the entry point and the file ranges of the sections.
//!
//! Only the headers are read, from the first bytes of the object, so the facts are known
//! early in the stream. Anything that does not parse is simply "not a PE": a signature that
//! needs these facts does not match an object that lacks them, as in ClamAV.

/// A section's place in the file (and in memory, for mapping addresses to file offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Section {
    pub raw_offset: u64,
    pub raw_size: u64,
    pub va: u64,
    pub vsize: u64,
}

/// What the headers say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeInfo {
    /// The entry point's relative virtual address.
    pub ep_rva: u64,
    /// Its file offset, when a section (or the headers) holds it.
    pub ep_offset: Option<u64>,
    pub sections: Vec<Section>,
    /// PE32+ (64-bit) rather than PE32.
    pub pe_plus: bool,
    /// The import directory (address, size), when the headers name one.
    pub imports: Option<(u64, u64)>,
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
    let pe_plus = magic == 0x20b;
    let dirs = if pe_plus { opt + 112 } else { opt + 96 };
    let ndirs = u32_at(head, if pe_plus { opt + 108 } else { opt + 92 }).unwrap_or(0);
    let imports = if ndirs >= 2 {
        match (u32_at(head, dirs + 8), u32_at(head, dirs + 12)) {
            (Some(rva), Some(size)) if rva != 0 && size != 0 => Some((u64::from(rva), u64::from(size))),
            _ => None,
        }
    } else {
        None
    };
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
        sections.push(Section { raw_offset, raw_size, va, vsize });
    }
    if ep_offset.is_none() && sections.first().is_none_or(|s| ep_rva < s.raw_offset) {
        // An entry point inside the headers maps to the same file offset.
        ep_offset = Some(ep_rva);
    }
    Some(PeInfo { ep_rva, ep_offset, sections, pe_plus, imports })
}

/// Why an import table could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportError {
    /// The table or its names lie past the bytes that were kept.
    Beyond,
    /// The table is malformed (or there is none).
    Invalid,
}

/// Most import descriptors and functions per descriptor read.
const IMPORTS_MAX: usize = 4096;

impl PeInfo {
    /// The file offset of a relative virtual address.
    pub fn rva_to_offset(&self, rva: u64) -> Option<u64> {
        for s in &self.sections {
            if rva >= s.va && rva < s.va + s.vsize.max(s.raw_size) {
                return (rva - s.va < s.raw_size).then_some(s.raw_offset + (rva - s.va));
            }
        }
        self.sections.first().is_none_or(|s| rva < s.raw_offset).then_some(rva)
    }

    /// ClamAV's import-table string, `dll.function` for every import, lower-cased, the
    /// `.dll`/`.ocx`/`.sys` extension dropped, separated by commas (ordinals as `ordN`).
    /// `data` is the object's first bytes, `complete` whether it is all of it.
    pub fn import_string(&self, data: &[u8], complete: bool) -> Result<String, ImportError> {
        let (rva, size) = self.imports.ok_or(ImportError::Invalid)?;
        let at = |off: u64, len: u64| -> Result<&[u8], ImportError> {
            let end = off.checked_add(len).ok_or(ImportError::Invalid)?;
            match data.get(off as usize..end as usize) {
                Some(b) => Ok(b),
                None if !complete => Err(ImportError::Beyond),
                None => Err(ImportError::Invalid),
            }
        };
        let name_at = |off: u64| -> Result<String, ImportError> {
            let mut out = String::new();
            for i in 0..256u64 {
                let b = at(off + i, 1)?[0];
                if b == 0 {
                    return Ok(out);
                }
                if !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'@' || b == b'?' || b == b'$') {
                    return Err(ImportError::Invalid);
                }
                out.push(char::from(b.to_ascii_lowercase()));
            }
            Ok(out)
        };
        let table = self.rva_to_offset(rva).ok_or(ImportError::Invalid)?;
        let mut out = String::new();
        for d in 0..(size / 20).min(IMPORTS_MAX as u64) {
            let desc = at(table + 20 * d, 20)?;
            let field = |k: usize| u64::from(u32::from_le_bytes([desc[k], desc[k + 1], desc[k + 2], desc[k + 3]]));
            let (original, name, first) = (field(0), field(12), field(16));
            if name == 0 {
                break;
            }
            let dll = name_at(self.rva_to_offset(name).ok_or(ImportError::Invalid)?)?;
            let stem = match dll.find('.') {
                Some(i) if [".dll", ".ocx", ".sys"].iter().any(|e| dll[i..].starts_with(e)) => &dll[..i],
                _ => dll.as_str(),
            };
            let thunks =
                self.rva_to_offset(if original != 0 { original } else { first }).ok_or(ImportError::Invalid)?;
            let width = if self.pe_plus { 8 } else { 4 };
            for t in 0..IMPORTS_MAX as u64 {
                let raw = at(thunks + width * t, width)?;
                let value = if self.pe_plus {
                    u64::from_le_bytes(raw.try_into().map_err(|_| ImportError::Invalid)?)
                } else {
                    u64::from(u32::from_le_bytes(raw.try_into().map_err(|_| ImportError::Invalid)?))
                };
                if value == 0 {
                    break;
                }
                let ordinal_flag = if self.pe_plus { 1u64 << 63 } else { 1u64 << 31 };
                let function = if value & ordinal_flag != 0 {
                    format!("ord{}", value & 0xFFFF)
                } else {
                    name_at(self.rva_to_offset(value & 0x7FFF_FFFF).ok_or(ImportError::Invalid)? + 2)?
                };
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(stem);
                out.push('.');
                out.push_str(&function);
            }
        }
        Ok(out)
    }
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
            vec![
                Section { raw_offset: 0x400, raw_size: 13, va: 0x1000, vsize: 13 },
                Section { raw_offset: 0x40d, raw_size: 6, va: 0x2000, vsize: 6 }
            ]
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
