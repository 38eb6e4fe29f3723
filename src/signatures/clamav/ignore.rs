//! `.ign2` (and the older `.ign`) files: signatures disabled by name.
//!
//! A `.ign2` line is a signature name, optionally followed by `:` and the MD5 of the whole
//! database line, which pins the exception to one version of the signature: when Talos fixes
//! the signature under the same name, the fixed version is in force again. An `.ign` line is
//! the older `database:line:name` form; only its name is used, because line numbers change
//! with every database update.
//!
//! Ignores are applied while loading: a disabled line is blanked before its file is parsed,
//! so line numbers in reports stay right, and the number disabled is reported per file.

use crate::signatures::problem::{check_name, content_lines, Problem};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::path::Path;

/// The disabled signatures of one load.
#[derive(Debug, Default)]
pub struct Ignores {
    /// Name → the line MD5s it is pinned to (empty: every line with that name).
    by_name: HashMap<String, Vec<[u8; 16]>>,
    any: std::collections::HashSet<String>,
}

impl Ignores {
    /// Adds the lines of a `.ign2` file (`legacy`: an `.ign` file).
    pub fn add(&mut self, text: &str, file: &Path, legacy: bool) -> (usize, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut added = 0;
        for (line_no, line) in content_lines(text) {
            let fields: Vec<&str> = line.split(':').collect();
            let (name, md5) = if legacy {
                match fields.as_slice() {
                    [_, _, name, ..] => (*name, None),
                    _ => {
                        problems.push(Problem::new(file, line_no, "expected `database:line:SignatureName`"));
                        continue;
                    }
                }
            } else {
                match fields.as_slice() {
                    [name] => (*name, None),
                    [name, md5] => (*name, Some(*md5)),
                    _ => {
                        problems.push(Problem::new(file, line_no, "expected `SignatureName` or `SignatureName:MD5`"));
                        continue;
                    }
                }
            };
            if let Err(e) = check_name(name) {
                problems.push(Problem::new(file, line_no, e));
                continue;
            }
            match md5 {
                None => {
                    self.any.insert(name.to_string());
                }
                Some(hex) => match decode16(hex) {
                    Some(d) => self.by_name.entry(name.to_string()).or_default().push(d),
                    None => {
                        problems.push(Problem::new(
                            file,
                            line_no,
                            format!("{name}: `{}` is not an MD5 (32 hex digits)", hex.escape_default()),
                        ));
                        continue;
                    }
                },
            }
            added += 1;
        }
        (added, problems)
    }

    pub fn is_empty(&self) -> bool {
        self.any.is_empty() && self.by_name.is_empty()
    }

    /// Whether the database line `line` (trimmed), whose signature is called `name`, is
    /// disabled.
    pub fn ignores(&self, name: &str, line: &str) -> bool {
        if self.any.contains(name) {
            return true;
        }
        match self.by_name.get(name) {
            Some(pins) => {
                let digest: [u8; 16] = Md5::digest(line.as_bytes()).into();
                pins.contains(&digest)
            }
            None => false,
        }
    }

    /// `text` with every disabled line blanked, and how many were; `name_of` finds the
    /// signature name in a line of this format.
    pub fn filter(&self, text: &str, name_of: fn(&str) -> Option<&str>) -> (String, usize) {
        if self.is_empty() {
            return (text.to_string(), 0);
        }
        let mut out = String::with_capacity(text.len());
        let mut disabled = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim();
            match name_of(trimmed) {
                Some(name) if !trimmed.starts_with('#') && self.ignores(name, trimmed) => {
                    disabled += 1;
                    out.push('\n');
                }
                _ => out.push_str(line),
            }
        }
        (out, disabled)
    }
}

fn decode16(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The signature name of a line, by format (`None` where the format has no names to ignore).
pub fn name_field(format: &str) -> Option<fn(&str) -> Option<&str>> {
    fn first_colon(line: &str) -> Option<&str> {
        line.split(':').next()
    }
    fn third_colon(line: &str) -> Option<&str> {
        line.split(':').nth(2)
    }
    fn first_semicolon(line: &str) -> Option<&str> {
        line.split(';').next()
    }
    match format {
        "ndb" => Some(first_colon),
        "hdb" | "hsb" | "mdb" | "msb" | "imp" => Some(third_colon),
        "ldb" => Some(first_semicolon),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pinned_lines() {
        let line = "Pinned:0:*:41424344";
        let md5: String = Md5::digest(line.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let mut ig = Ignores::default();
        let (n, problems) = ig.add(&format!("Plain\nPinned:{md5}\nBad:xyz\na:b:c\n"), Path::new("x.ign2"), false);
        assert_eq!(n, 2);
        assert_eq!(problems.len(), 2);
        let text = format!("Plain:0:*:4142\n{line}\nPinned:0:*:4143\nOther:0:*:4142\n");
        let (out, disabled) = ig.filter(&text, name_field("ndb").unwrap());
        assert_eq!(disabled, 2);
        assert_eq!(out, "\n\nPinned:0:*:4143\nOther:0:*:4142\n");
        let mut legacy = Ignores::default();
        assert_eq!(legacy.add("daily.ndb:12:Plain\n", Path::new("x.ign"), true).0, 1);
        assert!(legacy.ignores("Plain", "whatever"));
    }
}
