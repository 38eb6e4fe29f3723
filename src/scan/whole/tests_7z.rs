//! 7z fixtures, written with sevenz-rust2's writer (a dev-dependency with its encoders).

use std::io::Cursor;

use sevenz_rust2::encoder_options::AesEncoderOptions;
use sevenz_rust2::{ArchiveEntry, ArchiveWriter, EncoderConfiguration, EncoderMethod, Password};

use super::tests::*;
use super::*;

pub(crate) fn build(files: &[(&str, &[u8])], aes: Option<bool>) -> Vec<u8> {
    write(files, |w| {
        if let Some(encrypt_header) = aes {
            w.set_content_methods(vec![
                AesEncoderOptions::new(Password::from("secret")).into(),
                EncoderConfiguration::new(EncoderMethod::LZMA2),
            ]);
            w.set_encrypt_header(encrypt_header);
        }
    })
}

/// An archive of `files` from a writer that `configure` has set up.
fn write(files: &[(&str, &[u8])], configure: impl FnOnce(&mut ArchiveWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    configure(&mut w);
    for (name, data) in files {
        w.push_archive_entry(ArchiveEntry::new_file(name), Some(*data)).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn files_are_members() {
    let a = build(&[("dir/eicar.com", EICAR), ("clean.txt", b"clean")], None);
    assert_eq!(detect(&a), Some(Kind::SevenZip));
    let (r, c) = run(Kind::SevenZip, &a, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 2);
    assert!(c.members.iter().any(|m| m.0 == "dir/eicar.com" && m.1 == EICAR && m.2));
    assert!(c.members.iter().any(|m| m.0 == "clean.txt" && m.1 == b"clean"));
}

#[test]
fn clean_archive_and_compressed_header() {
    let names: Vec<String> = (0..200).map(|i| format!("some/long/directory/name/file{i:04}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"harmless text"[..])).collect();
    let a = build(&files, None);
    let header_at = 32 + u64::from_le_bytes(a[12..20].try_into().unwrap()) as usize;
    assert_eq!(a[header_at], 0x17, "the writer compressed the header");
    let (r, c) = run(Kind::SevenZip, &a, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 200);
    assert!(!has_member(&c, EICAR));
}

#[test]
fn encrypted_is_reported() {
    for encrypt_header in [true, false] {
        let a = build(&[("eicar.com", EICAR)], Some(encrypt_header));
        assert_eq!(
            run(Kind::SevenZip, &a, &LOOSE).0,
            Err(Fault::Encrypted("Heuristics.Encrypted.7Zip")),
            "{encrypt_header}"
        );
    }
}

#[test]
fn truncated_and_corrupt_are_broken() {
    let a = build(&[("a.bin", &vec![3u8; 10_000]), ("eicar.com", EICAR)], None);
    for cut in [10, 31, 40, a.len() / 2, a.len() - 1] {
        assert_eq!(run(Kind::SevenZip, &a[..cut], &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.7Zip")), "cut {cut}");
    }
    let mut bad = a.clone();
    bad[34] ^= 0xFF; // packed data: the CRC no longer matches
    bad[35] ^= 0xFF;
    assert!(matches!(run(Kind::SevenZip, &bad, &LOOSE).0, Err(Fault::Broken(_))));
}

#[test]
fn hostile_counts_are_refused_without_allocating() {
    // A plain header claiming 2^40 files.
    let mut header = vec![0x01, 0x05];
    header.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0x01, 0, 0, 0]);
    header.push(0);
    header.push(0);
    let mut a = vec![b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C, 0, 4, 0, 0, 0, 0];
    a.extend_from_slice(&0u64.to_le_bytes());
    a.extend_from_slice(&(header.len() as u64).to_le_bytes());
    a.extend_from_slice(&0u32.to_le_bytes());
    a.extend_from_slice(&header);
    assert!(matches!(run(Kind::SevenZip, &a, &LOOSE).0, Err(Fault::Broken(_) | Fault::Limit(_))));
    // A start header pointing past the end.
    let mut b = a.clone();
    b[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(run(Kind::SevenZip, &b, &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.7Zip")));
}

#[test]
fn limits_are_faults() {
    let a = build(&[("zeros", &vec![0u8; 1 << 20]), ("b", b"b")], None);
    assert_eq!(
        run(Kind::SevenZip, &a, &Limits { member_bytes_max: 100_000, ..LOOSE }).0,
        Err(Fault::Limit(LIMIT_FILE_SIZE))
    );
    assert_eq!(run(Kind::SevenZip, &a, &Limits { ratio_max: 10, ..LOOSE }).0, Err(Fault::Limit(LIMIT_RATIO)));
    assert_eq!(run(Kind::SevenZip, &a, &Limits { members_max: 1, ..LOOSE }).0, Err(Fault::Limit(LIMIT_FILES)));
}

/// sevenz-rust2 calls the closure again after it returned `false` (between blocks, and for the
/// empty entries after the last block); a `Break` from the sink must still be the last call
/// the sink gets. The second archive is the fuzz input that found it.
#[test]
fn break_is_final_across_blocks_and_empty_entries() {
    let built = build(&[("a.com", EICAR), ("empty.txt", b""), ("b.txt", b"more")], None);
    let found: &[u8] = &[
        0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0x00, 0x04, 0xf0, 0x64, 0x0d, 0xd8, 0x50, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa3, 0x8e, 0x21, 0x85, 0x01, 0x00, 0x43,
    ];
    let mut fuzzed = found.to_vec();
    fuzzed.extend_from_slice(EICAR);
    fuzzed.extend_from_slice(&[
        0x00, 0x01, 0x00, 0x03, 0x62, 0x62, 0x62, 0x62, 0x00, 0x01, 0x04, 0x06, 0x00, 0x02, 0x09, 0x48, 0x08, 0x0a,
        0x01, 0x17, 0xda, 0x52, 0xf8, 0x97, 0xa0, 0x59, 0x41, 0x00, 0x07, 0x0b, 0x02, 0x00, 0x01, 0x21, 0x21, 0x01,
        0x16, 0x01, 0x21, 0x21, 0x01, 0x16, 0x0c, 0x44, 0x04, 0x00, 0x08, 0x0a, 0x01, 0x3c, 0xcf, 0x51, 0x68, 0x8b,
        0xf6, 0x4f, 0x0f, 0x00, 0x00, 0x05, 0x02, 0x11, 0x19, 0x00, 0x65, 0x00, 0x2e, 0x00, 0x63, 0x00, 0x6f, 0x00,
        0x6d, 0x00, 0x00, 0x00, 0x62, 0x00, 0x2e, 0x00, 0x74, 0x00, 0x78, 0x00, 0x74, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]);
    for a in [built, fuzzed] {
        let mut whole = Collect::default();
        assert_eq!(extract(Kind::SevenZip, &a, &LOOSE, &mut whole), Ok(()));
        assert!(whole.members.len() >= 2, "fixture must hold two members");
        let mut c = Collect { stop_at: Some(1), ..Default::default() };
        assert_eq!(extract(Kind::SevenZip, &a, &LOOSE, &mut c), Ok(()));
        assert_eq!(c.members.len(), 1, "the sink heard of a member after its Break");
    }
}

/// PPMd folders (7-Zip's `-m0=PPMd`, the usual choice for text) are decoded; a model larger than
/// the dictionary bound is refused before the crate allocates it.
#[test]
fn ppmd_folders_are_decoded_within_the_dictionary_bound() {
    let ppmd = |files: &[(&str, &[u8])], opts: sevenz_rust2::encoder_options::PpmdOptions| {
        write(files, |w| {
            w.set_content_methods(vec![EncoderConfiguration::new(EncoderMethod::PPMD).with_options(opts.into())]);
        })
    };
    let a = ppmd(&[("notes.txt", b"plain words"), ("eicar.com", EICAR)], Default::default());
    let (r, c) = run(Kind::SevenZip, &a, &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(c.members.iter().any(|m| m.0 == "eicar.com" && m.1 == EICAR && m.2));
    assert!(c.members.iter().any(|m| m.0 == "notes.txt" && m.1 == b"plain words"));
    let big = sevenz_rust2::encoder_options::PpmdOptions::from_order_memory_size(6, 96 << 20);
    let a = ppmd(&[("eicar.com", EICAR)], big);
    assert_eq!(run(Kind::SevenZip, &a, &LOOSE).0, Err(Fault::Limit("Heuristics.Limits.Exceeded.MaxDictionary")));
}
