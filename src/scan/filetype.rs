//! ClamAV's target types, recognised by magic in the first bytes of an object.
//!
//! `.ndb` lines (field 2) and `.ldb` signatures (`Target:N`) name the kind of file they apply
//! to. A signature for PE files must not fire on a text file that happens to hold the same
//! bytes, so the type is decided from the object's first bytes, as ClamAV's own file typing
//! does, and a typed signature only counts on objects of its type.
//!
//! Targets 3 (HTML) and 7 (ASCII text) are matched by ClamAV against *normalised* text (text
//! lower-cased with whitespace collapsed, HTML also with character references decoded); so are
//! they here, through [`super::textnorm`].

/// How many leading bytes file typing and the PE header reader look at. PE headers (the
/// section table included) sit in the first 4 KiB of every real executable; 64 KiB leaves
/// room for odd linkers without holding much per connection.
pub const HEAD_BYTES: usize = 64 * 1024;

/// ClamAV's target type numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Target {
    Any = 0,
    Pe = 1,
    Ole2 = 2,
    Html = 3,
    Mail = 4,
    Graphics = 5,
    Elf = 6,
    Ascii = 7,
    MachO = 9,
    Pdf = 10,
    Flash = 11,
    Java = 12,
}

impl Target {
    /// The target for a number, or why it is not supported.
    pub fn from_number(n: u64) -> Result<Target, String> {
        Ok(match n {
            0 => Target::Any,
            1 => Target::Pe,
            2 => Target::Ole2,
            4 => Target::Mail,
            5 => Target::Graphics,
            6 => Target::Elf,
            9 => Target::MachO,
            10 => Target::Pdf,
            11 => Target::Flash,
            12 => Target::Java,
            3 => Target::Html,
            7 => Target::Ascii,
            n => return Err(format!("target type {n} is not one icapd recognises (0-7, 9-12)")),
        })
    }

    /// Whether an object of type `actual` is a target of a signature for `self`.
    pub fn accepts(self, actual: Option<Target>) -> bool {
        self == Target::Any || actual == Some(self)
    }
}

/// The type of an object from its first bytes (`None`: none of the types signatures name).
pub fn detect(head: &[u8]) -> Option<Target> {
    if head.starts_with(b"MZ") {
        return crate::scan::pe::parse(head).map(|_| Target::Pe);
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Some(Target::Ole2);
    }
    if head.starts_with(b"\x7fELF") {
        return Some(Target::Elf);
    }
    if head.starts_with(b"%PDF-") || head.get(..1024).unwrap_or(head).windows(5).any(|w| w == b"%PDF-") {
        return Some(Target::Pdf);
    }
    if head.starts_with(b"FWS") || head.starts_with(b"CWS") || head.starts_with(b"ZWS") {
        return Some(Target::Flash);
    }
    let magic32 = head.get(..4).map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
    match magic32 {
        Some(0xFEEDFACE | 0xFEEDFACF | 0xCEFAEDFE | 0xCFFAEDFE) => return Some(Target::MachO),
        Some(0xCAFEBABE) => {
            // Java classes and Mach-O universal binaries share this magic; a class file has a
            // major version of 45 or more where a universal binary has a small arch count.
            let second = head.get(4..8).map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]])).unwrap_or(0);
            return Some(if second & 0xFFFF >= 45 { Target::Java } else { Target::MachO });
        }
        _ => {}
    }
    if head.starts_with(b"GIF8")
        || head.starts_with(b"\x89PNG\r\n\x1a\n")
        || head.starts_with(&[0xFF, 0xD8, 0xFF])
        || head.starts_with(b"BM")
        || head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
    {
        return Some(Target::Graphics);
    }
    let start = head.get(..64).unwrap_or(head);
    for prefix in [&b"From "[..], b"Received:", b"Return-Path:", b"Delivered-To:", b"MIME-Version:", b"X-Mailer:"] {
        if start.len() >= prefix.len() && start[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Some(Target::Mail);
        }
    }
    let sample = head.get(..512).unwrap_or(head);
    let lower: Vec<u8> = sample.iter().map(u8::to_ascii_lowercase).collect();
    if [&b"<html"[..], b"<!doctype html", b"<head", b"<body", b"<script"]
        .iter()
        .any(|t| lower.windows(t.len()).any(|w| w == *t))
    {
        return Some(Target::Html);
    }
    if !sample.is_empty() && sample.iter().all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        return Some(Target::Ascii);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic() {
        let pe = crate::scan::pe::build_test_pe(&[b"code"], 0);
        assert_eq!(detect(&pe), Some(Target::Pe));
        assert_eq!(detect(b"MZ not a pe"), None);
        assert_eq!(detect(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0]), Some(Target::Ole2));
        assert_eq!(detect(b"\x7fELF\x02\x01"), Some(Target::Elf));
        assert_eq!(detect(b"%PDF-1.7\n"), Some(Target::Pdf));
        assert_eq!(detect(b"CWS\x0a"), Some(Target::Flash));
        assert_eq!(detect(&[0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1]), Some(Target::MachO));
        assert_eq!(detect(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 52]), Some(Target::Java));
        assert_eq!(detect(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2]), Some(Target::MachO));
        assert_eq!(detect(b"GIF89a"), Some(Target::Graphics));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n"), Some(Target::Graphics));
        assert_eq!(detect(b"Received: from x\r\n"), Some(Target::Mail));
        assert_eq!(detect(b"<!DOCTYPE html><html>"), Some(Target::Html));
        assert_eq!(detect(b"plain words\n"), Some(Target::Ascii));
        assert_eq!(detect(&[0, 1, 2, 3]), None);
        assert!(
            Target::Any.accepts(None) && Target::Pe.accepts(Some(Target::Pe)) && !Target::Pe.accepts(Some(Target::Elf))
        );
        assert_eq!(Target::from_number(3), Ok(Target::Html));
        assert!(Target::from_number(13).is_err());
    }
}
