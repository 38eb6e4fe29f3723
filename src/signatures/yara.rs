//! Compiling `*.yar` files with yara-x, split into the rules that can run on a stream and the
//! rules that need the whole object.
//!
//! yara-x's block scanner evaluates rules over an object fed in blocks, but in that mode modules
//! (pe, elf, hash, math, ...), `filesize` and the `uintXX()/intXX()` functions are undefined.
//! A rule file that imports a module or mentions one of those keywords therefore goes into the
//! *whole-object* set, which runs at the end of the body on a copy of the object when it is no
//! larger than `yara_whole_bytes_max`; every other file goes into the *streaming* set, which is
//! block-scanned as the chunks arrive. The split is per file (rules in one file may reference
//! each other) and is decided from the source text, so it errs on the side of the whole-object
//! set.
//!
//! The rule files of public sets reference the external variables `filename`, `filepath`,
//! `extension`, `filetype` and `owner`; they are defined as empty strings so those sets compile.

use super::problem::Problem;
use std::path::PathBuf;

/// External variables defined for every rule set, as empty strings.
pub const GLOBALS: [&str; 5] = ["filename", "filepath", "extension", "filetype", "owner"];

/// Keywords whose presence puts a rule file in the whole-object set.
const WHOLE_OBJECT_WORDS: [&str; 9] =
    ["filesize", "entrypoint", "uint8", "uint16", "uint32", "int8", "int16", "int32", "import"];

/// Compiled YARA rules of one generation.
pub struct YaraSet {
    /// Rules block-scanned while the body streams in.
    pub stream: Option<yara_x::Rules>,
    /// Rules that need the whole object.
    pub whole: Option<yara_x::Rules>,
    pub stream_rules: usize,
    pub whole_rules: usize,
}

impl YaraSet {
    pub fn empty() -> Self {
        YaraSet { stream: None, whole: None, stream_rules: 0, whole_rules: 0 }
    }
}

/// True when the source needs the whole object (see the module docs).
pub fn needs_whole_object(source: &str) -> bool {
    let bytes = source.as_bytes();
    WHOLE_OBJECT_WORDS.iter().any(|word| {
        let w = word.as_bytes();
        bytes.windows(w.len()).enumerate().any(|(i, win)| {
            if win != w || (i > 0 && is_ident(bytes[i - 1])) {
                return false;
            }
            let rest = &bytes[i + w.len()..];
            // uint16be(), int32be(), ... are the big-endian forms of the same functions.
            let rest = if w.starts_with(b"uint") || w.starts_with(b"int") {
                rest.strip_prefix(b"be").unwrap_or(rest)
            } else {
                rest
            };
            rest.first().is_none_or(|&b| !is_ident(b))
        })
    })
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Compiles the given files. Any compile error fails the whole set (the caller keeps the old
/// generation); the error names the file.
pub fn compile(files: &[(PathBuf, String)], problems: &mut Vec<Problem>) -> Result<YaraSet, String> {
    let (whole, stream): (Vec<_>, Vec<_>) = files.iter().partition(|(_, src)| needs_whole_object(src));
    let build = |set: &[&(PathBuf, String)]| -> Result<Option<(yara_x::Rules, usize)>, String> {
        if set.is_empty() {
            return Ok(None);
        }
        let mut compiler = yara_x::Compiler::new();
        for g in GLOBALS {
            compiler.define_global(g, "").map_err(|e| format!("defining YARA global {g}: {e}"))?;
        }
        for (path, source) in set {
            let src = yara_x::SourceCode::from(source.as_str()).with_origin(path.display().to_string());
            compiler.add_source(src).map_err(|e| format!("{}: {}", path.display(), first_line(&e.to_string())))?;
        }
        let rules = compiler.build();
        let count = rules.iter().len();
        Ok(Some((rules, count)))
    };
    let stream = build(&stream)?;
    let whole = build(&whole)?;
    if let Some((rules, _)) = &stream {
        for w in rules.warnings() {
            problems.push(Problem { file: PathBuf::from("(yara)"), line: 0, message: first_line(&w.to_string()) });
        }
    }
    Ok(YaraSet {
        stream_rules: stream.as_ref().map_or(0, |s| s.1),
        whole_rules: whole.as_ref().map_or(0, |s| s.1),
        stream: stream.map(|s| s.0),
        whole: whole.map(|s| s.0),
    })
}

fn first_line(s: &str) -> String {
    s.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" ").chars().take(400).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_object_detection() {
        assert!(needs_whole_object("import \"pe\"\nrule a { condition: pe.is_dll() }"));
        assert!(needs_whole_object("rule a { condition: filesize < 10 }"));
        assert!(needs_whole_object("rule a { condition: uint16(0) == 0x5a4d }"));
        assert!(needs_whole_object("rule a { condition: uint32be(0) == 1 }"));
        assert!(!needs_whole_object("rule a { strings: $s = \"filesize_x\" condition: $s }"));
        assert!(!needs_whole_object("rule important_uint8s { strings: $a = \"x\" condition: $a }"));
    }

    #[test]
    fn compile_splits_and_reports_errors() {
        let files = vec![
            (PathBuf::from("a.yar"), "rule A { strings: $a = \"abc\" condition: $a }".to_string()),
            (PathBuf::from("b.yar"), "rule B { condition: filesize == 3 }".to_string()),
        ];
        let set = compile(&files, &mut Vec::new()).unwrap();
        assert_eq!((set.stream_rules, set.whole_rules), (1, 1));
        let bad = vec![(PathBuf::from("bad.yar"), "rule { oops".to_string())];
        assert!(compile(&bad, &mut Vec::new()).err().is_some_and(|e| e.starts_with("bad.yar")));
        let globals = vec![(PathBuf::from("g.yar"), "rule G { condition: filename == \"\" }".to_string())];
        assert!(compile(&globals, &mut Vec::new()).is_ok());
    }
}
