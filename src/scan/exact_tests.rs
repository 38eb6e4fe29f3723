//! Regression tests for issue 13: chunking, gaps, previews, pools and ranges never change a
//! verdict. Each runs whole, at every split and byte by byte (`for_each_split`).

use super::engine::{EngineInspector, ScanCtx};
use super::policy::{Early204, OverLimit};
use super::ScanPolicy;
use crate::inspect::{verdict_of_txn, Inspector, Progress, Txn, Verdict};
use crate::limits::Limits;
use crate::proto::testutil::for_each_split;
use crate::proto::Method;
use crate::signatures::{load, LoadOptions};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

const EICAR: &[u8] = include_bytes!("../../tests/samples/eicar.com");

/// A private signature folder holding the given files; removed on drop.
pub(crate) struct Folder(pub PathBuf);

impl Folder {
    pub fn new(tag: &str, files: &[(&str, &[u8])]) -> Folder {
        let dir = std::env::temp_dir().join(format!("icapd-exact-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
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

fn bundled(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures").join(name)).unwrap()
}

fn ctx_with(dir: &Path, limits: Limits, policy: ScanPolicy) -> Rc<ScanCtx> {
    let gen = load(dir, LoadOptions::default()).expect("signatures load");
    assert!(gen.problems.is_empty(), "{:?}", gen.problems);
    ScanCtx::new(Arc::new(gen), limits.scan(), policy)
}

fn block() -> ScanPolicy {
    ScanPolicy { over_limit: OverLimit::Block, early_204: Early204::default() }
}

#[allow(dead_code)]
fn pass() -> ScanPolicy {
    ScanPolicy { over_limit: OverLimit::Pass, early_204: Early204::default() }
}

fn infected(threat: &str) -> Verdict {
    Verdict::Infected { threat: threat.into() }
}

/// The verdict and limit for `body`, the same whole, at every split and byte by byte.
fn every_way(inspector: &mut EngineInspector, txn: &Txn<'_>, body: &[u8]) -> (Verdict, Option<&'static str>) {
    let whole = verdict_of_txn(inspector, txn, body, &[]);
    let limit = inspector.limit_hit();
    for_each_split(body.len(), |cuts| {
        let v = verdict_of_txn(inspector, txn, body, cuts);
        assert_eq!(v, whole, "cuts {:?}…", &cuts[..cuts.len().min(4)]);
        assert_eq!(inspector.limit_hit(), limit, "cuts {:?}…", &cuts[..cuts.len().min(4)]);
    });
    (whole, limit)
}

fn respmod(head: &[u8]) -> Txn<'_> {
    Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr: Some(head) }
}

// Item 5: a 206 range from byte 0 is decoded whatever the unit's case or the leading zeros.

#[test]
fn a_range_from_zero_is_decoded_in_any_spelling() {
    use super::decode::tests::{gzip, text};
    let folder = Folder::new("range", &[("eicar.ndb", &bundled("eicar.ndb"))]);
    let mut inspector = EngineInspector::new(ctx_with(&folder.0, Limits::default(), block()));
    let page = gzip(&[EICAR, text(3000).as_slice()].concat());
    for range in ["bytes 0-", "Bytes 0-", "BYTES 0-", "bytes 00-", "bytes 000-", "bYtEs  0-"] {
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Encoding: gzip\r\nContent-Range: {range}{}/{}\r\n\r\n",
            page.len() - 1,
            page.len()
        );
        let txn = respmod(head.as_bytes());
        assert_eq!(every_way(&mut inspector, &txn, &page).0, infected("Eicar-Test-Signature"), "{range}");
    }
    for later in ["bytes 1-", "bytes 10-", "bytes 01-", "bytes -", "bytesx 0-", "items 0-"] {
        assert!(!super::engine::range_starts_at_zero(format!("{later}99/100").as_bytes()), "{later}");
    }
}
