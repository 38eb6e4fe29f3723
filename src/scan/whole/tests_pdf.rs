//! PDF fixtures: small files written here, one per filter and fault.

use std::io::Write;

use super::tests::*;
use super::*;

pub(super) fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A PDF whose objects are `(dictionary entries, stream data)`, with a trailer.
pub(super) fn pdf(objects: &[(&str, &[u8])], trailer: &str) -> Vec<u8> {
    let mut f = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    for (i, (dict, data)) in objects.iter().enumerate() {
        write!(f, "{} 0 obj\n<< {dict} /Length {} >>\nstream\n", i + 1, data.len()).unwrap();
        f.extend_from_slice(data);
        f.extend_from_slice(b"\nendstream\nendobj\n");
    }
    write!(f, "trailer\n<< /Size {} {trailer} >>\nstartxref\n0\n%%EOF\n", objects.len() + 1).unwrap();
    f
}

fn members(data: &[u8]) -> Vec<(String, Vec<u8>, bool)> {
    let (r, c) = run(Kind::Pdf, data, &LOOSE);
    assert_eq!(r, Ok(()));
    c.members
}

#[test]
fn flate_stream_is_decoded() {
    let z = zlib(EICAR);
    let f = pdf(&[("/Filter /FlateDecode", &z), ("", b"BT (clean text) Tj ET")], "");
    assert_eq!(detect(&f), Some(Kind::Pdf));
    let m = members(&f);
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].0.as_str(), m[0].1.as_slice(), m[0].2), ("obj1", EICAR, true));
    assert_eq!(m[1].1, b"BT (clean text) Tj ET");
}

#[test]
fn clean_pdf_has_no_eicar() {
    let f = pdf(&[("/Filter /FlateDecode", &zlib(b"BT (hello) Tj ET"))], "");
    let m = members(&f);
    assert_eq!(m[0].1, b"BT (hello) Tj ET");
}

#[test]
fn filter_chains_and_abbreviations() {
    let hex: String = zlib(EICAR).iter().map(|b| format!("{b:02X} ")).collect::<String>() + ">";
    let f = pdf(&[("/Filter [/AHx /Fl]", hex.as_bytes())], "");
    assert_eq!(members(&f)[0].1, EICAR);
}

#[test]
fn ascii85() {
    // "Man " is 9jqo^ in ASCII85; "sure." ends in a partial group; z is four zeros.
    let f = pdf(&[("/Filter /ASCII85Decode", b"9jqo^ z F*2M7/c~>")], "");
    assert_eq!(members(&f)[0].1, b"Man \0\0\0\0sure.");
}

#[test]
fn lzw_reference_example() {
    // ISO 32000-1, 7.4.4.2: 2D 2D 2D 2D 2D 41 2D 2D 2D 42 encodes as 80 0B 60 50 22 0C 0C 85 01.
    let f = pdf(&[("/Filter /LZWDecode", &[0x80, 0x0B, 0x60, 0x50, 0x22, 0x0C, 0x0C, 0x85, 0x01])], "");
    assert_eq!(members(&f)[0].1, b"-----A---B");
}

#[test]
fn run_length() {
    let f = pdf(&[("/Filter /RunLengthDecode", &[2, b'a', b'b', b'c', 254, b'x', 128])], "");
    assert_eq!(members(&f)[0].1, b"abcxxx");
}

#[test]
fn png_up_predictor() {
    // Two rows of 3 columns: the second row is "Up" (tag 2) deltas from the first.
    let rows = [0u8, 10, 20, 30, 2, 1, 1, 1];
    let f = pdf(&[("/Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 3 >>", &zlib(&rows))], "");
    assert_eq!(members(&f)[0].1, [10, 20, 30, 11, 21, 31]);
}

#[test]
fn embedded_file_is_named() {
    let f = pdf(&[("/Type /EmbeddedFile /Filter /FlateDecode", &zlib(EICAR))], "");
    let m = members(&f);
    assert_eq!(m[0].0, "obj1/EmbeddedFile");
    assert_eq!(m[0].1, EICAR);
}

#[test]
fn unknown_filter_keeps_the_bytes() {
    let f = pdf(&[("/Filter /DCTDecode", b"\xff\xd8jpeg")], "");
    assert_eq!(members(&f)[0].1, b"\xff\xd8jpeg");
}

#[test]
fn encrypted_is_reported() {
    let f = pdf(&[("/Filter /FlateDecode", &zlib(EICAR))], "/Encrypt 9 0 R");
    assert_eq!(run(Kind::Pdf, &f, &LOOSE).0, Err(Fault::Encrypted("Heuristics.Encrypted.PDF")));
    // The name inside stream data, or /EncryptMetadata, is not encryption.
    let f = pdf(&[("", b"/Encrypt 1 0 R"), ("/EncryptMetadata false", b"x")], "");
    assert_eq!(run(Kind::Pdf, &f, &LOOSE).0, Ok(()));
}

#[test]
fn truncated_is_broken_after_what_was_found() {
    let z = zlib(&[b'a'; 4000]);
    let f = pdf(&[("", EICAR), ("/Filter /FlateDecode", &z)], "");
    let cut = &f[..f.len() - 60 - z.len() / 2];
    let (r, c) = run(Kind::Pdf, cut, &LOOSE);
    assert_eq!(r, Err(Fault::Broken("Heuristics.Broken.PDF")));
    assert_eq!(c.members[0].1, EICAR);
    // Corrupt Flate data is broken too.
    let f = pdf(&[("/Filter /FlateDecode", b"\x00\x01garbage")], "");
    assert_eq!(run(Kind::Pdf, &f, &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.PDF")));
    // No objects at all.
    assert_eq!(run(Kind::Pdf, b"%PDF-1.4\n", &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.PDF")));
}

#[test]
fn limits_are_faults() {
    let bomb = zlib(&vec![0u8; 1 << 20]);
    let f = pdf(&[("/Filter /FlateDecode", &bomb)], "");
    let small = Limits { member_bytes_max: 100_000, ..LOOSE };
    assert_eq!(run(Kind::Pdf, &f, &small).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
    let ratio = Limits { ratio_max: 10, ..LOOSE };
    assert_eq!(run(Kind::Pdf, &f, &ratio).0, Err(Fault::Limit(LIMIT_RATIO)));
    let one = Limits { members_max: 1, ..LOOSE };
    let f = pdf(&[("", b"a"), ("", b"b")], "");
    assert_eq!(run(Kind::Pdf, &f, &one).0, Err(Fault::Limit(LIMIT_FILES)));
    // In a chain, the intermediate stage is bounded too.
    let hex: String = bomb.iter().map(|b| format!("{b:02X}")).collect();
    let f = pdf(&[("/Filter [/AHx /Fl]", hex.as_bytes())], "");
    let tiny = Limits { member_bytes_max: 1000, ..LOOSE };
    assert_eq!(run(Kind::Pdf, &f, &tiny).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
}

#[test]
fn many_bare_stream_keywords_are_linear() {
    // No dictionaries: nothing is a stream, and the scan does not go back over the file.
    let mut f = b"%PDF-1.4\n1 0 obj\n".to_vec();
    for _ in 0..200_000 {
        f.extend_from_slice(b">>stream\n");
    }
    f.extend_from_slice(b"%%EOF\n");
    let (r, c) = run(Kind::Pdf, &f, &LOOSE);
    assert!(c.members.len() <= 1);
    let _ = r;
}
