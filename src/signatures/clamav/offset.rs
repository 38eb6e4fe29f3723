//! ClamAV signature offsets: where a body signature or subsignature must start.
//!
//! `*` (anywhere), `n` (exactly at byte n), `EOF-n`, `EP+n`/`EP-n` (from a PE's entry point),
//! `Sx+n` (from the start of PE section x), `SL+n` (from the last section), `SEx` (anywhere
//! inside section x), each of the anchored forms with an optional `,m` (the start may be up to
//! m bytes later). `*` and `n[,m]` can be decided while the object streams; the others are
//! decided at the end of the object, from its size and its PE headers.

use crate::signatures::problem::is_decimal;

/// What an offset is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// From the first byte of the object.
    Start(u64),
    /// `n` bytes before the end of the object.
    Eof(u64),
    /// From the entry point's file offset (signed).
    Ep(i64),
    /// From the start of section `index` (0-based).
    Section(u32, u64),
    /// From the start of the last section.
    LastSection(u64),
}

/// A parsed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigOffset {
    Any,
    /// The match starts within `anchor ..= anchor + shift`.
    At {
        anchor: Anchor,
        shift: u64,
    },
    /// The whole match lies inside section `index`.
    SectionEntire(u32),
}

/// What a deferred offset needs to know about the object.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectFacts<'a> {
    pub size: u64,
    pub pe: Option<&'a crate::scan::pe::PeInfo>,
}

impl SigOffset {
    /// Whether the offset can be checked the moment a match is seen.
    pub fn streamable(&self) -> bool {
        matches!(self, SigOffset::Any | SigOffset::At { anchor: Anchor::Start(_), .. })
    }

    /// Whether the offset needs the PE headers.
    pub fn needs_pe(&self) -> bool {
        matches!(
            self,
            SigOffset::SectionEntire(_)
                | SigOffset::At { anchor: Anchor::Ep(_) | Anchor::Section(..) | Anchor::LastSection(_), .. }
        )
    }

    /// Whether a match spanning `start..end` satisfies the offset, given the object's facts.
    pub fn accepts(&self, start: u64, end: u64, facts: &ObjectFacts<'_>) -> bool {
        let (base, shift) = match *self {
            SigOffset::Any => return true,
            SigOffset::SectionEntire(x) => {
                let Some(s) = facts.pe.and_then(|pe| pe.sections.get(x as usize)) else { return false };
                return start >= s.raw_offset && end <= s.raw_offset.saturating_add(s.raw_size);
            }
            SigOffset::At { anchor, shift } => {
                let base = match anchor {
                    Anchor::Start(n) => Some(n),
                    Anchor::Eof(n) => facts.size.checked_sub(n),
                    Anchor::Ep(d) => facts.pe.and_then(|pe| pe.ep_offset).and_then(|ep| ep.checked_add_signed(d)),
                    Anchor::Section(x, n) => {
                        facts.pe.and_then(|pe| pe.sections.get(x as usize)).map(|s| s.raw_offset.saturating_add(n))
                    }
                    Anchor::LastSection(n) => {
                        facts.pe.and_then(|pe| pe.sections.last()).map(|s| s.raw_offset.saturating_add(n))
                    }
                };
                match base {
                    Some(b) => (b, shift),
                    None => return false,
                }
            }
        };
        start >= base && start - base <= shift
    }
}

/// Parses an offset field.
pub fn parse_offset(field: &str) -> Result<SigOffset, String> {
    if field == "*" {
        return Ok(SigOffset::Any);
    }
    let bad = || {
        format!(
            "offset `{}` is not one of *, n, EOF-n, EP+n, EP-n, Sx+n, SL+n, SEx (each with an optional ,m)",
            field.escape_default()
        )
    };
    let num = |s: &str| -> Result<u64, String> {
        if is_decimal(s) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (main, shift) = match field.split_once(',') {
        Some((m, s)) => (m, num(s)?),
        None => (field, 0),
    };
    if let Some(x) = main.strip_prefix("SE") {
        let x = u32::try_from(num(x)?).map_err(|_| bad())?;
        return Ok(SigOffset::SectionEntire(x));
    }
    let anchor = if is_decimal(main) {
        Anchor::Start(num(main)?)
    } else if let Some(n) = main.strip_prefix("EOF-") {
        Anchor::Eof(num(n)?)
    } else if let Some(n) = main.strip_prefix("EP+") {
        Anchor::Ep(i64::try_from(num(n)?).map_err(|_| bad())?)
    } else if let Some(n) = main.strip_prefix("EP-") {
        Anchor::Ep(-i64::try_from(num(n)?).map_err(|_| bad())?)
    } else if let Some(n) = main.strip_prefix("SL+") {
        Anchor::LastSection(num(n)?)
    } else if let Some((x, n)) = main.strip_prefix('S').and_then(|r| r.split_once('+')) {
        Anchor::Section(u32::try_from(num(x)?).map_err(|_| bad())?, num(n)?)
    } else if main.starts_with("VI") || main.starts_with('$') {
        return Err(format!(
            "offset `{}` (version information or a macro group) is not supported",
            field.escape_default()
        ));
    } else {
        return Err(bad());
    };
    Ok(SigOffset::At { anchor, shift })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::pe::{PeInfo, Section};

    #[test]
    fn parse_and_accept() {
        let pe = PeInfo {
            ep_offset: Some(0x400),
            sections: vec![
                Section { raw_offset: 0x400, raw_size: 0x200, ..Section::default() },
                Section { raw_offset: 0x600, raw_size: 0x100, ..Section::default() },
            ],
            ep_rva: 0x1000,
            ..PeInfo::default()
        };
        let facts = ObjectFacts { size: 0x700, pe: Some(&pe) };
        let ok = |f: &str, start: u64, end: u64| parse_offset(f).unwrap().accepts(start, end, &facts);
        assert!(ok("*", 5, 9));
        assert!(ok("10", 10, 12) && !ok("10", 11, 12));
        assert!(ok("10,5", 15, 20) && !ok("10,5", 16, 20));
        assert!(ok("EOF-16", 0x6f0, 0x700) && !ok("EOF-16", 0x6f1, 0x700));
        assert!(ok("EP+0", 0x400, 0x410) && ok("EP-16", 0x3f0, 0x400) && ok("EP+4,4", 0x408, 0x410));
        assert!(ok("S1+2", 0x602, 0x603) && ok("SL+2", 0x602, 0x603) && ok("S0+0", 0x400, 0x401));
        assert!(ok("SE0", 0x500, 0x600) && !ok("SE0", 0x500, 0x601) && !ok("SE7", 0, 1));
        let no_pe = ObjectFacts { size: 100, pe: None };
        assert!(!parse_offset("EP+0").unwrap().accepts(0, 1, &no_pe));
        assert!(parse_offset("10").unwrap().streamable() && !parse_offset("EOF-1").unwrap().streamable());
        for bad in ["", "EOF+1", "EP", "S+1", "Sx+1", "1,", "VI", "$1$", "-1"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }
}
