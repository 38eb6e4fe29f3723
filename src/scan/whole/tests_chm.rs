//! CHM fixtures: a small ITSF file with stored (section 0) files written here; the LZX
//! section is exercised on the corpus's clam.chm, corrupted for the fault.

use super::tests::*;
use super::*;

fn encint(mut v: u64, out: &mut Vec<u8>) {
    let mut bytes = vec![(v & 0x7F) as u8];
    v >>= 7;
    while v > 0 {
        bytes.push((v & 0x7F) as u8 | 0x80);
        v >>= 7;
    }
    out.extend(bytes.iter().rev());
}

pub(super) fn chm(files: &[(&str, &[u8])]) -> Vec<u8> {
    const CHUNK: usize = 4096;
    let mut entries = Vec::new();
    let mut content = Vec::new();
    for (name, data) in files {
        encint(name.len() as u64, &mut entries);
        entries.extend_from_slice(name.as_bytes());
        encint(0, &mut entries);
        encint(content.len() as u64, &mut entries);
        encint(data.len() as u64, &mut entries);
        content.extend_from_slice(data);
    }
    let mut pmgl = b"PMGL".to_vec();
    pmgl.extend_from_slice(&((CHUNK - 0x14 - entries.len()) as u32).to_le_bytes());
    pmgl.extend_from_slice(&[0; 4]);
    pmgl.extend_from_slice(&u32::MAX.to_le_bytes());
    pmgl.extend_from_slice(&u32::MAX.to_le_bytes());
    pmgl.extend(entries);
    pmgl.resize(CHUNK, 0);
    let mut itsp = b"ITSP".to_vec();
    for v in [1u32, 0x54, 10, CHUNK as u32, 2, 1, u32::MAX, 0, 0, u32::MAX, 1, 0x409] {
        itsp.extend_from_slice(&v.to_le_bytes());
    }
    itsp.resize(0x54, 0);
    itsp.extend(pmgl);
    let dir_at = 0x60u64;
    let content_at = dir_at + itsp.len() as u64;
    let mut f = b"ITSF".to_vec();
    f.extend_from_slice(&3u32.to_le_bytes());
    f.extend_from_slice(&0x60u32.to_le_bytes());
    f.resize(0x38, 0);
    for v in [0x60u64, 0, dir_at, itsp.len() as u64, content_at] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    f.resize(0x60, 0);
    f.extend(itsp);
    f.extend(content);
    f
}

#[test]
fn stored_files_are_members() {
    let f = chm(&[("/", b""), ("/eicar.htm", EICAR), ("/clean.htm", b"<p>clean</p>")]);
    assert_eq!(detect(&f), Some(Kind::Chm));
    let (r, c) = run(Kind::Chm, &f, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 2);
    assert_eq!((c.members[0].0.as_str(), c.members[0].1.as_slice()), ("eicar.htm", EICAR));
    assert_eq!(c.members[1].1, b"<p>clean</p>");
}

#[test]
fn clean_chm() {
    let (r, c) = run(Kind::Chm, &chm(&[("/a.htm", b"hello")]), &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(!has_member(&c, EICAR));
}

#[test]
fn truncated_is_broken() {
    let f = chm(&[("/eicar.htm", EICAR)]);
    for cut in [10, 0x70, 0x60 + 0x54 + 100, f.len() - 1] {
        assert_eq!(run(Kind::Chm, &f[..cut], &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.CHM")), "cut {cut}");
    }
}

#[test]
fn corrupt_lzx_is_broken() {
    let Some(mut f) = corpus("clam.chm") else { return };
    assert_eq!(run(Kind::Chm, &f, &LOOSE).0, Ok(()));
    // The compressed section sits after the directory; scramble the end of the file.
    let n = f.len();
    f[n - 2000..].iter_mut().for_each(|b| *b = b.wrapping_mul(31).wrapping_add(7));
    assert!(matches!(run(Kind::Chm, &f, &LOOSE).0, Err(Fault::Broken(_))));
}

#[test]
fn limits_are_faults() {
    let f = chm(&[("/a", &[1u8; 3000]), ("/b", b"b")]);
    assert_eq!(run(Kind::Chm, &f, &Limits { member_bytes_max: 1000, ..LOOSE }).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
    assert_eq!(run(Kind::Chm, &f, &Limits { members_max: 1, ..LOOSE }).0, Err(Fault::Limit(LIMIT_FILES)));
}
