//! The engine under each policy of the operator's policy table (`Txn::policy`): `skip` is
//! clean without scanning, `strict` scans less, blocks over its limit whatever `over_limit`
//! says, and never answers a preview early. Every object is fed at every split point.

use super::engine::{EngineInspector, ScanCtx};
use super::policy::{Early204, OverLimit};
use super::ScanPolicy;
use crate::inspect::{verdict_of_txn, Inspector, PolicyKind, Progress, Txn, Verdict};
use crate::limits::Limits;
use crate::proto::testutil::for_each_split;
use crate::proto::Method;
use crate::signatures::{load, LoadOptions};
use std::path::Path;
use std::sync::Arc;

const EICAR: &[u8] = include_bytes!("../../tests/samples/eicar.com");
const RES_HDR: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n";

fn inspector(limits: Limits, over_limit: OverLimit) -> EngineInspector {
    let gen = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures"), LoadOptions::default()).unwrap();
    let early_204 = Early204 { content_types: vec!["image/".into()], ..Early204::default() };
    EngineInspector::new(ScanCtx::new(
        Arc::new(gen),
        limits.scan(),
        ScanPolicy { over_limit, early_204, encrypted: crate::scan::unpack::EncryptedPolicy::Block },
    ))
}

fn txn(policy: PolicyKind) -> Txn<'static> {
    Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr: Some(RES_HDR), policy }
}

#[test]
fn skip_is_clean_without_scanning_and_default_still_finds_eicar() {
    let mut e = inspector(Limits::default(), OverLimit::Block);
    for_each_split(EICAR.len(), |cuts| {
        assert_eq!(verdict_of_txn(&mut e, &txn(PolicyKind::Skip), EICAR, cuts), Verdict::Clean);
        assert_eq!(e.limit_hit(), None, "a skip is not a limit event");
        let found = verdict_of_txn(&mut e, &txn(PolicyKind::Default), EICAR, cuts);
        assert!(matches!(found, Verdict::Infected { .. }), "{found:?}");
    });
    assert_eq!(e.begin(&txn(PolicyKind::Skip)), Progress::Done(Verdict::Clean), "decided at begin");
}

#[test]
fn strict_blocks_over_its_own_limit_even_under_pass() {
    let limits = Limits { strict_scan_bytes_max: 100, ..Limits::default() };
    let mut e = inspector(limits, OverLimit::Pass);
    let body = vec![b'a'; 300];
    for_each_split(body.len(), |cuts| {
        let strict = verdict_of_txn(&mut e, &txn(PolicyKind::Strict), &body, cuts);
        assert_eq!(strict, Verdict::Infected { threat: super::policy::THREAT_SIZE.into() });
        assert_eq!(verdict_of_txn(&mut e, &txn(PolicyKind::Default), &body, cuts), Verdict::Clean);
    });
}

#[test]
fn strict_never_answers_a_preview_early() {
    let mut e = inspector(Limits::default(), OverLimit::Block);
    let preview = b"\x89PNG\r\n\x1a\nsome pixels";
    for (policy, early) in [(PolicyKind::Default, Some(Verdict::Clean)), (PolicyKind::Strict, None)] {
        assert_eq!(e.begin(&txn(policy)), Progress::More);
        assert_eq!(e.feed(preview), Progress::More);
        assert_eq!(e.preview_verdict(), early, "{policy:?}");
        assert_eq!(e.finish(), Verdict::Clean);
    }
}
