//! Zips the streamed reader cannot finish, read again from their central directory: a method
//! it lacks (implode), a local header that lies, sizes only the central directory knows, an
//! encrypted entry among others; whole, at every split and byte by byte, with clean twins; and
//! the limits (members not counted or scanned twice, the buffering limit).

use super::tests::{check_splits, ctx_with, engine, infected, run, zip_lzma_entry, CLEAN, EICAR, FOUND};
use crate::inspect::{Inspector, Verdict};
use crate::limits::Limits;
use crate::proto::testutil::for_each_split;
use crate::scan::engine::EngineInspector;
use crate::scan::policy::OverLimit;
use crate::scan::unpack::EncryptedPolicy;

/// One entry as written: its local header may say something else than its central one.
struct Entry<'a> {
    name: &'a str,
    method: u16,
    /// Flags of the local and the central header.
    flags: (u16, u16),
    data: &'a [u8],
    compressed: Vec<u8>,
    /// The compressed size the local header gives (`None`: the true one).
    local_csize: Option<u32>,
    /// Listed in the central directory only, with its local header at this offset.
    central_only: Option<u32>,
}

impl<'a> Entry<'a> {
    fn new(name: &'a str, method: u16, data: &'a [u8], compressed: Vec<u8>) -> Entry<'a> {
        Entry { name, method, flags: (0, 0), data, compressed, local_csize: None, central_only: None }
    }
}

/// A zip written by hand: local headers, data, central directory, end record.
fn zip_cd(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut z = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let crc = crc32fast::hash(e.data);
        let offset = e.central_only.unwrap_or(z.len() as u32);
        let csize = e.compressed.len() as u32;
        let local_csize = e.local_csize.unwrap_or(csize);
        // With flag 3 the local header's sizes and CRC are zero (a descriptor would follow).
        let known = e.flags.0 & 8 == 0;
        let mut local = Vec::new();
        local.extend_from_slice(b"PK\x03\x04");
        for v in [20u16, e.flags.0, e.method, 0, 0] {
            local.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, local_csize, e.data.len() as u32] {
            local.extend_from_slice(&if known { v } else { 0 }.to_le_bytes());
        }
        local.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(e.name.as_bytes());
        local.extend_from_slice(&e.compressed);
        if e.central_only.is_none() {
            z.extend_from_slice(&local);
        }
        central.extend_from_slice(b"PK\x01\x02");
        for v in [20u16, 20, e.flags.1, e.method, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, csize, e.data.len() as u32] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [e.name.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(e.name.as_bytes());
    }
    let cd_at = z.len() as u32;
    z.extend_from_slice(&central);
    z.extend_from_slice(b"PK\x05\x06");
    for v in [0u16, 0, entries.len() as u16, entries.len() as u16] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&(central.len() as u32).to_le_bytes());
    z.extend_from_slice(&cd_at.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// zip method 6 (implode, 4 KiB window, no literal tree) with every byte a literal: a marker
/// bit and the byte, after the length and distance trees (64 codes of 6 bits each: a full
/// tree, four runs of 16).
fn implode_literals(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..2 {
        out.extend_from_slice(&[3, 0xF5, 0xF5, 0xF5, 0xF5]);
    }
    let (mut acc, mut bits) = (0u32, 0);
    for &b in data {
        acc |= (1 | u32::from(b) << 1) << bits;
        bits += 9;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
    out
}

fn imploded<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry::new(name, 6, data, implode_literals(data))
}

fn stored<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry::new(name, 0, data, data.to_vec())
}

/// Deflated, so that the member is not in the clear for the top-level object's own scanners.
fn deflated<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    Entry::new(name, 8, data, e.finish().unwrap())
}

#[test]
fn imploded_entries_are_read_from_the_central_directory() {
    for (name, first) in [("i.zip", None), ("s.zip", Some(stored("a.txt", CLEAN)))] {
        let dirty: Vec<Entry> =
            first.iter().map(|e| stored(e.name, e.data)).chain([imploded("eicar.com", EICAR)]).collect();
        let path = format!("{name}/eicar.com");
        check_splits(name, &zip_cd(&dirty), &infected(FOUND), Some(&path));
        let clean: Vec<Entry> =
            first.iter().map(|e| stored(e.name, e.data)).chain([imploded("b.txt", CLEAN)]).collect();
        check_splits(name, &zip_cd(&clean), &Verdict::Clean, None);
    }
    // A threat in an entry the stream read before it failed is found by the stream.
    let body = zip_cd(&[stored("eicar.com", EICAR), imploded("b.txt", CLEAN)]);
    check_splits("f.zip", &body, &infected(FOUND), Some("f.zip/eicar.com"));
}

#[test]
fn lying_local_headers_and_sizes_only_the_central_directory_knows() {
    // The local header says the entry is 10 bytes shorter than it is.
    let lie = |data: &'static [u8]| {
        let mut e = deflated("x.com", data);
        e.local_csize = Some(e.compressed.len() as u32 - 10);
        zip_cd(&[stored("a.txt", CLEAN), e])
    };
    check_splits("l.zip", &lie(EICAR), &infected(FOUND), Some("l.zip/x.com"));
    check_splits("l.zip", &lie(CLEAN), &Verdict::Clean, None);
    // Stored, flag 3 (sizes in a descriptor), and no descriptor: only the central directory
    // says where the entry ends.
    let no_descriptor = |data: &'static [u8]| {
        let mut e = stored("x.com", data);
        e.flags = (8, 8);
        zip_cd(&[e, stored("z.txt", CLEAN)])
    };
    // (EICAR stored is in the clear: the top-level object's own scanners, which run a
    // descriptor's length ahead of the member's, may be the ones to name it.)
    let mut inspector = engine();
    let body = no_descriptor(EICAR);
    for_each_split(body.len(), |cuts| assert_eq!(run(&mut inspector, "d.zip", &body, cuts).0, infected(FOUND)));
    check_splits("d.zip", &no_descriptor(CLEAN), &Verdict::Clean, None);
    // Deflated the same way: what the stream takes for the descriptor is the next header.
    let mut e = deflated("x.com", CLEAN);
    e.flags = (8, 8);
    check_splits("d.zip", &zip_cd(&[e, stored("z.txt", CLEAN)]), &Verdict::Clean, None);
}

#[test]
fn an_entry_only_the_central_directory_leads_to_is_never_silently_clean() {
    // b.com's local header and data lie inside a.bin's stored data, after a few bytes (so
    // that a.bin is no zip itself): a reader of the local headers sees a.bin only, a reader of
    // the central directory both.
    let b = deflated("b.com", EICAR);
    let mut data = b"not a zip: ".to_vec();
    let b_at = 30 + "a.bin".len() + data.len();
    data.extend_from_slice(&zip_cd(&[deflated("b.com", EICAR)])[..30 + "b.com".len() + b.compressed.len()]);
    let mut hidden = b;
    hidden.central_only = Some(b_at as u32);
    let body = zip_cd(&[stored("a.bin", &data), hidden]);
    check_splits("h.zip", &body, &infected("Heuristics.Broken.Zip.HiddenEntry"), None);
    // Without the extra listing it is an ordinary zip holding bytes.
    let body = zip_cd(&[stored("a.bin", &data)]);
    check_splits("h.zip", &body, &Verdict::Clean, None);
}

#[test]
fn no_member_is_counted_or_scanned_twice() {
    // Two members allowed: the stored one the stream read and the imploded one read from the
    // central directory are two, not three.
    let limits = Limits { container_members_max: 2, ..Limits::default() };
    let mut inspector = EngineInspector::new(ctx_with(limits, OverLimit::Block, EncryptedPolicy::Block));
    let body = zip_cd(&[stored("a.txt", CLEAN), imploded("b.txt", CLEAN)]);
    assert_eq!(run(&mut inspector, "t.zip", &body, &[]).0, Verdict::Clean);
    // The stream failed inside the member it had open (a lying size): that member is read
    // again whole, and still counted once.
    let mut e = deflated("x.com", CLEAN);
    e.local_csize = Some(e.compressed.len() as u32 - 10);
    let body = zip_cd(&[stored("a.txt", CLEAN), e]);
    for cuts in [&[][..], &[40, 41, 100]] {
        assert_eq!(run(&mut inspector, "t.zip", &body, cuts).0, Verdict::Clean);
    }
    let three = zip_cd(&[stored("a", CLEAN), stored("b", CLEAN), imploded("c", CLEAN)]);
    assert_eq!(run(&mut inspector, "t.zip", &three, &[]).0, infected("Heuristics.Limits.Exceeded.MaxFiles"));
}

#[test]
fn encrypted_entries_and_missing_methods_are_reported_and_the_rest_is_read() {
    let mut secret = stored("secret.bin", CLEAN);
    secret.flags = (1, 1);
    let body = zip_cd(&[secret, deflated("eicar.com", EICAR)]);
    // The stream stops at the encrypted entry; the central directory reads the next one.
    check_splits("e.zip", &body, &infected(FOUND), Some("e.zip/eicar.com"));
    let mut secret = stored("secret.bin", CLEAN);
    secret.flags = (1, 1);
    let body = zip_cd(&[secret, stored("b.txt", CLEAN)]);
    check_splits("e.zip", &body, &infected("Heuristics.Encrypted.Zip"), None);
    let mut pass = EngineInspector::new(ctx_with(Limits::default(), OverLimit::Block, EncryptedPolicy::Pass));
    assert_eq!(run(&mut pass, "e.zip", &body, &[]).0, Verdict::Clean);
    assert_eq!(pass.limit_hit(), Some("Heuristics.Encrypted.Zip"));
    // A method neither reader has (WavPack, 97) is reported; the entry after it is still read.
    let odd = Entry::new("p.bin", 97, CLEAN, CLEAN.to_vec());
    let body = zip_cd(&[odd, deflated("eicar.com", EICAR)]);
    check_splits("p.zip", &body, &infected(FOUND), Some("p.zip/eicar.com"));
    let odd = Entry::new("p.bin", 97, CLEAN, CLEAN.to_vec());
    let body = zip_cd(&[odd, stored("b.txt", CLEAN)]);
    check_splits("p.zip", &body, &infected("Heuristics.Unsupported.Zip.Method"), None);
    // Without a central directory there is nothing to read it from: broken, as before.
    let cut = zip_cd(&[imploded("b.txt", CLEAN)]);
    let mut inspector = engine();
    assert_eq!(run(&mut inspector, "c.zip", &cut[..cut.len() - 30], &[]).0, infected("Heuristics.Broken.Zip"));
}

#[test]
fn a_zip_read_from_its_central_directory_is_held_within_the_buffering_limit() {
    let big = vec![b'.'; 64 * 1024];
    let body = zip_cd(&[imploded("big.txt", &big)]);
    let limits = Limits { container_buffer_bytes_max: 16 * 1024, ..Limits::default() };
    let mut inspector = EngineInspector::new(ctx_with(limits, OverLimit::Block, EncryptedPolicy::Block));
    for cuts in [&[][..], &[5000, 20000]] {
        let v = run(&mut inspector, "b.zip", &body, cuts).0;
        assert_eq!(v, infected("Heuristics.Limits.Exceeded.MaxBufferSize"), "{cuts:?}");
    }
    // Under `pass` it passes, with the limit reported.
    let mut pass = EngineInspector::new(ctx_with(limits, OverLimit::Pass, EncryptedPolicy::Block));
    assert_eq!(run(&mut pass, "b.zip", &body, &[]).0, Verdict::Clean);
    assert_eq!(pass.limit_hit(), Some("Heuristics.Limits.Exceeded.MaxBufferSize"));
    // A streamed zip larger than the limit is not held, and reads as before.
    let fine = zip_cd(&[stored("big.txt", &big), stored("eicar.com", EICAR)]);
    assert_eq!(run(&mut inspector, "f.zip", &fine, &[]).0, infected(FOUND));
    let fine = zip_cd(&[stored("big.txt", &big), stored("b.txt", CLEAN)]);
    assert_eq!(run(&mut inspector, "f.zip", &fine, &[]).0, Verdict::Clean);
}

/// LZMA (14) and zstd (93) entries after an encrypted one: the stream stops at the encrypted
/// entry, and the central-directory reader decodes the next one itself (the crate, as built
/// here, does not); a corrupt one is broken, not clean.
#[test]
fn lzma_and_zstd_entries_are_read_from_the_central_directory_too() {
    let lzma = |data: &'static [u8]| Entry::new("x.com", 14, data, zip_lzma_entry(data));
    let zstd = |data: &'static [u8]| Entry::new("x.com", 93, data, crate::scan::decode::tests::zstd(data));
    let secret = || {
        let mut e = stored("secret.bin", CLEAN);
        e.flags = (1, 1);
        e
    };
    // zstd keeps a 68-byte EICAR as a raw block, in the clear: the top-level object's own
    // scanners may name it first, so only LZMA's find must come from the member.
    let lzma: fn(&'static [u8]) -> Entry<'static> = lzma;
    let zstd: fn(&'static [u8]) -> Entry<'static> = zstd;
    for (make, found_in) in [(lzma, Some("m.zip/x.com")), (zstd, None)] {
        let body = zip_cd(&[secret(), make(EICAR)]);
        if found_in.is_some() {
            check_splits("m.zip", &body, &infected(FOUND), found_in);
        } else {
            let mut inspector = engine();
            for_each_split(body.len(), |cuts| assert_eq!(run(&mut inspector, "m.zip", &body, cuts).0, infected(FOUND)));
        }
        let body = zip_cd(&[secret(), make(CLEAN)]);
        check_splits("m.zip", &body, &infected("Heuristics.Encrypted.Zip"), None);
        let mut pass = EngineInspector::new(ctx_with(Limits::default(), OverLimit::Block, EncryptedPolicy::Pass));
        assert_eq!(run(&mut pass, "m.zip", &body, &[]).0, Verdict::Clean);
        // Corrupt data (the decoder fails, or the CRC-32 no longer holds) is broken.
        let mut e = make(CLEAN);
        let last = e.compressed.len() - 1;
        e.compressed[last] ^= 0x55;
        let body = zip_cd(&[secret(), e]);
        let mut inspector = engine();
        assert_eq!(run(&mut inspector, "m.zip", &body, &[]).0, infected("Heuristics.Broken.Zip"));
    }
}

/// A PPMd entry as 7-Zip and WinZip write one: the 16-bit header (order, model size in MiB,
/// restore method), then the PPMd variant I stream.
fn ppmd_entry(data: &[u8], order: u32, memory_mib: u32) -> Vec<u8> {
    let header = (order - 1) as u16 | (((memory_mib - 1) as u16) << 4);
    let mut out = header.to_le_bytes().to_vec();
    let mut e =
        ppmd_rust::Ppmd8Encoder::new(Vec::new(), order, memory_mib << 20, ppmd_rust::RestoreMethod::Restart).unwrap();
    std::io::Write::write_all(&mut e, data).unwrap();
    out.extend_from_slice(&e.finish(false).unwrap());
    out
}

/// PPMd (method 98): the streamed reader hands the zip over and the central-directory reader
/// decodes the entry; a model larger than the decoder bound is unsupported, and corrupt data
/// broken, never clean.
#[test]
fn ppmd_entries_are_read_from_the_central_directory() {
    let ppmd = |data: &'static [u8], mib| Entry::new("x.com", 98, data, ppmd_entry(data, 6, mib));
    let body = zip_cd(&[stored("a.txt", CLEAN), ppmd(EICAR, 16)]);
    check_splits("p.zip", &body, &infected(FOUND), Some("p.zip/x.com"));
    check_splits("p.zip", &zip_cd(&[ppmd(CLEAN, 16), stored("a.txt", CLEAN)]), &Verdict::Clean, None);
    // 128 MiB of model is over the 80 MiB the decoder bound allows: reported, not allocated.
    let body = zip_cd(&[ppmd(CLEAN, 128), stored("b.txt", CLEAN)]);
    check_splits("p.zip", &body, &infected("Heuristics.Unsupported.Zip.Method"), None);
    let mut e = ppmd(CLEAN, 16);
    let at = e.compressed.len() / 2;
    e.compressed[at] ^= 0x5A;
    let mut inspector = engine();
    assert_eq!(run(&mut inspector, "p.zip", &zip_cd(&[e]), &[]).0, infected("Heuristics.Broken.Zip"));
}
