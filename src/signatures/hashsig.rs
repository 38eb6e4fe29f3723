//! ClamAV hash signatures: `.hdb` (MD5) and `.hsb` (SHA-1 / SHA-256) files.
//!
//! A line reads `HashString:FileSize:MalwareName[:MinFL[:MaxFL]]` and says "an object of
//! exactly this size with exactly this digest is this threat". Hash signatures are the
//! cheapest kind to write (an analyst only needs the sample), and the cheapest to check,
//! provided the scanner knows which digests to compute; the size field is what lets it skip
//! hashing when no signature can match (see `scan::hash`).
//!
//! The rules follow ClamAV where they matter for compatibility and are stricter where ClamAV
//! would load a line that cannot do what its author meant:
//!
//! * In `.hdb` files the hash must be MD5 (32 hex digits). In `.hsb` files its length picks
//!   the algorithm: 40 hex digits for SHA-1, 64 for SHA-256, and 32 for MD5, which ClamAV also
//!   accepts there.
//! * The size is a decimal byte count or `*` for any size. ClamAV only honours `*` on lines
//!   that also carry a functionality level of at least 73; icapd has no functionality levels,
//!   so it accepts `*` on its own. A size of `0` is refused, as ClamAV refuses it: it would
//!   match every empty body, which is never what a signature author wants.
//! * The optional functionality levels must be decimal and are otherwise ignored.
//! * Names follow the same rules as every other format ([`check_name`]).
//!
//! Lines that break a rule are reported as [`Problem`]s and skipped.

use std::fmt;
use std::path::Path;

use crate::signatures::problem::{check_flevels, check_name, content_lines, is_decimal, Problem};

/// The digest algorithm of a hash signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
}

impl HashAlgo {
    /// Every algorithm, in a fixed order.
    pub const ALL: [HashAlgo; 3] = [HashAlgo::Md5, HashAlgo::Sha1, HashAlgo::Sha256];

    /// The digest length in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
        }
    }

    /// The conventional name, for logs.
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "MD5",
            HashAlgo::Sha1 => "SHA-1",
            HashAlgo::Sha256 => "SHA-256",
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One parsed hash signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashSignature {
    pub algo: HashAlgo,
    /// The raw digest, [`HashAlgo::digest_len`] bytes long.
    pub digest: Vec<u8>,
    /// The object size in bytes the signature applies to; `None` for `*` (any size).
    pub size: Option<u64>,
    /// The threat name reported on a match.
    pub name: String,
}

/// Which kind of hash file is being read; it decides which digest lengths are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashDbKind {
    /// `.hdb`: MD5 only.
    Hdb,
    /// `.hsb`: SHA-1 or SHA-256 (and MD5, as ClamAV allows).
    Hsb,
}

impl HashDbKind {
    /// The kind a file name's extension stands for (`.hdb` or `.hsb`, any case), if either.
    pub fn from_path(path: &Path) -> Option<HashDbKind> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("hdb") {
            Some(HashDbKind::Hdb)
        } else if ext.eq_ignore_ascii_case("hsb") {
            Some(HashDbKind::Hsb)
        } else {
            None
        }
    }
}

/// Parses the text of a `.hdb` or `.hsb` file.
///
/// Returns the signatures it could use and one [`Problem`] per line it skipped; `file` is
/// only used to label the problems. Blank lines and lines starting with `#` are ignored.
pub fn parse_hash_db(text: &str, file: &Path, kind: HashDbKind) -> (Vec<HashSignature>, Vec<Problem>) {
    let mut signatures = Vec::new();
    let mut problems = Vec::new();
    for (line_no, line) in content_lines(text) {
        match parse_hash_line(line, kind) {
            Ok(signature) => signatures.push(signature),
            Err(message) => problems.push(Problem::new(file, line_no, message)),
        }
    }
    (signatures, problems)
}

/// Parses one hash signature line (without its line ending).
///
/// On failure the error is the message for a [`Problem`]; it starts with the threat name
/// once the name is known to be valid.
pub fn parse_hash_line(line: &str, kind: HashDbKind) -> Result<HashSignature, String> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(3..=5).contains(&fields.len()) {
        return Err(format!(
            "expected 3 to 5 fields separated by `:` (HashString:FileSize:MalwareName[:MinFL[:MaxFL]]), found {}",
            fields.len()
        ));
    }
    let name = fields[2];
    check_name(name)?;
    let with_name = |message: String| format!("{name}: {message}");
    let (algo, digest) = parse_digest(fields[0], kind).map_err(with_name)?;
    let size = parse_size(fields[1]).map_err(with_name)?;
    check_flevels(&fields[3..]).map_err(with_name)?;
    Ok(HashSignature { algo, digest, size, name: name.to_string() })
}

/// Parses the text of a `.mdb` (MD5) or `.msb` (SHA-1/SHA-256) file of PE section hashes:
/// `PESectionSize:HashString:MalwareName[:MinFL[:MaxFL]]`, the size first. The size is the
/// section's raw size in the file (`*` for any); the signature says "a PE section of this
/// size with this digest is this threat".
pub fn parse_section_db(text: &str, file: &Path, kind: HashDbKind) -> (Vec<HashSignature>, Vec<Problem>) {
    let mut signatures = Vec::new();
    let mut problems = Vec::new();
    for (line_no, line) in content_lines(text) {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 2 {
            fields.swap(0, 1);
        }
        match parse_hash_line(&fields.join(":"), kind) {
            Ok(signature) => signatures.push(signature),
            Err(message) => problems.push(Problem::new(
                file,
                line_no,
                message
                    .replace("(HashString:FileSize:MalwareName", "(PESectionSize:HashString:MalwareName")
                    .replace("the file size", "the section size"),
            )),
        }
    }
    (signatures, problems)
}

fn parse_digest(field: &str, kind: HashDbKind) -> Result<(HashAlgo, Vec<u8>), String> {
    let algo = match (kind, field.len()) {
        (_, 32) => HashAlgo::Md5,
        (HashDbKind::Hsb, 40) => HashAlgo::Sha1,
        (HashDbKind::Hsb, 64) => HashAlgo::Sha256,
        (HashDbKind::Hdb, n @ (40 | 64)) => {
            return Err(format!(
                "the hash is {n} hex digits long, which is {}; .hdb files hold MD5 hashes (32 hex digits), \
                 put SHA hashes in a .hsb file",
                if n == 40 { "SHA-1" } else { "SHA-256" }
            ))
        }
        (HashDbKind::Hdb, n) => {
            return Err(format!("the hash is {n} characters long; an MD5 hash is 32 hex digits"));
        }
        (HashDbKind::Hsb, n) => {
            return Err(format!(
                "the hash is {n} characters long; expected 40 (SHA-1), 64 (SHA-256) or 32 (MD5) hex digits"
            ));
        }
    };
    let digest =
        decode_hex(field).ok_or_else(|| format!("the hash `{}` is not hexadecimal", field.escape_default()))?;
    Ok((algo, digest))
}

/// Decodes an even-length string of hex digits (either case), or `None` if any character is
/// not a hex digit.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs.map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

fn parse_size(field: &str) -> Result<Option<u64>, String> {
    if field == "*" {
        return Ok(None);
    }
    if !is_decimal(field) {
        return Err(format!("the file size `{}` is neither a decimal number nor `*`", field.escape_default()));
    }
    match field.parse::<u64>() {
        Ok(0) => {
            Err("the file size is 0; use `*` for any size (a size-0 signature would match every empty body)"
                .to_string())
        }
        Ok(size) => Ok(Some(size)),
        Err(_) => Err(format!("the file size {field} does not fit in 64 bits")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
    const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn hs(algo: HashAlgo, hex: &str, size: Option<u64>, name: &str) -> HashSignature {
        HashSignature { algo, digest: decode_hex(hex).unwrap(), size, name: name.to_string() }
    }

    fn parse_one(line: &str, kind: HashDbKind) -> Result<HashSignature, String> {
        let (mut sigs, mut problems) = parse_hash_db(line, Path::new("t.hdb"), kind);
        match (sigs.pop(), problems.pop()) {
            (Some(s), None) => Ok(s),
            (None, Some(p)) => {
                assert_eq!(p.line, 1);
                Err(p.message)
            }
            other => panic!("expected exactly one result for {line:?}, got {other:?}"),
        }
    }

    #[test]
    fn valid_lines() {
        use HashAlgo::*;
        use HashDbKind::*;
        let upper = EICAR_MD5.to_ascii_uppercase();
        let cases: Vec<(HashDbKind, String, HashSignature)> = vec![
            (Hdb, format!("{EICAR_MD5}:68:Eicar-Test-Signature"), hs(Md5, EICAR_MD5, Some(68), "Eicar-Test-Signature")),
            (Hdb, format!("{upper}:68:Eicar"), hs(Md5, EICAR_MD5, Some(68), "Eicar")),
            (Hdb, format!("{EICAR_MD5}:*:Eicar"), hs(Md5, EICAR_MD5, None, "Eicar")),
            (Hdb, format!("{EICAR_MD5}:*:Eicar:73"), hs(Md5, EICAR_MD5, None, "Eicar")),
            (Hdb, format!("{EICAR_MD5}:68:Eicar:51:255"), hs(Md5, EICAR_MD5, Some(68), "Eicar")),
            (Hdb, format!("{EICAR_MD5}:068:Eicar"), hs(Md5, EICAR_MD5, Some(68), "Eicar")),
            (Hsb, format!("{EICAR_SHA1}:68:Eicar"), hs(Sha1, EICAR_SHA1, Some(68), "Eicar")),
            (Hsb, format!("{EICAR_SHA256}:68:Eicar"), hs(Sha256, EICAR_SHA256, Some(68), "Eicar")),
            (Hsb, format!("{EICAR_MD5}:68:Eicar"), hs(Md5, EICAR_MD5, Some(68), "Eicar")),
            (Hsb, format!(" {EICAR_SHA256}:*:Eicar:73:255\r"), hs(Sha256, EICAR_SHA256, None, "Eicar")),
            (Hsb, format!("{EICAR_SHA1}:18446744073709551615:Big"), hs(Sha1, EICAR_SHA1, Some(u64::MAX), "Big")),
        ];
        for (kind, line, expected) in cases {
            assert_eq!(parse_one(&line, kind), Ok(expected), "{kind:?} {line:?}");
        }
    }

    #[test]
    fn invalid_lines() {
        use HashDbKind::*;
        const FIELDS: &str =
            "expected 3 to 5 fields separated by `:` (HashString:FileSize:MalwareName[:MinFL[:MaxFL]]), found";
        const IN_HDB: &str = ".hdb files hold MD5 hashes (32 hex digits), put SHA hashes in a .hsb file";
        const HSB_LENGTHS: &str = "expected 40 (SHA-1), 64 (SHA-256) or 32 (MD5) hex digits";
        const SIZE: &str = "is neither a decimal number nor `*`";
        let md5 = EICAR_MD5;
        let cases: Vec<(HashDbKind, String, String)> = vec![
            (Hdb, md5.to_string(), format!("{FIELDS} 1")),
            (Hdb, format!("{md5}:68"), format!("{FIELDS} 2")),
            (Hdb, format!("{md5}:68:E:1:2:3"), format!("{FIELDS} 6")),
            (Hdb, format!("{md5}:68:"), "the signature name is empty".into()),
            (
                Hdb,
                format!("{md5}:68:Bad Name"),
                "the signature name `Bad Name` contains whitespace; names must be printable ASCII without spaces or `;`"
                    .into(),
            ),
            (
                Hdb,
                format!("{md5}:68:{}", "n".repeat(129)),
                "the signature name is 129 bytes long; the limit is 128".into(),
            ),
            (Hdb, format!("{EICAR_SHA1}:68:E"), format!("E: the hash is 40 hex digits long, which is SHA-1; {IN_HDB}")),
            (
                Hdb,
                format!("{EICAR_SHA256}:68:E"),
                format!("E: the hash is 64 hex digits long, which is SHA-256; {IN_HDB}"),
            ),
            (Hdb, "44d8:68:E".into(), "E: the hash is 4 characters long; an MD5 hash is 32 hex digits".into()),
            (Hdb, ":68:E".into(), "E: the hash is 0 characters long; an MD5 hash is 32 hex digits".into()),
            (Hsb, "44d8:68:E".into(), format!("E: the hash is 4 characters long; {HSB_LENGTHS}")),
            (Hsb, format!("{EICAR_SHA1}0:68:E"), format!("E: the hash is 41 characters long; {HSB_LENGTHS}")),
            (
                Hdb,
                "44d88612fea8a8f36de82e1278abb0zz:68:E".into(),
                "E: the hash `44d88612fea8a8f36de82e1278abb0zz` is not hexadecimal".into(),
            ),
            (
                Hdb,
                format!("{md5}:0:E"),
                "E: the file size is 0; use `*` for any size (a size-0 signature would match every empty body)".into(),
            ),
            (Hdb, format!("{md5}::E"), format!("E: the file size `` {SIZE}")),
            (Hdb, format!("{md5}:-1:E"), format!("E: the file size `-1` {SIZE}")),
            (Hdb, format!("{md5}:+68:E"), format!("E: the file size `+68` {SIZE}")),
            (Hdb, format!("{md5}:0x44:E"), format!("E: the file size `0x44` {SIZE}")),
            (Hdb, format!("{md5}:**:E"), format!("E: the file size `**` {SIZE}")),
            (
                Hdb,
                format!("{md5}:18446744073709551616:E"),
                "E: the file size 18446744073709551616 does not fit in 64 bits".into(),
            ),
            (Hdb, format!("{md5}:68:E:x"), "E: the minimum functionality level `x` is not a decimal number".into()),
            (Hdb, format!("{md5}:68:E:51:"), "E: the maximum functionality level `` is not a decimal number".into()),
            // An `.mdb` line (size first) read as `.hdb` must not be taken for a hash line.
            (Hdb, format!("68:{md5}:E"), "E: the hash is 2 characters long; an MD5 hash is 32 hex digits".into()),
        ];
        for (kind, line, expected) in cases {
            assert_eq!(parse_one(&line, kind), Err(expected), "{kind:?} {line:?}");
        }
    }

    #[test]
    fn multibyte_hash_field_is_reported_not_sliced() {
        // 32 bytes of UTF-8 that are not 32 characters: must be rejected without panicking.
        let field = "\u{e9}".repeat(16);
        assert_eq!(field.len(), 32);
        let line = format!("{field}:68:E");
        assert_eq!(
            parse_one(&line, HashDbKind::Hdb),
            Err(format!("E: the hash `{}` is not hexadecimal", "\\u{e9}".repeat(16)))
        );
    }

    #[test]
    fn whole_file() {
        let text = format!(
            "# test hashes\n{EICAR_SHA1}:68:Eicar-Sha1\n\n{EICAR_SHA256}:*:Eicar-Sha256:73\nnot a line\n\
             {EICAR_MD5}:68:Eicar-Md5\n"
        );
        let (sigs, problems) = parse_hash_db(&text, Path::new("db/test.hsb"), HashDbKind::Hsb);
        let got: Vec<(HashAlgo, Option<u64>, &str)> = sigs.iter().map(|s| (s.algo, s.size, s.name.as_str())).collect();
        assert_eq!(
            got,
            [
                (HashAlgo::Sha1, Some(68), "Eicar-Sha1"),
                (HashAlgo::Sha256, None, "Eicar-Sha256"),
                (HashAlgo::Md5, Some(68), "Eicar-Md5"),
            ]
        );
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let expected = "db/test.hsb:5: expected 3 to 5 fields separated by `:` \
                        (HashString:FileSize:MalwareName[:MinFL[:MaxFL]]), found 1";
        assert_eq!(shown, [expected]);
    }

    #[test]
    fn kind_from_path() {
        assert_eq!(HashDbKind::from_path(Path::new("a/main.hdb")), Some(HashDbKind::Hdb));
        assert_eq!(HashDbKind::from_path(Path::new("daily.HSB")), Some(HashDbKind::Hsb));
        assert_eq!(HashDbKind::from_path(Path::new("x.ndb")), None);
        assert_eq!(HashDbKind::from_path(Path::new("hdb")), None);
    }

    #[test]
    fn digest_lengths() {
        for algo in HashAlgo::ALL {
            let hex = match algo {
                HashAlgo::Md5 => EICAR_MD5,
                HashAlgo::Sha1 => EICAR_SHA1,
                HashAlgo::Sha256 => EICAR_SHA256,
            };
            assert_eq!(decode_hex(hex).map(|d| d.len()), Some(algo.digest_len()), "{algo}");
        }
    }
}
