//! The whole engine over the bundled signature folder: every chunking of an object, including
//! one byte at a time and random splits, must give the same verdict.

use super::engine::{EngineInspector, ScanCtx};
use super::policy::{Early204, OverLimit};
use super::ScanPolicy;
use crate::inspect::{Inspector, Progress, Txn, Verdict};
use crate::limits::Limits;
use crate::proto::Method;
use crate::signatures::{load, LoadOptions};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

const EICAR: &[u8] = include_bytes!("../../tests/samples/eicar.com");

fn ctx(limits: Limits) -> Rc<ScanCtx> {
    ctx_from(&Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures"), limits)
}

fn ctx_from(dir: &Path, limits: Limits) -> Rc<ScanCtx> {
    let gen = load(dir, LoadOptions::default()).expect("signatures load");
    assert!(gen.problems.is_empty(), "{:?}", gen.problems);
    let policy = ScanPolicy {
        over_limit: OverLimit::Block,
        early_204: Early204::default(),
        encrypted: crate::scan::unpack::EncryptedPolicy::Block,
    };
    ScanCtx::new(Arc::new(gen), limits.scan(), policy)
}

/// A private signature folder holding the given files (name, contents); removed on drop.
struct Folder(std::path::PathBuf);

impl Folder {
    fn new(tag: &str, files: &[(&str, Vec<u8>)]) -> Folder {
        let dir = std::env::temp_dir().join(format!("icapd-engine-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bundled_file(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures").join(name)).unwrap()
}

fn verdict(inspector: &mut EngineInspector, body: &[u8], cuts: &[usize]) -> Verdict {
    crate::inspect::verdict_of(inspector, body, cuts)
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn chunking_never_changes_the_verdict() {
    let ctx = ctx(Limits::default());
    let mut inspector = EngineInspector::new(ctx);
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let mut bodies: Vec<(Vec<u8>, bool)> = vec![(EICAR.to_vec(), true), (b"clean".to_vec(), false)];
    for at in [0usize, 1, 4095, 4096, 65_500, 131_000] {
        let mut body: Vec<u8> = (0..at + 200).map(|_| xorshift(&mut seed) as u8).collect();
        body.splice(at..at, EICAR.iter().copied());
        bodies.push((body, true));
    }
    bodies.push(((0..200_000).map(|_| xorshift(&mut seed) as u8).collect(), false));
    for (body, infected) in &bodies {
        let whole = verdict(&mut inspector, body, &[]);
        assert_eq!(matches!(whole, Verdict::Infected { .. }), *infected, "len {}", body.len());
        if body.len() <= 5000 {
            let every: Vec<usize> = (1..body.len()).collect();
            assert_eq!(verdict(&mut inspector, body, &every), whole, "byte by byte");
        }
        for _ in 0..20 {
            let mut cuts: Vec<usize> =
                (0..(xorshift(&mut seed) % 12)).map(|_| (xorshift(&mut seed) as usize) % body.len().max(1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            cuts.retain(|&c| c > 0);
            assert_eq!(verdict(&mut inspector, body, &cuts), whole, "cuts {cuts:?}");
        }
    }
}

#[test]
fn each_engine_finds_eicar_when_the_others_cannot() {
    // Byte by byte, EICAR is found by the body matcher in feed; the hashes and YARA only
    // conclude at finish. Blinding the body matcher (by splitting EICAR across two objects) must
    // leave nothing found, and an exact EICAR object must be found by finish at the latest.
    let ctx = ctx(Limits::default());
    let mut inspector = EngineInspector::new(ctx);
    assert!(matches!(verdict(&mut inspector, &EICAR[..40], &[]), Verdict::Clean));
    assert!(matches!(verdict(&mut inspector, &EICAR[40..], &[]), Verdict::Clean));
    assert!(matches!(verdict(&mut inspector, EICAR, &[34]), Verdict::Infected { .. }));
}

#[test]
fn scan_size_limit() {
    let ctx = ctx(Limits { scan_bytes_max: 1000, ..Limits::default() });
    let mut inspector = EngineInspector::new(ctx);
    let body = vec![b'a'; 1500];
    assert_eq!(
        verdict(&mut inspector, &body, &[999, 1000, 1001]),
        Verdict::Infected { threat: super::policy::THREAT_SIZE.into() }
    );
    assert_eq!(verdict(&mut inspector, &body[..1000], &[]), Verdict::Clean);
}

#[test]
fn a_lying_content_length_does_not_skip_hash_signatures() {
    let folder = Folder::new("hdb", &[("eicar.hdb", bundled_file("eicar.hdb"))]);
    let mut inspector = EngineInspector::new(ctx_from(&folder.0, Limits::default()));
    let res_hdr = b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n";
    let txn = Txn {
        method: Method::Respmod,
        service: "respmod",
        req_hdr: None,
        res_hdr: Some(res_hdr),
        policy: Default::default(),
    };
    assert!(matches!(inspector.begin(&txn), Progress::More));
    assert!(matches!(inspector.feed(&EICAR[..10]), Progress::More));
    assert!(matches!(inspector.feed(&EICAR[10..]), Progress::More));
    assert_eq!(inspector.finish(), Verdict::Infected { threat: "Eicar-Test-Signature-MD5".into() });
    // Past the largest signed size nothing is hashed, and nothing can match.
    let _ = inspector.begin(&txn);
    let _ = inspector.feed(EICAR);
    let _ = inspector.feed(b"x");
    assert_eq!(inspector.finish(), Verdict::Clean);
}

#[test]
fn an_object_that_ends_early_leaves_no_yara_state_behind() {
    // YARA-only marker: split across two objects it must never match, whatever ended the
    // first object early.
    let rule = b"rule Two { strings: $a = \"first-half\" $b = \"second-half\" condition: $a and $b }".to_vec();
    let folder = Folder::new("yara", &[("m.yar", rule), ("eicar.ndb", bundled_file("eicar.ndb"))]);
    let mut inspector = EngineInspector::new(ctx_from(&folder.0, Limits::default()));
    let first = [b"....first-half....".as_slice(), EICAR].concat();
    assert_eq!(verdict(&mut inspector, &first, &[]), Verdict::Infected { threat: "Eicar-Test-Signature".into() });
    assert_eq!(verdict(&mut inspector, b"....second-half....", &[]), Verdict::Clean);
    assert_eq!(
        verdict(&mut inspector, b"first-half second-half", &[8]),
        Verdict::Infected { threat: "YARA.Two".into() }
    );
}

// Content-Encoding: the scanners see the decoded bytes, and every decoding fault goes through
// the over-limit policy.

use super::decode::tests::{brotli, gzip, raw_deflate, text, zero_bomb, zlib, zstd};
use super::policy as p;

fn ctx_policy(limits: Limits, over_limit: OverLimit) -> Rc<ScanCtx> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    let gen = load(&dir, LoadOptions::default()).expect("signatures load");
    ScanCtx::new(
        Arc::new(gen),
        limits.scan(),
        ScanPolicy {
            over_limit,
            early_204: Early204::default(),
            encrypted: crate::scan::unpack::EncryptedPolicy::Block,
        },
    )
}

fn res_hdr(fields: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{fields}\r\n").into_bytes()
}

/// One object with the given encapsulated heads, fed in the pieces `cuts` gives.
fn verdict_with(inspector: &mut EngineInspector, txn: &Txn<'_>, body: &[u8], cuts: &[usize]) -> Verdict {
    crate::inspect::verdict_of_txn(inspector, txn, body, cuts)
}

/// The RESPMOD verdict for `body` under `Content-Encoding: <coding>`, the same at every split.
fn encoded_verdict(inspector: &mut EngineInspector, fields: &str, body: &[u8]) -> Verdict {
    let head = res_hdr(fields);
    let txn = Txn {
        method: Method::Respmod,
        service: "respmod",
        req_hdr: None,
        res_hdr: Some(&head),
        policy: Default::default(),
    };
    let whole = verdict_with(inspector, &txn, body, &[]);
    let step = (body.len() / 200).max(1);
    let mut singles = (1..body.len()).step_by(step);
    let every: Vec<usize> = (1..body.len()).collect();
    for cut in singles.by_ref() {
        assert_eq!(verdict_with(inspector, &txn, body, &[cut]), whole, "{fields} cut at {cut}");
    }
    if body.len() <= 20_000 {
        assert_eq!(verdict_with(inspector, &txn, body, &every), whole, "{fields} byte by byte");
    }
    whole
}

fn infected(threat: &str) -> Verdict {
    Verdict::Infected { threat: threat.into() }
}

#[test]
fn encoded_eicar_is_blocked_in_every_coding() {
    let mut inspector = EngineInspector::new(ctx(Limits::default()));
    let page = [text(3000).as_slice(), EICAR, text(500).as_slice()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("Content-Encoding: gzip\r\n", gzip(&page)),
        ("Content-Encoding: x-gzip\r\n", gzip(&page)),
        ("Content-Encoding: deflate\r\n", zlib(&page)),
        ("Content-Encoding: deflate\r\n", raw_deflate(&page)),
        ("Content-Encoding: br\r\n", brotli(&page)),
        ("Content-Encoding: zstd\r\n", zstd(&page)),
        ("Content-Encoding: gzip, br\r\n", brotli(&gzip(&page))),
        ("Content-Encoding: deflate\r\nContent-Encoding: zstd, gzip\r\n", gzip(&zstd(&zlib(&page)))),
        ("Content-Encoding: identity\r\n", page.clone()),
    ];
    for (fields, body) in &cases {
        assert_eq!(encoded_verdict(&mut inspector, fields, body), infected("Eicar-Test-Signature"), "{fields}");
    }
    // The same pages without EICAR pass.
    let clean = text(5000);
    for (fields, body) in [
        ("Content-Encoding: gzip\r\n", gzip(&clean)),
        ("Content-Encoding: br\r\n", brotli(&clean)),
        ("Content-Encoding: zstd\r\n", zstd(&clean)),
        ("Content-Encoding: gzip, br\r\n", brotli(&gzip(&clean))),
    ] {
        assert_eq!(encoded_verdict(&mut inspector, fields, &body), Verdict::Clean, "{fields}");
    }
}

#[test]
fn hash_and_yara_signatures_see_the_decoded_object() {
    for (file, threat) in [("eicar.hdb", "Eicar-Test-Signature-MD5"), ("eicar.yar", "YARA.EICAR_Test_File")] {
        let folder = Folder::new(&format!("decoded-{file}"), &[(file, bundled_file(file))]);
        let mut inspector = EngineInspector::new(ctx_from(&folder.0, Limits::default()));
        assert_eq!(encoded_verdict(&mut inspector, "Content-Encoding: gzip\r\n", &gzip(EICAR)), infected(threat));
        assert_eq!(encoded_verdict(&mut inspector, "Content-Encoding: br\r\n", &brotli(EICAR)), infected(threat));
    }
}

#[test]
fn an_encoded_upload_is_decoded_too() {
    let mut inspector = EngineInspector::new(ctx(Limits::default()));
    let req = b"POST http://origin.test/upload HTTP/1.1\r\nHost: origin.test\r\nContent-Encoding: gzip\r\n\r\n";
    let txn = Txn {
        method: Method::Reqmod,
        service: "reqmod",
        req_hdr: Some(req),
        res_hdr: None,
        policy: Default::default(),
    };
    let body = gzip(&[text(2000).as_slice(), EICAR].concat());
    assert_eq!(verdict_with(&mut inspector, &txn, &body, &[100, 101]), infected("Eicar-Test-Signature"));
    assert_eq!(verdict_with(&mut inspector, &txn, &gzip(&text(2000)), &[7]), Verdict::Clean);
}

#[test]
fn unknown_codings_are_scanned_as_received() {
    let mut inspector = EngineInspector::new(ctx(Limits::default()));
    // A browser cannot decode x-foo or compress either, so the bytes are scanned as they are:
    // EICAR in the clear is found, and known codings applied after the unknown one are undone.
    assert_eq!(encoded_verdict(&mut inspector, "Content-Encoding: x-foo\r\n", EICAR), infected("Eicar-Test-Signature"));
    assert_eq!(
        encoded_verdict(&mut inspector, "Content-Encoding: compress\r\n", EICAR),
        infected("Eicar-Test-Signature")
    );
    assert_eq!(
        encoded_verdict(&mut inspector, "Content-Encoding: x-foo, gzip\r\n", &gzip(EICAR)),
        infected("Eicar-Test-Signature")
    );
    // Nothing inside an unknown coding is decoded as Content-Encoding, but the bytes as
    // received are a gzip file, which the container layer opens like any other.
    assert_eq!(
        encoded_verdict(&mut inspector, "Content-Encoding: gzip, x-foo\r\n", &gzip(EICAR)),
        infected("Eicar-Test-Signature")
    );
}

#[test]
fn a_gzip_bomb_is_over_the_limit_and_stops_early() {
    // 1 GiB of zeros in about 1 MiB of gzip.
    let bomb = zero_bomb(1024);
    let head = res_hdr("Content-Encoding: gzip\r\n");
    let txn = Txn {
        method: Method::Respmod,
        service: "respmod",
        req_hdr: None,
        res_hdr: Some(&head),
        policy: Default::default(),
    };
    for (limits, threat) in [
        (Limits::default(), p::THREAT_DECODE_RATIO),
        (
            Limits { decode_ratio_max: 1 << 40, decoded_bytes_max: 16 << 20, ..Limits::default() },
            p::THREAT_DECODED_SIZE,
        ),
    ] {
        let mut inspector = EngineInspector::new(ctx(limits));
        assert!(matches!(inspector.begin(&txn), Progress::More));
        let mut fed = 0;
        let mut verdict = None;
        for piece in bomb.chunks(16 * 1024) {
            fed += piece.len();
            if let Progress::Done(v) = inspector.feed(piece) {
                verdict = Some(v);
                break;
            }
        }
        assert_eq!(verdict, Some(infected(threat)), "decided while feeding");
        assert!(fed <= bomb.len() / 8, "stopped after {fed} of {} bytes", bomb.len());
        assert_eq!(inspector.finish(), infected(threat));
        // Under over_limit = pass the bomb goes through, also without decoding it all.
        let mut inspector = EngineInspector::new(ctx_policy(limits, OverLimit::Pass));
        assert!(matches!(inspector.begin(&txn), Progress::More));
        let done = bomb.chunks(16 * 1024).position(|piece| matches!(inspector.feed(piece), Progress::Done(_)));
        assert!(done.is_some_and(|i| i * 16 * 1024 <= bomb.len() / 8), "{done:?}");
        assert_eq!(inspector.finish(), Verdict::Clean);
    }
}

#[test]
fn ratio_cap_spares_small_pages_and_real_text() {
    let limits = Limits { decode_ratio_floor_bytes: 64 * 1024, ..Limits::default() };
    let mut inspector = EngineInspector::new(ctx(limits));
    // 200 KiB of zeros: far above 100:1 and past the floor.
    let zeros = gzip(&vec![0u8; 200 * 1024]);
    assert_eq!(encoded_verdict(&mut inspector, "Content-Encoding: gzip\r\n", &zeros), infected(p::THREAT_DECODE_RATIO));
    // Under the floor, any ratio is fine; real text is far from the cap.
    assert_eq!(encoded_verdict(&mut inspector, "Content-Encoding: gzip\r\n", &gzip(&[0u8; 60 * 1024])), Verdict::Clean);
    assert_eq!(encoded_verdict(&mut inspector, "Content-Encoding: gzip\r\n", &gzip(&text(300_000))), Verdict::Clean);
}

#[test]
fn broken_streams_and_too_many_codings_are_never_clean() {
    let page = gzip(&text(4000));
    let truncated = &page[..page.len() - 5];
    let mut corrupt = page.clone();
    corrupt[page.len() / 2] ^= 0xff;
    let bad_zstd_window = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 14 << 3, 0x01, 0x00, 0x00];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("Content-Encoding: gzip\r\n", truncated.to_vec(), p::THREAT_BROKEN_ENCODING),
        ("Content-Encoding: gzip\r\n", corrupt, p::THREAT_BROKEN_ENCODING),
        ("Content-Encoding: gzip\r\n", [page.as_slice(), b"trailing"].concat(), p::THREAT_BROKEN_ENCODING),
        ("Content-Encoding: br\r\n", b"plain text that claims to be brotli".to_vec(), p::THREAT_BROKEN_ENCODING),
        ("Content-Encoding: zstd\r\n", bad_zstd_window.to_vec(), p::THREAT_DECODE_WINDOW),
        ("Content-Encoding: gzip, gzip, gzip, gzip\r\n", page.clone(), p::THREAT_ENCODINGS),
    ];
    let mut block = EngineInspector::new(ctx(Limits::default()));
    let mut pass = EngineInspector::new(ctx_policy(Limits::default(), OverLimit::Pass));
    for (fields, body, threat) in &cases {
        assert_eq!(encoded_verdict(&mut block, fields, body), infected(threat), "{fields}");
        assert_eq!(encoded_verdict(&mut pass, fields, body), Verdict::Clean, "{fields} under pass");
    }
    // Every limit name carries the prefix the metrics count by.
    for t in [p::THREAT_DECODED_SIZE, p::THREAT_DECODE_RATIO, p::THREAT_ENCODINGS, p::THREAT_DECODE_WINDOW] {
        assert!(t.starts_with("Heuristics.Limits.Exceeded."), "{t}");
    }
    // The connection's next object is unaffected.
    assert_eq!(encoded_verdict(&mut block, "Content-Encoding: gzip\r\n", &page), Verdict::Clean);
}

#[test]
fn partial_content_is_decoded_only_from_the_start() {
    let mut inspector = EngineInspector::new(ctx(Limits::default()));
    let whole = gzip(&[EICAR, text(20_000).as_slice()].concat());
    let first_half = &whole[..whole.len() / 2];
    let range = |from: usize| {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Encoding: gzip\r\nContent-Range: bytes {from}-{}/{}\r\n\r\n",
            from + 99,
            whole.len()
        )
    };
    let head = range(0);
    let txn = Txn {
        method: Method::Respmod,
        service: "respmod",
        req_hdr: None,
        res_hdr: Some(head.as_bytes()),
        policy: Default::default(),
    };
    assert_eq!(verdict_with(&mut inspector, &txn, first_half, &[9]), infected("Eicar-Test-Signature"));
    // A later range holds the middle of the stream: scanned as received, and not broken.
    let mid = whole.len() / 2;
    let head = range(mid);
    let txn = Txn {
        method: Method::Respmod,
        service: "respmod",
        req_hdr: None,
        res_hdr: Some(head.as_bytes()),
        policy: Default::default(),
    };
    assert_eq!(verdict_with(&mut inspector, &txn, &whole[mid..], &[]), Verdict::Clean);
    assert_eq!(verdict_with(&mut inspector, &txn, EICAR, &[]), infected("Eicar-Test-Signature"));
}

#[test]
fn a_broken_stream_still_answers_with_what_its_decoded_part_holds() {
    // Only YARA knows EICAR here, and YARA concludes at the end of the object. The trailer is
    // cut, so the stream is broken, but all of EICAR was decoded: the signature names the
    // threat, under `block` and under `pass` alike.
    let folder = Folder::new("broken-yara", &[("eicar.yar", bundled_file("eicar.yar"))]);
    let limits = Limits::default();
    let body = gzip(&[EICAR, text(3000).as_slice()].concat());
    let cut = &body[..body.len() - 4];
    for over_limit in [OverLimit::Block, OverLimit::Pass] {
        let gen = load(&folder.0, LoadOptions::default()).unwrap();
        let ctx = ScanCtx::new(
            Arc::new(gen),
            limits.scan(),
            ScanPolicy {
                over_limit,
                early_204: Early204::default(),
                encrypted: crate::scan::unpack::EncryptedPolicy::Block,
            },
        );
        let mut inspector = EngineInspector::new(ctx);
        let fields = "Content-Encoding: gzip\r\n";
        assert_eq!(encoded_verdict(&mut inspector, fields, cut), infected("YARA.EICAR_Test_File"), "{over_limit:?}");
        let clean = gzip(&text(3000));
        let want = match over_limit {
            OverLimit::Block => infected(p::THREAT_BROKEN_ENCODING),
            OverLimit::Pass => Verdict::Clean,
        };
        assert_eq!(encoded_verdict(&mut inspector, fields, &clean[..clean.len() - 4]), want, "{over_limit:?}");
    }
}
