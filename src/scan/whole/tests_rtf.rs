//! RTF fixtures: objects as Word writes them and as droppers obfuscate them.

use super::tests::*;
use super::*;

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An OLE1 embedded object of `class` with `native` data.
pub(super) fn ole1(class: &str, native: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    o.extend_from_slice(&0x0501u32.to_le_bytes());
    o.extend_from_slice(&2u32.to_le_bytes());
    for s in [format!("{class}\0"), String::new(), String::new()] {
        o.extend_from_slice(&(s.len() as u32).to_le_bytes());
        o.extend_from_slice(s.as_bytes());
    }
    o.extend_from_slice(&(native.len() as u32).to_le_bytes());
    o.extend_from_slice(native);
    o
}

pub(super) fn rtf_with(objdata: &str) -> Vec<u8> {
    format!("{{\\rtf1\\ansi {{\\object\\objemb{{\\*\\objclass Word.Document.8}}{{\\*\\objdata {objdata}}}}} text}}")
        .into_bytes()
}

#[test]
fn objdata_native_data_is_a_member() {
    let f = rtf_with(&hex(&ole1("Word.Document.8", EICAR)));
    assert_eq!(detect(&f), Some(Kind::Rtf));
    let (r, c) = run(Kind::Rtf, &f, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 1);
    assert_eq!((c.members[0].0.as_str(), c.members[0].1.as_slice()), ("objdata1", EICAR));
}

#[test]
fn obfuscated_hex_still_decodes() {
    // White space, junk control words and a nested group between the digits.
    let h = hex(&ole1("Equation.3", EICAR));
    let (a, b) = h.split_at(20);
    let f = rtf_with(&format!("{a}\r\n \\junk12 {{\\*\\x}}{b}"));
    let (r, c) = run(Kind::Rtf, &f, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members[0].1, EICAR);
}

#[test]
fn clean_object_and_text() {
    let f = rtf_with(&hex(&ole1("Word.Document.8", b"harmless")));
    let (r, c) = run(Kind::Rtf, &f, &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(!has_member(&c, EICAR));
    assert_eq!(c.members[0].1, b"harmless");
}

#[test]
fn bin_runs_are_members() {
    let mut f = format!("{{\\rtf1 {{\\pict\\bin{} ", EICAR.len()).into_bytes();
    f.extend_from_slice(EICAR);
    f.extend_from_slice(b"}}");
    let (r, c) = run(Kind::Rtf, &f, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!((c.members[0].0.as_str(), c.members[0].1.as_slice()), ("bin1", EICAR));
}

#[test]
fn truncated_is_broken() {
    let f = rtf_with(&hex(&ole1("Word.Document.8", EICAR)));
    let cut = &f[..f.len() - 40];
    let (r, c) = run(Kind::Rtf, cut, &LOOSE);
    assert_eq!(r, Err(Fault::Broken("Heuristics.Broken.RTF")));
    assert!(!c.members.is_empty(), "what was there is still emitted");
    // A \bin longer than the file.
    let (r, _) = run(Kind::Rtf, b"{\\rtf1 \\bin9999 abc}", &LOOSE);
    assert_eq!(r, Err(Fault::Broken("Heuristics.Broken.RTF")));
}

#[test]
fn limits_are_faults() {
    let f = rtf_with(&hex(&ole1("Word.Document.8", &[b'a'; 5000])));
    let small = Limits { member_bytes_max: 1000, ..LOOSE };
    assert_eq!(run(Kind::Rtf, &f, &small).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
    let two = "{\\rtf1 {\\*\\objdata 00}{\\*\\objdata 01}}";
    let one = Limits { members_max: 1, ..LOOSE };
    assert_eq!(run(Kind::Rtf, two.as_bytes(), &one).0, Err(Fault::Limit(LIMIT_FILES)));
}
