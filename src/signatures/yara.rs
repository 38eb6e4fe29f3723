//! Compiling `*.yar` files with yara-x into three rule sets: the rules that stream, the subset
//! of those that may answer at preview time, and the rules that need the whole object.
//!
//! yara-x's block scanner evaluates rules over an object fed in blocks, but in that mode modules
//! (pe, elf, hash, math, ...), `filesize` and the `uintXX()/intXX()` functions are undefined,
//! and no match crosses a block edge. Each rule is therefore classified from its parsed source
//! ([`super::yara_rules`]): by its condition, its imports and its strings, never by searching
//! the text (a word in a `meta:` value changes nothing).
//!
//! * *Whole-object* rules run once at the end of the body, on a copy of the object when it is
//!   no larger than `yara_whole_bytes_max` (past it the over-limit policy decides,
//!   `Heuristics.Limits.Exceeded.MaxYaraWholeSize`).
//! * *Streaming* rules are block-scanned as the chunks arrive. Consecutive blocks overlap by
//!   the longest match any streaming rule can have, computed here as [`YaraSet::overlap`], so
//!   every match lies wholly inside one block however the object is split. A rule whose
//!   strings have no longest match (unbounded jumps, `*` and `+` in regular expressions) or one
//!   longer than `yara_overlap_bytes` is a whole-object rule instead.
//! * *Preview* rules are the streaming rules whose outcome cannot flip with more data
//!   (monotone conditions): only they may answer at the end of a preview; the others wait for
//!   the body.
//!
//! A rule lands in the same set as every rule it references, and global rules (which constrain
//! every rule) go into every set; a global rule that needs the whole object makes every rule a
//! whole-object rule. A file with `include` statements is kept in one piece.
//!
//! The rule files of public sets reference the external variables `filename`, `filepath`,
//! `extension`, `filetype` and `owner`; they are defined as empty strings so those sets compile.

use super::problem::Problem;
use super::yara_rules::{analyse, FileFacts};
use std::collections::HashMap;
use std::path::PathBuf;

/// External variables defined for every rule set, as empty strings.
pub const GLOBALS: [&str; 5] = ["filename", "filepath", "extension", "filetype", "owner"];

/// Compiled YARA rules of one generation.
pub struct YaraSet {
    /// Rules block-scanned while the body streams in.
    pub stream: Option<yara_x::Rules>,
    /// The monotone streaming rules, evaluated on a preview.
    pub preview: Option<yara_x::Rules>,
    /// Rules that need the whole object.
    pub whole: Option<yara_x::Rules>,
    pub stream_rules: usize,
    pub preview_rules: usize,
    pub whole_rules: usize,
    /// Bytes consecutive blocks must share: the longest match of any streaming rule.
    pub overlap: usize,
}

impl YaraSet {
    pub fn empty() -> Self {
        YaraSet {
            stream: None,
            preview: None,
            whole: None,
            stream_rules: 0,
            preview_rules: 0,
            whole_rules: 0,
            overlap: 1,
        }
    }
}

/// Compiles the given files with the default largest overlap ([`crate::limits::YARA_OVERLAP_BYTES`]).
pub fn compile(files: &[(PathBuf, String)], problems: &mut Vec<Problem>) -> Result<YaraSet, String> {
    compile_with(files, crate::limits::YARA_OVERLAP_BYTES, problems)
}

/// Compiles the given files; a streaming rule may need an overlap of at most `overlap_max`
/// bytes. Any compile error fails the whole set (the caller keeps the old generation); the
/// error names the file.
pub fn compile_with(
    files: &[(PathBuf, String)],
    overlap_max: usize,
    problems: &mut Vec<Problem>,
) -> Result<YaraSet, String> {
    if files.is_empty() {
        return Ok(YaraSet::empty());
    }
    let Some(facts) = files.iter().map(|(_, src)| analyse(src, overlap_max)).collect::<Option<Vec<_>>>() else {
        // Not parsed: the compiler names the file and the error.
        build(files.iter().map(|(p, s)| (p, s.clone())))?;
        return Err("a YARA file did not parse".into());
    };
    let plan = &Plan::new(&facts);
    let facts = &facts;
    let source = &|class: Class| {
        files.iter().zip(facts).enumerate().filter_map(move |(fi, ((path, src), ff))| {
            let mut text = String::new();
            if class == Class::Whole {
                for import in &ff.imports {
                    text.push_str(&src[import.clone()]);
                    text.push('\n');
                }
            }
            let mut any = false;
            for (ri, rule) in ff.rules.iter().enumerate() {
                if plan.member(fi, ri, class) {
                    text.push_str(&src[rule.text.clone()]);
                    text.push('\n');
                    any = true;
                }
            }
            any.then_some((path, text))
        })
    };
    // A set of global rules alone would only repeat them: it is built when it holds others.
    let wanted = |class: Class| {
        facts.iter().enumerate().any(|(fi, ff)| ff.rules.iter().enumerate().any(|(ri, r)| !r.global && plan.member(fi, ri, class)))
    };
    // The three sets compile on their own threads: this is the control plane, off the data
    // path, and compiling a large public set takes seconds per set.
    let sources: Vec<Option<Vec<(&PathBuf, String)>>> = [Class::Stream, Class::Preview, Class::Whole]
        .into_iter()
        .map(|class| wanted(class).then(|| source(class).collect()))
        .collect();
    let built: Vec<Result<Option<(yara_x::Rules, usize)>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .into_iter()
            .map(|src| scope.spawn(move || src.map_or(Ok(None), |src| build(src.into_iter()))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("the YARA compiler panicked".into()))).collect()
    });
    let mut built = built.into_iter();
    let mut next = || built.next().expect("three sets");
    let (stream, preview, whole) = (next()?, next()?, next()?);
    if let Some((rules, _)) = &stream {
        for w in rules.warnings() {
            problems.push(Problem { file: PathBuf::from("(yara)"), line: 0, message: first_line(&w.to_string()) });
        }
    }
    Ok(YaraSet {
        stream_rules: stream.as_ref().map_or(0, |s| s.1),
        preview_rules: preview.as_ref().map_or(0, |s| s.1),
        whole_rules: whole.as_ref().map_or(0, |s| s.1),
        overlap: plan.overlap.max(1),
        stream: stream.map(|s| s.0),
        preview: preview.map(|s| s.0),
        whole: whole.map(|s| s.0),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Stream,
    Preview,
    Whole,
}

/// Which set each rule goes to.
struct Plan {
    /// Per file, per rule: (whole-object, monotone with everything it references, shared).
    rules: Vec<Vec<(bool, bool, bool)>>,
    /// No preview set: a global rule is not monotone.
    no_preview: bool,
    overlap: usize,
}

impl Plan {
    fn new(facts: &[FileFacts]) -> Plan {
        let ids: Vec<(usize, usize)> =
            facts.iter().enumerate().flat_map(|(fi, f)| (0..f.rules.len()).map(move |ri| (fi, ri))).collect();
        let rule = |i: usize| &facts[ids[i].0].rules[ids[i].1];
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for i in 0..ids.len() {
            by_name.entry(rule(i).name.as_str()).or_insert(i);
        }
        // Components of rules that reference each other (and of files kept in one piece).
        let mut parent: Vec<usize> = (0..ids.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let union = |parent: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (root(parent, a), root(parent, b));
            parent[ra] = rb;
        };
        let mut first_of_file = vec![None; facts.len()];
        for i in 0..ids.len() {
            for r in &rule(i).refs {
                if let Some(&j) = by_name.get(r.as_str()) {
                    union(&mut parent, i, j);
                }
            }
            let fi = ids[i].0;
            if facts[fi].includes {
                match first_of_file[fi] {
                    Some(j) => union(&mut parent, i, j),
                    None => first_of_file[fi] = Some(i),
                }
            }
        }
        let mut comp_whole = vec![false; ids.len()];
        let mut comp_shared = vec![false; ids.len()];
        for i in 0..ids.len() {
            let r = root(&mut parent, i);
            comp_whole[r] |= rule(i).whole.is_some() || facts[ids[i].0].includes;
            comp_shared[r] |= rule(i).global;
        }
        let all_whole = (0..ids.len()).any(|i| {
            let r = root(&mut parent, i);
            comp_shared[r] && comp_whole[r]
        });
        // Monotone with everything referenced (rules are defined before they are used).
        let mut mono = vec![false; ids.len()];
        for i in 0..ids.len() {
            mono[i] = rule(i).monotone
                && rule(i).refs.iter().all(|r| by_name.get(r.as_str()).is_none_or(|&j| j < i && mono[j]));
        }
        let mut plan = Plan { rules: facts.iter().map(|f| Vec::with_capacity(f.rules.len())).collect(), no_preview: false, overlap: 0 };
        for i in 0..ids.len() {
            let r = root(&mut parent, i);
            let whole = all_whole || comp_whole[r];
            let shared = comp_shared[r];
            if !whole {
                plan.overlap = plan.overlap.max(rule(i).span);
            }
            if shared && !whole && !mono[i] {
                plan.no_preview = true;
            }
            plan.rules[ids[i].0].push((whole, mono[i], shared));
        }
        plan
    }

    fn member(&self, file: usize, rule: usize, class: Class) -> bool {
        let (whole, mono, shared) = self.rules[file][rule];
        match class {
            Class::Whole => whole || shared,
            Class::Stream => !whole,
            Class::Preview => !whole && mono && !self.no_preview,
        }
    }
}

/// Compiles one set of sources; `None` when there are none.
fn build<'a>(sources: impl Iterator<Item = (&'a PathBuf, String)>) -> Result<Option<(yara_x::Rules, usize)>, String> {
    let mut compiler = yara_x::Compiler::new();
    for g in GLOBALS {
        compiler.define_global(g, "").map_err(|e| format!("defining YARA global {g}: {e}"))?;
    }
    let mut any = false;
    for (path, source) in sources {
        any = true;
        let src = yara_x::SourceCode::from(source.as_str()).with_origin(path.display().to_string());
        compiler.add_source(src).map_err(|e| format!("{}: {}", path.display(), first_line(&e.to_string())))?;
    }
    if !any {
        return Ok(None);
    }
    let rules = compiler.build();
    let count = rules.iter().len();
    Ok(Some((rules, count)))
}

fn first_line(s: &str) -> String {
    s.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" ").chars().take(400).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> YaraSet {
        let files: Vec<(PathBuf, String)> = files.iter().map(|(p, s)| (PathBuf::from(p), s.to_string())).collect();
        compile(&files, &mut Vec::new()).unwrap()
    }

    fn counts(s: &YaraSet) -> (usize, usize, usize) {
        (s.stream_rules, s.preview_rules, s.whole_rules)
    }

    #[test]
    fn each_rule_is_classified_by_itself() {
        // Issue 13, item 3: `filesize` in a meta value used to make the whole file whole-object.
        let s = set(&[(
            "a.yar",
            "rule A { meta: note = \"checks filesize and uint32\" strings: $a = \"abc\" condition: $a }\n\
             rule B { condition: filesize == 3 }\n\
             rule C { strings: $c = \"xyz\" condition: #c == 1 }\n",
        )]);
        assert_eq!(counts(&s), (2, 1, 1));
        assert_eq!(s.overlap, 3);
        let names = |r: &Option<yara_x::Rules>| -> Vec<String> {
            r.as_ref().map_or(vec![], |r| r.iter().map(|r| r.identifier().to_string()).collect())
        };
        assert_eq!(names(&s.stream), ["A", "C"]);
        assert_eq!(names(&s.preview), ["A"]);
        assert_eq!(names(&s.whole), ["B"]);
    }

    #[test]
    fn references_keep_rules_together_and_globals_go_everywhere() {
        let s = set(&[
            ("a.yar", "private rule Size { condition: filesize > 10 }\nrule Uses { strings: $a = \"abc\" condition: $a and Size }\n"),
            ("b.yar", "rule Later { strings: $b = \"def\" condition: $b and Uses }\nrule Free { strings: $f = \"ghi\" condition: $f }\n"),
        ]);
        // Size is private (not counted by yara-x's iterator? it is: iter covers every rule).
        assert!(s.whole.as_ref().unwrap().iter().any(|r| r.identifier() == "Later"));
        assert_eq!(s.stream.as_ref().unwrap().iter().map(|r| r.identifier().to_string()).collect::<Vec<_>>(), ["Free"]);
        let g = set(&[(
            "g.yar",
            "global rule NotEmpty { strings: $n = \"key\" condition: $n }\nrule A { strings: $a = \"abc\" condition: $a }\nrule B { condition: filesize > 1 }\n",
        )]);
        assert_eq!(counts(&g), (2, 2, 2), "the global rule is in every set");
        let gw = set(&[("g.yar", "global rule Big { condition: filesize > 1 }\nrule A { strings: $a = \"abc\" condition: $a }\n")]);
        assert_eq!(counts(&gw), (0, 0, 2));
        let gn = set(&[("g.yar", "global rule Not { strings: $n = \"n\" condition: not $n }\nrule A { strings: $a = \"abc\" condition: $a }\n")]);
        assert_eq!(counts(&gn), (2, 0, 0), "a global rule that is not monotone leaves no preview set");
    }

    #[test]
    fn overlap_follows_the_longest_streamed_string() {
        let long = "41 ".repeat(2000);
        let s = set(&[(
            "l.yar",
            &format!("rule L {{ strings: $l = {{ {long} }} condition: $l }}\nrule J {{ strings: $j = {{ 4d 5a [0-3000] 50 45 }} condition: $j }}\nrule U {{ strings: $u = /a.*b/ condition: $u }}\n"),
        )]);
        assert_eq!(counts(&s), (2, 2, 1));
        assert_eq!(s.overlap, 3004);
    }

    #[test]
    fn compile_errors_name_the_file() {
        let bad = vec![(PathBuf::from("bad.yar"), "rule { oops".to_string())];
        assert!(compile(&bad, &mut Vec::new()).err().is_some_and(|e| e.starts_with("bad.yar")), "parse error");
        let undefined = vec![(PathBuf::from("u.yar"), "rule U { condition: $nope }".to_string())];
        assert!(compile(&undefined, &mut Vec::new()).err().is_some_and(|e| e.starts_with("u.yar")));
        let globals = vec![(PathBuf::from("g.yar"), "rule G { condition: filename == \"\" }".to_string())];
        assert!(compile(&globals, &mut Vec::new()).is_ok());
    }
}
