//! Self-extracting programs: a PE's overlay handed on as a member (zip, 7z and cabinet SFX, an
//! appended PE) and NSIS installers' data, block by block and solid, LZMA, deflate and stored;
//! whole, at every split and byte by byte.

use super::tests::{check_splits, infected, lzma_encode, zip_of, CLEAN, EICAR, FOUND};
use crate::inspect::Verdict;
use crate::scan::pe::build_test_pe;
use crate::scan::unpack::detect::{detect, Detect, Kind};
use std::io::Write;

/// A small program whose overlay is `overlay`.
fn sfx(overlay: &[u8]) -> Vec<u8> {
    let mut pe = build_test_pe(&[b"\x55\x8b\xec stub code that would unpack the overlay \xc3"], 0);
    pe.extend_from_slice(overlay);
    pe
}

/// How an NSIS item or stream is compressed.
#[derive(Clone, Copy)]
enum Method {
    Lzma,
    Deflate,
    Stored,
}

/// NSIS's LZMA: the five property bytes, then the raw stream (liblzma ends it with a marker,
/// which NSIS's own encoder leaves out; the corpus file covers that).
fn nsis_lzma(data: &[u8]) -> Vec<u8> {
    let opts = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
    let mut filters = liblzma::stream::Filters::new();
    filters.lzma1(&opts);
    let raw = lzma_encode(liblzma::stream::Stream::new_raw_encoder(&filters).unwrap(), data);
    let mut out = vec![0x5D];
    out.extend_from_slice(&(8u32 << 20).to_le_bytes());
    out.extend_from_slice(&raw);
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn compress(method: Method, data: &[u8]) -> Vec<u8> {
    match method {
        Method::Lzma => nsis_lzma(data),
        Method::Deflate => deflate(data),
        Method::Stored => data.to_vec(),
    }
}

const SCRIPT: &[u8] = b"NSIS script header: pages, sections, strings $INSTDIR\\app.exe ...";

/// An NSIS data block: the script header then `files`, block by block or as one solid stream,
/// with its CRC-32 slot at the end.
fn nsis(files: &[&[u8]], method: Method, solid: bool) -> Vec<u8> {
    let mut items = vec![SCRIPT];
    items.extend_from_slice(files);
    let data = if solid {
        let mut plain = Vec::new();
        for item in &items {
            plain.extend_from_slice(&(item.len() as u32).to_le_bytes());
            plain.extend_from_slice(item);
        }
        compress(method, &plain)
    } else {
        let mut data = Vec::new();
        for item in &items {
            let packed = compress(method, item);
            let flag = if matches!(method, Method::Stored) { 0 } else { 0x8000_0000 };
            data.extend_from_slice(&(packed.len() as u32 | flag).to_le_bytes());
            data.extend_from_slice(&packed);
        }
        data
    };
    nsis_of_data(&data)
}

/// An NSIS data block around `data` (the items as the layout has them), with its CRC-32 slot.
fn nsis_of_data(data: &[u8]) -> Vec<u8> {
    let mut block = 0u32.to_le_bytes().to_vec();
    block.extend_from_slice(b"\xEF\xBE\xAD\xDENullsoftInst");
    block.extend_from_slice(&(SCRIPT.len() as u32).to_le_bytes());
    block.extend_from_slice(&((28 + data.len() + 4) as u32).to_le_bytes());
    block.extend_from_slice(data);
    block.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    block
}

#[test]
fn a_pe_is_a_container_only_through_its_overlay() {
    let pe = sfx(b"");
    assert_eq!(detect(&pe, true), Detect::Container(Kind::PeOverlay(pe.len() as u64)));
    // A bare PE, or one whose overlay is no payload (a certificate table, padding), is clean.
    check_splits("plain.exe", &pe, &Verdict::Clean, None);
    let mut cert = 0x208u32.to_le_bytes().to_vec();
    cert.extend_from_slice(&[0x00, 0x02, 0x02, 0x00, 0x30, 0x82, 0x02, 0x00]);
    cert.resize(0x208, 0x41);
    check_splits("signed.exe", &sfx(&cert), &Verdict::Clean, None);
    // Text that would read as mail headers is not a payload to open (it would be "broken").
    check_splits("notes.exe", &sfx(b"From: a@b\r\nTo: c@d\r\n\r\nx"), &Verdict::Clean, None);
    // A threat stored as it is in the overlay is named in the member however the bytes are
    // cut, also inside the PE's first 4 KiB, which the PE's own scanners get only once it is
    // typed (see Level::feed): at its end when it is shorter, at 4 KiB when not.
    let mut stored = vec![b'.'; 5000];
    stored[100..100 + EICAR.len()].copy_from_slice(EICAR);
    check_splits("raw.exe", &sfx(&stored[..600]), &infected(FOUND), Some("raw.exe/[overlay]"));
    check_splits("raw.exe", &sfx(&stored), &infected(FOUND), Some("raw.exe/[overlay]"));
    // Past the head too: the PE's own find is held until its overlay member has had it all.
    let mut late = vec![b'.'; 9000];
    late[8000..8000 + EICAR.len()].copy_from_slice(EICAR);
    check_splits("raw.exe", &sfx(&late), &infected(FOUND), Some("raw.exe/[overlay]"));
}

#[test]
fn zip_7z_and_cabinet_sfx_payloads_are_opened() {
    let zip = zip_of(&[("readme.txt", CLEAN), ("tools/eicar.com", EICAR)], zip::CompressionMethod::Deflated);
    check_splits("setup.exe", &sfx(&zip), &infected(FOUND), Some("setup.exe/[overlay]/tools/eicar.com"));
    let clean = zip_of(&[("readme.txt", CLEAN)], zip::CompressionMethod::Deflated);
    check_splits("setup.exe", &sfx(&clean), &Verdict::Clean, None);
    // 7-Zip's SFX: the archive right after the stub. The member pads EICAR with text so
    // that LZMA2 compresses it (a short chunk would be stored, found as it is in the overlay).
    let padded = [CLEAN.repeat(20), EICAR.to_vec(), CLEAN.repeat(20)].concat();
    let sz = crate::scan::whole::tests_7z::build(&[("eicar.com", &padded)], None);
    check_splits("7zsfx.exe", &sfx(&sz), &infected(FOUND), Some("7zsfx.exe/[overlay]/eicar.com"));
    let cab = crate::scan::whole::tests_cab::build(::cab::CompressionType::MsZip, &[("eicar.com", EICAR)]);
    check_splits("cabsfx.exe", &sfx(&cab), &infected(FOUND), Some("cabsfx.exe/[overlay]/eicar.com"));
}

/// An engine whose only signature is the MD5 of `data`, named `name`.
fn md5_engine(data: &[u8], name: &str) -> crate::scan::engine::EngineInspector {
    let md5 = crate::scan::whole::tests::md5_hex(data);
    super::tests::hdb_engine(&format!("{md5}:{}:{name}", data.len()))
}

/// `body` is found as `threat` in `path` whole, at many splits and byte by byte.
fn check_md5(inspector: &mut crate::scan::engine::EngineInspector, name: &str, body: &[u8], threat: &str, path: &str) {
    for cuts in [vec![], (1..body.len()).step_by(977).collect::<Vec<_>>(), (1..body.len()).collect()] {
        let (v, p) = super::tests::run(inspector, name, body, &cuts);
        assert_eq!((v, p.as_deref()), (infected(threat), Some(path)), "{name} in {} pieces", cuts.len() + 1);
    }
}

#[test]
fn an_appended_program_is_a_member_and_hash_signatures_see_it() {
    // A dropper: a second PE after the first one's sections; its MD5 matches the member.
    let mut inner = build_test_pe(&[b"payload code"], 0);
    inner.extend_from_slice(b"the dropped program's own overlay");
    let mut inspector = md5_engine(&inner, "Dropped-MD5");
    check_md5(&mut inspector, "dropper.exe", &sfx(&inner), "Dropped-MD5", "dropper.exe/[overlay]");
    assert_eq!(super::tests::run(&mut inspector, "inner.exe", &inner, &[]).0, infected("Dropped-MD5"));
}

#[test]
fn nsis_installers_are_opened_in_every_layout_and_method() {
    for (method, label) in [(Method::Lzma, "lzma"), (Method::Deflate, "deflate"), (Method::Stored, "stored")] {
        for solid in [false, true] {
            if solid && matches!(method, Method::Stored) {
                continue;
            }
            let name = format!("nsis-{label}-{}.exe", if solid { "solid" } else { "blocks" });
            let body = sfx(&nsis(&[CLEAN, EICAR], method, solid));
            let path = format!("{name}/[overlay]/[nsis-2]");
            check_splits(&name, &body, &infected(FOUND), Some(&path));
            check_splits(&name, &sfx(&nsis(&[CLEAN, CLEAN], method, solid)), &Verdict::Clean, None);
        }
    }
}

#[test]
fn nsis_faults_are_never_silently_clean() {
    // NSIS's own bzip2 variant has no decoder: reported, not passed.
    let mut bz = nsis(&[CLEAN], Method::Stored, false);
    let item = 28 + 4 + SCRIPT.len();
    bz[item..item + 4].copy_from_slice(&(0x8000_0000u32 | 6 + CLEAN.len() as u32 - 6).to_le_bytes());
    bz[item + 4..item + 10].copy_from_slice(b"1AY&SY");
    check_splits("bz.exe", &sfx(&bz), &infected("Heuristics.Unsupported.NSIS.Method"), Some("bz.exe/[overlay]"));
    // Cut short: the block's own length says more was to come.
    let whole = nsis(&[CLEAN, EICAR], Method::Lzma, false);
    let cut = &whole[..whole.len() - 40];
    check_splits("cut.exe", &sfx(cut), &infected("Heuristics.Broken.NSIS"), Some("cut.exe/[overlay]"));
    // An item whose length runs past the data.
    let mut long = nsis(&[CLEAN], Method::Stored, false);
    long[28..32].copy_from_slice(&0x7000u32.to_le_bytes());
    check_splits("long.exe", &sfx(&long), &infected("Heuristics.Broken.NSIS"), Some("long.exe/[overlay]"));
    // Bytes after an item's stream has ended belong to no member.
    let item = [deflate(CLEAN), b"trailing bytes".to_vec()].concat();
    let mut data = Vec::new();
    for packed in [deflate(SCRIPT), item] {
        data.extend_from_slice(&(packed.len() as u32 | 0x8000_0000).to_le_bytes());
        data.extend_from_slice(&packed);
    }
    let trailing = nsis_of_data(&data);
    check_splits("tail.exe", &sfx(&trailing), &infected("Heuristics.Broken.NSIS"), Some("tail.exe/[overlay]"));
    // Corrupt LZMA data.
    let mut bad = nsis(&[EICAR], Method::Lzma, false);
    let end = bad.len() - 4;
    for b in &mut bad[60..end - 8] {
        *b = !*b;
    }
    check_splits("bad.exe", &sfx(&bad), &infected("Heuristics.Broken.NSIS"), Some("bad.exe/[overlay]"));
}

/// A file of ClamAV's corpus yields `clam.exe` as the member `path`: its MD5 matches there.
fn corpus_yields_clam(file: &str, path: &str) {
    let Some(exe) = crate::scan::whole::tests::corpus(file) else { return };
    let clam = crate::scan::whole::tests::corpus("clam.exe").unwrap();
    let mut inspector = md5_engine(&clam, "Clam-MD5");
    check_md5(&mut inspector, file, &exe, "Clam-MD5", path);
}

/// NSIS's own LZMA streams (no end marker): the installed file is a member of its own.
#[test]
fn the_corpus_nsis_installer_yields_clam_exe() {
    corpus_yields_clam("clam-nsis.exe", "clam-nsis.exe/[overlay]/[nsis-1]");
}

/// InstallShield's file list: four text fields, then the file, per entry.
fn is_list(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        out.extend_from_slice(format!("{name}\0Disk1\\{name}\0{}\0{}\0", "0.0.0.0", data.len()).as_bytes());
        out.extend_from_slice(data);
    }
    out
}

#[test]
fn installshield_file_lists_are_opened() {
    let payload = build_test_pe(&[b"the program the setup installs"], 0);
    let zip = zip_of(&[("eicar.com", EICAR)], zip::CompressionMethod::Deflated);
    let list = is_list(&[("setup.ini", b"[Startup]\r\n"), ("files.zip", &zip), ("app.exe", &payload)]);
    check_splits("setup.exe", &sfx(&list), &infected(FOUND), Some("setup.exe/[overlay]/files.zip/eicar.com"));
    // A loose file is a member of its own: its MD5 matches.
    let list = is_list(&[("setup.ini", b"[Startup]\r\n"), ("app.exe", &payload), ("empty", b"")]);
    let mut inspector = md5_engine(&payload, "App-MD5");
    check_md5(&mut inspector, "setup.exe", &sfx(&list), "App-MD5", "setup.exe/[overlay]/app.exe");
    check_splits("setup.exe", &sfx(&list), &Verdict::Clean, None);
    // Cut inside a file, or inside an entry's fields: broken, never clean.
    let cut = &list[..list.len() - 10];
    check_splits("cut.exe", &sfx(cut), &infected("Heuristics.Broken.InstallShield"), Some("cut.exe/[overlay]"));
    let mut partial = list.clone();
    partial.extend_from_slice(b"next.bin\0Disk1\\ne");
    check_splits("cut.exe", &sfx(&partial), &infected("Heuristics.Broken.InstallShield"), Some("cut.exe/[overlay]"));
    // Fields that do not have the shape are no list: the overlay is a plain member.
    let odd = is_list(&[("a/b", CLEAN)]);
    assert_eq!(detect(&odd, true), Detect::Plain);
    check_splits("odd.exe", &sfx(&odd), &Verdict::Clean, None);
}

/// ClamAV's corpus: an InstallShield setup that stores clam.exe loose in its file list.
#[test]
fn the_corpus_installshield_setup_yields_clam_exe() {
    corpus_yields_clam("clam_IScab_ext.exe", "clam_IScab_ext.exe/[overlay]/clam.exe");
}

/// A threat in a streamed container's own bytes and in none of its members (here a zip entry's
/// name) is held until the container ends, then named in the container: the same wherever
/// the pieces end.
#[test]
fn a_find_in_the_container_itself_waits_for_its_members() {
    let name = String::from_utf8(EICAR.to_vec()).unwrap();
    let body = zip_of(&[(name.as_str(), CLEAN), ("second.txt", CLEAN)], zip::CompressionMethod::Stored);
    check_splits("odd.zip", &body, &infected(FOUND), None);
    let inner = zip_of(&[("eicar.com", EICAR)], zip::CompressionMethod::Stored);
    let body = zip_of(&[(name.as_str(), CLEAN), ("inner.zip", &inner)], zip::CompressionMethod::Stored);
    check_splits("odd.zip", &body, &infected(FOUND), Some("odd.zip/inner.zip/eicar.com"));
    // One level down, the container's own find names the container, not the member that
    // happened to be open in it when its scanners got there.
    let inner = zip_of(&[(name.as_str(), CLEAN), ("b.txt", CLEAN)], zip::CompressionMethod::Stored);
    let body = zip_of(&[("inner.zip", &inner)], zip::CompressionMethod::Stored);
    check_splits("odd.zip", &body, &infected(FOUND), Some("odd.zip/inner.zip"));
}
