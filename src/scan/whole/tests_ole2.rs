//! OLE2 fixtures built with the `cfb` crate's writer.

use std::io::{Cursor, Write};

use super::tests::*;
use super::*;

pub(super) fn build(streams: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for (path, bytes) in streams {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if parent != std::path::Path::new("/") {
                cf.create_storage_all(parent).unwrap();
            }
        }
        cf.create_stream(path).unwrap().write_all(bytes).unwrap();
    }
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

fn package(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p.extend_from_slice(b"C:\\src\\");
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p.extend_from_slice(&0x0003_0000u32.to_le_bytes());
    let tmp = b"C:\\tmp\\x\0";
    p.extend_from_slice(&(tmp.len() as u32).to_le_bytes());
    p.extend_from_slice(tmp);
    p.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    p.extend_from_slice(payload);
    let mut s = (p.len() as u32).to_le_bytes().to_vec();
    s.extend_from_slice(&p);
    s
}

#[test]
fn streams_are_members_by_path() {
    let doc = build(&[("/WordDocument", b"hello clean"), ("/Macros/Mod", EICAR)]);
    assert_eq!(detect(&doc), Some(Kind::Ole2));
    let (r, c) = run(Kind::Ole2, &doc, &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(c.members.iter().any(|m| m.0 == "WordDocument" && m.1 == b"hello clean" && m.2));
    assert!(c.members.iter().any(|m| m.0 == "Macros/Mod" && m.1 == EICAR && m.2));
}

#[test]
fn clean_member_has_no_eicar() {
    let doc = build(&[("/WordDocument", b"just text")]);
    let (r, c) = run(Kind::Ole2, &doc, &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(!has_member(&c, EICAR));
    assert!(has_member(&c, b"just text"));
}

#[test]
fn package_payload_is_its_own_member() {
    let big: Vec<u8> = EICAR.iter().copied().chain(std::iter::repeat_n(b'.', 5000)).collect();
    let doc = build(&[("/ObjectPool/_1/\u{1}Ole10Native", &package("evil.com", &big))]);
    let (r, c) = run(Kind::Ole2, &doc, &LOOSE);
    assert_eq!(r, Ok(()));
    let m = c.members.iter().find(|m| m.0.ends_with("/evil.com")).expect("payload member");
    assert_eq!(m.0, "ObjectPool/_1/\\x01Ole10Native/evil.com");
    assert_eq!(m.1, big);
}

#[test]
fn truncated_is_broken() {
    let doc = build(&[("/WordDocument", &[7u8; 10_000])]);
    for cut in [8, 100, 511, 700, doc.len() / 2] {
        let (r, _) = run(Kind::Ole2, &doc[..cut], &LOOSE);
        assert_eq!(r, Err(Fault::Broken("Heuristics.Broken.OLE2")), "cut at {cut}");
    }
}

#[test]
fn limits_are_faults() {
    let doc = build(&[("/A", &[1u8; 5000]), ("/B", b"b")]);
    let small = Limits { member_bytes_max: 4096, ..LOOSE };
    assert_eq!(run(Kind::Ole2, &doc, &small).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
    let one = Limits { members_max: 1, ..LOOSE };
    assert_eq!(run(Kind::Ole2, &doc, &one).0, Err(Fault::Limit(LIMIT_FILES)));
}

#[test]
fn break_stops_at_once() {
    let doc = build(&[("/A", b"a"), ("/B", b"b"), ("/C", b"c")]);
    let mut c = Collect { stop_at: Some(1), ..Default::default() };
    assert_eq!(extract(Kind::Ole2, &doc, &LOOSE, &mut c), Ok(()));
    assert_eq!(c.members.len(), 1);
}

#[test]
fn vba_source_is_decompressed() {
    // A module stream: 4 bytes of "p-code", then the compressed source (all literal chunk).
    let src = b"Sub AutoOpen()\r\n  Shell \"calc\"\r\nEnd Sub\r\n";
    let mut module = b"PCOD".to_vec();
    module.extend(compress_literal(src));
    // dir: MODULESTREAMNAME "Module1" then MODULEOFFSET 4.
    let mut dir = Vec::new();
    dir.extend_from_slice(&0x0009u16.to_le_bytes());
    dir.extend_from_slice(&4u32.to_le_bytes());
    dir.extend_from_slice(&[0; 6]);
    dir.extend_from_slice(&0x001Au16.to_le_bytes());
    dir.extend_from_slice(&7u32.to_le_bytes());
    dir.extend_from_slice(b"Module1");
    dir.extend_from_slice(&0x0031u16.to_le_bytes());
    dir.extend_from_slice(&4u32.to_le_bytes());
    dir.extend_from_slice(&4u32.to_le_bytes());
    let doc = build(&[("/Macros/VBA/dir", &compress_literal(&dir)), ("/Macros/VBA/Module1", &module)]);
    let (r, c) = run(Kind::Ole2, &doc, &LOOSE);
    assert_eq!(r, Ok(()));
    let m = c.members.iter().find(|m| m.0 == "Macros/VBA/Module1/source").expect("source member");
    assert_eq!(m.1, src);
}

/// MS-OVBA container of one compressed chunk holding only literals (flag byte 0 per 8 bytes).
pub fn compress_literal(data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 4096);
    let mut body = Vec::new();
    for group in data.chunks(8) {
        body.push(0);
        body.extend_from_slice(group);
    }
    let header = 0x8000u16 | 0x3000 | (body.len() as u16 + 2 - 3);
    let mut c = vec![1u8];
    c.extend_from_slice(&header.to_le_bytes());
    c.extend(body);
    c
}

#[test]
fn ovba_copy_tokens() {
    // "abcabcabc": literals a b c, then a copy token offset 3 length 6 at position 3:
    // bit count 4 (2^4 >= 3), offset field (3-1) << 12, length field 6-3.
    let token: u16 = (2 << 12) | 3;
    let mut body = vec![0b0000_1000u8, b'a', b'b', b'c'];
    body.extend_from_slice(&token.to_le_bytes());
    let header = 0x8000u16 | 0x3000 | (body.len() as u16 + 2 - 3);
    let mut c = vec![1u8];
    c.extend_from_slice(&header.to_le_bytes());
    c.extend(body);
    let mut b = out::Buf::new(1 << 20);
    ovba::decompress(&c, &mut b).unwrap();
    assert_eq!(b.bytes, b"abcabcabc");
}

#[test]
fn encrypted_documents_are_reported_after_their_streams() {
    let doc =
        build(&[("/EncryptionInfo", b"\x04\x00\x04\x00"), ("/EncryptedPackage", b"ciphertext"), ("/Macros/M", EICAR)]);
    let (r, c) = run(Kind::Ole2, &doc, &LOOSE);
    assert_eq!(r, Err(Fault::Encrypted("Heuristics.Encrypted.OLE2")));
    assert!(has_member(&c, EICAR), "the streams still come out first");
    // Word 97 with fEncrypted in the FIB; and the same FIB without it is clean.
    let mut fib = vec![0u8; 64];
    fib[0..2].copy_from_slice(&0xA5ECu16.to_le_bytes());
    fib[0x0A..0x0C].copy_from_slice(&0x0100u16.to_le_bytes());
    assert_eq!(
        run(Kind::Ole2, &build(&[("/WordDocument", &fib)]), &LOOSE).0,
        Err(Fault::Encrypted("Heuristics.Encrypted.OLE2"))
    );
    fib[0x0A..0x0C].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(run(Kind::Ole2, &build(&[("/WordDocument", &fib)]), &LOOSE).0, Ok(()));
}
