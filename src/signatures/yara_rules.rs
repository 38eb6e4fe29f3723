//! What each YARA rule needs, read from its parsed source (yara-x's own parser), never from a
//! text search: a word in a `meta:` value or a string means nothing here.
//!
//! For every rule this module works out:
//!
//! * whether it needs the whole object: its condition (or anything it depends on) reads
//!   `filesize`, `entrypoint`, a function (`uint16(…)`, module functions), a module field or
//!   an imported module; or one of its strings has no bounded length (an unbounded hex jump
//!   `[n-]`, a regular expression with `*`, `+` or `{n,}`), has anchors (`^`, `$`), or is a
//!   `xor` string with `fullword` (its word test depends on the key, so no block edge is safe
//!   for it); or its longest match exceeds the largest overlap allowed. yara-x's block scanner
//!   leaves all of these undefined or cannot see them across a block edge;
//! * its *span*: the longest match any of its strings can have (text length, doubled for
//!   `wide`, the base64 forms, hex bytes plus the largest jumps and alternatives, the longest
//!   match of a regular expression). The streaming set's overlap is the largest span in it, so
//!   every match lies wholly inside some block (see [`crate::scan::yara_stream`]);
//! * whether it is *monotone*: once it holds on a prefix of the object it holds on the whole
//!   object. Only such rules may answer at preview time. `$a`, `$a and $b`, `any of them`,
//!   `all of them`, `#a > 2` and matches at constant offsets are monotone; `not`, `none of`,
//!   counts compared with `==`, `!=`, `<`, `<=`, offsets and lengths, loops, and strings whose
//!   match depends on the byte after the prefix (`fullword`, `\b`) are not;
//! * the rules it references, so that a rule lands in the same set as what it uses.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use yara_x_parser::ast::{self, Expr, HexSubPattern, HexToken, MatchAnchor, OfItems, PatternSet, Quantifier, AST};
use yara_x_parser::cst::{SyntaxKind, CST};

/// What one rule needs (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFacts {
    pub name: String,
    /// The rule's text in its file, modifiers included.
    pub text: Range<usize>,
    pub global: bool,
    /// Why the rule needs the whole object, if it does (its own reasons, not its references').
    pub whole: Option<&'static str>,
    /// Longest match of any of its strings; 0 for a rule without strings.
    pub span: usize,
    /// Monotone by itself (references are resolved by the caller).
    pub monotone: bool,
    /// Identifiers in the condition that may name other rules.
    pub refs: Vec<String>,
    /// The bytes the object must start with for the condition to hold at all: the condition is
    /// a conjunction with a term `uintNN(0) == V` (or `V == uintNN(0)`, any endianness). Such a
    /// rule is false on every object that does not start with them, so it need not be
    /// evaluated there (see [`crate::signatures::yara`]).
    pub required_start: Option<Vec<u8>>,
    /// The condition counts a pattern's matches or looks at their offsets or lengths (`#a`,
    /// `@a[i]`, `!a[i]`, `$a at`, `$a in`, `any of them in`): capping the matches yara-x
    /// records per pattern could change its outcome (see
    /// [`crate::limits::YARA_MATCHES_PER_PATTERN_MAX`]).
    pub match_details: bool,
}

/// One rule file, analysed.
#[derive(Debug, Default)]
pub struct FileFacts {
    /// The text of each `import` statement.
    pub imports: Vec<Range<usize>>,
    /// Whether the file includes others (it is then kept in one piece).
    pub includes: bool,
    pub rules: Vec<RuleFacts>,
}

/// Analyses one file; `None` when it does not parse (the compiler reports why).
pub fn analyse(source: &str, span_max: usize) -> Option<FileFacts> {
    let parsed = AST::from(source);
    if !parsed.errors().is_empty() {
        return None;
    }
    let cst = CST::from(source);
    let mut facts = FileFacts::default();
    let mut texts = Vec::new();
    for node in cst.root().children() {
        match node.kind() {
            SyntaxKind::IMPORT_STMT => facts.imports.push(node.span().range()),
            SyntaxKind::INCLUDE_STMT => facts.includes = true,
            SyntaxKind::RULE_DECL => texts.push(node.span().range()),
            _ => {}
        }
    }
    let modules: HashSet<&str> = parsed.imports().map(|i| i.module_name).collect();
    let rules: Vec<&ast::Rule> = parsed.rules().collect();
    if rules.len() != texts.len() {
        return None;
    }
    for (rule, text) in rules.into_iter().zip(texts) {
        facts.rules.push(rule_facts(rule, text, &modules, span_max));
    }
    Some(facts)
}

/// Per-pattern facts the condition analysis needs.
struct Pat {
    /// Its match can depend on the byte after a prefix (`fullword`, `\b`).
    edge: bool,
}

fn rule_facts(rule: &ast::Rule, text: Range<usize>, modules: &HashSet<&str>, span_max: usize) -> RuleFacts {
    let mut whole = None;
    let mut span = 0usize;
    let mut pats: HashMap<&str, Pat> = HashMap::new();
    for p in rule.patterns.iter().flatten() {
        match pattern_span(p) {
            Ok((len, edge)) => {
                span = span.max(len);
                pats.insert(p.identifier().name, Pat { edge });
            }
            Err(why) => {
                whole.get_or_insert(why);
                pats.insert(p.identifier().name, Pat { edge: true });
            }
        }
    }
    if span > span_max {
        whole.get_or_insert("a string longer than yara_overlap_bytes");
    }
    let mut walk = Walk { modules, refs: Vec::new(), whole: None, match_details: false };
    walk.expr(&rule.condition);
    if let Some(why) = walk.whole {
        whole.get_or_insert(why);
    }
    let ctx = Mono { pats: &pats, modules };
    RuleFacts {
        name: rule.identifier.name.to_string(),
        text,
        global: rule.flags.contains(ast::RuleFlags::Global),
        whole,
        span,
        monotone: ctx.mono(&rule.condition),
        refs: walk.refs,
        required_start: required_start(&rule.condition),
        match_details: walk.match_details,
    }
}

/// See [`RuleFacts::required_start`]. Only conjunctions count: under `or` or `not` a term
/// requires nothing of the object.
fn required_start(e: &Expr) -> Option<Vec<u8>> {
    match e {
        Expr::And(n) => n.operands().find_map(required_start),
        Expr::Eq(b) => start_eq(&b.lhs, &b.rhs).or_else(|| start_eq(&b.rhs, &b.lhs)),
        _ => None,
    }
}

/// `read == value` where `read` is `uint16(0)`, `uint32(0)`, `uint8(0)` or a `le`/`be` form.
fn start_eq(read: &Expr, value: &Expr) -> Option<Vec<u8>> {
    let (Expr::FuncCall(f), Expr::LiteralInteger(v)) = (read, value) else { return None };
    if f.object.is_some() || f.args.len() != 1 {
        return None;
    }
    let Expr::LiteralInteger(at) = &f.args[0] else { return None };
    if at.value != 0 {
        return None;
    }
    let (width, big) = match f.identifier.name {
        "uint8" | "uint8be" => (1, false),
        "uint16" => (2, false),
        "uint16be" => (2, true),
        "uint32" => (4, false),
        "uint32be" => (4, true),
        _ => return None,
    };
    let value = u64::try_from(v.value).ok()?;
    if width < 8 && value >> (8 * width) != 0 {
        // Never equal: such a rule can never match; leave it to yara-x.
        return None;
    }
    let le = value.to_le_bytes();
    let mut bytes = le[..width].to_vec();
    if big {
        bytes.reverse();
    }
    Some(bytes)
}

/// The longest match of a pattern and whether its match depends on the bytes around it.
fn pattern_span(p: &ast::Pattern) -> Result<(usize, bool), &'static str> {
    let m = p.modifiers();
    let wide = if m.wide().is_some() { 2 } else { 1 };
    let fullword = m.fullword().is_some();
    if fullword && m.xor().is_some() {
        return Err("a xor string with fullword");
    }
    match p {
        ast::Pattern::Text(t) => {
            let n = t.text.value.len();
            // yara-x searches three alignments of the base64 form; each is at most this long.
            let b64 = (n / 3 + 2) * 4;
            let mut len = n * wide;
            if m.base64().is_some() {
                len = len.max(b64);
            }
            if m.base64wide().is_some() {
                len = len.max(2 * b64);
            }
            Ok((len, fullword))
        }
        ast::Pattern::Hex(h) => hex_len(&h.sub_patterns).map(|n| (n, fullword)).ok_or("a hex string with an unbounded jump"),
        ast::Pattern::Regexp(r) => {
            let ci = r.regexp.case_insensitive || m.nocase().is_some();
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .case_insensitive(ci)
                .dot_matches_new_line(r.regexp.dot_matches_new_line)
                .build()
                .parse(r.regexp.src)
                .map_err(|_| "a regular expression icapd cannot bound")?;
            let props = hir.properties();
            if props.look_set().contains_anchor() {
                return Err("an anchored regular expression");
            }
            let len = props.maximum_len().ok_or("a regular expression with no longest match")?;
            Ok((len * wide, fullword || props.look_set().contains_word()))
        }
    }
}

fn hex_len(sub: &HexSubPattern) -> Option<usize> {
    let mut n = 0usize;
    for token in sub.iter() {
        n += match token {
            HexToken::Byte(_) | HexToken::NotByte(_) => 1,
            HexToken::Jump(j) => j.end? as usize,
            HexToken::Alternative(alt) => alt.alternatives.iter().map(hex_len).try_fold(0, |m, l| l.map(|l| m.max(l)))?,
        };
    }
    Some(n)
}

/// Walks a condition for what needs the whole object, and for references to other rules.
struct Walk<'a> {
    modules: &'a HashSet<&'a str>,
    refs: Vec<String>,
    whole: Option<&'static str>,
    /// See [`RuleFacts::match_details`].
    match_details: bool,
}

impl Walk<'_> {
    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Filesize { .. } => {
                self.whole.get_or_insert("filesize");
            }
            Expr::Entrypoint { .. } => {
                self.whole.get_or_insert("entrypoint");
            }
            Expr::FuncCall(_) => {
                self.whole.get_or_insert("a function call (uintXX, a module)");
            }
            Expr::FieldAccess(_) | Expr::Lookup(_) => {
                self.whole.get_or_insert("a module field");
            }
            Expr::Ident(id) => {
                if self.modules.contains(id.name) {
                    self.whole.get_or_insert("a module");
                } else {
                    self.refs.push(id.name.to_string());
                }
            }
            Expr::PatternMatch(pm) => {
                self.match_details |= pm.anchor.is_some();
                self.anchor(pm.anchor.as_ref())
            }
            Expr::PatternCount(c) => {
                self.match_details = true;
                if let Some(r) = &c.range {
                    self.range(r);
                }
            }
            Expr::PatternOffset(o) | Expr::PatternLength(o) => {
                self.match_details = true;
                if let Some(i) = &o.index {
                    self.expr(i);
                }
            }
            Expr::Of(of) => {
                self.match_details |= of.anchor.is_some();
                self.quantifier(&of.quantifier);
                if let OfItems::BoolExprTuple(items) = &of.items {
                    items.iter().for_each(|i| self.expr(i));
                }
                self.anchor(of.anchor.as_ref());
            }
            Expr::ForOf(f) => {
                self.quantifier(&f.quantifier);
                self.expr(&f.body);
            }
            Expr::ForIn(f) => {
                self.quantifier(&f.quantifier);
                match &f.iterable {
                    ast::Iterable::Range(r) => self.range(r),
                    ast::Iterable::ExprTuple(v) => v.iter().for_each(|i| self.expr(i)),
                    ast::Iterable::Expr(i) => self.expr(i),
                }
                self.expr(&f.body);
            }
            Expr::With(w) => {
                w.declarations.iter().for_each(|d| self.expr(&d.expression));
                self.expr(&w.body);
            }
            other => other.children().for_each(|c| self.expr(c)),
        }
    }

    fn anchor(&mut self, a: Option<&MatchAnchor>) {
        match a {
            Some(MatchAnchor::At(at)) => self.expr(&at.expr),
            Some(MatchAnchor::In(r)) => self.range(&r.range),
            None => {}
        }
    }

    fn range(&mut self, r: &ast::Range) {
        self.expr(&r.lower_bound);
        self.expr(&r.upper_bound);
    }

    fn quantifier(&mut self, q: &Quantifier) {
        if let Quantifier::Percentage(e) | Quantifier::Expr(e) = q {
            self.expr(e);
        }
    }
}

/// Monotonicity of a condition (see the module docs). Rule references count as monotone here;
/// the caller requires the referenced rules to be monotone too.
struct Mono<'a> {
    pats: &'a HashMap<&'a str, Pat>,
    modules: &'a HashSet<&'a str>,
}

impl Mono<'_> {
    fn mono(&self, e: &Expr) -> bool {
        match e {
            Expr::True { .. } | Expr::False { .. } => true,
            Expr::Ident(id) => !self.modules.contains(id.name),
            Expr::PatternMatch(pm) => self.stable(pm.identifier.name) && self.const_anchor(pm.anchor.as_ref()),
            Expr::Of(of) => {
                let quantifier = match &of.quantifier {
                    Quantifier::None { .. } => false,
                    Quantifier::All { .. } | Quantifier::Any { .. } => true,
                    Quantifier::Percentage(n) | Quantifier::Expr(n) => self.constant(n),
                };
                let items = match &of.items {
                    OfItems::PatternSet(PatternSet::Them { .. }) => self.pats.values().all(|p| !p.edge),
                    OfItems::PatternSet(PatternSet::Set(items)) => self
                        .pats
                        .iter()
                        .filter(|(name, _)| items.iter().any(|i| i.matches(&ast::Ident::new(name))))
                        .all(|(_, p)| !p.edge),
                    OfItems::BoolExprTuple(v) => v.iter().all(|i| self.mono(i)),
                };
                quantifier && items && self.const_anchor(of.anchor.as_ref())
            }
            Expr::And(n) | Expr::Or(n) => n.operands().all(|o| self.mono(o)),
            // A count only grows: `#a > n` and `n < #a` hold on once they hold.
            Expr::Gt(b) | Expr::Ge(b) => self.growing(&b.lhs) && self.constant(&b.rhs) || self.constant_cmp(e),
            Expr::Lt(b) | Expr::Le(b) => self.constant(&b.lhs) && self.growing(&b.rhs) || self.constant_cmp(e),
            other => self.constant_cmp(other),
        }
    }

    /// A pattern whose matches in a prefix are matches in the whole object. `name` is as the
    /// condition spells it: `$a`, `#a`, `@a` or `!a` all name `$a`.
    fn stable(&self, name: &str) -> bool {
        let Some(bare) = name.get(1..) else { return false };
        self.pats.iter().any(|(p, facts)| p.get(1..) == Some(bare) && !facts.edge)
    }

    fn growing(&self, e: &Expr) -> bool {
        match e {
            Expr::PatternCount(c) => {
                self.stable(c.identifier.name)
                    && c.range.as_ref().is_none_or(|r| self.constant(&r.lower_bound) && self.constant(&r.upper_bound))
            }
            _ => false,
        }
    }

    fn const_anchor(&self, a: Option<&MatchAnchor>) -> bool {
        match a {
            None => true,
            Some(MatchAnchor::At(at)) => self.constant(&at.expr),
            Some(MatchAnchor::In(r)) => self.constant(&r.range.lower_bound) && self.constant(&r.range.upper_bound),
        }
    }

    /// A comparison (or other expression) whose value does not depend on the data.
    fn constant_cmp(&self, e: &Expr) -> bool {
        self.constant(e)
    }

    /// An expression that does not depend on the data: literals, the external variables, and
    /// arithmetic and comparisons over them.
    fn constant(&self, e: &Expr) -> bool {
        match e {
            Expr::True { .. }
            | Expr::False { .. }
            | Expr::LiteralString(_)
            | Expr::LiteralInteger(_)
            | Expr::LiteralFloat(_)
            | Expr::Regexp(_) => true,
            Expr::Ident(id) => super::yara::GLOBALS.contains(&id.name),
            Expr::Minus(_)
            | Expr::BitwiseNot(_)
            | Expr::Add(_)
            | Expr::Sub(_)
            | Expr::Mul(_)
            | Expr::Div(_)
            | Expr::Mod(_)
            | Expr::Shl(_)
            | Expr::Shr(_)
            | Expr::BitwiseAnd(_)
            | Expr::BitwiseOr(_)
            | Expr::BitwiseXor(_)
            | Expr::Eq(_)
            | Expr::Ne(_)
            | Expr::Lt(_)
            | Expr::Gt(_)
            | Expr::Le(_)
            | Expr::Ge(_)
            | Expr::Contains(_)
            | Expr::IContains(_)
            | Expr::StartsWith(_)
            | Expr::IStartsWith(_)
            | Expr::EndsWith(_)
            | Expr::IEndsWith(_)
            | Expr::IEquals(_)
            | Expr::Matches(_)
            | Expr::Not(_)
            | Expr::And(_)
            | Expr::Or(_) => e.children().all(|c| self.constant(c)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> RuleFacts {
        let facts = analyse(src, 64 * 1024).expect("parses");
        facts.rules.into_iter().last().unwrap()
    }

    #[test]
    fn required_starts_come_only_from_conjunctions_at_offset_zero() {
        let start = |src: &str| one(src).required_start;
        assert_eq!(start("rule a { condition: uint16(0) == 0x5a4d }"), Some(b"MZ".to_vec()));
        assert_eq!(start("rule a { condition: filesize < 10 and 0x5A4D == uint16(0) }"), Some(b"MZ".to_vec()));
        assert_eq!(start("rule a { condition: uint32be(0) == 0x7f454c46 and filesize > 1 }"), Some(b"\x7fELF".to_vec()));
        assert_eq!(start("rule a { condition: uint32(0) == 0x464c457f }"), Some(b"\x7fELF".to_vec()));
        assert_eq!(start("rule a { strings: $a = \"x\" condition: $a and (filesize < 9 and uint16(0) == 0x5a4d) }"), Some(b"MZ".to_vec()));
        for free in [
            "rule a { condition: uint16(0) == 0x5a4d or filesize < 10 }",
            "rule a { condition: not uint16(0) == 0x5a4d }",
            "rule a { condition: uint16(2) == 0x5a4d }",
            "rule a { condition: uint16(0) != 0x5a4d }",
            "rule a { condition: uint16(0) == 0x15a4d }",
            "rule a { condition: filesize > 3 }",
        ] {
            assert_eq!(start(free), None, "{free}");
        }
    }

    #[test]
    fn whole_object_needs_come_from_the_condition_not_the_text() {
        assert_eq!(one("rule a { condition: filesize < 10 }").whole, Some("filesize"));
        assert!(one("rule a { condition: uint16(0) == 0x5a4d }").whole.is_some());
        assert!(one("import \"pe\"\nrule a { condition: pe.is_dll() }").whole.is_some());
        assert!(one("import \"pe\"\nrule a { condition: pe.number_of_sections > 1 }").whole.is_some());
        assert!(one("rule a { strings: $a = \"x\" condition: $a at entrypoint }").whole.is_some());
        assert!(one("rule a { strings: $a = \"x\" condition: #a in (0..filesize) > 1 }").whole.is_some());
        assert!(one("rule a { strings: $a = \"x\" condition: any of ($a) and for any i in (1..#a) : (@a[i] < filesize) }")
            .whole
            .is_some());
        // Words in metadata, strings and identifiers are only words.
        let plain = one(
            "rule filesize_uint8 { meta: note = \"filesize uint32(0) import pe\" strings: $s = \"filesize\" condition: $s }",
        );
        assert_eq!((plain.whole, plain.span, plain.monotone), (None, 8, true));
        // An import that no condition uses does not matter.
        assert_eq!(one("import \"pe\"\nrule a { strings: $s = \"abc\" condition: $s }").whole, None);
    }

    #[test]
    fn spans_bound_every_match() {
        let span = |s: &str| one(&format!("rule a {{ strings: $a = {s} condition: $a }}"));
        assert_eq!(span("\"abcdef\"").span, 6);
        assert_eq!(span("\"abcdef\" wide").span, 12);
        assert_eq!(span("\"abcdef\" ascii wide nocase").span, 12);
        assert!(span("\"abcdef\" base64").span >= 8);
        assert_eq!(span("{ 4d 5a [2-4] 50 45 ( 00 00 | 01 02 03 ) }").span, 2 + 4 + 2 + 3);
        assert_eq!(span("{ 4d 5a [2000] 50 }").span, 2003);
        assert_eq!(span("/ab[0-9]{2,5}c/").span, 8);
        assert_eq!(span("/abc/ wide").span, 6);
        assert!(span("{ 4d 5a [2-] 50 45 }").whole.is_some(), "unbounded jump");
        assert!(span("{ 4d 5a [-] 50 45 }").whole.is_some(), "unbounded jump");
        assert!(span("/ab.*c/").whole.is_some());
        assert!(span("/ab+c/").whole.is_some());
        assert!(span("/^MZ/").whole.is_some(), "anchored");
        assert!(span("\"abc\" xor fullword").whole.is_some());
        let long = "41 ".repeat(3000);
        assert_eq!(span(&format!("{{ {long} }}")).span, 3000);
        let facts = analyse(&format!("rule a {{ strings: $a = {{ {long} }} condition: $a }}"), 2048).unwrap();
        assert!(facts.rules[0].whole.is_some(), "longer than the largest overlap");
    }

    #[test]
    fn conditions_that_count_or_locate_matches() {
        let d = |cond: &str| {
            one(&format!("rule a {{ strings: $a = \"abc\" $b = \"def\" condition: {cond} }}")).match_details
        };
        for yes in [
            "#a > 2",
            "$a at 100",
            "$a in (0..100)",
            "@a[1] == 10",
            "!a[1] == 3",
            "any of them in (0..10)",
            "for any of them : (@ > 10)",
            "for all i in (1..#a) : (@a[i] > 5)",
            "$b and #a == 1",
        ] {
            assert!(d(yes), "{yes}");
        }
        for no in ["$a", "$a and not $b", "any of them", "2 of ($a, $b)", "all of them", "none of them"] {
            assert!(!d(no), "{no}");
        }
    }

    #[test]
    fn monotone_conditions() {
        let m = |cond: &str| {
            one(&format!(
                "rule a {{ strings: $a = \"abc\" $b = \"def\" $w = \"ghi\" fullword $r = /x\\by/ condition: {cond} }}"
            ))
            .monotone
        };
        for yes in [
            "$a",
            "$a and $b",
            "$a or not true",
            "any of ($a*, $b) and true",
            "any of ($a, $b)",
            "all of ($a, $b)",
            "2 of ($a, $b)",
            "#a > 2",
            "#a >= 2",
            "3 < #a",
            "$a at 100",
            "$a in (0..100)",
            "#a in (0..100) > 1",
            "any of ($a, $b) in (0..10)",
            "filename == \"\" and $a",
        ] {
            assert!(m(yes), "{yes}");
        }
        for no in [
            "not $b",
            "$a and not $b",
            "#a == 1",
            "#a != 1",
            "#a < 3",
            "#a <= 3",
            "none of them",
            "$a and !a[1] == 3",
            "@a[1] == 10",
            "$a at @b[1]",
            "for any of them : ($ at 10)",
            "$w",
            "any of them",
            "$r",
            "any of ($w, $a)",
        ] {
            assert!(!m(no), "{no}");
        }
    }

    #[test]
    fn references_and_texts() {
        let src = "import \"pe\"\nprivate rule base { strings: $a = \"x\" condition: $a }\n\nglobal rule g { condition: true }\nrule top : tag { condition: base and g }\n";
        let facts = analyse(src, 1024).unwrap();
        assert_eq!(facts.imports.len(), 1);
        let names: Vec<&str> = facts.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["base", "g", "top"]);
        assert_eq!(&src[facts.rules[0].text.clone()], "private rule base { strings: $a = \"x\" condition: $a }");
        assert!(src[facts.rules[2].text.clone()].starts_with("rule top : tag"));
        assert!(facts.rules[1].global);
        assert_eq!(facts.rules[2].refs, ["base", "g"]);
        assert!(analyse("rule { oops", 1024).is_none());
    }
}
