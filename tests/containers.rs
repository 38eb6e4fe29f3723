//! The container layer against ClamAV's own test corpus (Debian's `clamav-testfiles`), as a
//! new user would try it: two signatures for `clam.exe` (its MD5 as `.hdb`, 64 bytes of its
//! code as `.ndb`), then every corpus file must be blocked except those named below as out of
//! reach, and clean twins of the containers must pass. In process through the engine, and a
//! few files over loopback through the real binary.

mod common;

use common::*;
use icapd::inspect::{Inspector, Progress, Txn, Verdict};
use icapd::limits::Limits;
use icapd::proto::Method;
use icapd::scan::engine::{EngineInspector, ScanCtx};
use icapd::scan::policy::{Early204, OverLimit};
use icapd::scan::unpack::EncryptedPolicy;
use icapd::scan::ScanPolicy;
use icapd::signatures::{load, LoadOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CORPUS: &str = "/usr/share/clamav-testfiles";
const MD5_NAME: &str = "ClamExe-MD5";
const CODE_NAME: &str = "ClamExe-Code";

/// Corpus files this layer does not reach, and why; every other file must be blocked, and
/// each of these must not be (a file that becomes reachable leaves the list).
const OUT_OF_REACH: &[(&str, &str)] = &[
    ("clam-aspack.exe", "ASPack-packed PE: no unpacker (ClamAV emulates the unpacking stub)"),
    ("clam-mew.exe", "MEW-packed PE: no unpacker"),
    ("clam-pespin.exe", "PESpin-packed PE: no unpacker"),
    ("clam-petite.exe", "Petite-packed PE: no unpacker"),
    ("clam-upack.exe", "Upack-packed PE: no unpacker"),
    ("clam-wwpack.exe", "WWPack-packed PE: no unpacker"),
    ("clam.arj", "ARJ: no well-kept crate decodes it"),
    ("clam.ea05.exe", "AutoIt v3.0.5 compiled script (AutoIt's own cipher and compression): no decoder"),
    ("clam.ea06.exe", "AutoIt v3.0.6 compiled script (AutoIt's own cipher and compression): no decoder"),
    ("clam.sis", "Symbian SIS: no decoder"),
    (
        "clam_IScab_int.exe",
        "InstallShield setup: clam.exe is in data1.cab, InstallShield's own cabinet format (ISc(), which no crate reads",
    ),
    ("clam_ISmsi_ext.exe", "InstallShield setup stream: the MSI is obfuscated and compressed inside the PE"),
    ("clam_ISmsi_int.exe", "InstallShield setup stream: the MSI is obfuscated and compressed inside the PE"),
];

/// Corpus files blocked by a heuristic rather than by the clam.exe signatures, and the name
/// they must be blocked with (the whole library finds yC's PE image broken).
const BLOCKED_BY_HEURISTIC: &[(&str, &str)] = &[("clam-yc.exe", "Heuristics.Broken.Executable")];

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .unwrap_or_else(|e| panic!("{CORPUS}: {e} (scripts/test installs clamav-testfiles)"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn clam_exe() -> Vec<u8> {
    std::fs::read(Path::new(CORPUS).join("clam.exe")).unwrap()
}

/// A signature folder with the two clam.exe signatures; removed on drop.
struct Sigs(PathBuf);

impl Sigs {
    fn new(tag: &str) -> Sigs {
        let exe = clam_exe();
        let dir = std::env::temp_dir().join(format!("icapd-corpus-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let md5 = md5_hex(&exe);
        std::fs::write(dir.join("clam.hdb"), format!("{md5}:{}:{MD5_NAME}\n", exe.len())).unwrap();
        // 64 bytes of clam.exe's code (file offset 0x40, the instructions its entry point
        // runs): unique to it, and in the clear only where clam.exe is stored uncompressed.
        let hex: String = exe[0x40..0x80].iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.join("clam.ndb"), format!("{CODE_NAME}:0:*:{hex}\n")).unwrap();
        Sigs(dir)
    }
}

impl Drop for Sigs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn engine(sigs: &Sigs) -> EngineInspector {
    let gen = load(&sigs.0, LoadOptions::default()).expect("signatures load");
    assert!(gen.problems.is_empty(), "{:?}", gen.problems);
    let policy =
        ScanPolicy { over_limit: OverLimit::Block, early_204: Early204::default(), encrypted: EncryptedPolicy::Block };
    EngineInspector::new(ScanCtx::new(Arc::new(gen), Limits::default().scan(), policy))
}

/// The verdict for `body` fed in `chunk`-byte pieces, and the member path of a find.
fn verdict(inspector: &mut EngineInspector, name: &str, body: &[u8], chunk: usize) -> (Verdict, Option<String>) {
    let req = format!("GET http://example.com/{name} HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let txn = Txn {
        method: Method::Respmod,
        service: "respmod",
        req_hdr: Some(req.as_bytes()),
        res_hdr: Some(b"HTTP/1.1 200 OK\r\n\r\n"),
        policy: Default::default(),
    };
    let v = match inspector.begin(&txn) {
        Progress::Done(v) => v,
        Progress::More => body
            .chunks(chunk)
            .find_map(|piece| match inspector.feed(piece) {
                Progress::Done(v) => Some(v),
                Progress::More => None,
            })
            .unwrap_or_else(|| inspector.finish()),
    };
    (v, inspector.found_in().map(str::to_string))
}

fn is_signature(v: &Verdict) -> bool {
    matches!(v, Verdict::Infected { threat } if &**threat == MD5_NAME || &**threat == CODE_NAME)
}

#[test]
fn every_corpus_file_in_reach_is_blocked_in_process() {
    let sigs = Sigs::new("inproc");
    let mut inspector = engine(&sigs);
    let mut table = String::new();
    let mut missed = Vec::new();
    let mut blocked = 0;
    let files = corpus_files();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let body = std::fs::read(path).unwrap();
        let out_of_reach = OUT_OF_REACH.iter().find(|(n, _)| *n == name).map(|(_, why)| *why);
        // Whole, and at the chunk sizes the loopback tests use.
        let (v, found_in) = verdict(&mut inspector, &name, &body, body.len().max(1));
        for chunk in [1, 7, 1024, 16 * 1024] {
            assert_eq!(verdict(&mut inspector, &name, &body, chunk).0, v, "{name} at {chunk}-byte pieces");
        }
        let _ = writeln!(table_writer(&mut table), "{name:24} {v:?} {found_in:?} {}", out_of_reach.unwrap_or(""));
        if let Some((_, threat)) = BLOCKED_BY_HEURISTIC.iter().find(|(n, _)| *n == name) {
            if !matches!(&v, Verdict::Infected { threat: t } if &**t == *threat) {
                missed.push(format!("{name}: {v:?}, want {threat}"));
            }
            blocked += 1;
            continue;
        }
        match (is_signature(&v), out_of_reach) {
            (true, None) => blocked += 1,
            (false, None) => missed.push(format!("{name}: {v:?}")),
            // Reached after all: the list is out of date.
            (true, Some(why)) => missed.push(format!("{name}: blocked, but listed out of reach ({why})")),
            // Out of reach: it must not be blocked by a heuristic either (else it belongs in
            // the list of those, with its name).
            (false, Some(_)) => {
                if v != Verdict::Clean {
                    missed.push(format!("{name}: out of reach but {v:?}"));
                }
            }
        }
    }
    println!("{table}\n{blocked} of {} blocked", files.len());
    assert!(missed.is_empty(), "not as listed: {missed:#?}\n{table}");
    assert_eq!(blocked + OUT_OF_REACH.len(), files.len(), "every file is blocked or listed out of reach");
}

fn table_writer(s: &mut String) -> impl std::io::Write + '_ {
    struct W<'a>(&'a mut String);
    impl std::io::Write for W<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push_str(&String::from_utf8_lossy(b));
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    W(s)
}

/// clam.exe with its code replaced by NOPs: still a PE, matched by neither signature.
fn harmless() -> Vec<u8> {
    let mut exe = clam_exe();
    exe[0x40..0x80].fill(0x90);
    exe
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            s.push('\n');
        }
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            s.push(if k <= c.len() { A[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    s
}

fn zip_with(name: &str, data: &[u8], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default().compression_method(method)).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bz2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn uu(name: &str, data: &[u8]) -> String {
    let enc = |v: u8| if v == 0 { '`' } else { (v + b' ') as char };
    let mut out = format!("begin 644 {name}\n");
    for line in data.chunks(45) {
        out.push(enc(line.len() as u8));
        for c in line.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            for v in [b[0] >> 2, ((b[0] & 3) << 4) | (b[1] >> 4), ((b[1] & 15) << 2) | (b[2] >> 6), b[2] & 63] {
                out.push(enc(v));
            }
        }
        out.push('\n');
    }
    out + "`\nend\n"
}

/// BinHex 4.0 of one data fork (0x90 escaped, CRCs left zero).
fn binhex(name: &str, data: &[u8]) -> Vec<u8> {
    const A: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
    let mut raw = vec![name.len() as u8];
    raw.extend_from_slice(name.as_bytes());
    raw.extend_from_slice(&[0; 11]);
    raw.extend_from_slice(&(data.len() as u32).to_be_bytes());
    raw.extend_from_slice(&[0; 6]);
    raw.extend_from_slice(data);
    raw.extend_from_slice(&[0; 4]);
    let mut rle = Vec::new();
    for &b in &raw {
        rle.push(b);
        if b == 0x90 {
            rle.push(0);
        }
    }
    let mut out = b"(This file must be converted with BinHex 4.0)\n:".to_vec();
    for (i, c) in rle.chunks(3).enumerate() {
        if i > 0 && i % 16 == 0 {
            out.push(b'\n');
        }
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * k) & 63) as usize]);
        }
    }
    out.extend_from_slice(b":\n");
    out
}

/// SZDD with every byte a literal.
fn szdd(data: &[u8]) -> Vec<u8> {
    let mut out = b"SZDD\x88\xf0\x27\x33Ae".to_vec();
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    for group in data.chunks(8) {
        out.push(0xff);
        out.extend_from_slice(group);
    }
    out
}

/// A corpus file with clam.exe's code, wherever it lies in the clear, replaced by NOPs.
fn patched(name: &str) -> Vec<u8> {
    let mut body = std::fs::read(Path::new(CORPUS).join(name)).unwrap();
    let code = &clam_exe()[0x40..0x80];
    let at = body.windows(code.len()).position(|w| w == code).expect("clam.exe in the clear");
    body[at..at + code.len()].fill(0x90);
    body
}

/// The same kinds of container as the corpus files in reach, holding a harmless member.
fn clean_twins() -> Vec<(&'static str, Vec<u8>)> {
    use zip::CompressionMethod as M;
    let h = harmless();
    let mail = format!(
        "From: ClamAV\nTo: ClamAV\nSubject: twin\nMime-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n\
         --B\nContent-Type: text/plain\n\nhello\n--B\nContent-Type: application/octet-stream; name=clam.exe\n\
         Content-Transfer-Encoding: base64\n\n{}\n--B--\n",
        b64(&h)
    );
    let mbox_uu = format!(
        "From test@example.com  Thu Jul 31 13:51:21 2008\nFrom: test@example.com\nMIME-Version: 1.0\n\
         Content-Type: Application/Octet-Stream; name=\"clam.exe\"\nContent-Transfer-Encoding: x-uuencode\n\n{}",
        uu("clam.exe", &h)
    );
    let html = format!("<a href=\"data:application/octet-stream;base64,{}\">x</a>\n", b64(&h).replace('\n', ""));
    vec![
        ("twin.zip", zip_with("clam.exe", &h, M::Deflated)),
        ("twin.bz2.zip", zip_with("clam.exe", &h, M::Bzip2)),
        ("twin.stored.zip", zip_with("clam.exe", &h, M::Stored)),
        ("twin.tar.gz", gz(&tar_with("clam.exe", &h))),
        ("twin.exe.bz2", bz2(&h)),
        ("twin.exe.gz", gz(&h)),
        ("twin_emax.tgz", gz(&tar_with("a.tgz", &gz(&tar_with("b.tgz", &gz(&tar_with("clam.exe", &h))))))),
        ("twin.bin-be.cpio", patched("clam.bin-be.cpio")),
        ("twin.bin-le.cpio", patched("clam.bin-le.cpio")),
        ("twin.newc.cpio", patched("clam.newc.cpio")),
        ("twin.odc.cpio", patched("clam.odc.cpio")),
        ("twin.mail", mail.into_bytes()),
        ("twin.mbox.uu", mbox_uu.into_bytes()),
        ("twin.binhex", binhex("clam.exe", &h)),
        ("twin.szdd", szdd(&h)),
        ("twin.html", html.into_bytes()),
    ]
}

#[test]
fn clean_twins_pass_and_their_infected_forms_are_found() {
    let sigs = Sigs::new("twins");
    let mut inspector = engine(&sigs);
    let exe = clam_exe();
    for (name, body) in clean_twins() {
        for chunk in [body.len(), 1, 7, 1024] {
            let (v, _) = verdict(&mut inspector, name, &body, chunk);
            assert_eq!(v, Verdict::Clean, "{name} at {chunk}-byte pieces");
        }
    }
    // The builders that transform the member, given clam.exe itself, must block: so each
    // twin's container is really opened (the patched cpio twins' originals are the corpus's).
    use zip::CompressionMethod as M;
    for (name, body) in [
        ("dirty.zip", zip_with("clam.exe", &exe, M::Deflated)),
        ("dirty.tar.gz", gz(&tar_with("clam.exe", &exe))),
        ("dirty.binhex", binhex("clam.exe", &exe)),
        ("dirty.szdd", szdd(&exe)),
        ("dirty.uu", uu("clam.exe", &exe).into_bytes()),
    ] {
        let (v, path) = verdict(&mut inspector, name, &body, 7);
        assert!(is_signature(&v), "{name}: {v:?}");
        assert!(path.as_deref().is_some_and(|p| p.starts_with(&format!("{name}/"))), "{name}: {path:?}");
    }
}

fn icap_server(sigs: &Sigs, log: &Path, format: &str) -> Server {
    let _ = std::fs::remove_file(log);
    let args = ["--shards", "1", "--signatures", sigs.0.to_str().unwrap()];
    let log_args = ["--access-log", log.to_str().unwrap(), "--access-log-format", format];
    Server::start(&[&args[..], &log_args[..]].concat(), None)
}

fn respmod_chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = respmod_head("respmod", None, true);
    out.extend(chunked(body, chunk));
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(std::time::Instant::now() < deadline, "{} has {} lines, want {n}", path.display(), lines.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn corpus_files_over_loopback_name_the_member_in_the_access_log() {
    let sigs = Sigs::new("loopback");
    for format in ["icap", "json"] {
        let log = std::env::temp_dir().join(format!("icapd-corpus-{format}-{}.log", std::process::id()));
        let server = icap_server(&sigs, &log, format);
        let files = ["clam.zip", "clam.tar.gz", "clam.exe.mbox.base64", "clam.newc.cpio"];
        let mut sent = 0;
        for (i, name) in files.iter().enumerate() {
            let body = std::fs::read(Path::new(CORPUS).join(name)).unwrap();
            for chunk in [16 * 1024, 1024, 7][i % 3..].iter().take(1).chain(&[1]) {
                let r = exchange(&server.connect(), respmod_chunked(&body, *chunk)).expect("a response");
                let found = r.header("X-Infection-Found").unwrap_or_default().to_string();
                assert!(found.contains("Threat=ClamExe-"), "{name} at {chunk}: {found} {:?}", r.head);
                sent += 1;
            }
        }
        let twin = gz(&tar_with("clam.exe", &harmless()));
        assert_eq!(exchange(&server.connect(), respmod_chunked(&twin, 100)).expect("a response").status, 204);
        sent += 1;
        let lines = log_lines(&log, sent);
        // The request URL is http://origin.test/file: the object is named `file`.
        let zip_line = &lines[0];
        match format {
            "icap" => assert!(zip_line.ends_with(" file/clam.exe"), "{zip_line}"),
            _ => assert!(zip_line.contains("\"found_in\":\"file/clam.exe\""), "{zip_line}"),
        }
        assert!(
            lines[2].contains("file/file.tar/clam.exe") || lines[2].contains("file/[gzip]/clam.exe"),
            "{}",
            lines[2]
        );
        assert!(lines[sent - 1].contains("passed"), "{}", lines[sent - 1]);
        drop(server);
        let _ = std::fs::remove_file(&log);
    }
}

/// A REQMOD upload of `body` as `multipart/form-data` (one file part), in `chunk`-byte pieces.
fn reqmod_upload(file_name: &str, file: &[u8], chunk: usize) -> Vec<u8> {
    let mut body = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\n\
         Content-Disposition: form-data; name=\"f\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let req_hdr = format!(
        "POST http://origin.test/upload HTTP/1.1\r\nHost: origin.test\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut req = format!(
        "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: 127.0.0.1\r\nAllow: 204\r\n\
         Encapsulated: req-hdr=0, req-body={}\r\n\r\n{req_hdr}",
        req_hdr.len()
    )
    .into_bytes();
    req.extend(chunked(&body, chunk));
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

#[test]
fn uploads_are_opened_like_downloads_over_loopback() {
    let sigs = Sigs::new("upload");
    let log = std::env::temp_dir().join(format!("icapd-corpus-upload-{}.log", std::process::id()));
    let server = icap_server(&sigs, &log, "json");
    let zip = std::fs::read(Path::new(CORPUS).join("clam.zip")).unwrap();
    for chunk in [16 * 1024, 7] {
        let r = exchange(&server.connect(), reqmod_upload("clam.zip", &zip, chunk)).expect("a response");
        let found = r.header("X-Infection-Found").unwrap_or_default().to_string();
        assert!(found.contains("Threat=ClamExe-Code"), "at {chunk}: {found} {:?}", r.head);
    }
    let twin = zip_with("clam.exe", &harmless(), zip::CompressionMethod::Deflated);
    assert_eq!(exchange(&server.connect(), reqmod_upload("clam.zip", &twin, 100)).expect("a response").status, 204);
    let lines = log_lines(&log, 3);
    // The upload URL's last segment names the object; the form part names the file.
    assert!(lines[0].contains("\"found_in\":\"upload/clam.zip/clam.exe\""), "{}", lines[0]);
    drop(server);
    let _ = std::fs::remove_file(&log);
}
