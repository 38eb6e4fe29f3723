//! The central-directory zip reader on its own: ClamAV's imploded zip, entries the stream read
//! skipped, bytes before the held base unread.

use super::tests::{corpus, md5_hex, Collect, LOOSE};
use super::*;
use std::io::Write;

const CLAM_MD5: &str = "aa15bcf478d165efd2065190eb473bcb";

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn read(data: &[u8], base: u64, done: &[ZipDone]) -> (Result<(), Fault>, Collect) {
    let mut c = Collect::default();
    let r = extract_zip(&data[base as usize..], base, done, 1 << 20, crate::limits::LZMA_MEMORY_BYTES_MAX, &LOOSE, &mut c);
    (r, c)
}

#[test]
fn clamavs_imploded_zip_yields_clam_exe() {
    let Some(data) = corpus("clam.impl.zip") else { return };
    let (r, c) = read(&data, 0, &[]);
    assert_eq!(r, Ok(()));
    assert!(c.members.iter().any(|m| md5_hex(&m.1) == CLAM_MD5 && m.2), "{:?}", c.members.len());
}

#[test]
fn entries_read_by_the_stream_are_skipped_and_bytes_before_the_base_refused() {
    let z = zip_of(&[("a", b"first member"), ("b", b"second member")]);
    let (r, c) = read(&z, 0, &[]);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.len(), 2);
    // The first entry, as the stream would record it: offset 0, its CRC and compressed size.
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&z)).unwrap();
    let first = {
        let f = archive.by_index(0).unwrap();
        ZipDone { offset: 0, crc: f.crc32(), csize: f.compressed_size() }
    };
    let second_at = archive.by_index(1).unwrap().header_start();
    let (r, c) = read(&z, 0, &[first]);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["b"]);
    // Held from the second entry on, with the first done: the second is read.
    let (r, c) = read(&z, second_at, &[first]);
    assert_eq!(r, Ok(()));
    assert_eq!(
        c.members.iter().map(|m| (m.0.as_str(), m.1.as_slice())).collect::<Vec<_>>(),
        [("b", &b"second member"[..])]
    );
    // A CRC that differs from the stream's is another entry: it is not held, so broken.
    let other = ZipDone { crc: first.crc ^ 1, ..first };
    assert_eq!(read(&z, second_at, &[other]).0, Err(Fault::Broken("Heuristics.Broken.Zip")));
}
