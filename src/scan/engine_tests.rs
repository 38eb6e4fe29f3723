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
    let policy = ScanPolicy { over_limit: OverLimit::Block, early_204: Early204::default() };
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
    let txn = Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr: Some(res_hdr) };
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
