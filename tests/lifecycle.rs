//! Faults and lifecycle against the real binary: a transaction that panics, a shard that
//! cannot start, SIGTERM with stuck and concurrent transactions, SIGHUP without signatures.
//!
//! The panic comes from the built-in test inspector, which panics on a body carrying
//! `ICAPD-TEST-PANIC` (see `src/inspect/test_marker.rs`). A shard that dies at run time cannot
//! be provoked from outside: every connection runs under `catch_unwind`, and nothing else in a
//! shard handles network input. The exit path for that case (exit status 1) is unit-tested in
//! `src/server/mod.rs`; here the same reporting is exercised by a shard that fails to start.

mod common;

use common::*;
use icapd::inspect::TEST_PANIC_MARKER;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn panicking_body(len: usize, at: usize) -> Vec<u8> {
    let mut body = pseudo_random(len, at as u64);
    body[at..at + TEST_PANIC_MARKER.len()].copy_from_slice(TEST_PANIC_MARKER);
    body
}

#[test]
fn a_panicking_transaction_closes_only_its_own_connection() {
    // One shard with room for four connections: if a panicking connection leaked its slot,
    // the cap would fill within a few panics and the checks below would get 503.
    let server =
        Server::start(&["--shards", "1", "--inspector", "test"], Some("[limits]\nconnections_per_shard_max = 4\n"));
    // A keep-alive connection between requests, and one in the middle of a body.
    let mut idle = server.connect();
    let mut idle_reader = BufReader::new(idle.try_clone().unwrap());
    idle.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut idle_reader).unwrap().status, 200);
    let mut busy = server.connect();
    let mut busy_reader = BufReader::new(busy.try_clone().unwrap());
    let mut busy_req = respmod_head("respmod", None, true);
    busy_req.extend(chunked(b"first half, ", 64));
    busy.write_all(&busy_req).unwrap();

    for round in 0..10 {
        // With Allow: 204 nothing has been answered when the panic strikes: a plain close.
        let s = server.connect();
        let body = panicking_body(5000, 100 + round * 300);
        assert_eq!(exchange_or_closed(&s, respmod(&body, true)), Err(ReadError::Closed), "round {round}");
        // Without it and past the hold-back window, the echo has started: it is cut off.
        let s = server.connect();
        let body = panicking_body(200_000, 150_000);
        assert!(matches!(exchange(&s, respmod(&body, false)), Err(ReadError::Truncated(_))), "round {round}");
        check_serves(&server).unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    server.wait_for_line("connection task panicked; connection closed, shard continues");
    // The connections that were open on the same shard all along still work.
    idle.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut idle_reader).unwrap().status, 200);
    busy.write_all(&[&chunked(b"second half", 64)[..], b"0\r\n\r\n"].concat()).unwrap();
    assert_eq!(read_response(&mut busy_reader).unwrap().status, 204);
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn a_shard_that_cannot_start_is_reported_and_the_process_exits_1() {
    // A plain listener (no SO_REUSEPORT) on the port makes every shard's bind fail. The
    // start-up port check would refuse that port first (exit 2, tests/startup.rs), so it is
    // turned off here to reach the shards' own bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_icapd"))
        .args(["--shards", "2", "--inspector", "null", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--allow-shared-port")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("icapd exits when a shard fails");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed: cannot listen on"), "{stderr}");
    assert!(!stderr.contains("icapd: ready"), "{stderr}");
    drop(taken);
}

#[test]
fn sigterm_cuts_a_stuck_transaction_at_the_grace_and_exits_0() {
    let server = Server::start(
        &["--shards", "2", "--inspector", "test"],
        Some("shutdown_grace_ms = 1500\n[limits]\nbody_inactivity_ms = 60000\n"),
    );
    // One transaction that will never finish on its own, and one idle connection.
    let mut stuck = server.connect();
    stuck.write_all(&[&respmod_head("respmod", None, true)[..], b"3e8\r\nabc"].concat()).unwrap();
    let mut idle = server.connect();
    idle.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").unwrap();
    let mut idle_reader = BufReader::new(idle.try_clone().unwrap());
    assert_eq!(read_response(&mut idle_reader).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(100));
    let mut server = server;
    let stopped_at = Instant::now();
    server.signal(libc::SIGTERM);
    // The idle connection is closed at once, well before the grace ends.
    assert_eq!(read_response(&mut idle_reader), Err(ReadError::Closed));
    assert!(stopped_at.elapsed() < Duration::from_millis(1500), "idle connection kept {:?}", stopped_at.elapsed());
    // The stuck one holds the process for the grace at most (generous bound), then exit 0.
    let status = wait_timeout(&mut server.child, Duration::from_secs(12)).expect("icapd exits after the grace");
    assert_eq!(status.code(), Some(0));
    assert!(is_closed(&mut stuck));
}

#[test]
fn sigterm_under_load_answers_everything_it_accepted() {
    let server = Server::start(&["--shards", "2", "--inspector", "test"], None);
    let port = server.port;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let (mut answered, mut refused, mut dropped) = (0usize, 0usize, 0usize);
                for n in 0.. {
                    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
                        refused += 1;
                        break;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    let body = pseudo_random(20_000 + n % 5000, (i * 1_000_000 + n) as u64);
                    match exchange_or_closed(&s, respmod(&body, false)) {
                        Ok(r) => {
                            assert_eq!(r.status, 200);
                            assert!(r.body.as_deref() == Some(&body[..]), "an answered echo differs");
                            answered += 1;
                        }
                        // Accepted but still idle (request not read yet) when the drain began:
                        // closed without a byte, never half answered.
                        Err(ReadError::Closed) => dropped += 1,
                        Err(e) => panic!("a transaction was cut off by SIGTERM: {e:?}"),
                    }
                }
                (answered, refused, dropped)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let status = server.stop();
    let mut total = (0, 0, 0);
    for c in clients {
        let (a, r, d) = c.join().unwrap();
        total = (total.0 + a, total.1 + r, total.2 + d);
    }
    println!("SIGTERM under load: {} answered, {} refused, {} closed unanswered", total.0, total.1, total.2);
    assert!(total.0 > 0, "no request was answered before SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sighup_without_signatures_changes_nothing() {
    let server = Server::start(&["--shards", "2", "--inspector", "test"], None);
    for _ in 0..3 {
        server.signal(libc::SIGHUP);
        server.wait_for_line("SIGHUP: nothing to reload");
        check_serves(&server).unwrap();
    }
    assert_eq!(server.stop().code(), Some(0));
}
