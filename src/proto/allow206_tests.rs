//! `Allow: 206` (ICAP Partial Content) at the protocol level: what icapd answers when a client
//! offers 206, fed whole, at every split point and byte by byte. A clean object is answered 204
//! wherever a 206 would be allowed, and never 206 after a preview that only `Allow: 206` covers
//! (Squid rejects that: it sends `Allow: 206` alone exactly for bodies it did not keep).

use super::conn::State;
use super::conn_tests::{drive, respmod, Resp, Run};
use super::testutil::for_each_split;
use crate::inspect::{InspectorKind, TEST_MARKER};
use crate::limits::Limits;

/// `respmod` with the given Allow header instead of none.
fn with_allow(allow: &str, body: &[u8], preview: Option<usize>) -> Vec<u8> {
    let plain = respmod(body, preview, false);
    let at = memchr::memmem::find(&plain, b"Host: icap.test\r\n").unwrap() + 17;
    [&plain[..at], format!("Allow: {allow}\r\n").as_bytes(), &plain[at..]].concat()
}

fn all_ways(input: &[u8]) -> Run {
    let whole = drive(input, &[], InspectorKind::Test, Limits::default());
    for_each_split(input.len(), |cuts| {
        let run = drive(input, cuts, InspectorKind::Test, Limits::default());
        assert_eq!(run.resps, whole.resps, "cuts {cuts:?}");
        assert_eq!(run.state, whole.state, "cuts {cuts:?}");
    });
    whole
}

fn statuses(run: &Run) -> Vec<u16> {
    run.resps.iter().map(Resp::status).collect()
}

fn body(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i * 13 % 251) as u8).collect()
}

#[test]
fn options_offers_206() {
    let run = drive(b"OPTIONS icap://h/respmod ICAP/1.0\r\n\r\n", &[], InspectorKind::Null, Limits::default());
    assert!(run.resps[0].head.contains("\r\nAllow: 204, 206\r\n"), "{}", run.resps[0].head);
}

#[test]
fn allow_206_alone_after_the_preview_gets_the_body_back_not_a_206() {
    let object = body(3000);
    for allow in ["206", "206, trailers", "trailers, 206"] {
        let run = all_ways(&with_allow(allow, &object, Some(100)));
        assert_eq!(statuses(&run), [100, 200], "{allow}");
        let echo = &run.resps[1];
        assert!(echo.complete && echo.body.as_deref() == Some(&object[..]), "{allow}: echo differs");
        assert!(!echo.head.contains("206") && run.state == State::Idle, "{allow}");
    }
}

#[test]
fn wherever_206_is_allowed_a_clean_object_gets_the_shorter_204() {
    // In answer to the whole body in the preview (ieof), and after the preview with 204 too.
    for (allow, len, preview, want) in [
        ("206", 1000, Some(1024), &[204][..]),
        ("204, 206", 1000, Some(1024), &[204][..]),
        ("204, 206", 3000, Some(100), &[100, 204][..]),
        ("204, 206", 3000, None, &[204][..]),
    ] {
        let run = all_ways(&with_allow(allow, &body(len), preview));
        assert_eq!(statuses(&run), want, "Allow: {allow}, preview {preview:?}");
        assert!(run.resps.iter().all(|r| !r.head.contains("use-original-body")));
    }
}

#[test]
fn a_threat_is_blocked_whatever_206_allows() {
    let mut object = body(3000);
    object[2000..2000 + TEST_MARKER.len()].copy_from_slice(TEST_MARKER);
    for (allow, preview) in [("206", Some(100)), ("204, 206", Some(100)), ("206", None)] {
        let run = all_ways(&with_allow(allow, &object, preview));
        let block = run.resps.last().unwrap();
        assert_eq!(block.status(), 200, "{allow}");
        assert!(block.hdr.starts_with(b"HTTP/1.1 403 Forbidden\r\n"), "{allow}");
    }
}
