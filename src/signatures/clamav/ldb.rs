//! ClamAV logical signatures (`.ldb`), and `.ndb` lines that need the same machinery.
//!
//! A line reads `Name;TargetDescriptionBlock;LogicalExpression;Subsig0;Subsig1;...`:
//!
//! * the target description block is `Key:Value` pairs separated by commas. `Engine` (the
//!   functionality-level range) is checked for shape and otherwise ignored, as `.ndb`
//!   functionality levels are; `Target`, `FileSize`, `EntryPoint` and `NumberOfSections` are
//!   evaluated on each object. `Container`, `Intermediates`, `IconGroup1/2` and `HandlerType`
//!   need facts icapd does not have (the enclosing archive's type, icons, ClamAV's handler
//!   chain): such a signature is skipped with that reason.
//! * the logical expression is [`Expr`].
//! * a subsignature is `[Offset:]HexSignature[::Modifiers]` with the modifiers `i`
//!   (ASCII case-insensitive), `w` (wide: UTF-16LE), `a` (ASCII and wide) and `f` (full word:
//!   not preceded or followed by a letter, digit or `_`); or a PCRE subsignature
//!   `[Offset:]Trigger/Regex/[Flags]` run through the `regex` crate's bytes API. Byte-compare
//!   subsignatures, macros (`${n-m}i$`) and fuzzy image hashes are skipped with their reason.
//!
//! An `.ndb` line with a target type other than 0, an offset other than `*`/`n`, or
//! alternatives and anchored ranges in its pattern becomes a logical signature with one
//! subsignature, so every format gets the same targets and offsets.

use super::expr::{Expr, SUBSIGS_MAX};
use super::hex::{parse_hex, Edge, HexPattern};
use super::offset::{parse_offset, SigOffset};
use crate::scan::filetype::Target;
use crate::signatures::problem::{check_flevels, check_name, content_lines, is_decimal, Problem};
use std::path::Path;

/// An inclusive range of a target description value.
pub type Range = (u64, u64);

/// What the target description block asks of an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tdb {
    pub target: Option<Target>,
    pub file_size: Option<Range>,
    pub entry_point: Option<Range>,
    pub sections: Option<Range>,
}

/// One subsignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subsig {
    Body { offset: SigOffset, pattern: HexPattern, nocase: bool, ascii: bool, wide: bool, fullword: bool },
    Pcre(Pcre),
}

/// A PCRE subsignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcre {
    pub offset: SigOffset,
    pub trigger: Expr,
    /// The pattern as written (compiled by the scanner, which checks it at load).
    pub regex: String,
    pub caseless: bool,
    pub dotall: bool,
    pub multiline: bool,
    pub extended: bool,
    pub ungreedy: bool,
    /// `A`: the match must start exactly at the offset.
    pub anchored: bool,
    /// `g`: every match counts, not just the first.
    pub global: bool,
    /// `e`: the whole match must lie inside the offset's window.
    pub encompass: bool,
}

/// One parsed logical signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdbSignature {
    pub name: String,
    pub tdb: Tdb,
    pub expr: Expr,
    pub subsigs: Vec<Subsig>,
}

/// Parses the text of an `.ldb` file.
pub fn parse_ldb(text: &str, file: &Path) -> (Vec<LdbSignature>, Vec<Problem>) {
    let mut sigs = Vec::new();
    let mut problems = Vec::new();
    for (line_no, line) in content_lines(text) {
        match parse_ldb_line(line) {
            Ok(s) => sigs.push(s),
            Err(m) => problems.push(Problem::new(file, line_no, m)),
        }
    }
    (sigs, problems)
}

/// Parses one `.ldb` line.
pub fn parse_ldb_line(line: &str) -> Result<LdbSignature, String> {
    let fields: Vec<&str> = line.split(';').collect();
    if fields.len() < 4 {
        return Err(format!(
            "expected at least 4 fields separated by `;` (Name;TargetDescriptionBlock;LogicalExpression;Subsig0...), \
             found {}",
            fields.len()
        ));
    }
    let name = fields[0];
    check_name(name)?;
    let with_name = |m: String| format!("{name}: {m}");
    let subs_text = &fields[3..];
    if subs_text.len() > SUBSIGS_MAX {
        return Err(with_name(format!("{} subsignatures; the limit is {SUBSIGS_MAX}", subs_text.len())));
    }
    let tdb = parse_tdb(fields[1]).map_err(with_name)?;
    let expr = Expr::parse(fields[2], subs_text.len()).map_err(with_name)?;
    let mut subsigs = Vec::with_capacity(subs_text.len());
    for (i, text) in subs_text.iter().enumerate() {
        subsigs.push(parse_subsig(text, subs_text.len()).map_err(|m| with_name(format!("subsignature {i}: {m}")))?);
    }
    if expr.eval(&vec![0; subsigs.len()]) {
        return Err(with_name(
            "the logical expression holds with no subsignature matched, so it would match every object".into(),
        ));
    }
    check_normalised(LdbSignature { name: name.to_string(), tdb, expr, subsigs }).map_err(with_name)
}

/// Signatures for HTML and ASCII text are matched on the normalised text, whose positions are
/// not the object's: offsets other than `*`/`n`, full-word checks and PCREs (which run on the
/// raw copy) would mean something else there, so such signatures are refused.
fn check_normalised(sig: LdbSignature) -> Result<LdbSignature, String> {
    if !matches!(sig.tdb.target, Some(Target::Html | Target::Ascii)) {
        return Ok(sig);
    }
    for (i, sub) in sig.subsigs.iter().enumerate() {
        let bad = match sub {
            Subsig::Pcre(_) => Some("a PCRE subsignature"),
            Subsig::Body { offset, .. } if !offset.streamable() => Some("an offset other than `*` or `n`"),
            Subsig::Body { fullword: true, .. } => Some("the full-word modifier"),
            Subsig::Body { pattern, .. } if pattern.left != Edge::None || pattern.right != Edge::None => {
                Some("an anchor `(B)`/`(L)`")
            }
            Subsig::Body { pattern, .. } if pattern.parts.iter().flatten().any(|v| !v.nots.is_empty()) => {
                Some("a negated alternative `!(...)`")
            }
            Subsig::Body { .. } => None,
        };
        if let Some(what) = bad {
            return Err(format!(
                "subsignature {i}: {what} on a normalised (HTML or ASCII text) target is not supported"
            ));
        }
    }
    Ok(sig)
}

fn range(value: &str, key: &str) -> Result<Range, String> {
    let num = |s: &str| {
        if is_decimal(s) {
            s.parse::<u64>().ok()
        } else {
            None
        }
    };
    let r = match value.split_once('-') {
        Some((a, b)) => num(a).zip(num(b)),
        None => num(value).map(|n| (n, n)),
    };
    match r {
        Some((a, b)) if a <= b => Ok((a, b)),
        _ => Err(format!("`{key}:{}` is not a number or a range `min-max`", value.escape_default())),
    }
}

fn parse_tdb(text: &str) -> Result<Tdb, String> {
    let mut tdb = Tdb::default();
    for pair in text.split(',') {
        let (key, value) = pair
            .split_once(':')
            .ok_or_else(|| format!("the target description `{}` is not `Key:Value`", pair.escape_default()))?;
        match key {
            "Engine" => {
                range(value, key)?;
            }
            "Target" => {
                let n =
                    value.parse::<u64>().map_err(|_| format!("`Target:{}` is not a number", value.escape_default()))?;
                tdb.target = Some(Target::from_number(n)?);
            }
            "FileSize" => tdb.file_size = Some(range(value, key)?),
            "EntryPoint" => tdb.entry_point = Some(range(value, key)?),
            "NumberOfSections" => tdb.sections = Some(range(value, key)?),
            "Container" | "Intermediates" => {
                return Err(format!(
                    "`{key}:` needs the types of the enclosing archives, which icapd's scanners do not see"
                ))
            }
            "IconGroup1" | "IconGroup2" => {
                return Err(format!("`{key}:` needs PE icon matching, which icapd does not do"))
            }
            "HandlerType" => {
                return Err("`HandlerType:` re-scans through ClamAV's type handlers, which icapd does not have".into())
            }
            other => return Err(format!("the target description key `{}` is not known", other.escape_default())),
        }
    }
    Ok(tdb)
}

fn parse_subsig(text: &str, subsigs: usize) -> Result<Subsig, String> {
    if text.contains("${") || text.starts_with('$') {
        return Err("macro subsignatures (`${n-m}id$`) are not supported".into());
    }
    if text.starts_with("fuzzy_img#") {
        return Err("fuzzy image hashes are not supported".into());
    }
    if let Some(slash) = text.find('/') {
        return parse_pcre(text, slash, subsigs);
    }
    if text.contains('#') {
        return Err("byte-compare subsignatures are not supported".into());
    }
    let (body, mods) = match text.split_once("::") {
        Some((b, m)) => (b, m),
        None => (text, ""),
    };
    let (offset, hex) = match body.split_once(':') {
        Some((o, h)) => (parse_offset(o)?, h),
        None => (SigOffset::Any, body),
    };
    let pattern = parse_hex(hex)?;
    let (mut nocase, mut ascii, mut wide, mut fullword) = (false, false, false, false);
    for m in mods.chars() {
        match m {
            'i' => nocase = true,
            'a' => ascii = true,
            'w' => wide = true,
            'f' => fullword = true,
            other => {
                return Err(format!("the subsignature modifier `{}` is not known (i, w, a, f)", other.escape_default()))
            }
        }
    }
    if !wide {
        ascii = true;
    }
    Ok(Subsig::Body { offset, pattern, nocase, ascii, wide, fullword })
}

fn parse_pcre(text: &str, slash: usize, subsigs: usize) -> Result<Subsig, String> {
    let head = &text[..slash];
    let rest = &text[slash + 1..];
    let last = rest.rfind('/').ok_or("a PCRE subsignature needs `Trigger/Regex/Flags`")?;
    let (regex, flags) = (&rest[..last], &rest[last + 1..]);
    let (offset, trigger) = match head.rsplit_once(':') {
        Some((o, t)) => (parse_offset(o)?, t),
        None => (SigOffset::Any, head),
    };
    if trigger.is_empty() {
        return Err("a PCRE subsignature needs a trigger expression before the first `/`".into());
    }
    let trigger = Expr::parse(trigger, subsigs).map_err(|e| format!("the PCRE trigger: {e}"))?;
    let mut p = Pcre {
        offset,
        trigger,
        regex: regex.to_string(),
        caseless: false,
        dotall: false,
        multiline: false,
        extended: false,
        ungreedy: false,
        anchored: false,
        global: false,
        encompass: false,
    };
    for f in flags.chars() {
        match f {
            'i' => p.caseless = true,
            's' => p.dotall = true,
            'm' => p.multiline = true,
            'x' => p.extended = true,
            'U' => p.ungreedy = true,
            'A' => p.anchored = true,
            'g' => p.global = true,
            'e' => p.encompass = true,
            // `r` (rolling) only changes where ClamAV restarts the search; every match is
            // found either way here. `E` (dollar end-only) is the regex crate's behaviour.
            'r' | 'E' => {}
            other => return Err(format!("the PCRE flag `{}` is not supported", other.escape_default())),
        }
    }
    Ok(Subsig::Pcre(p))
}

/// An `.ndb` line outside the streaming subset, as a one-subsignature logical signature.
pub fn ndb_as_ldb(line: &str) -> Result<LdbSignature, String> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(4..=6).contains(&fields.len()) {
        return Err(format!(
            "expected 4 to 6 fields separated by `:` (Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]), found {}",
            fields.len()
        ));
    }
    let name = fields[0];
    check_name(name)?;
    let with_name = |m: String| format!("{name}: {m}");
    let target = if fields[1] == "*" {
        None
    } else {
        let n = fields[1]
            .parse::<u64>()
            .map_err(|_| with_name(format!("target type `{}` is not a number", fields[1].escape_default())))?;
        Some(Target::from_number(n).map_err(with_name)?)
    };
    let offset = parse_offset(fields[2]).map_err(with_name)?;
    let pattern = parse_hex(fields[3]).map_err(with_name)?;
    check_flevels(&fields[4..]).map_err(with_name)?;
    check_normalised(LdbSignature {
        name: name.to_string(),
        tdb: Tdb { target: target.filter(|t| *t != Target::Any), ..Tdb::default() },
        expr: Expr::Sub(0),
        subsigs: vec![Subsig::Body { offset, pattern, nocase: false, ascii: true, wide: false, fullword: false }],
    })
    .map_err(with_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signatures::clamav::offset::Anchor;

    #[test]
    fn full_lines() {
        let s = parse_ldb_line(
            "Test.Sig-1;Engine:51-255,Target:1,FileSize:100-2000,NumberOfSections:3;(0&1)|2>1,1;EP+0:4142;\
             4344::iwf;0/ab+c/i",
        )
        .unwrap();
        assert_eq!(s.name, "Test.Sig-1");
        assert_eq!(s.tdb.target, Some(Target::Pe));
        assert_eq!(s.tdb.file_size, Some((100, 2000)));
        assert_eq!(s.tdb.sections, Some((3, 3)));
        assert!(matches!(s.subsigs[0], Subsig::Body { offset: SigOffset::At { anchor: Anchor::Ep(0), .. }, .. }));
        assert!(matches!(s.subsigs[1], Subsig::Body { nocase: true, wide: true, fullword: true, ascii: false, .. }));
        assert!(matches!(&s.subsigs[2], Subsig::Pcre(p) if p.caseless && p.regex == "ab+c"));
    }

    #[test]
    fn reasons() {
        let err = |l: &str| parse_ldb_line(l).unwrap_err();
        assert!(err("A;Target:1;0").contains("at least 4 fields"));
        assert!(err("A;Container:CL_TYPE_ZIP;0;4142").contains("enclosing archives"));
        assert!(err("A;Target:3;0;EOF-1:4142").contains("normalised"));
        assert!(parse_ldb_line("A;Target:3;0;4142").is_ok());
        assert!(err("A;Target:1;0&1;4142").contains("names subsignature 1"));
        assert!(err("A;Target:1;0;0(>>4#hb2#=0x12)").contains("byte-compare"));
        assert!(err("A;Target:1;0;4142::z").contains("modifier"));
        assert!(err("A;Target:1;0=0;4142").contains("every object"));
        assert!(err("A;Target:1;0;0/x/Q").contains("PCRE flag"));
        assert!(err("A;Nope:1;0;4142").contains("not known"));
    }

    #[test]
    fn random_lines_are_parsed_or_reported_never_panic() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "0",
            "1",
            "2",
            "&",
            "|",
            "(",
            ")",
            "=",
            ">",
            "<",
            ",",
            ";",
            ":",
            "::",
            "i",
            "w",
            "f",
            "a",
            "41",
            "42",
            "??",
            "4?",
            "*",
            "{2-4}",
            "[1-2]",
            "(41|42)",
            "!(",
            "/",
            "EP+",
            "EOF-",
            "S0+",
            "SE",
            "Target",
            "Engine:51-255",
            "Target:1",
            "é",
            "#",
            "$",
            "\\",
            "[",
            "]",
            "{",
            "}",
        ];
        let mut parsed = 0;
        for _ in 0..20_000 {
            fn piece(next: &mut impl FnMut() -> u64, pieces: &[&str], k: u64) -> String {
                let n = (next() % k) as usize + 1;
                (0..n).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect()
            }
            let exprs = ["0", "0&1", "(0|1)>1,1", "1"];
            let expr =
                if next() % 2 == 0 { exprs[(next() % 4) as usize].to_string() } else { piece(&mut next, &pieces, 3) };
            let sub0 = if next() % 2 == 0 {
                format!("4142{}", piece(&mut next, &pieces, 2))
            } else {
                piece(&mut next, &pieces, 4)
            };
            let tail = format!("{expr};{sub0};43444546{}", piece(&mut next, &pieces, 2));
            let line = format!("R;Target:{};{}", next() % 14, tail);
            if parse_ldb_line(&line).is_ok() {
                parsed += 1;
            }
            let _ = ndb_as_ldb(&format!("R:{}:{}", next() % 14, tail.replace(';', ":")));
        }
        assert!(parsed > 0, "the generator should make some valid lines");
    }

    #[test]
    fn ndb_lines_with_targets_and_offsets() {
        let s = ndb_as_ldb("X:1:EOF-10:41(42|43)44").unwrap();
        assert_eq!(s.tdb.target, Some(Target::Pe));
        assert_eq!(ndb_as_ldb("X:7:*:4142").unwrap().tdb.target, Some(Target::Ascii));
        assert!(ndb_as_ldb("X:7:EOF-2:4142").unwrap_err().contains("normalised"));
        assert!(ndb_as_ldb("X:0:VI:4142").unwrap_err().contains("version information"));
    }
}
