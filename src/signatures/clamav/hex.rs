//! The hex body-signature syntax of `.ndb` lines and `.ldb` subsignatures, in full where it
//! has one meaning on a byte stream.
//!
//! Beyond what [`crate::signatures::ndb`] reads for the fast path, this parser understands
//! alternatives `(aa|bb|cc)` (fixed bytes or wildcards, of equal or different lengths) and
//! anchored ranges `aa[n-m]bb`. An alternative is expanded into one variant of its segment per
//! choice, bounded by [`VARIANTS_MAX`], so the literal matcher sees only plain masked strings.
//! `[n-m]` means the same as the gap `{n-m}` (ClamAV restricts where it may appear for speed);
//! it is read as that gap. A negated alternative `!(aa|bb)` (fixed bytes, all of one length)
//! becomes wildcards in the pattern plus a check the scanner makes after the literal matcher
//! found the segment. The anchors `(B)` (word boundary) and `(L)` (line boundary) are read at
//! the start or the end of a pattern and checked by the scanner against the neighbouring
//! bytes; elsewhere, and alternatives with gaps inside, are reported and the line is skipped.

use crate::signatures::ndb::{parse_gap, Gap, MAX_HEX_LEN, MAX_SEGMENT_LEN};

/// Most variants one segment may expand to through its alternatives.
pub const VARIANTS_MAX: usize = 64;

/// One way a segment can read: bytes with a mask (see [`crate::signatures::ndb::Segment`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Variant {
    pub bytes: Vec<u8>,
    pub mask: Vec<u8>,
    /// Negated alternatives `!(aa|bb)`: at byte `pos` of the variant (where the pattern has
    /// wildcards), the data must equal none of the listed strings. Checked by the scanner
    /// after the literal matcher found the variant.
    pub nots: Vec<(usize, Vec<Vec<u8>>)>,
}

/// A parsed hex signature: `parts[i]` and `parts[i + 1]` are separated by `gaps[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexPattern {
    pub parts: Vec<Vec<Variant>>,
    pub gaps: Vec<Gap>,
    /// An anchor `(B)`/`(L)` before the first byte.
    pub left: Edge,
    /// An anchor `(B)`/`(L)` after the last byte.
    pub right: Edge,
}

/// What must border a match: nothing in particular, a word boundary `(B)` (the neighbouring
/// byte is not a letter, digit or `_`, or there is none), or a line boundary `(L)` (the
/// neighbouring byte is CR or LF, or there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Edge {
    #[default]
    None,
    Word,
    Line,
}

fn edge_of(anchor: &str) -> Option<Edge> {
    match anchor {
        "(B)" => Some(Edge::Word),
        "(L)" => Some(Edge::Line),
        _ => None,
    }
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
    // Anchors may open and close the pattern; anywhere else they are refused below.
    let mut hex = hex;
    let mut left = Edge::None;
    let mut right = Edge::None;
    if let Some(e) = hex.get(..3).and_then(edge_of) {
        left = e;
        hex = &hex[3..];
    }
    if let Some(e) = hex.len().checked_sub(3).and_then(|n| hex.get(n..)).and_then(edge_of) {
        right = e;
        hex = &hex[..hex.len() - 3];
    }
    if hex.is_empty() {
        return Err("the hex signature holds only anchors".to_string());
    }
    let b = hex.as_bytes();
    let mut parts = Vec::new();
    let mut gaps = Vec::new();
    let mut current = vec![Variant::default()];
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
                    return Err(format!(
                        "the anchor `({inner})` at character {at} is not supported inside a pattern (only at its \
                         start or end)"
                    ));
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
                    let mut v = Variant::default();
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
            b'!' => {
                if b.get(i + 1) != Some(&b'(') {
                    return Err(format!("`!` at character {at} is not followed by `(`"));
                }
                let close =
                    hex[i..].find(')').map(|n| i + n).ok_or(format!("`!(` at character {at} is never closed"))?;
                let mut alts: Vec<Vec<u8>> = Vec::new();
                for alt in hex[i + 2..close].split('|') {
                    let ab = alt.as_bytes();
                    let bytes: Option<Vec<u8>> = (0..ab.len() / 2)
                        .map(|k| byte_at(ab, 2 * k).filter(|&(_, m)| m == 0xFF).map(|(b, _)| b))
                        .collect();
                    match bytes {
                        Some(v) if !v.is_empty() && ab.len() % 2 == 0 => alts.push(v),
                        _ => {
                            return Err(format!(
                                "negated alternative `{}` at character {at} is not fixed hex bytes",
                                alt.escape_default()
                            ))
                        }
                    }
                }
                let len = alts[0].len();
                if alts.iter().any(|a| a.len() != len) {
                    return Err(format!("negated alternatives at character {at} differ in length"));
                }
                for v in &mut current {
                    v.nots.push((v.bytes.len(), alts.clone()));
                    v.bytes.extend(std::iter::repeat_n(0, len));
                    v.mask.extend(std::iter::repeat_n(0, len));
                }
                i = close + 1;
                continue;
            }
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
        parts.push(finish(std::mem::replace(&mut current, vec![Variant::default()]), parts.len() + 1)?);
        gaps.push(gap);
        i = next;
    }
    if current[0].bytes.is_empty() {
        return Err("the hex signature ends with a gap; it must end with a byte".to_string());
    }
    parts.push(finish(current, parts.len() + 1)?);
    Ok(HexPattern { parts, gaps, left, right })
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
                        nots: v
                            .nots
                            .iter()
                            .map(|(pos, alts)| {
                                (pos * 2, alts.iter().map(|a| a.iter().flat_map(|&b| [b, 0]).collect()).collect())
                            })
                            .collect(),
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
        HexPattern { parts, gaps, left: self.left, right: self.right }
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
            for (_, alts) in &mut v.nots {
                for a in alts {
                    a.make_ascii_lowercase();
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
        Variant { bytes: bytes.to_vec(), mask: vec![0xFF; bytes.len()], nots: Vec::new() }
    }

    #[test]
    fn alternatives_and_anchored_ranges() {
        let p = parse_hex("41(42|4344)45[2-4]46").unwrap();
        assert_eq!(p.parts, vec![vec![v(b"ABE"), v(b"ACDE")], vec![v(b"F")]]);
        assert_eq!(p.gaps, vec![Gap::Range { min: 2, max: 4 }]);
        let p = parse_hex("(41|42)(43|44)").unwrap();
        assert_eq!(p.parts[0].len(), 4);
        let n = parse_hex("41!(42|4?)43").err().unwrap();
        assert!(n.contains("not fixed hex bytes"), "{n}");
        let p = parse_hex("41!(42|43)44").unwrap();
        assert_eq!(p.parts[0][0].nots, vec![(1, vec![vec![0x42], vec![0x43]])]);
        assert_eq!(p.parts[0][0].mask, vec![0xFF, 0, 0xFF]);
        let p = parse_hex("(B)4142(L)").unwrap();
        assert_eq!((p.left, p.right), (Edge::Word, Edge::Line));
        for bad in
            ["41(42", "41!42", "41!(42|4344)45", "41(B)42", "(B)", "41(4|43)", "41(42)", "(??|4?)", "41[1]42", "*41"]
        {
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
