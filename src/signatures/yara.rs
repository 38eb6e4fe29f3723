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
//! * Whole-object rules whose condition requires the object to start with `MZ` (a conjunction
//!   with `uint16(0) == 0x5a4d`, as about 3,300 of signature-base's 5,900 rules are written)
//!   are evaluated only on objects that start with `MZ`: on any other object each of them is
//!   false, so leaving them out changes no verdict, and it spares the evaluation of their
//!   conditions on every non-PE object, which is most of the per-object cost of a large
//!   public set. So there are two whole-object sets: `whole`, without those rules, for objects
//!   that do not start with `MZ`, and `whole_mz`, every whole-object rule, for those that do
//!   (one scan either way; the rules without the gate are compiled twice, which costs load
//!   time and memory, not scan time).
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
    /// Rules that need the whole object, for objects that do not start with `MZ` (so without
    /// the rules that need `MZ` there, when `whole_mz` exists).
    pub whole: Option<yara_x::Rules>,
    /// Every rule that needs the whole object, for objects that start with `MZ`; built only
    /// when some rule needs `MZ` at the start.
    pub whole_mz: Option<yara_x::Rules>,
    pub stream_rules: usize,
    pub preview_rules: usize,
    /// Rules that need the whole object (all of them).
    pub whole_rules: usize,
    /// Of those, the ones evaluated only on objects that start with `MZ`.
    pub whole_mz_rules: usize,
    /// Bytes consecutive blocks must share: the longest match of any streaming rule.
    pub overlap: usize,
    /// The rules whose outcome a cap on the matches per pattern could change, by name: they
    /// count matches or test offsets ([`super::yara_rules::RuleFacts::match_details`]), or refer
    /// to a rule that does.
    pub saturable: std::collections::HashSet<String>,
}

impl YaraSet {
    /// Whether any rule needs the whole object (so the object must be kept for them).
    pub fn has_whole(&self) -> bool {
        self.whole.is_some() || self.whole_mz.is_some()
    }


    pub fn empty() -> Self {
        YaraSet {
            stream: None,
            preview: None,
            whole: None,
            whole_mz: None,
            stream_rules: 0,
            preview_rules: 0,
            whole_rules: 0,
            whole_mz_rules: 0,
            saturable: Default::default(),
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
            if matches!(class, Class::Whole | Class::WholeMz) {
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
    // The `MZ` set is built only when some rule is gated (otherwise it would equal `whole`).
    let wanted = |class: Class| {
        let member = |fi: usize, ri: usize, r: &super::yara_rules::RuleFacts| match class {
            Class::WholeMz => !r.global && plan.member(fi, ri, class) && plan.gated(fi, ri),
            _ => !r.global && plan.member(fi, ri, class),
        };
        facts.iter().enumerate().any(|(fi, ff)| ff.rules.iter().enumerate().any(|(ri, r)| member(fi, ri, r)))
    };
    // The four sets compile on their own threads: this is the control plane, off the data
    // path, and compiling a large public set takes seconds per set.
    let sources: Vec<Option<Vec<(&PathBuf, String)>>> = [Class::Stream, Class::Preview, Class::Whole, Class::WholeMz]
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
    let mut next = || built.next().expect("four sets");
    let (stream, preview, whole, whole_mz) = (next()?, next()?, next()?, next()?);
    if let Some((rules, _)) = &stream {
        for w in rules.warnings() {
            problems.push(Problem { file: PathBuf::from("(yara)"), line: 0, message: first_line(&w.to_string()) });
        }
    }
    Ok(YaraSet {
        stream_rules: stream.as_ref().map_or(0, |s| s.1),
        preview_rules: preview.as_ref().map_or(0, |s| s.1),
        whole_rules: whole_mz.as_ref().or(whole.as_ref()).map_or(0, |s| s.1),
        whole_mz_rules: whole_mz.as_ref().map_or(0, |s| s.1 - whole.as_ref().map_or(0, |w| w.1)),
        overlap: plan.overlap.max(1),
        saturable: saturable(&facts),
        stream: stream.map(|s| s.0),
        preview: preview.map(|s| s.0),
        whole: whole.map(|s| s.0),
        whole_mz: whole_mz.map(|s| s.0),
    })
}

/// See [`YaraSet::saturable`]: the rules that count matches or test offsets, and those that
/// refer to one (rules are defined before they are used, so one pass in order finds them all).
fn saturable(facts: &[FileFacts]) -> std::collections::HashSet<String> {
    let mut names = std::collections::HashSet::new();
    for r in facts.iter().flat_map(|f| &f.rules) {
        if r.match_details || r.refs.iter().any(|name| names.contains(name)) {
            names.insert(r.name.clone());
        }
    }
    names
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Stream,
    Preview,
    Whole,
    WholeMz,
}

/// Which set each rule goes to.
struct Plan {
    /// Per file, per rule: (whole-object, monotone with everything it references, shared,
    /// in a component whose every rule but the global ones requires `MZ` at the start).
    rules: Vec<Vec<(bool, bool, bool, bool)>>,

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
        let mut comp_ungated = vec![false; ids.len()];
        for i in 0..ids.len() {
            let r = root(&mut parent, i);
            comp_whole[r] |= rule(i).whole.is_some() || facts[ids[i].0].includes;
            comp_shared[r] |= rule(i).global;
            let gated = rule(i).required_start.as_deref().is_some_and(|b| b.starts_with(b"MZ"));
            comp_ungated[r] |= !gated && !rule(i).global;
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
        let mut plan = Plan {
            rules: facts.iter().map(|f| Vec::with_capacity(f.rules.len())).collect(),
            no_preview: false,
            overlap: 0,
        };
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
            // A component with a global rule goes everywhere, so it is never gated.
            let gated = !comp_ungated[r] && !shared;
            plan.rules[ids[i].0].push((whole, mono[i], shared, gated));
        }
        plan
    }

    fn gated(&self, file: usize, rule: usize) -> bool {
        self.rules[file][rule].3
    }

    fn member(&self, file: usize, rule: usize, class: Class) -> bool {
        let (whole, mono, shared, gated) = self.rules[file][rule];
        match class {
            Class::Whole => (whole && !gated) || shared,
            Class::WholeMz => whole || shared,
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
    fn rules_that_need_mz_at_the_start_get_their_own_set() {
        let s = set(&[
            (
                "pe.yar",
                "rule Pe { strings: $a = \"abc\" condition: uint16(0) == 0x5a4d and filesize < 10MB and $a }\n\
                 private rule PeBase { condition: uint16(0) == 0x5a4d }\n\
                 rule PeToo { strings: $b = \"def\" condition: PeBase and $b }\n\
                 rule Mixed { condition: PeBase or filesize == 3 }\n",
            ),
            ("any.yar", "rule Any { condition: filesize == 5 }\n"),
        ]);
        let names = |r: &Option<yara_x::Rules>| -> Vec<String> {
            r.as_ref().map_or(vec![], |r| r.iter().map(|r| r.identifier().to_string()).collect())
        };
        // PeToo is gated only through PeBase; Mixed references PeBase but is not gated itself,
        // so PeBase, PeToo and Mixed stay together in the ungated set.
        assert_eq!(names(&s.whole), ["PeBase", "PeToo", "Mixed", "Any"]);
        assert_eq!(names(&s.whole_mz), ["Pe", "PeBase", "PeToo", "Mixed", "Any"]);
        assert_eq!((s.whole_rules, s.whole_mz_rules), (5, 1));
        let g = set(&[("g.yar", "global rule G { condition: filesize > 1 }\nrule Pe { condition: uint16(0) == 0x5a4d }\n")]);
        assert!(g.whole.is_none(), "only the global rule would be in it");
        assert_eq!(names(&g.whole_mz), ["G", "Pe"], "the global rule is in every set");
        assert_eq!((g.whole_rules, g.whole_mz_rules), (2, 2));
        // Nothing gated: no second set.
        let n = set(&[("n.yar", "rule Any { condition: filesize == 5 }\n")]);
        assert!(n.whole_mz.is_none() && n.whole.is_some());
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
