//! URL and host deny lists (`*.urls` files), for answering REQMOD (and RESPMOD) with a block
//! page before any body byte is read.
//!
//! One rule per line, in the colon style of ClamAV databases:
//!
//! ```text
//! # Name:kind:value
//! Bad-Site:host:malware.example
//! Bad-Download:url:files.example.net/dl/evil.exe
//! ```
//!
//! * `host:` matches the request's host exactly or any subdomain of it (`a.malware.example`),
//!   case-insensitively, never a mere suffix (`notmalware.example` does not match).
//! * `url:` matches a substring of `host/path?query` (host lowercased, path as sent).
//!
//! Both kinds compile into one literal set and are matched with the same engine as body
//! signatures: the host is presented as `.host\n` and a host rule as `.value\n`, so "exact or
//! subdomain" becomes a plain substring match.

use super::problem::Problem;
use std::path::Path;

/// One deny rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRule {
    pub name: String,
    /// The literal pattern matched against [`subject`].
    pub pattern: Vec<u8>,
}

/// Parses a `.urls` file.
pub fn parse_urls(text: &str, file: &Path) -> (Vec<UrlRule>, Vec<Problem>) {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = |message: String| Problem { file: file.to_path_buf(), line: i + 1, message };
        let mut parts = line.splitn(3, ':');
        let (Some(name), Some(kind), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            problems.push(problem("expected Name:host:value or Name:url:value".into()));
            continue;
        };
        if let Err(why) = super::problem::check_name(name) {
            problems.push(problem(format!("invalid rule name '{name}': {why}")));
            continue;
        }
        let value = value.trim();
        if value.is_empty() || value.len() > 2048 || value.bytes().any(|b| b <= b' ' || b == 0x7f) {
            problems.push(problem("empty, overlong or whitespace-containing value".into()));
            continue;
        }
        let pattern = match kind {
            "host" => {
                let host = value.trim_start_matches('.').to_ascii_lowercase();
                format!(".{host}\n").into_bytes()
            }
            "url" => lowercase_host_part(value).into_bytes(),
            other => {
                problems.push(problem(format!("unknown rule kind '{other}' (host, url)")));
                continue;
            }
        };
        rules.push(UrlRule { name: name.to_string(), pattern });
    }
    (rules, problems)
}

fn lowercase_host_part(url: &str) -> String {
    match url.find('/') {
        Some(i) => format!("{}{}", url[..i].to_ascii_lowercase(), &url[i..]),
        None => url.to_ascii_lowercase(),
    }
}

/// The text URL rules are matched against, written into `out`: `.host\nhost/path?query`.
/// `target` is the request-target of the encapsulated request line and `host` its Host header.
pub fn subject(target: &[u8], host: Option<&[u8]>, out: &mut Vec<u8>) {
    out.clear();
    // Absolute-form targets (what a proxy sends) carry the authority themselves.
    let (authority, path) = match target.windows(3).position(|w| w == b"://") {
        Some(i) => {
            let rest = &target[i + 3..];
            let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        }
        None => (host.unwrap_or(b""), target),
    };
    // Drop userinfo and port: rules name hosts.
    let authority = match authority.iter().rposition(|&b| b == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    let host_only = match authority.iter().rposition(|&b| b == b':') {
        Some(i) if !authority.ends_with(b"]") => &authority[..i],
        _ => authority,
    };
    out.push(b'.');
    out.extend(host_only.iter().map(u8::to_ascii_lowercase));
    out.push(b'\n');
    out.extend(host_only.iter().map(u8::to_ascii_lowercase));
    out.extend_from_slice(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(rules: &[UrlRule], target: &str, host: Option<&str>) -> Option<String> {
        let mut s = Vec::new();
        subject(target.as_bytes(), host.map(str::as_bytes), &mut s);
        rules.iter().find(|r| s.windows(r.pattern.len()).any(|w| w == r.pattern)).map(|r| r.name.clone())
    }

    #[test]
    fn host_and_url_rules() {
        let (rules, problems) = parse_urls(
            "# comment\nBad-Site:host:Malware.Example\nBad-Path:url:files.example.net/dl/evil.exe\n",
            Path::new("t.urls"),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(matches(&rules, "http://malware.example/x", None).as_deref(), Some("Bad-Site"));
        assert_eq!(matches(&rules, "http://a.b.MALWARE.example:8080/x", None).as_deref(), Some("Bad-Site"));
        assert_eq!(matches(&rules, "/x", Some("malware.example")).as_deref(), Some("Bad-Site"));
        assert_eq!(matches(&rules, "http://notmalware.example/", None), None);
        assert_eq!(matches(&rules, "http://malware.example.org/", None), None);
        assert_eq!(matches(&rules, "http://Files.Example.NET/dl/evil.exe?x=1", None).as_deref(), Some("Bad-Path"));
        assert_eq!(matches(&rules, "http://files.example.net/dl/EVIL.exe", None), None, "paths are case-sensitive");
    }

    #[test]
    fn bad_lines_are_reported() {
        let (rules, problems) = parse_urls("x\nA:port:1\nB:host:\nC:host:a b\nBad Name:host:x\n", Path::new("t.urls"));
        assert!(rules.is_empty());
        assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    }
}
