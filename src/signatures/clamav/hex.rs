//! The hex body-signature syntax of `.ndb` lines and `.ldb` subsignatures, in full where it
//! has one meaning on a byte stream.
//!
//! Beyond what [`crate::signatures::ndb`] reads for the fast path, this parser understands
//! alternatives `(aa|bb|cc)` (fixed bytes or wildcards, of equal or different lengths) and
//! anchored ranges `aa[n-m]bb`. An alternative is expanded into one variant of its segment per
//! choice, bounded by [`VARIANTS_MAX`], so the literal matcher sees only plain masked strings.
//! `[n-m]` means the same as the gap `{n-m}` (ClamAV restricts where it may appear for speed);
//! it is read as that gap. Negated alternatives `!(...)`, the anchors `(B)`/`(L)` and
//! ClamAV's `(aa|bb)` forms with gaps inside are reported and the line is skipped.

use crate::signatures::ndb::{parse_gap, Gap, MAX_HEX_LEN, MAX_SEGMENT_LEN};

/// Most variants one segment may expand to through its alternatives.
pub const VARIANTS_MAX: usize = 64;

/// One way a segment can read: bytes with a mask (see [`crate::signatures::ndb::Segment`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    pub bytes: Vec<u8>,
    pub mask: Vec<u8>,
}

/// A parsed hex signature: `parts[i]` and `parts[i + 1]` are separated by `gaps[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexPattern {
    pub parts: Vec<Vec<Variant>>,
    pub gaps: Vec<Gap>,
}

fn nibble(c: u8) -> Option<(u8, u8)> {
    match c {
        b'0'..=b'9' => Some((c - b'0', 0xF)),
        b'a'..=b'f' => Some((c - b'a' + 10, 0xF)),
        b'A'..=b'F' => Some((c - b'A' + 10, 0xF)),
        b'?' => Some((0, 0)),
        _ => None,
    }
}

/// Reads one byte (two nibble characters) at `i`.
fn byte_at(b: &[u8], i: usize) -> Option<(u8, u8)> {
    let (hi, hm) = nibble(*b.get(i)?)?;
    let (lo, lm) = nibble(*b.get(i + 1)?)?;
    Some((hi << 4 | lo, hm << 4 | lm))
}

fn push_all(variants: &mut [Variant], byte: u8, mask: u8) {
    for v in variants {
        v.bytes.push(byte & mask);
        v.mask.push(mask);
    }
}

/// Parses a hex signature field.
pub fn parse_hex(hex: &str) -> Result<HexPattern, String> {
    if hex.is_empty() {
        return Err("the hex signature is empty".to_string());
    }
    if hex.len() > MAX_HEX_LEN {
        return Err(format!("the hex signature is {} characters long; the limit is {MAX_HEX_LEN}", hex.len()));
    }
    let b = hex.as_bytes();
    let mut parts = Vec::new();
    let mut gaps = Vec::new();
    let mut current = vec![Variant { bytes: Vec::new(), mask: Vec::new() }];
    let mut i = 0;
    while i < b.len() {
        let at = i + 1;
        let c = b[i];
        if nibble(c).is_some() {
            let (byte, mask) = byte_at(b, i).ok_or_else(|| {
                format!("odd number of hex digits: `{}` at character {at} is not part of a pair", char::from(c))
            })?;
            push_all(&mut current, byte, mask);
            i += 2;
            continue;
        }
        match c {
            b'(' => {
                let close =
                    hex[i..].find(')').map(|n| i + n).ok_or(format!("`(` at character {at} is never closed"))?;
                let inner = &hex[i + 1..close];
                if inner == "B" || inner == "L" {
                    return Err(format!("the anchor `({inner})` at character {at} is not supported"));
                }
                let mut choices = Vec::new();
                for alt in inner.split('|') {
                    let ab = alt.as_bytes();
                    if ab.is_empty() || ab.len() % 2 != 0 {
                        return Err(format!(
                            "alternative `{}` at character {at} is not a whole number of hex bytes",
                            alt.escape_default()
                        ));
                    }
                    let mut v = Variant { bytes: Vec::new(), mask: Vec::new() };
                    for k in (0..ab.len()).step_by(2) {
                        let (byte, mask) = byte_at(ab, k).ok_or_else(|| {
                            format!(
                                "alternative `{}` at character {at} holds something other than hex bytes \
                                 (gaps inside alternatives are not supported)",
                                alt.escape_default()
                            )
                        })?;
                        v.bytes.push(byte & mask);
                        v.mask.push(mask);
                    }
                    choices.push(v);
                }
                if choices.len() < 2 {
                    return Err(format!("alternatives at character {at} need at least two choices"));
                }
                if current.len() * choices.len() > VARIANTS_MAX {
                    return Err(format!(
                        "the alternatives up to character {at} expand to more than {VARIANTS_MAX} variants"
                    ));
                }
                let mut next = Vec::with_capacity(current.len() * choices.len());
                for v in &current {
                    for ch in &choices {
                        let mut n = v.clone();
                        n.bytes.extend_from_slice(&ch.bytes);
                        n.mask.extend_from_slice(&ch.mask);
                        next.push(n);
                    }
                }
                current = next;
                i = close + 1;
                continue;
            }
            b'!' => return Err(format!("negated alternatives `!(...)` at character {at} are not supported")),
            _ => {}
        }
        let (gap, next) = match c {
            b'*' => (Gap::Any, i + 1),
            b'{' => parse_gap(hex, i)?,
            b'[' => {
                // `[n-m]` is an anchored `{n-m}`.
                let close =
                    hex[i..].find(']').map(|n| i + n).ok_or(format!("`[` at character {at} is never closed"))?;
                let body = &hex[i + 1..close];
                let range =
                    body.split_once('-').and_then(|(lo, hi)| Some((lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?)));
                match range {
                    Some((min, max)) if min <= max => (Gap::Range { min, max }, close + 1),
                    _ => return Err(format!("`[{}]` at character {at} is not a range `[n-m]`", body.escape_default())),
                }
            }
            _ => {
                let ch = hex.get(i..).and_then(|rest| rest.chars().next()).unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(format!("unexpected character `{}` at character {at}", ch.escape_default()));
            }
        };
        if current[0].bytes.is_empty() {
            return Err(if parts.is_empty() {
                "the hex signature starts with a gap; it must start with a byte".to_string()
            } else {
                format!("two gaps in a row at character {at}; a gap must sit between bytes")
            });
        }
        parts.push(finish(
            std::mem::replace(&mut current, vec![Variant { bytes: Vec::new(), mask: Vec::new() }]),
            parts.len() + 1,
        )?);
        gaps.push(gap);
        i = next;
    }
    if current[0].bytes.is_empty() {
        return Err("the hex signature ends with a gap; it must end with a byte".to_string());
    }
    parts.push(finish(current, parts.len() + 1)?);
    Ok(HexPattern { parts, gaps })
}

fn finish(variants: Vec<Variant>, number: usize) -> Result<Vec<Variant>, String> {
    for v in &variants {
        if v.bytes.len() > MAX_SEGMENT_LEN {
            return Err(format!("segment {number} is {} bytes long; the limit is {MAX_SEGMENT_LEN}", v.bytes.len()));
        }
        if !v.mask.contains(&0xFF) {
            return Err(format!(
                "segment {number} has no fully fixed byte; a segment made only of wildcards would match almost \
                 anywhere"
            ));
        }
    }
    Ok(variants)
}

impl HexPattern {
    /// The pattern as wide (UTF-16LE) text: every byte followed by a zero byte, gaps doubled.
    pub fn wide(&self) -> HexPattern {
        let parts = self
            .parts
            .iter()
            .map(|vs| {
                vs.iter()
                    .map(|v| Variant {
                        bytes: v.bytes.iter().flat_map(|&b| [b, 0]).collect(),
                        mask: v.mask.iter().flat_map(|&m| [m, 0xFF]).collect(),
                    })
                    .collect()
            })
            .collect();
        let gaps = self
            .gaps
            .iter()
            .map(|g| match *g {
                Gap::Any => Gap::Any,
                Gap::Range { min, max } => Gap::Range { min: min.saturating_mul(2), max: max.saturating_mul(2) },
                Gap::AtLeast(min) => Gap::AtLeast(min.saturating_mul(2)),
            })
            .collect();
        HexPattern { parts, gaps }
    }

    /// The pattern for matching case-insensitively on lower-cased data: fixed ASCII capitals
    /// are lower-cased.
    pub fn lowered(&self) -> HexPattern {
        let mut p = self.clone();
        for v in p.parts.iter_mut().flatten() {
            for (b, &m) in v.bytes.iter_mut().zip(&v.mask) {
                if m == 0xFF {
                    *b = b.to_ascii_lowercase();
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(bytes: &[u8]) -> Variant {
        Variant { bytes: bytes.to_vec(), mask: vec![0xFF; bytes.len()] }
    }

    #[test]
    fn alternatives_and_anchored_ranges() {
        let p = parse_hex("41(42|4344)45[2-4]46").unwrap();
        assert_eq!(p.parts, vec![vec![v(b"ABE"), v(b"ACDE")], vec![v(b"F")]]);
        assert_eq!(p.gaps, vec![Gap::Range { min: 2, max: 4 }]);
        let p = parse_hex("(41|42)(43|44)").unwrap();
        assert_eq!(p.parts[0].len(), 4);
        for bad in ["41(42", "41!(42|43)", "(B)41", "41(4|43)", "41(42)", "(??|4?)", "41[1]42", "*41"] {
            assert!(parse_hex(bad).is_err(), "{bad}");
        }
        let many = "41".to_string() + &"(41|42)".repeat(7);
        assert!(parse_hex(&many).unwrap_err().contains("variants"));
    }

    #[test]
    fn wide_and_lowered() {
        let p = parse_hex("4142{2}43").unwrap();
        let w = p.wide();
        assert_eq!(w.parts[0], vec![v(b"A\0B\0")]);
        assert_eq!(w.gaps, vec![Gap::Range { min: 4, max: 4 }]);
        assert_eq!(p.lowered().parts[0], vec![v(b"ab")]);
    }
}
