//! CAB fixtures, written with the `cab` crate's writer (stored and MSZIP) and patched for the
//! faults.

use std::io::{Cursor, Write};

use super::tests::*;
use super::*;

pub(crate) fn build(ctype: ::cab::CompressionType, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = ::cab::CabinetBuilder::new();
    let folder = b.add_folder(ctype);
    for (name, _) in files {
        folder.add_file(*name);
    }
    let mut w = b.build(Cursor::new(Vec::new())).unwrap();
    let mut i = 0;
    while let Some(mut fw) = w.next_file().unwrap() {
        fw.write_all(files[i].1).unwrap();
        i += 1;
    }
    w.finish().unwrap().into_inner()
}

/// Bytes that compress, with matches reaching back across 32 KiB block boundaries.
fn compressible(n: usize) -> Vec<u8> {
    let mut x = 12345u32;
    let unit: Vec<u8> = (0..20_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 24) as u8
        })
        .collect();
    unit.iter().copied().cycle().take(n).collect()
}

#[test]
fn stored_files_are_members() {
    let c = build(::cab::CompressionType::None, &[("dir\\eicar.com", EICAR), ("clean.txt", b"clean")]);
    assert_eq!(detect(&c), Some(Kind::Cab));
    let (r, m) = run(Kind::Cab, &c, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(m.members.len(), 2);
    assert_eq!((m.members[0].0.as_str(), m.members[0].1.as_slice(), m.members[0].2), ("dir/eicar.com", EICAR, true));
    assert_eq!(m.members[1].1, b"clean");
}

#[test]
fn mszip_across_blocks() {
    let big = compressible(150_000);
    let c = build(::cab::CompressionType::MsZip, &[("a.bin", &big), ("eicar.com", EICAR), ("empty", b"")]);
    assert!(c.len() < 60_000, "the fixture compresses ({} bytes)", c.len());
    let (r, m) = run(Kind::Cab, &c, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(m.members.len(), 3);
    assert!(m.members[0].1 == big, "150 kB file intact");
    assert_eq!(m.members[1].1, EICAR);
    assert_eq!(m.members[2].1, b"");
}

#[test]
fn clean_cab() {
    let c = build(::cab::CompressionType::MsZip, &[("readme.txt", b"nothing to see")]);
    let (r, m) = run(Kind::Cab, &c, &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(!has_member(&m, EICAR));
    assert_eq!(m.members[0].1, b"nothing to see");
}

/// The offset of the first CFFILE entry.
fn files_at(c: &[u8]) -> usize {
    u32::from_le_bytes(c[16..20].try_into().unwrap()) as usize
}

#[test]
fn overlapping_files_each_get_their_bytes() {
    let c = build(::cab::CompressionType::MsZip, &[("one", EICAR), ("two", b"0123456789")]);
    let mut c2 = c.clone();
    // Point the second file at the first one's bytes.
    let second = files_at(&c) + 16 + 4; // first entry is 16 bytes + "one\0"
    c2[second..second + 4].copy_from_slice(&(EICAR.len() as u32).to_le_bytes());
    c2[second + 4..second + 8].copy_from_slice(&0u32.to_le_bytes());
    let (r, m) = run(Kind::Cab, &c2, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(m.members.len(), 2);
    assert!(m.members.iter().all(|x| x.1 == EICAR));
}

#[test]
fn truncated_and_corrupt_are_broken() {
    let c = build(::cab::CompressionType::MsZip, &[("a.bin", &compressible(100_000))]);
    for cut in [10, 40, c.len() / 2, c.len() - 1] {
        assert_eq!(run(Kind::Cab, &c[..cut], &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.CAB")), "cut {cut}");
    }
    let mut bad = c.clone();
    let last = bad.len() - 100;
    bad[last..].iter_mut().for_each(|b| *b ^= 0x55);
    assert_eq!(run(Kind::Cab, &bad, &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.CAB")));
}

#[test]
fn quantum_is_reported() {
    let mut c = build(::cab::CompressionType::None, &[("q", EICAR)]);
    // The first CFFOLDER's typeCompress, right after the 36-byte header.
    c[42..44].copy_from_slice(&0x0002u16.to_le_bytes());
    assert_eq!(run(Kind::Cab, &c, &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.CAB.Quantum")));
}

#[test]
fn limits_are_faults() {
    let c = build(::cab::CompressionType::MsZip, &[("a", &vec![0u8; 200_000]), ("b", b"b")]);
    let small = Limits { member_bytes_max: 100_000, ..LOOSE };
    assert_eq!(run(Kind::Cab, &c, &small).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
    let ratio = Limits { ratio_max: 5, ..LOOSE };
    assert_eq!(run(Kind::Cab, &c, &ratio).0, Err(Fault::Limit(LIMIT_RATIO)));
    let one = Limits { members_max: 1, ..LOOSE };
    assert_eq!(run(Kind::Cab, &c, &one).0, Err(Fault::Limit(LIMIT_FILES)));
}
