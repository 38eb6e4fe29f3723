//! Which ClamAV database files icapd reads, and why it leaves the others alone.
//!
//! A ClamAV folder such as `/var/lib/clamav` holds many kinds of file, told apart by their
//! extension. icapd reads the kinds it can honour exactly and names every other ClamAV kind
//! it meets with the reason it is not loaded, so that nobody believes a phishing or bytecode
//! database is in force when it is not. Files that are not ClamAV or icapd formats at all (a
//! README, an editor's backup) are left alone without a word, as before.

/// What the loader does with a file, decided by its (lower-case) extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A format icapd parses; the name is the extension, used in logs and metrics.
    Loaded(&'static str),
    /// A ClamAV format icapd does not load, with the reason in words.
    NotLoaded(&'static str),
    /// Not a signature format: ignored without a word.
    Other,
}

/// The formats icapd parses, in the order the metrics list them.
pub const LOADED: &[&str] =
    &["cvd", "cld", "cud", "ndb", "ldb", "hdb", "hsb", "mdb", "msb", "imp", "fp", "sfp", "ign2", "ign", "yar", "urls"];

/// The format of a file called `name`.
pub fn format_of(name: &str) -> Format {
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return Format::Other,
    };
    match ext.as_str() {
        "cvd" => Format::Loaded("cvd"),
        "cld" => Format::Loaded("cld"),
        "cud" => Format::Loaded("cud"),
        "ndb" => Format::Loaded("ndb"),
        "ldb" => Format::Loaded("ldb"),
        "hdb" => Format::Loaded("hdb"),
        "hsb" => Format::Loaded("hsb"),
        "mdb" => Format::Loaded("mdb"),
        "msb" => Format::Loaded("msb"),
        "imp" => Format::Loaded("imp"),
        "fp" => Format::Loaded("fp"),
        "sfp" => Format::Loaded("sfp"),
        "ign2" => Format::Loaded("ign2"),
        "ign" => Format::Loaded("ign"),
        "yar" | "yara" => Format::Loaded("yar"),
        "urls" => Format::Loaded("urls"),
        other => not_loaded(other).map_or(Format::Other, Format::NotLoaded),
    }
}

/// Why a ClamAV format is not loaded, or `None` for an extension that is not ClamAV's.
fn not_loaded(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "cbc" => "bytecode signatures need ClamAV's bytecode interpreter, which icapd does not have",
        "pdb" | "gdb" | "wdb" => {
            "phishing signatures apply to the links of HTML pages and mail, which icapd does not extract"
        }
        "idb" => "icon signatures need PE resource extraction and ClamAV's icon matcher",
        "cdb" | "zmd" | "rmd" => {
            "container metadata signatures need the names and sizes of archive members, which icapd does not \
             match yet"
        }
        "crb" | "cat" => "Authenticode certificate and catalog rules: icapd does not verify Authenticode signatures",
        "ftm" => "ClamAV's file-type magic: icapd types files itself (src/scan/filetype.rs)",
        "hdu" | "hsu" | "mdu" | "msu" | "ldu" | "ndu" => {
            "PUA (potentially unwanted application) signatures: ClamAV loads them only with --detect-pua, and \
             icapd has no such category"
        }
        "info" => "the index of a database (its files and their hashes), not signatures",
        "cfg" => "ClamAV's engine configuration (DCONF): icapd has its own settings",
        "pwdb" => "passwords for encrypted archives: icapd does not decrypt archives",
        "db" => "the pre-0.80 `Name=hex` format, which no current ClamAV database ships",
        "sign" => "a detached digital signature of a .cvd: icapd checks the header MD5, not ClamAV's signatures",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_a_verdict() {
        assert_eq!(format_of("main.NDB"), Format::Loaded("ndb"));
        assert_eq!(format_of("rules.yara"), Format::Loaded("yar"));
        assert_eq!(format_of("daily.cld"), Format::Loaded("cld"));
        for ext in ["cbc", "pdb", "wdb", "idb", "cdb", "crb", "ftm", "hdu", "hsu", "mdu", "msu", "ldu", "ndu", "info"] {
            assert!(matches!(format_of(&format!("daily.{ext}")), Format::NotLoaded(_)), "{ext}");
        }
        assert_eq!(format_of("README.md"), Format::Other);
        assert_eq!(format_of("COPYING"), Format::Other);
        for ext in LOADED {
            assert_eq!(format_of(&format!("x.{ext}")), Format::Loaded(ext));
        }
    }
}
