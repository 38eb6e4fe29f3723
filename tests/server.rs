//! Integration tests over loopback against the real `icapd` binary.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::time::Duration;

const MARKER: &[u8] = icapd::inspect::TEST_MARKER;

fn test_server() -> Server {
    Server::start(&["--shards", "2", "--inspector", "test"], None)
}

#[test]
fn options_for_every_service() {
    let server = test_server();
    for (service, methods) in [
        ("respmod", "RESPMOD"),
        ("reqmod", "REQMOD"),
        ("avscan", "RESPMOD, REQMOD"),
        ("srv_clamav", "RESPMOD, REQMOD"),
        ("virus_scan", "RESPMOD, REQMOD"),
    ] {
        let mut s = server.connect();
        s.write_all(format!("OPTIONS icap://127.0.0.1/{service} ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut BufReader::new(s)).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Methods"), Some(methods));
        let istag = r.header("ISTag").unwrap();
        assert!(istag.starts_with('"') && istag.ends_with('"') && istag.len() <= 34, "{istag}");
        for name in ["Max-Connections", "Options-TTL", "Preview", "Transfer-Preview", "Allow", "Date", "Service"] {
            assert!(r.header(name).is_some(), "{name} missing");
        }
        assert_eq!(r.header("Encapsulated"), Some("null-body=0"));
        assert_eq!(r.header("Max-Connections"), Some("8192"), "2 shards x 4096");
    }
}

#[test]
fn preview_with_ieof_is_answered_204() {
    let server = test_server();
    let mut s = server.connect();
    let mut req = respmod_head("respmod", Some(1024), false);
    req.extend(chunked(b"a small clean body", 1024));
    req.extend_from_slice(b"0; ieof\r\n\r\n");
    s.write_all(&req).unwrap();
    let r = read_response(&mut BufReader::new(s)).unwrap();
    assert_eq!(r.status, 204);
    assert!(r.header("ISTag").is_some());
}

#[test]
fn continue_flow_then_204_or_echo() {
    let server = test_server();
    let body = pseudo_random(100_000, 7);
    for allow_204 in [true, false] {
        let mut s = server.connect();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut req = respmod_head("avscan", Some(1024), allow_204);
        req.extend(chunked(&body[..1024], 1024));
        req.extend_from_slice(b"0\r\n\r\n");
        s.write_all(&req).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.status, 100);
        let mut rest = chunked(&body[1024..], 8000);
        rest.extend_from_slice(b"0\r\n\r\n");
        let writer = std::thread::spawn({
            let mut s = s.try_clone().unwrap();
            move || s.write_all(&rest).unwrap()
        });
        let r = read_response(&mut reader).unwrap();
        writer.join().unwrap();
        if allow_204 {
            assert_eq!(r.status, 204);
        } else {
            assert_eq!(r.status, 200);
            assert_eq!(r.hdr, RES_HDR.as_bytes());
            assert!(r.body.as_deref() == Some(&body[..]), "echo must be byte-exact");
        }
    }
}

#[test]
fn echo_of_50_mb_is_byte_exact_and_204_when_allowed() {
    let server = test_server();
    let body = pseudo_random(50 * 1024 * 1024, 42);
    let s = server.connect();
    let r = exchange(&s, respmod(&body, false)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref().map(Vec::len), Some(body.len()));
    assert!(r.body.as_deref() == Some(&body[..]), "50 MB echo differs");
    // Same connection: a body within the retention bound with Allow: 204 gets a 204.
    let r = exchange(&s, respmod(&body[..1024 * 1024], true)).unwrap();
    assert_eq!(r.status, 204);
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let server = test_server();
    let mut s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for i in 0..20 {
        let body = pseudo_random(3000 + i, i as u64);
        s.write_all(&respmod(&body, false)).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.body.as_deref(), Some(&body[..]));
    }
    // Three requests in one write.
    let mut batch = b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\n\r\n".to_vec();
    batch.extend(respmod(b"first", false));
    let mut infected = b"xx".to_vec();
    infected.extend_from_slice(MARKER);
    batch.extend(respmod(&infected, true));
    batch.extend(respmod(b"last", true));
    s.write_all(&batch).unwrap();
    let statuses: Vec<(u16, Option<Vec<u8>>)> = (0..4)
        .map(|_| {
            let r = read_response(&mut reader).unwrap();
            (r.status, r.body)
        })
        .collect();
    assert_eq!(statuses[0].0, 200);
    assert_eq!(statuses[1], (200, Some(b"first".to_vec())));
    assert_eq!(statuses[2].0, 200);
    assert!(String::from_utf8_lossy(statuses[2].1.as_ref().unwrap()).contains("Icapd.Test.Marker"));
    assert_eq!(statuses[3], (204, None));
}

#[test]
fn block_page_in_preview_and_after_continue() {
    let server = test_server();
    // In the preview: answered at once, no 100 Continue.
    let mut s = server.connect();
    let mut body = b"<html>".to_vec();
    body.extend_from_slice(MARKER);
    body.resize(5000, b' ');
    let mut req = respmod_head("virus_scan", Some(1024), true);
    req.extend(chunked(&body[..1024], 512));
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Infection-Found"), Some("Type=0; Resolution=2; Threat=Icapd.Test.Marker;"));
    assert_eq!(r.header("X-Virus-ID"), Some("Icapd.Test.Marker"));
    assert!(r.hdr.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    // The connection stays usable.
    s.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 200);

    // REQMOD upload with the marker after the preview: blocked with an HTTP 403 response.
    let upload = [pseudo_random(20_000, 3), MARKER.to_vec()].concat();
    let post = "POST http://origin.test/upload HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 20017\r\n\r\n";
    let mut req = format!(
        "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nAllow: 204\r\nPreview: 1024\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{post}",
        post.len()
    )
    .into_bytes();
    req.extend(chunked(&upload[..1024], 1024));
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    s.write_all(&req).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 100);
    let mut rest = chunked(&upload[1024..], 4096);
    rest.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&rest).unwrap();
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.hdr.starts_with(b"HTTP/1.1 403"));
    assert_eq!(r.header("Encapsulated").map(|e| e.starts_with("res-hdr=0")), Some(true));
}

#[test]
fn threat_late_in_a_streamed_echo_cuts_it_short() {
    let server = test_server();
    let mut body = pseudo_random(2 * 1024 * 1024, 9);
    let at = body.len() - 100;
    body[at..at + MARKER.len()].copy_from_slice(MARKER);
    let mut s = server.connect();
    match exchange(&s, respmod(&body, false)) {
        Err(ReadError::Truncated(_)) => {}
        other => panic!("expected a cut-off echo, got {other:?}"),
    }
    assert!(is_closed(&mut s));
}

/// Sends `input` on a fresh connection; returns the status and whether the server closed.
fn status_of(server: &Server, input: &[u8]) -> (u16, bool) {
    let mut s = server.connect();
    let _ = s.write_all(input);
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let r = read_response(&mut reader).expect("a response");
    let closed = r.header("Connection") == Some("close") && is_closed(&mut s);
    (r.status, closed)
}

#[test]
fn every_error_status_then_close_and_keep_serving() {
    let server = test_server();
    let long_header = format!("OPTIONS icap://h/respmod ICAP/1.0\r\nX-Long: {}\r\n\r\n", "a".repeat(20_000));
    let many_headers = format!("OPTIONS icap://h/respmod ICAP/1.0\r\n{}\r\n", "X-A: b\r\n".repeat(100));
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"HELLO\r\n\r\n".to_vec(), 400),
        (b"OPTIONS icap://h/respmod ICAP/1.0\nHost: h\n\n".to_vec(), 400),
        (b"OPTIONS icap://h/nothing ICAP/1.0\r\n\r\n".to_vec(), 404),
        (
            format!(
                "REQMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: req-hdr=0, null-body={}\r\n\r\n{REQ_HDR}",
                REQ_HDR.len()
            )
            .into_bytes(),
            405,
        ),
        (b"PATCH icap://h/respmod ICAP/1.0\r\n\r\n".to_vec(), 501),
        (b"OPTIONS icap://h/respmod ICAP/2.0\r\n\r\n".to_vec(), 505),
        (long_header.into_bytes(), 431),
        (many_headers.into_bytes(), 431),
        (b"RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-hdr=0, res-body=900000\r\n\r\n".to_vec(), 413),
        (b"RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-hdr=5, res-body=10\r\n\r\n".to_vec(), 400),
        ([&respmod_head("respmod", None, false)[..], b"-5\r\nabcde\r\n0\r\n\r\n"].concat(), 400),
        ([&respmod_head("respmod", None, false)[..], b"ffffffffffffffffff\r\n"].concat(), 400),
    ];
    for (input, status) in &cases {
        assert_eq!(
            status_of(&server, input),
            (*status, true),
            "{:?}",
            String::from_utf8_lossy(&input[..input.len().min(80)])
        );
        // The next connection is served normally.
        let mut s = server.connect();
        s.write_all(b"OPTIONS icap://h/respmod ICAP/1.0\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut BufReader::new(s)).unwrap().status, 200);
    }
}

#[test]
fn deadlines_and_connection_cap() {
    let server = Server::start(
        &["--shards", "1"],
        Some("[limits]\nheader_read_deadline_ms = 300\nidle_keepalive_ms = 300\nconnections_per_shard_max = 3\n"),
    );
    // A head that never completes gets 408 and a close.
    let mut s = server.connect();
    s.write_all(b"OPTIONS icap://h/respmod ICAP/1.0\r\nHost:").unwrap();
    let r = read_response(&mut BufReader::new(s.try_clone().unwrap())).unwrap();
    assert_eq!(r.status, 408);
    assert!(is_closed(&mut s));
    // An idle keep-alive connection is closed quietly.
    let mut s = server.connect();
    s.write_all(b"OPTIONS icap://h/respmod ICAP/1.0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    assert_eq!(read_response(&mut reader), Err(ReadError::Closed));
    // Beyond the cap: 503, not a hang. The held connections are in the middle of a head (an
    // idle one would be closed to make room instead, see tests/abuse.rs).
    let held: Vec<_> = (0..3)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"OPTIONS icap://h/respmod ICAP/1.0\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = server.connect();
    let r = read_response(&mut BufReader::new(extra.try_clone().unwrap())).unwrap();
    assert_eq!(r.status, 503);
    assert!(is_closed(&mut extra));
    drop(held);
}

#[test]
fn sigterm_finishes_in_flight_transactions_and_exits_0() {
    let server = test_server();
    let mut s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    // Start a transaction and leave it half sent.
    let body = pseudo_random(10_000, 5);
    let req = respmod(&body, false);
    let (first, second) = req.split_at(req.len() / 2);
    s.write_all(first).unwrap();
    let idle = server.connect();
    std::thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    server.wait_for_line("stopping");
    std::thread::sleep(Duration::from_millis(100));
    // New connections are refused once listeners are closed.
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err());
    s.write_all(second).unwrap();
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.body.as_deref(), Some(&body[..]));
    drop(idle);
    drop(s);
    let status = server.stop();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_configuration_exits_2_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_icapd")).args(["--shards", "abc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_icapd")).args(["--cpus", "4000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_icapd")).args(["--check", "--shards", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_icapd")).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in ["--config", "--listen", "--signatures", "--shards", "--cpus", "--check"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn shards_follow_the_inherited_affinity_mask() {
    // Run under taskset: only CPU 0 allowed, so exactly one shard, pinned to CPU 0.
    let port = free_port();
    let out = std::process::Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_icapd"), "--check", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .expect("taskset (util-linux) runs");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1 shard(s) on CPUs [0]"), "{text}");
}
