//! What a signature loader says about a line it could not use, and the rules every loader
//! shares.
//!
//! Signature files are written by hand and copied between products, so a loader meets lines
//! it cannot use: typos, syntax from a newer ClamAV release, features icapd does not
//! implement. Each loader treats such a line the same way: it reports a [`Problem`] naming the
//! file, the line and the reason, skips the line, and goes on with the rest of the file. A
//! line is never loaded "approximately": a signature that matched something other than what
//! its author wrote would be worse than one that is missing, because nobody would look for
//! the mistake. Whether a file with problems is still used is the caller's policy, not the
//! parser's; the parsers only make sure every skipped line is visible.
//!
//! The helpers below hold the rules that are the same in every format: which lines are
//! content at all, what a field holding a number looks like, and what a threat name may
//! contain. Keeping them in one place means a `.ndb` and a `.hdb` line with the same name are
//! accepted or rejected together.

use std::fmt;
use std::path::{Path, PathBuf};

/// A signature-file line that was reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the line came from, as the caller named it.
    pub file: PathBuf,
    /// The 1-based line number within `file`.
    pub line: usize,
    /// Why the line was skipped, in words meant for the operator who wrote it.
    pub message: String,
}

impl Problem {
    /// Builds a problem for line `line` (1-based) of `file`.
    pub fn new(file: &Path, line: usize, message: impl Into<String>) -> Problem {
        Problem { file: file.to_path_buf(), line, message: message.into() }
    }
}

impl Problem {
    /// The reason without what is particular to this line: the leading signature name, the
    /// text quoted in backticks and the numbers are replaced, so that 20,000 lines skipped
    /// for the same reason share one key (see [`summarise`]).
    pub fn reason(&self) -> String {
        let mut text = self.message.as_str();
        // Messages start with `Name: ` once the name is known; a name never holds a space.
        if let Some((head, rest)) = text.split_once(": ") {
            if !head.contains(' ') && !head.contains('`') {
                text = rest;
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut quoted = false;
        let mut last_digit = false;
        for c in text.chars() {
            if c == '`' {
                quoted = !quoted;
                if quoted {
                    out.push_str("`…`");
                }
                last_digit = false;
                continue;
            }
            if quoted {
                continue;
            }
            if c.is_ascii_digit() {
                if !last_digit {
                    out.push('N');
                }
                last_digit = true;
                continue;
            }
            last_digit = false;
            out.push(c);
        }
        out
    }
}

/// One line per (file, reason) with the number of lines skipped for it and the first one, in
/// the order the reasons were first met: what a load prints instead of one line per line.
pub fn summarise(problems: &[Problem]) -> Vec<String> {
    let mut groups: Vec<(&Path, String, usize, &Problem)> = Vec::new();
    let mut index: std::collections::HashMap<(&Path, String), usize> = std::collections::HashMap::new();
    for p in problems {
        let key = (p.file.as_path(), p.reason());
        match index.get(&key) {
            Some(&i) => groups[i].2 += 1,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key.0, key.1, 1, p));
            }
        }
    }
    groups
        .into_iter()
        .map(|(file, reason, count, first)| {
            let lines = if count == 1 { "line" } else { "lines" };
            format!(
                "{}: {count} {lines} skipped: {reason} (first: line {}: {})",
                file.display(),
                first.line,
                first.message
            )
        })
        .collect()
}

impl fmt::Display for Problem {
    /// `path:line: message`, the shape compilers use, so editors and `grep` output line up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for Problem {}

/// The longest threat name accepted, in bytes.
///
/// Names end up in ICAP and HTTP response headers (`X-Infection-Found`, `X-Virus-ID`) and in
/// logs, so they are bounded; real ClamAV names are far shorter than this.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a threat name against the rules shared by every signature format.
///
/// A name must be 1 to [`MAX_NAME_LEN`] bytes of printable ASCII other than space and `;`.
/// The restriction exists because the name is copied verbatim into response headers: a
/// control character or line break could split a header, `;` separates parameters in
/// `X-Infection-Found`, and non-ASCII bytes are not portable in header values. Rejecting the
/// line is safer than escaping the name, since an escaped name would no longer be the name
/// the operator searches for in the signature file.
///
/// Returns the reason as a message fit for a [`Problem`].
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the signature name is empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the signature name is {} bytes long; the limit is {MAX_NAME_LEN}", name.len()));
    }
    if let Some(c) = name.chars().find(|&c| !c.is_ascii_graphic() || c == ';') {
        let what = match c {
            ';' => "`;`".to_string(),
            ' ' | '\t' => "whitespace".to_string(),
            c => format!("the character {}", c.escape_default()),
        };
        return Err(format!(
            "the signature name `{}` contains {what}; names must be printable ASCII without spaces or `;`",
            name.escape_default()
        ));
    }
    Ok(())
}

/// Whether `field` is a plain unsigned decimal number: one or more ASCII digits and nothing
/// else. Unlike `str::parse`, this refuses a leading `+`, which no signature format allows.
pub fn is_decimal(field: &str) -> bool {
    !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the optional functionality-level fields (`MinFL`, `MaxFL`) that ClamAV allows at the
/// end of most signature lines.
///
/// ClamAV uses them to hide a signature from engines that are too old or too new for it.
/// icapd has no functionality level of its own, so it loads the signature either way; the
/// fields must still be decimal numbers, because anything else means the line is not what
/// the loader thinks it is (a field too many, a misplaced `:`).
pub fn check_flevels(fields: &[&str]) -> Result<(), String> {
    for (field, what) in fields.iter().zip(["minimum", "maximum"]) {
        if !is_decimal(field) {
            return Err(format!("the {what} functionality level `{}` is not a decimal number", field.escape_default()));
        }
    }
    Ok(())
}

/// The content lines of a signature file: `(1-based line number, line)` for every line that
/// is neither blank nor a `#` comment.
///
/// Surrounding whitespace (including the `\r` of CRLF files) is removed, and so is a UTF-8
/// byte-order mark at the start of the file, which some editors add and which would
/// otherwise become part of the first signature's name.
pub fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_path_line_message() {
        let p = Problem::new(Path::new("sigs/local.ndb"), 7, "something is wrong");
        assert_eq!(p.to_string(), "sigs/local.ndb:7: something is wrong");
    }

    #[test]
    fn reasons_group_lines_that_differ_only_in_names_numbers_and_quotes() {
        let file = Path::new("big.ndb");
        let mut problems = Vec::new();
        for i in 0..20_000 {
            problems.push(Problem::new(file, i + 1, format!("Sig-{i}: target type {} is not supported", i % 7 + 1)));
        }
        problems.push(Problem::new(file, 20_001, "Other: offset `EOF-1` is not supported"));
        problems.push(Problem::new(file, 20_002, "Other2: offset `EP+4` is not supported"));
        problems.push(Problem::new(Path::new("b.hdb"), 3, "expected 3 to 5 fields separated by `:`, found 1"));
        let lines = summarise(&problems);
        assert_eq!(
            lines,
            [
                "big.ndb: 20000 lines skipped: target type N is not supported (first: line 1: Sig-0: target type 1 is \
                 not supported)",
                "big.ndb: 2 lines skipped: offset `…` is not supported (first: line 20001: Other: offset `EOF-1` is \
                 not supported)",
                "b.hdb: 1 line skipped: expected N to N fields separated by `…`, found N (first: line 3: expected 3 \
                 to 5 fields separated by `:`, found 1)",
            ]
        );
    }

    #[test]
    fn names() {
        assert_eq!(check_name("Eicar-Test-Signature"), Ok(()));
        assert_eq!(check_name("Win.Trojan.Agent-123456-0"), Ok(()));
        assert_eq!(check_name(&"a".repeat(MAX_NAME_LEN)), Ok(()));
        let cases: &[(&str, &str)] = &[
            ("", "the signature name is empty"),
            (
                "a b",
                "the signature name `a b` contains whitespace; names must be printable ASCII without spaces or `;`",
            ),
            ("a;b", "the signature name `a;b` contains `;`; names must be printable ASCII without spaces or `;`"),
            (
                "a\u{7f}b",
                "the signature name `a\\u{7f}b` contains the character \\u{7f}; names must be printable ASCII \
                 without spaces or `;`",
            ),
            (
                "caf\u{e9}",
                "the signature name `caf\\u{e9}` contains the character \\u{e9}; names must be printable ASCII \
                 without spaces or `;`",
            ),
        ];
        for (name, message) in cases {
            assert_eq!(check_name(name).err().as_deref(), Some(*message), "name {name:?}");
        }
        assert_eq!(
            check_name(&"a".repeat(MAX_NAME_LEN + 1)).err().as_deref(),
            Some("the signature name is 129 bytes long; the limit is 128")
        );
    }

    #[test]
    fn decimals() {
        assert!(is_decimal("0"));
        assert!(is_decimal("0123"));
        for bad in ["", "+1", "-1", "1 ", "0x10", "1e3", "١"] {
            assert!(!is_decimal(bad), "{bad:?}");
        }
    }

    #[test]
    fn flevels() {
        assert_eq!(check_flevels(&[]), Ok(()));
        assert_eq!(check_flevels(&["51"]), Ok(()));
        assert_eq!(check_flevels(&["51", "255"]), Ok(()));
        assert_eq!(
            check_flevels(&["51", ""]).err().as_deref(),
            Some("the maximum functionality level `` is not a decimal number")
        );
        assert_eq!(
            check_flevels(&["x"]).err().as_deref(),
            Some("the minimum functionality level `x` is not a decimal number")
        );
    }

    #[test]
    fn content_lines_skip_blanks_comments_and_bom() {
        let text = "\u{feff}first\r\n\r\n# comment\n   \n  second  \n\t# indented comment\nthird";
        let lines: Vec<_> = content_lines(text).collect();
        assert_eq!(lines, vec![(1, "first"), (5, "second"), (7, "third")]);
    }
}
