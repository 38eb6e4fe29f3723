//! Placement at accept against the real binary: however the kernel's SO_REUSEPORT hash spreads
//! connections, each new one is served by a shard with the fewest, so N keep-alive connections
//! on M shards end up within one of each other; a hand-off is invisible to the client (answers
//! byte-exact, pipelined order kept), for plain ICAP and for TLS; and with the hand-off turned
//! off (`balance_accept_slack_connections` at the cap) no connection moves. Moves at
//! transaction boundaries: when the two busy connections share a shard and the other shard's
//! connections are idle, one of them moves, and neither client sees it.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const OPTIONS: &[u8] = b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

fn start(shards: usize, extra_toml: &str) -> (Server, u16) {
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let shards = shards.to_string();
    let server = Server::start(&["--shards", &shards, "--inspector", "test", "--metrics", &metrics], Some(extra_toml));
    (server, metrics_port)
}

/// Per-shard open connections once `total` are counted (shards publish on their own
/// schedule), in shard order.
fn per_shard(metrics_port: u16, shards: usize, total: usize) -> Vec<usize> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
        let v: Vec<usize> =
            (0..shards).map(|s| metric(&m, &format!("icapd_active_connections{{shard=\"{s}\"}}")) as usize).collect();
        if v.iter().sum::<usize>() == total || Instant::now() > until {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One keep-alive connection that has finished a transaction (so it is surely accepted and
/// placed before the next one connects).
fn open(server: &Server) -> (TcpStream, BufReader<TcpStream>) {
    let mut s = server.connect();
    s.write_all(OPTIONS).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    (s, r)
}

#[test]
fn keep_alive_connections_spread_within_one_of_each_other() {
    let (server, metrics_port) = start(2, "");
    let mut conns = Vec::new();
    for n in 1..=9usize {
        conns.push(open(&server));
        let v = per_shard(metrics_port, 2, n);
        assert_eq!(v.iter().sum::<usize>(), n, "{v:?}");
        let (max, min) = (v.iter().max().unwrap(), v.iter().min().unwrap());
        assert!(max - min <= 1, "after {n} connections: {v:?}");
    }
    // Every connection still answers, byte-exact and in pipelined order, wherever it landed.
    let body = pseudo_random(40_000, 7);
    for (s, r) in &mut conns {
        let mut two = respmod(&body, false);
        two.extend_from_slice(OPTIONS);
        s.write_all(&two).unwrap();
        let echo = read_response(r).unwrap();
        assert_eq!(echo.status, 200);
        assert_eq!(echo.body.as_deref(), Some(&body[..]), "echo differs after a hand-off");
        assert_eq!(read_response(r).unwrap().status, 200);
    }
    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    let handed: f64 = (0..2).map(|s| metric(&m, &format!("icapd_shard_connections_handed_off_total{{shard=\"{s}\"}}"))).sum();
    let received: f64 = (0..2).map(|s| metric(&m, &format!("icapd_shard_connections_received_total{{shard=\"{s}\"}}"))).sum();
    assert_eq!(handed, received);
    assert_eq!(metric(&m, "icapd_connections_accepted_total"), 9.0);
    // Closing connections frees their places: new ones fill the emptier shard first.
    conns.truncate(3);
    let v = per_shard(metrics_port, 2, 3);
    let emptier = if v[0] < v[1] { 0 } else { 1 };
    let gap = v[1 - emptier] - v[emptier];
    for _ in 0..gap {
        conns.push(open(&server));
    }
    let v = per_shard(metrics_port, 2, 3 + gap);
    assert!(v[0].abs_diff(v[1]) <= 1, "{v:?}");
    drop(server);
}

#[test]
fn a_burst_of_simultaneous_connects_spreads_too() {
    // All connected before any sends a byte, so the accepting shards take them in as few
    // scheduler turns as the kernel allows: each must already count the ones before it.
    let (server, metrics_port) = start(2, "");
    for round in 0..3 {
        let mut conns: Vec<TcpStream> = (0..16).map(|_| server.connect()).collect();
        for s in &mut conns {
            s.write_all(OPTIONS).unwrap();
        }
        for s in &conns {
            assert_eq!(read_response(&mut BufReader::new(s.try_clone().unwrap())).unwrap().status, 200);
        }
        let v = per_shard(metrics_port, 2, 16);
        assert_eq!(v.iter().sum::<usize>(), 16, "round {round}: {v:?}");
        assert!(v[0].abs_diff(v[1]) <= 1, "round {round}: {v:?}");
        drop(conns);
        per_shard(metrics_port, 2, 0);
    }
    drop(server);
}

#[test]
fn tls_connections_are_placed_before_their_handshake() {
    let dir = std::env::temp_dir().join(format!("icapd-balance-tls-{}", std::process::id()));
    let certs = make_certs(&dir, "b");
    let tls_port = free_port();
    let toml = format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        certs.cert.display(),
        certs.key.display()
    );
    let (server, metrics_port) = start(2, &toml);
    let mut conns = Vec::new();
    for n in 1..=6usize {
        // The rustls client of the TLS tests is in tests/tls.rs; c-icap-client holds no
        // connection open, so this uses openssl s_client as a long-lived TLS client.
        let mut child = std::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{tls_port}"), "-CAfile"])
            .arg(&certs.ca)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_client");
        child.stdin.as_mut().unwrap().write_all(OPTIONS).unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        assert_eq!(read_response(&mut out).unwrap().status, 200, "OPTIONS over TLS");
        conns.push((child, out));
        let v = per_shard(metrics_port, 2, n);
        assert!(v[0].abs_diff(v[1]) <= 1, "after {n} TLS connections: {v:?}");
    }
    for (mut child, _) in conns {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_the_hand_off_off_nothing_moves() {
    let (server, metrics_port) = start(2, "[limits]\nbalance_accept_slack_connections = 1000000\n");
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(open(&server));
    }
    assert_eq!(per_shard(metrics_port, 2, 6).iter().sum::<usize>(), 6);
    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    for s in 0..2 {
        assert_eq!(metric(&m, &format!("icapd_shard_connections_handed_off_total{{shard=\"{s}\"}}")), 0.0);
    }
    drop(server);
}

/// Sum of one per-shard counter over both shards, and each shard's value.
fn per_shard_counter(metrics_port: u16, name: &str) -> (f64, [f64; 2]) {
    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    let v = [0, 1].map(|s| metric(&m, &format!("{name}{{shard=\"{s}\"}}")));
    (v[0] + v[1], v)
}

/// Keeps one connection busy until `stop`: clean RESPMODs of `body_len` bytes answered 204,
/// and every tenth round an echo checked byte for byte followed by a pipelined OPTIONS, so a
/// move that lost, reordered or altered a byte fails here.
fn keep_busy(
    mut s: TcpStream,
    mut r: BufReader<TcpStream>,
    body_len: usize,
    stop: Arc<AtomicBool>,
) -> (usize, (TcpStream, BufReader<TcpStream>)) {
    let body = pseudo_random(body_len, body_len as u64);
    let small = pseudo_random(30_000, 3);
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        rounds += 1;
        if rounds % 10 == 0 {
            let mut two = respmod(&small, false);
            two.extend_from_slice(OPTIONS);
            s.write_all(&two).unwrap();
            let echo = read_response(&mut r).unwrap();
            assert_eq!(echo.status, 200, "round {rounds}");
            assert_eq!(echo.body.as_deref(), Some(&small[..]), "echo differs in round {rounds}");
            assert_eq!(read_response(&mut r).unwrap().status, 200, "pipelined OPTIONS, round {rounds}");
        } else {
            s.write_all(&respmod(&body, true)).unwrap();
            assert_eq!(read_response(&mut r).unwrap().status, 204, "round {rounds}");
        }
    }
    (rounds, (s, r))
}

#[test]
fn a_busy_connection_moves_to_the_idle_shard_between_transactions() {
    // A low margin and short windows so the test needs little load and time; the rules are the
    // defaults' (a lone connection stays, only one carrying at most half the gap moves).
    let (server, metrics_port) = start(
        2,
        "[limits]\nbalance_move_margin_permille = 10\nbalance_move_cooldown_ms = 300\nbalance_window_ms = 100\n",
    );
    // Where each connection landed: the shard whose count went up.
    let mut conns = Vec::new();
    let mut shard_of = Vec::new();
    let mut before = vec![0, 0];
    for n in 1..=4usize {
        conns.push(open(&server));
        let v = per_shard(metrics_port, 2, n);
        shard_of.push((0..2).find(|&s| v[s] > before[s]).expect("a shard gained the connection"));
        before = v;
    }
    assert_eq!(before, [2, 2]);
    // The two connections of shard 0 get all the work (one twice as heavy as the other); the
    // two on shard 1 stay idle.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut idle = Vec::new();
    let mut size = 256 * 1024;
    for ((s, r), shard) in conns.into_iter().zip(shard_of) {
        if shard == 0 {
            let stop = stop.clone();
            workers.push(std::thread::spawn(move || keep_busy(s, r, size, stop)));
            size /= 2;
        } else {
            idle.push((s, r));
        }
    }
    let until = Instant::now() + Duration::from_secs(30);
    while per_shard_counter(metrics_port, "icapd_shard_connections_moved_out_total").0 < 1.0 {
        assert!(Instant::now() < until, "no connection moved in 30 s");
        assert!(workers.iter().all(|w| !w.is_finished()), "a client failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Now both shards work: each one's processing time grows while only the two clients send.
    std::thread::sleep(Duration::from_millis(500));
    let (_, busy_before) = per_shard_counter(metrics_port, "icapd_shard_busy_seconds_total");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, busy_after) = per_shard_counter(metrics_port, "icapd_shard_busy_seconds_total");
    stop.store(true, Ordering::Relaxed);
    let mut all = idle;
    for w in workers {
        let (rounds, conn) = w.join().expect("a client failed");
        assert!(rounds > 10, "{rounds} rounds");
        all.push(conn);
    }
    for s in 0..2 {
        assert!(busy_after[s] > busy_before[s], "shard {s} did no work after the move: {busy_before:?} -> {busy_after:?}");
    }
    // The moved connections arrived, and every connection is still open and answers.
    let (moved_out, out) = per_shard_counter(metrics_port, "icapd_shard_connections_moved_out_total");
    let (moved_in, _) = per_shard_counter(metrics_port, "icapd_shard_connections_moved_in_total");
    assert_eq!(moved_out, moved_in);
    assert!(out[0] >= 1.0, "{out:?}");
    assert_eq!(per_shard(metrics_port, 2, 4).iter().sum::<usize>(), 4);
    for (s, r) in &mut all {
        s.write_all(OPTIONS).unwrap();
        assert_eq!(read_response(r).unwrap().status, 200);
    }
    let status = http_get(metrics_port, "/status").1;
    assert!(status.contains("moved_out"), "{status}");
    drop(server);
}
