//! ClamAV extended body signatures (`.ndb`), limited to the subset operators write by hand.
//!
//! A line reads `Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]`. ClamAV's full syntax is
//! large (file-type targets, offsets relative to the end of the file or to executable
//! sections, alternatives, negations, anchored byte ranges), and most of it only makes sense
//! inside ClamAV's own file-type engine. icapd scans HTTP bodies as opaque byte streams, so it
//! implements the part that has one clear meaning there:
//!
//! * target type `0` (any file);
//! * offset `*` (anywhere) or a decimal byte offset at which the signature must start;
//! * hex bytes, `??` (any byte), nibble wildcards `a?` and `?a`, and gaps: `*` (any length),
//!   `{n}`, `{n-m}`, `{-m}` and `{n-}`;
//! * the optional functionality-level fields, which are checked for shape and then ignored.
//!
//! This is the *streaming* subset, matched by [`crate::scan::body`] as the bytes arrive. The
//! loader gives every line this parser refuses a second chance through
//! [`crate::signatures::clamav::ldb::ndb_as_ldb`], which reads target types, every ClamAV
//! offset, alternatives and anchored ranges, and turns the line into a one-subsignature logical
//! signature settled at the end of the object. Only a line both refuse is reported as a
//! [`Problem`] and skipped. Silently dropping an
//! alternative or reading `EOF-10` as "anywhere" would give the operator a signature that
//! matches something other than what they wrote, which is the one outcome a parser must not
//! produce.
//!
//! The parsed form keeps ClamAV's structure: a signature is a list of fixed-length
//! [`Segment`]s separated by variable [`Gap`]s. Fixed-length wildcards (`??`, `a?`, `?a`) stay
//! inside a segment, as in ClamAV, so every segment has a known length and can be matched
//! with a byte/mask comparison; `{n}` is a gap even though its length is fixed, again as in
//! ClamAV. Each segment must contain at least one fully fixed byte, which is what a
//! multi-pattern matcher needs to find candidate positions without testing every offset.
//!
//! Sizes are bounded ([`MAX_HEX_LEN`], [`MAX_SEGMENT_LEN`], and the name rules in
//! [`check_name`]) so that a single bad line cannot make the compiled matcher or the response
//! headers arbitrarily large.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use crate::signatures::problem::{check_flevels, check_name, content_lines, is_decimal, Problem};

/// The longest hex signature field accepted, in characters (wildcards and gaps included).
pub const MAX_HEX_LEN: usize = 8192;

/// The longest segment accepted, in bytes.
///
/// With [`MAX_HEX_LEN`] at 8192 this bound cannot be exceeded today (two characters per
/// byte); it is checked anyway so that raising the hex limit cannot create unbounded segments.
pub const MAX_SEGMENT_LEN: usize = 4096;

/// One parsed `.ndb` signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdbSignature {
    /// The threat name reported when the signature matches.
    pub name: String,
    /// Where in the object the first segment must start.
    pub offset: NdbOffset,
    /// The fixed-length runs, in order. Never empty.
    pub segments: Vec<Segment>,
    /// `gaps[i]` sits between `segments[i]` and `segments[i + 1]`, so
    /// `gaps.len() == segments.len() - 1`.
    pub gaps: Vec<Gap>,
}

/// Where a signature must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdbOffset {
    /// `*`: anywhere in the object.
    Any,
    /// `n`: exactly at byte `n` of the object (0 is the first byte).
    Exact(u64),
}

/// A fixed-length run of a signature.
///
/// A data byte `d` matches position `i` iff `(d & mask[i]) == (bytes[i] & mask[i])`. The mask
/// is `0xFF` for an exact byte, `0x00` for `??`, `0xF0` for `a?` (high nibble fixed) and `0x0F`
/// for `?a` (low nibble fixed). The parser stores `bytes[i]` already masked, so two segments
/// that match the same data compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Segment {
    pub bytes: Vec<u8>,
    pub mask: Vec<u8>,
}

/// A variable-length stretch between two segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gap {
    /// `*`: any number of bytes, including none.
    Any,
    /// `{n}` (`min == max == n`), `{n-m}`, or `{-m}` (`min == 0`): between `min` and `max`
    /// bytes, inclusive.
    Range { min: u32, max: u32 },
    /// `{n-}`: at least `n` bytes.
    AtLeast(u32),
}

impl Segment {
    /// The segment's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the segment has no bytes (the parser never produces one).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether every byte is fixed (no wildcard of any kind), so the segment can be matched as
    /// a plain byte string.
    pub fn is_exact(&self) -> bool {
        self.mask.iter().all(|&m| m == 0xFF)
    }

    /// Whether `window` matches the segment. `window` must be exactly as long as the segment;
    /// a window of any other length does not match.
    pub fn matches(&self, window: &[u8]) -> bool {
        window.len() == self.bytes.len()
            && self.mask.len() == self.bytes.len()
            && window.iter().zip(&self.bytes).zip(&self.mask).all(|((&d, &b), &m)| d & m == b & m)
    }

    /// The longest run of fully fixed bytes, as a range of positions (the first such run when
    /// several are equally long; empty when the segment has no fixed byte).
    ///
    /// A multi-pattern matcher can search for `&bytes[run]` and verify the whole segment
    /// around each hit, which keeps wildcards out of the automaton.
    pub fn longest_exact_run(&self) -> Range<usize> {
        let mut best = 0..0;
        let mut start = None;
        for (i, &m) in self.mask.iter().chain(std::iter::once(&0)).enumerate() {
            match (m == 0xFF, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    if i - s > best.len() {
                        best = s..i;
                    }
                    start = None;
                }
                _ => {}
            }
        }
        best
    }
}

impl fmt::Display for Segment {
    /// The segment in `.ndb` hex syntax, lowercase, e.g. `41??4?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (&b, &m) in self.bytes.iter().zip(&self.mask) {
            let hi = if m & 0xF0 == 0xF0 { HEX[usize::from(b >> 4)] as char } else { '?' };
            let lo = if m & 0x0F == 0x0F { HEX[usize::from(b & 0x0F)] as char } else { '?' };
            write!(f, "{hi}{lo}")?;
        }
        Ok(())
    }
}

impl Gap {
    /// The fewest bytes the gap can span.
    pub fn min(&self) -> u32 {
        match *self {
            Gap::Any => 0,
            Gap::Range { min, .. } | Gap::AtLeast(min) => min,
        }
    }

    /// The most bytes the gap can span, or `None` when it is unbounded.
    pub fn max(&self) -> Option<u32> {
        match *self {
            Gap::Range { max, .. } => Some(max),
            Gap::Any | Gap::AtLeast(_) => None,
        }
    }
}

impl fmt::Display for Gap {
    /// The gap in `.ndb` syntax: `*`, `{n}`, `{-m}`, `{n-m}` or `{n-}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Gap::Any => f.write_str("*"),
            Gap::Range { min, max } if min == max => write!(f, "{{{min}}}"),
            Gap::Range { min: 0, max } => write!(f, "{{-{max}}}"),
            Gap::Range { min, max } => write!(f, "{{{min}-{max}}}"),
            Gap::AtLeast(min) => write!(f, "{{{min}-}}"),
        }
    }
}

impl fmt::Display for NdbOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NdbOffset::Any => f.write_str("*"),
            NdbOffset::Exact(n) => write!(f, "{n}"),
        }
    }
}

impl NdbSignature {
    /// The hex signature in canonical `.ndb` syntax (lowercase, gaps in their shortest form).
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                if let Some(gap) = self.gaps.get(i - 1) {
                    out.push_str(&gap.to_string());
                }
            }
            out.push_str(&segment.to_string());
        }
        out
    }

    /// The fewest bytes a match can span: every segment plus every gap at its minimum.
    pub fn min_len(&self) -> u64 {
        let segments: u64 = self.segments.iter().map(|s| s.len() as u64).sum();
        let gaps: u64 = self.gaps.iter().map(|g| u64::from(g.min())).sum();
        segments + gaps
    }

    /// A one-line summary for logs, e.g.
    /// `Eicar-Test-Signature (offset *, 1 segment, 68 fixed bytes)`.
    pub fn describe(&self) -> String {
        let fixed: usize = self.segments.iter().map(|s| s.mask.iter().filter(|&&m| m == 0xFF).count()).sum();
        let n = self.segments.len();
        let plural = if n == 1 { "" } else { "s" };
        format!("{} (offset {}, {n} segment{plural}, {fixed} fixed bytes)", self.name, self.offset)
    }
}

impl fmt::Display for NdbSignature {
    /// The signature as a canonical `.ndb` line: `Name:0:Offset:HexSignature`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:0:{}:{}", self.name, self.offset, self.pattern())
    }
}

/// Parses the text of an `.ndb` file.
///
/// Returns the signatures it could use and one [`Problem`] per line it skipped; `file` is
/// only used to label the problems. Blank lines and lines starting with `#` are ignored.
pub fn parse_ndb(text: &str, file: &Path) -> (Vec<NdbSignature>, Vec<Problem>) {
    let mut signatures = Vec::new();
    let mut problems = Vec::new();
    for (line_no, line) in content_lines(text) {
        match parse_ndb_line(line) {
            Ok(signature) => signatures.push(signature),
            Err(message) => problems.push(Problem::new(file, line_no, message)),
        }
    }
    (signatures, problems)
}

/// Parses one `.ndb` line (without its line ending).
///
/// On failure the error is the message for a [`Problem`]: it starts with the signature's name
/// once the name is known to be valid, so the log line says which signature was dropped.
pub fn parse_ndb_line(line: &str) -> Result<NdbSignature, String> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(4..=6).contains(&fields.len()) {
        return Err(format!(
            "expected 4 to 6 fields separated by `:` (Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]), \
             found {}",
            fields.len()
        ));
    }
    let name = fields[0];
    check_name(name)?;
    let with_name = |message: String| format!("{name}: {message}");
    check_target(fields[1]).map_err(with_name)?;
    let offset = parse_offset(fields[2]).map_err(with_name)?;
    let (segments, gaps) = parse_hex(fields[3]).map_err(with_name)?;
    check_flevels(&fields[4..]).map_err(with_name)?;
    Ok(NdbSignature { name: name.to_string(), offset, segments, gaps })
}

fn check_target(field: &str) -> Result<(), String> {
    if !is_decimal(field) {
        return Err(format!("target type `{}` is not a number; only 0 (any) is supported", field.escape_default()));
    }
    if field.bytes().all(|b| b == b'0') {
        return Ok(());
    }
    // Leading zeros are dropped so `03` and `3` read the same; a value too long for u64 is
    // shown as written.
    let shown = field.trim_start_matches('0');
    Err(format!("target type {shown} is not supported; only 0 (any)"))
}

fn parse_offset(field: &str) -> Result<NdbOffset, String> {
    if field == "*" {
        return Ok(NdbOffset::Any);
    }
    if is_decimal(field) {
        return field
            .parse::<u64>()
            .map(NdbOffset::Exact)
            .map_err(|_| format!("offset {field} does not fit in 64 bits"));
    }
    let kind = if field.contains(',') {
        " (an offset range)"
    } else if field.starts_with("EOF") {
        " (relative to the end of the object)"
    } else if field.starts_with("EP") {
        " (relative to an executable's entry point)"
    } else if field.starts_with('S') {
        " (relative to an executable section)"
    } else {
        ""
    };
    Err(format!(
        "offset `{}`{kind} is not supported; only `*` (anywhere) or a decimal byte offset",
        field.escape_default()
    ))
}

/// Whether `c` can be one half of a byte: a hex digit or the nibble wildcard `?`.
fn is_nibble(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b'?'
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Parses the hex signature field into segments and the gaps between them.
fn parse_hex(hex: &str) -> Result<(Vec<Segment>, Vec<Gap>), String> {
    if hex.is_empty() {
        return Err("the hex signature is empty".to_string());
    }
    if hex.len() > MAX_HEX_LEN {
        return Err(format!("the hex signature is {} characters long; the limit is {MAX_HEX_LEN}", hex.len()));
    }
    let b = hex.as_bytes();
    let mut segments: Vec<Segment> = Vec::new();
    let mut gaps = Vec::new();
    let mut current = Segment::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        // Positions in messages are 1-based characters; every character accepted so far is
        // ASCII, so the byte index `i` is also the character index.
        let at = i + 1;
        if is_nibble(c) {
            match b.get(i + 1) {
                Some(&d) if is_nibble(d) => {
                    let (byte, mask) = match (c, d) {
                        (b'?', b'?') => (0x00, 0x00),
                        (b'?', lo) => (hex_value(lo), 0x0F),
                        (hi, b'?') => (hex_value(hi) << 4, 0xF0),
                        (hi, lo) => (hex_value(hi) << 4 | hex_value(lo), 0xFF),
                    };
                    current.bytes.push(byte);
                    current.mask.push(mask);
                    i += 2;
                }
                _ => {
                    return Err(format!(
                        "odd number of hex digits: `{}` at character {at} is not part of a pair",
                        char::from(c)
                    ))
                }
            }
            continue;
        }
        let (gap, next) = match c {
            b'*' => (Gap::Any, i + 1),
            b'{' => parse_gap(hex, i)?,
            b'(' => return Err(parenthesis_message(hex, i)),
            b'!' => return Err(format!("negated alternatives `!(...)` at character {at} are not supported")),
            b'[' => return Err(format!("`[n-m]` byte ranges at character {at} are not supported")),
            b'}' => return Err(format!("`}}` at character {at} has no matching `{{`")),
            _ => {
                let ch = hex.get(i..).and_then(|rest| rest.chars().next()).unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(format!("unexpected character `{}` at character {at}", ch.escape_default()));
            }
        };
        if current.is_empty() {
            return Err(if segments.is_empty() {
                "the hex signature starts with a gap; it must start with a byte".to_string()
            } else {
                format!("two gaps in a row at character {at}; a gap must sit between bytes")
            });
        }
        segments.push(finish_segment(std::mem::take(&mut current), segments.len() + 1)?);
        gaps.push(gap);
        i = next;
    }
    if current.is_empty() {
        return Err("the hex signature ends with a gap; it must end with a byte".to_string());
    }
    segments.push(finish_segment(current, segments.len() + 1)?);
    Ok((segments, gaps))
}

/// Checks a completed segment; `number` is its 1-based position, for the message.
fn finish_segment(segment: Segment, number: usize) -> Result<Segment, String> {
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(format!("segment {number} is {} bytes long; the limit is {MAX_SEGMENT_LEN}", segment.len()));
    }
    if !segment.mask.contains(&0xFF) {
        return Err(format!(
            "segment {number} (`{segment}`) has no fully fixed byte; a segment made only of wildcards \
             would match almost anywhere"
        ));
    }
    Ok(segment)
}

/// Parses the `{...}` gap starting at byte `start` (the `{`); returns it and the index just
/// past the closing `}`.
pub(crate) fn parse_gap(hex: &str, start: usize) -> Result<(Gap, usize), String> {
    let at = start + 1;
    let rest = hex.get(start + 1..).unwrap_or("");
    let Some(len) = rest.find('}') else {
        return Err(format!("`{{` at character {at} is never closed"));
    };
    let body = &rest[..len];
    let shown = format!("{{{}}}", body.escape_default());
    let syntax = || format!("gap `{shown}` at character {at} is not one of {{n}}, {{n-m}}, {{-m}} or {{n-}}");
    let number = |digits: &str| -> Result<u32, String> {
        if !is_decimal(digits) {
            return Err(syntax());
        }
        digits.parse::<u32>().map_err(|_| format!("gap `{shown}` at character {at}: {digits} does not fit in 32 bits"))
    };
    let gap = match body.split_once('-') {
        None => {
            let n = number(body)?;
            Gap::Range { min: n, max: n }
        }
        Some(("", "")) => return Err(syntax()),
        Some(("", hi)) => Gap::Range { min: 0, max: number(hi)? },
        Some((lo, "")) => Gap::AtLeast(number(lo)?),
        Some((lo, hi)) => {
            let (min, max) = (number(lo)?, number(hi)?);
            if min > max {
                return Err(format!("gap `{shown}` at character {at} has its minimum above its maximum"));
            }
            Gap::Range { min, max }
        }
    };
    Ok((gap, start + 1 + len + 1))
}

/// The message for a `(` in a hex signature: anchors `(B)`/`(L)` and alternatives
/// `(aa|bb)` are both unsupported, but the operator should be told which one was seen.
fn parenthesis_message(hex: &str, start: usize) -> String {
    let at = start + 1;
    let inner = hex.get(start + 1..).and_then(|rest| rest.split(')').next()).unwrap_or("");
    match inner {
        "B" => format!("the word-boundary anchor `(B)` at character {at} is not supported"),
        "L" => format!("the line anchor `(L)` at character {at} is not supported"),
        _ => format!("alternatives `(...)` at character {at} are not supported"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    const EICAR_LINE: &str = "Eicar-Test-Signature:0:*:58354f2150254041505b345c505a58353428505e29374343\
                              29377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c4521\
                              24482b482a";

    fn exact(bytes: &[u8]) -> Segment {
        Segment { bytes: bytes.to_vec(), mask: vec![0xFF; bytes.len()] }
    }

    fn seg(pairs: &[(u8, u8)]) -> Segment {
        Segment { bytes: pairs.iter().map(|p| p.0).collect(), mask: pairs.iter().map(|p| p.1).collect() }
    }

    fn sig(name: &str, offset: NdbOffset, segments: Vec<Segment>, gaps: Vec<Gap>) -> NdbSignature {
        NdbSignature { name: name.to_string(), offset, segments, gaps }
    }

    fn parse_one(line: &str) -> Result<NdbSignature, String> {
        let (mut sigs, mut problems) = parse_ndb(line, Path::new("t.ndb"));
        match (sigs.pop(), problems.pop()) {
            (Some(s), None) => Ok(s),
            (None, Some(p)) => {
                assert_eq!((p.file.as_path(), p.line), (Path::new("t.ndb"), 1));
                Err(p.message)
            }
            other => panic!("expected exactly one result for {line:?}, got {other:?}"),
        }
    }

    #[test]
    fn eicar() {
        assert_eq!(EICAR.len(), 68);
        let s = parse_one(EICAR_LINE).unwrap();
        assert_eq!(s, sig("Eicar-Test-Signature", NdbOffset::Any, vec![exact(EICAR)], vec![]));
        assert!(s.segments[0].is_exact());
        assert!(s.segments[0].matches(EICAR));
        assert_eq!(s.min_len(), 68);
        assert_eq!(s.describe(), "Eicar-Test-Signature (offset *, 1 segment, 68 fixed bytes)");
        assert_eq!(s.to_string(), EICAR_LINE);
    }

    #[test]
    fn valid_lines() {
        use Gap::*;
        use NdbOffset::Exact;
        const ANYWHERE: NdbOffset = NdbOffset::Any;
        let cases: Vec<(&str, NdbSignature)> = vec![
            ("A:0:*:4142", sig("A", ANYWHERE, vec![exact(b"AB")], vec![])),
            ("A:0:*:4a4B", sig("A", ANYWHERE, vec![exact(b"\x4a\x4b")], vec![])),
            ("A:00:0:4142", sig("A", Exact(0), vec![exact(b"AB")], vec![])),
            ("A:0:1024:4142", sig("A", Exact(1024), vec![exact(b"AB")], vec![])),
            ("A:0:18446744073709551615:41", sig("A", Exact(u64::MAX), vec![exact(b"A")], vec![])),
            ("A:0:*:41??42", sig("A", ANYWHERE, vec![seg(&[(0x41, 0xFF), (0, 0), (0x42, 0xFF)])], vec![])),
            ("A:0:*:414?", sig("A", ANYWHERE, vec![seg(&[(0x41, 0xFF), (0x40, 0xF0)])], vec![])),
            ("A:0:*:41?F", sig("A", ANYWHERE, vec![seg(&[(0x41, 0xFF), (0x0F, 0x0F)])], vec![])),
            ("A:0:*:??41??", sig("A", ANYWHERE, vec![seg(&[(0, 0), (0x41, 0xFF), (0, 0)])], vec![])),
            ("A:0:*:41*42", sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![Any])),
            ("A:0:*:41{4}42", sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![Range { min: 4, max: 4 }])),
            ("A:0:*:41{2-8}42", sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![Range { min: 2, max: 8 }])),
            ("A:0:*:41{3-3}42", sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![Range { min: 3, max: 3 }])),
            ("A:0:*:41{-8}42", sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![Range { min: 0, max: 8 }])),
            ("A:0:*:41{5-}42", sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![AtLeast(5)])),
            ("A:0:*:41{0}42", sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![Range { min: 0, max: 0 }])),
            (
                "A:0:*:41{4294967295}42",
                sig("A", ANYWHERE, vec![exact(b"A"), exact(b"B")], vec![Range { min: u32::MAX, max: u32::MAX }]),
            ),
            (
                "A:0:*:4142*43??44{1-2}45",
                sig(
                    "A",
                    ANYWHERE,
                    vec![exact(b"AB"), seg(&[(0x43, 0xFF), (0, 0), (0x44, 0xFF)]), exact(b"E")],
                    vec![Any, Range { min: 1, max: 2 }],
                ),
            ),
            ("A:0:*:4142:51", sig("A", ANYWHERE, vec![exact(b"AB")], vec![])),
            ("A:0:*:4142:51:255", sig("A", ANYWHERE, vec![exact(b"AB")], vec![])),
            ("  A:0:*:4142\r", sig("A", ANYWHERE, vec![exact(b"AB")], vec![])),
            ("Win.Test.Foo-1:0:*:4142", sig("Win.Test.Foo-1", ANYWHERE, vec![exact(b"AB")], vec![])),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_one(line), Ok(expected), "line {line:?}");
        }
    }

    #[test]
    fn invalid_lines() {
        const FIELDS: &str =
            "expected 4 to 6 fields separated by `:` (Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]), found";
        const NAMES: &str = "names must be printable ASCII without spaces or `;`";
        const OFFSETS: &str = "is not supported; only `*` (anywhere) or a decimal byte offset";
        const GAPS: &str = "is not one of {n}, {n-m}, {-m} or {n-}";
        const WILD: &str = "has no fully fixed byte; a segment made only of wildcards would match almost anywhere";
        let cases: Vec<(String, String)> = vec![
            // Field structure.
            ("A:0:*".into(), format!("{FIELDS} 3")),
            ("A:0:*:41:1:2:3".into(), format!("{FIELDS} 7")),
            // Names.
            (":0:*:4142".into(), "the signature name is empty".into()),
            (format!("{}:0:*:4142", "N".repeat(129)), "the signature name is 129 bytes long; the limit is 128".into()),
            ("A B:0:*:4142".into(), format!("the signature name `A B` contains whitespace; {NAMES}")),
            ("A;B:0:*:4142".into(), format!("the signature name `A;B` contains `;`; {NAMES}")),
            ("A\tB:0:*:4142".into(), format!("the signature name `A\\tB` contains whitespace; {NAMES}")),
            // Target type.
            ("A:1:*:4142".into(), "A: target type 1 is not supported; only 0 (any)".into()),
            ("A:07:*:4142".into(), "A: target type 7 is not supported; only 0 (any)".into()),
            ("A:*:*:4142".into(), "A: target type `*` is not a number; only 0 (any) is supported".into()),
            ("A::*:4142".into(), "A: target type `` is not a number; only 0 (any) is supported".into()),
            // Offsets.
            ("A:0:EOF-10:4142".into(), format!("A: offset `EOF-10` (relative to the end of the object) {OFFSETS}")),
            ("A:0:EP+0:4142".into(), format!("A: offset `EP+0` (relative to an executable's entry point) {OFFSETS}")),
            ("A:0:S2+4:4142".into(), format!("A: offset `S2+4` (relative to an executable section) {OFFSETS}")),
            ("A:0:SL+4:4142".into(), format!("A: offset `SL+4` (relative to an executable section) {OFFSETS}")),
            ("A:0:10,20:4142".into(), format!("A: offset `10,20` (an offset range) {OFFSETS}")),
            ("A:0:+5:4142".into(), format!("A: offset `+5` {OFFSETS}")),
            ("A:0::4142".into(), format!("A: offset `` {OFFSETS}")),
            ("A:0:18446744073709551616:4142".into(), "A: offset 18446744073709551616 does not fit in 64 bits".into()),
            // Hex syntax.
            ("A:0:*:".into(), "A: the hex signature is empty".into()),
            ("A:0:*:414".into(), "A: odd number of hex digits: `4` at character 3 is not part of a pair".into()),
            ("A:0:*:41?".into(), "A: odd number of hex digits: `?` at character 3 is not part of a pair".into()),
            ("A:0:*:4*42".into(), "A: odd number of hex digits: `4` at character 1 is not part of a pair".into()),
            ("A:0:*:41 42".into(), "A: unexpected character ` ` at character 3".into()),
            ("A:0:*:41g2".into(), "A: unexpected character `g` at character 3".into()),
            ("A:0:*:41\u{e9}42".into(), "A: unexpected character `\\u{e9}` at character 3".into()),
            ("A:0:*:41(42|43)".into(), "A: alternatives `(...)` at character 3 are not supported".into()),
            ("A:0:*:(B)4142".into(), "A: the word-boundary anchor `(B)` at character 1 is not supported".into()),
            ("A:0:*:4142(L)".into(), "A: the line anchor `(L)` at character 5 is not supported".into()),
            ("A:0:*:41!(42|43)".into(), "A: negated alternatives `!(...)` at character 3 are not supported".into()),
            ("A:0:*:41[1-2]42".into(), "A: `[n-m]` byte ranges at character 3 are not supported".into()),
            ("A:0:*:41}42".into(), "A: `}` at character 3 has no matching `{`".into()),
            // Gaps.
            ("A:0:*:*4142".into(), "A: the hex signature starts with a gap; it must start with a byte".into()),
            ("A:0:*:{2}4142".into(), "A: the hex signature starts with a gap; it must start with a byte".into()),
            ("A:0:*:4142*".into(), "A: the hex signature ends with a gap; it must end with a byte".into()),
            ("A:0:*:4142{1-}".into(), "A: the hex signature ends with a gap; it must end with a byte".into()),
            ("A:0:*:41**42".into(), "A: two gaps in a row at character 4; a gap must sit between bytes".into()),
            ("A:0:*:41*{2}42".into(), "A: two gaps in a row at character 4; a gap must sit between bytes".into()),
            ("A:0:*:41{2".into(), "A: `{` at character 3 is never closed".into()),
            ("A:0:*:41{}42".into(), format!("A: gap `{{}}` at character 3 {GAPS}")),
            ("A:0:*:41{-}42".into(), format!("A: gap `{{-}}` at character 3 {GAPS}")),
            ("A:0:*:41{x}42".into(), format!("A: gap `{{x}}` at character 3 {GAPS}")),
            ("A:0:*:41{1-2-3}42".into(), format!("A: gap `{{1-2-3}}` at character 3 {GAPS}")),
            ("A:0:*:41{+1}42".into(), format!("A: gap `{{+1}}` at character 3 {GAPS}")),
            ("A:0:*:41{ 1}42".into(), format!("A: gap `{{ 1}}` at character 3 {GAPS}")),
            ("A:0:*:41{1-2)42".into(), "A: `{` at character 3 is never closed".into()),
            ("A:0:*:41{5-3}42".into(), "A: gap `{5-3}` at character 3 has its minimum above its maximum".into()),
            (
                "A:0:*:41{4294967296}42".into(),
                "A: gap `{4294967296}` at character 3: 4294967296 does not fit in 32 bits".into(),
            ),
            (
                "A:0:*:41{1-99999999999}42".into(),
                "A: gap `{1-99999999999}` at character 3: 99999999999 does not fit in 32 bits".into(),
            ),
            // Wildcard-only segments.
            ("A:0:*:????".into(), format!("A: segment 1 (`????`) {WILD}")),
            ("A:0:*:4142*??{3}43".into(), format!("A: segment 2 (`??`) {WILD}")),
            ("A:0:*:4?".into(), format!("A: segment 1 (`4?`) {WILD}")),
            ("A:0:*:4142*?1?2".into(), format!("A: segment 2 (`?1?2`) {WILD}")),
            // Sizes.
            (
                format!("A:0:*:{}", "41".repeat(4097)),
                "A: the hex signature is 8194 characters long; the limit is 8192".into(),
            ),
            // Functionality levels.
            ("A:0:*:4142:x".into(), "A: the minimum functionality level `x` is not a decimal number".into()),
            ("A:0:*:4142:51:".into(), "A: the maximum functionality level `` is not a decimal number".into()),
            ("A:0:*:4142::".into(), "A: the minimum functionality level `` is not a decimal number".into()),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_one(&line), Err(expected), "line {line:?}");
        }
    }

    #[test]
    fn size_limits_are_inclusive() {
        let line = format!("A:0:*:{}", "41".repeat(MAX_HEX_LEN / 2));
        let s = parse_one(&line).unwrap();
        assert_eq!(s.segments[0].len(), MAX_SEGMENT_LEN);
        let name = "N".repeat(128);
        assert_eq!(parse_one(&format!("{name}:0:*:41")).map(|s| s.name), Ok(name));
    }

    #[test]
    fn oversized_segment_is_rejected() {
        let segment = exact(&vec![0x41; MAX_SEGMENT_LEN + 1]);
        assert_eq!(finish_segment(segment, 3), Err("segment 3 is 4097 bytes long; the limit is 4096".to_string()));
    }

    #[test]
    fn whole_file_reports_line_numbers_and_keeps_going() {
        let text =
            format!("# local signatures\n\n{EICAR_LINE}\nBad:1:*:4142\r\nGood:0:10:41{{2-3}}42\nBroken\n# done\n");
        let (sigs, problems) = parse_ndb(&text, Path::new("/etc/icapd/local.ndb"));
        let names: Vec<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Eicar-Test-Signature", "Good"]);
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "/etc/icapd/local.ndb:4: Bad: target type 1 is not supported; only 0 (any)",
                "/etc/icapd/local.ndb:6: expected 4 to 6 fields separated by `:` \
                 (Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]), found 1",
            ]
        );
    }

    #[test]
    fn canonical_form_round_trips() {
        for line in ["A:0:*:4142", "A:0:7:41??4?*?f43{3}43{-4}44{1-9}45{6-}46", "A:0:0:41{0}42", "Upper:0:*:4A4B?C"] {
            let s = parse_one(line).unwrap();
            let again = parse_one(&s.to_string()).unwrap();
            assert_eq!(again, s, "{line}");
        }
        assert_eq!(parse_one("A:0:*:4A4B?C{0-4}4d").unwrap().to_string(), "A:0:*:4a4b?c{-4}4d");
    }

    #[test]
    fn segment_matching_honours_masks() {
        let s = parse_one("A:0:*:41??4??2").unwrap();
        let segment = &s.segments[0];
        assert!(!segment.is_exact());
        assert!(segment.matches(b"\x41\x00\x40\x02"));
        assert!(segment.matches(b"\x41\xff\x4f\xf2"));
        assert!(!segment.matches(b"\x42\x00\x40\x02"));
        assert!(!segment.matches(b"\x41\x00\x50\x02"));
        assert!(!segment.matches(b"\x41\x00\x40\x03"));
        assert!(!segment.matches(b"\x41\x00\x40"));
        assert!(!segment.matches(b"\x41\x00\x40\x02\x00"));
    }

    #[test]
    fn longest_exact_run() {
        let run = |hex: &str| parse_one(&format!("A:0:*:{hex}")).unwrap().segments[0].longest_exact_run();
        assert_eq!(run("4142"), 0..2);
        assert_eq!(run("41??424344"), 2..5);
        assert_eq!(run("414243??4445"), 0..3);
        assert_eq!(run("41??42"), 0..1);
        assert_eq!(run("??4?43"), 2..3);
        assert_eq!(Segment::default().longest_exact_run(), 0..0);
    }

    #[test]
    fn gap_bounds() {
        assert_eq!((Gap::Any.min(), Gap::Any.max()), (0, None));
        assert_eq!((Gap::AtLeast(3).min(), Gap::AtLeast(3).max()), (3, None));
        let r = Gap::Range { min: 2, max: 5 };
        assert_eq!((r.min(), r.max()), (2, Some(5)));
        let s = parse_one("A:0:*:41{2-5}42*43{7-}44").unwrap();
        assert_eq!(s.min_len(), 4 + 2 + 7);
        assert_eq!(s.describe(), "A (offset *, 4 segments, 4 fixed bytes)");
    }

    #[test]
    fn random_lines_are_parsed_or_reported_and_round_trip() {
        // A small deterministic generator (xorshift) keeps the test reproducible without a
        // dependency. Lines are built from the characters the syntax gives meaning to, so most
        // of them land near the edges between valid and invalid.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "0123456789abcdefABCDEF????****{{}}--()|![]BL: \u{e9}".chars().collect();
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let hex: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let offset = ["*", "0", "17", "EOF-1"][(next() % 4) as usize];
            let line = format!("R:0:{offset}:{hex}");
            let (sigs, problems) = parse_ndb(&line, Path::new("r"));
            assert_eq!(sigs.len() + problems.len(), 1, "{line:?}");
            if let Some(sig) = sigs.first() {
                parsed += 1;
                assert_eq!(sig.gaps.len() + 1, sig.segments.len(), "{line:?}");
                assert!(sig.segments.iter().all(|s| s.mask.contains(&0xFF) && s.bytes.len() == s.mask.len()));
                assert_eq!(parse_ndb_line(&sig.to_string()).as_ref(), Ok(sig), "{line:?}");
            }
        }
        assert!(parsed > 100, "the generator should produce some valid lines, got {parsed}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        // Every prefix of a line mixing all syntax must parse or be reported, never panic.
        let line = "Name:0:12:41??4?*?f43{3}43{-4}44{1-9}45{6-}46(B)!(aa|bb)[1-2]\u{e9}{99999999999}:1:2";
        for end in (0..=line.len()).filter(|&e| line.is_char_boundary(e)) {
            let _ = parse_ndb(&line[..end], Path::new("x"));
        }
        for bytes in [&b"{"[..], b"}", b"(", b")", b"?", b"*", b"-", b"{-", b"{1-", b"41{"] {
            let text = format!("A:0:*:{}", String::from_utf8_lossy(bytes));
            let (sigs, problems) = parse_ndb(&text, Path::new("x"));
            assert_eq!((sigs.len(), problems.len()), (0, 1), "{text}");
        }
    }
}
