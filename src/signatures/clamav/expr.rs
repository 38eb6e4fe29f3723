//! The logical expression of a `.ldb` signature (and the trigger of a PCRE subsignature).
//!
//! Indexes `0..N` name subsignatures; `A&B`, `A|B`, parentheses, and the count modifiers
//! `A=X`, `A=X,Y`, `A>X`, `A>X,Y`, `A<X`, `A<X,Y` combine them. `&` binds tighter than `|`
//! (real signatures parenthesise anyway). A modifier counts the matches of its operand: the
//! matches of a subsignature, or the sum over the subsignatures of a group; the optional `Y`
//! asks for at least `Y` distinct subsignatures of the group to have matched. `A<X` also
//! needs at least one match, so that no signature can fire on the mere absence of bytes.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Sub(u8),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Count { inner: Box<Expr>, op: CountOp, n: u32, distinct: Option<u32> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOp {
    Eq,
    Gt,
    Lt,
}

/// Most subsignatures a signature may have (ClamAV's limit).
pub const SUBSIGS_MAX: usize = 64;

impl Expr {
    /// Parses `text`; `subsigs` is how many subsignatures the line has.
    pub fn parse(text: &str, subsigs: usize) -> Result<Expr, String> {
        let mut p = Parser { b: text.as_bytes(), i: 0, subsigs, depth: 0 };
        let e = p.or()?;
        if p.i != p.b.len() {
            return Err(format!(
                "unexpected `{}` at character {} of the logical expression",
                char::from(p.b[p.i]),
                p.i + 1
            ));
        }
        Ok(e)
    }

    /// Whether the expression holds, given the match count of each subsignature.
    pub fn eval(&self, counts: &[u32]) -> bool {
        match self {
            Expr::Sub(i) => counts.get(usize::from(*i)).is_some_and(|&c| c > 0),
            Expr::And(v) => v.iter().all(|e| e.eval(counts)),
            Expr::Or(v) => v.iter().any(|e| e.eval(counts)),
            Expr::Count { inner, op, n, distinct } => {
                let total = inner.count(counts);
                let ok = match op {
                    CountOp::Eq => total == *n,
                    CountOp::Gt => total > *n,
                    CountOp::Lt => total > 0 && total < *n,
                };
                ok && distinct.is_none_or(|d| inner.distinct(counts) >= d)
            }
        }
    }

    fn count(&self, counts: &[u32]) -> u32 {
        match self {
            Expr::Sub(i) => counts.get(usize::from(*i)).copied().unwrap_or(0),
            Expr::Or(v) => v.iter().map(|e| e.count(counts)).fold(0, u32::saturating_add),
            Expr::And(v) if self.eval(counts) => v.iter().map(|e| e.count(counts)).fold(0, u32::saturating_add),
            Expr::And(_) => 0,
            Expr::Count { .. } => u32::from(self.eval(counts)),
        }
    }

    fn distinct(&self, counts: &[u32]) -> u32 {
        match self {
            Expr::Sub(i) => u32::from(counts.get(usize::from(*i)).is_some_and(|&c| c > 0)),
            Expr::Or(v) | Expr::And(v) => v.iter().map(|e| e.distinct(counts)).sum(),
            Expr::Count { .. } => u32::from(self.eval(counts)),
        }
    }

    /// The subsignatures the expression names.
    pub fn subs(&self, out: &mut Vec<u8>) {
        match self {
            Expr::Sub(i) => out.push(*i),
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.subs(out)),
            Expr::Count { inner, .. } => inner.subs(out),
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    subsigs: usize,
    depth: usize,
}

impl Parser<'_> {
    fn or(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.and()?];
        while self.b.get(self.i) == Some(&b'|') {
            self.i += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.pop().unwrap_or(Expr::Sub(0)) } else { Expr::Or(v) })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.unary()?];
        while self.b.get(self.i) == Some(&b'&') {
            self.i += 1;
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 { v.pop().unwrap_or(Expr::Sub(0)) } else { Expr::And(v) })
    }

    fn number(&mut self) -> Result<u32, String> {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("expected a number at character {} of the logical expression", start + 1))
    }

    fn unary(&mut self) -> Result<Expr, String> {
        let atom = match self.b.get(self.i) {
            Some(b'(') => {
                self.depth += 1;
                if self.depth > 64 {
                    return Err("the logical expression nests more than 64 levels".to_string());
                }
                self.i += 1;
                let e = self.or()?;
                if self.b.get(self.i) != Some(&b')') {
                    return Err(format!("expected `)` at character {} of the logical expression", self.i + 1));
                }
                self.i += 1;
                self.depth -= 1;
                e
            }
            _ => {
                let n = self.number()? as usize;
                if n >= self.subsigs {
                    return Err(format!(
                        "the logical expression names subsignature {n}, but the line has {}",
                        self.subsigs
                    ));
                }
                Expr::Sub(n as u8)
            }
        };
        let op = match self.b.get(self.i) {
            Some(b'=') => CountOp::Eq,
            Some(b'>') => CountOp::Gt,
            Some(b'<') => CountOp::Lt,
            _ => return Ok(atom),
        };
        self.i += 1;
        let n = self.number()?;
        let distinct = if self.b.get(self.i) == Some(&b',') {
            self.i += 1;
            Some(self.number()?)
        } else {
            None
        };
        Ok(Expr::Count { inner: Box::new(atom), op, n, distinct })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_counts() {
        let t = |e: &str, c: &[u32]| Expr::parse(e, c.len()).unwrap().eval(c);
        assert!(t("0&1", &[1, 2]) && !t("0&1", &[1, 0]));
        assert!(t("0|1", &[0, 2]) && !t("0|1", &[0, 0]));
        assert!(t("(0|1)&2", &[0, 1, 1]) && !t("(0|1)&2", &[1, 1, 0]));
        assert!(t("0&1|2", &[0, 0, 1]), "& binds tighter");
        assert!(t("0=2", &[2]) && !t("0=2", &[3]));
        assert!(t("0=0&1", &[0, 1]) && !t("0=0&1", &[1, 1]));
        assert!(t("0>2", &[3]) && !t("0>2", &[2]));
        assert!(t("0<3", &[2]) && !t("0<3", &[3]) && !t("0<3", &[0]));
        assert!(t("(0|1|2)>3,2", &[3, 1, 0]) && !t("(0|1|2)>3,2", &[4, 0, 0]));
        assert!(t("(0|1)=2,2", &[1, 1]) && !t("(0|1)=2,2", &[2, 0]));
        assert!(t("((0|1)>1)&2", &[1, 1, 1]));
        for bad in ["", "0&", "(0", "0)", "3", "0>", "0=x", "a", "0&&1"] {
            assert!(Expr::parse(bad, 3).is_err(), "{bad}");
        }
    }
}
