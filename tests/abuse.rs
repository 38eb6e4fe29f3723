//! Slow and abusive clients against the real binary: slowloris heads, stalled bodies, idle
//! keep-alive connections, a client that never reads, and a connection flood beyond the cap.
//!
//! Every attack runs while a well-behaved client (a [`Prober`]) keeps asking the same shard
//! for answers; each of its answers must be correct and arrive within a generous bound
//! ([`PROBE_BOUND`]), which is a hang guard, not a speed check. Limits are set small through
//! the TOML configuration so that each attack is decided within seconds. One shard only, so
//! the attacker and the prober always share an executor.

mod common;

use common::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a well-behaved client may wait for one check (two answers) during an attack.
const PROBE_BOUND: Duration = Duration::from_secs(2);
/// How long an attacker may wait beyond a deadline for the server to act on it (hang guard).
const SLACK: Duration = Duration::from_secs(4);

const DEADLINES: &str = "[limits]\nheader_read_deadline_ms = 1000\nbody_inactivity_ms = 1000\nidle_keepalive_ms = 1500\nconnections_per_shard_max = 256\n";
const DEADLINE: Duration = Duration::from_millis(1000);

fn start(config: &str) -> Server {
    Server::start(&["--shards", "1", "--inspector", "test"], Some(config))
}

/// A well-behaved client that keeps checking the server from its own thread.
struct Prober {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<ProbeStats>,
}

#[derive(Debug, Default)]
struct ProbeStats {
    checks: usize,
    failures: Vec<String>,
    slowest: Duration,
}

impl Prober {
    /// `persistent`: one connection for every check (opened now); otherwise a fresh
    /// connection per check, so accepting new connections is tested too.
    fn start(server: &Server, persistent: bool) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let port = server.port;
        let conn = persistent.then(|| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_nodelay(true).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        });
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut stats = ProbeStats::default();
            let mut reader = conn.as_ref().map(|s| BufReader::new(s.try_clone().unwrap()));
            while !flag.load(Ordering::Relaxed) {
                let at = Instant::now();
                let result = match (&conn, &mut reader) {
                    (Some(s), Some(r)) => probe_on(s, r),
                    _ => probe_fresh(port),
                };
                let took = at.elapsed();
                stats.checks += 1;
                stats.slowest = stats.slowest.max(took);
                if let Err(e) = result {
                    stats.failures.push(e);
                    if conn.is_some() {
                        break; // the persistent connection is gone; nothing more to probe
                    }
                }
                if took > PROBE_BOUND {
                    stats.failures.push(format!("a check took {took:?}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            stats
        });
        Prober { stop, handle }
    }

    /// Stops probing and asserts every check passed within the bound.
    fn finish(self, what: &str) -> ProbeStats {
        self.stop.store(true, Ordering::Relaxed);
        let stats = self.handle.join().unwrap();
        println!("{what}: prober made {} checks, slowest {:?}", stats.checks, stats.slowest);
        assert!(stats.failures.is_empty(), "{what}: the well-behaved client failed: {:?}", stats.failures);
        assert!(stats.checks >= 3, "{what}: the prober hardly ran ({} checks)", stats.checks);
        stats
    }
}

fn probe_fresh(port: u16) -> Result<(), String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    probe_on(&s, &mut r)
}

/// A clean RESPMOD (preview + ieof) answered 204, then an OPTIONS answered 200.
fn probe_on(mut s: &TcpStream, r: &mut BufReader<TcpStream>) -> Result<(), String> {
    s.write_all(&respmod_preview_ieof(b"clean and well-behaved")).map_err(|e| format!("write: {e}"))?;
    match read_response(r) {
        Ok(resp) if resp.status == 204 => {}
        other => return Err(format!("RESPMOD: {other:?}")),
    }
    s.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    match read_response(r) {
        Ok(resp) if resp.status == 200 => Ok(()),
        other => Err(format!("OPTIONS: {other:?}")),
    }
}

/// What an attacking connection saw: the answers it got, in order, whether the connection
/// was closed afterwards, and when (since the attack started).
#[derive(Debug)]
struct Seen {
    statuses: Vec<u16>,
    /// Reading ended with a cut-off answer (a streamed echo without its last chunk).
    truncated: bool,
    closed_after: Duration,
}

/// Reads answers on `s` until the server closes it; runs on its own thread so that the
/// attacker's writes and the server's answers never wait on each other.
fn watch(s: &TcpStream, started: Instant) -> JoinHandle<Seen> {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    reader.get_ref().set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    std::thread::spawn(move || {
        let mut statuses = Vec::new();
        let mut truncated = false;
        loop {
            match read_response(&mut reader) {
                Ok(r) => statuses.push(r.status),
                Err(ReadError::Closed) => break,
                Err(ReadError::Truncated(_)) => {
                    truncated = true;
                    // Whatever follows, the connection must end: drain until it does.
                    let mut sink = [0u8; 65536];
                    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                    break;
                }
            }
        }
        Seen { statuses, truncated, closed_after: started.elapsed() }
    })
}

/// Length of the ICAP head (up to and including its blank line) at the start of `request`.
fn icap_head_end(request: &[u8]) -> usize {
    request.windows(4).position(|w| w == b"\r\n\r\n").expect("an ICAP head") + 4
}

#[test]
fn slowloris_heads_get_408_and_a_close_while_others_are_served() {
    let server = start(DEADLINES);
    let prober = Prober::start(&server, false);
    // Twenty connections each send a head one byte every 200 ms: the whole head would take
    // about 25 s, so only a deadline counted from the first byte (not reset by each byte)
    // can end them within DEADLINE + SLACK. Half of them send the ICAP head at once and
    // trickle only the encapsulated HTTP headers, which the same deadline covers.
    let head = respmod_head("respmod", Some(1024), true);
    let icap_head_len = icap_head_end(&head);
    let attackers: Vec<_> = (0..20)
        .map(|i| {
            let head = head.clone();
            let port = server.port;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let started = Instant::now();
                let watcher = watch(&s, started);
                let trickle = if i % 2 == 1 {
                    s.write_all(&head[..icap_head_len]).unwrap();
                    &head[icap_head_len..]
                } else {
                    &head[..]
                };
                for &b in trickle {
                    if watcher.is_finished() || s.write_all(&[b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                watcher.join().unwrap()
            })
        })
        .collect();
    for a in attackers {
        let seen = a.join().unwrap();
        assert_eq!(seen.statuses, [408], "{seen:?}");
        assert!(seen.closed_after < DEADLINE + SLACK, "slowloris held a connection for {:?}", seen.closed_after);
    }
    prober.finish("slowloris");
}

#[test]
fn stalled_bodies_are_closed_after_the_inactivity_deadline_while_others_are_served() {
    let server = start(DEADLINES);
    let prober = Prober::start(&server, false);
    // Three ways to stall, five connections each.
    let body = pseudo_random(100_000, 3);
    let mut kinds: Vec<(&str, Vec<u8>, &[u16], bool)> = Vec::new();
    // Allow: 204, part of a chunk, then silence: nothing was answered yet, so a 408.
    kinds.push(("mid-chunk", [&respmod_head("respmod", None, true)[..], b"3e8\r\nabcdefghij"].concat(), &[408], false));
    // No Allow: 204 and more than the hold-back window: the echo has started, so the only
    // honest end is to cut it off (no last chunk) and close.
    kinds.push((
        "mid-echo",
        [&respmod_head("respmod", None, false)[..], &chunked(&body, 8192)[..]].concat(),
        &[],
        true,
    ));
    // A preview without ieof is answered 100 Continue; the client never sends the rest.
    let mut preview = respmod_head("respmod", Some(1024), true);
    preview.extend(chunked(&body[..1024], 1024));
    preview.extend_from_slice(b"0\r\n\r\n");
    kinds.push(("after 100 Continue", preview, &[100, 408], false));
    let mut attackers = Vec::new();
    for (name, bytes, expect, truncated) in kinds {
        for _ in 0..5 {
            let (bytes, port) = (bytes.clone(), server.port);
            attackers.push((
                name,
                expect,
                truncated,
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let watcher = watch(&s, Instant::now());
                    s.write_all(&bytes).unwrap();
                    let written = Instant::now();
                    let seen = watcher.join().unwrap();
                    (seen, written)
                }),
            ));
        }
    }
    for (name, expect, truncated, a) in attackers {
        let (seen, _) = a.join().unwrap();
        assert_eq!((seen.statuses.as_slice(), seen.truncated), (expect, truncated), "{name}: {seen:?}");
        assert!(seen.closed_after < DEADLINE + SLACK, "{name}: stalled connection held for {:?}", seen.closed_after);
    }
    prober.finish("stalled bodies");
}

#[test]
fn idle_keepalive_connections_are_closed_after_their_timeout() {
    let server = start(DEADLINES);
    let prober = Prober::start(&server, false);
    let keepalive = Duration::from_millis(1500);
    // After one transaction, and before any: both are idle keep-alive waits.
    let mut used = server.connect();
    used.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(used.try_clone().unwrap());
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    let idle_from = Instant::now();
    let fresh = server.connect();
    let fresh_from = Instant::now();
    let watchers = [(watch(&used, idle_from), "after a transaction"), (watch(&fresh, fresh_from), "never used")];
    for (w, name) in watchers {
        let seen = w.join().unwrap();
        assert!(seen.statuses.is_empty() && !seen.truncated, "{name}: {seen:?}");
        // Closed, and not before its time (the keep-alive timeout is not the head deadline).
        assert!(
            seen.closed_after >= keepalive - Duration::from_millis(100),
            "{name}: closed after {:?}",
            seen.closed_after
        );
        assert!(seen.closed_after < keepalive + SLACK, "{name}: idle connection held for {:?}", seen.closed_after);
    }
    prober.finish("idle keep-alive");
}

#[test]
fn a_client_that_never_reads_is_dropped_after_the_inactivity_deadline() {
    let server = start(DEADLINES);
    let prober = Prober::start(&server, false);
    // 32 MB without Allow: 204: the echo fills the socket buffers and stops; the server must
    // not wait on this client for longer than the inactivity deadline.
    let request = respmod(&pseudo_random(32 * 1024 * 1024, 5), false);
    let mut s = server.connect();
    let started = Instant::now();
    let result = s.write_all(&request);
    let took = started.elapsed();
    assert!(result.is_err(), "the server read 32 MB from a client that never read its answer");
    assert!(
        took < DEADLINE + SLACK + Duration::from_secs(4),
        "the server waited {took:?} on a client that does not read"
    );
    prober.finish("client that never reads");
}

#[test]
fn a_flood_beyond_the_cap_gets_503_while_connected_clients_are_served() {
    // A long head deadline, so the slow connections hold their slots for the whole test.
    let server =
        start("[limits]\nheader_read_deadline_ms = 30000\nconnections_per_shard_max = 16\nidle_evict_after_ms = 500\n");
    // The prober's connection is open before the flood; its idle gaps (20 ms) are far below
    // idle_evict_after, so it is never the one evicted.
    let prober = Prober::start(&server, true);
    std::thread::sleep(Duration::from_millis(200));
    // Fill the cap with connections that each hold a head open (these cannot be evicted).
    let slow: Vec<TcpStream> = (0..15)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(b"RESPMOD icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Forty more at once: each is answered 503 and closed, none hangs.
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let started = Instant::now();
                watch(&s, started).join().unwrap()
            })
        })
        .collect();
    for f in flood {
        let seen = f.join().unwrap();
        assert_eq!(seen.statuses, [503], "{seen:?}");
        assert!(seen.closed_after < SLACK, "a refused connection waited {:?}", seen.closed_after);
    }
    prober.finish("flood beyond the cap");
    // Once the slow connections go, new connections are served again.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = check_serves(&server) {
        assert!(Instant::now() < deadline, "not served after the flood ended: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn at_the_cap_the_connection_idle_longest_makes_room() {
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(
        &["--shards", "1", "--inspector", "test", "--metrics", &metrics],
        Some("[limits]\nconnections_per_shard_max = 4\nidle_evict_after_ms = 2000\nidle_keepalive_ms = 60000\n"),
    );
    // Four keep-alive connections, each after one transaction, oldest first.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = server.connect();
        s.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(read_response(&mut r).unwrap().status, 200);
        idle.push((s, r));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Idle for less than idle_evict_after: they are in use, so the newcomer gets 503.
    let refused = server.connect();
    assert_eq!(watch(&refused, Instant::now()).join().unwrap().statuses, [503]);
    // Idle for longer: the newcomer is served, and the connection idle longest was closed.
    std::thread::sleep(Duration::from_millis(2500));
    check_serves(&server).expect("a new connection at the cap is served by evicting an idle one");
    let (_, first) = &mut idle[0];
    assert_eq!(read_response(first), Err(ReadError::Closed), "the oldest idle connection was closed");
    // The others were left alone and still work (the newcomer has gone, so there is room).
    for (s, r) in &mut idle[1..] {
        s.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\n").unwrap();
        assert_eq!(read_response(r).unwrap().status, 200);
    }
    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    assert_eq!(metric(&m, "icapd_connections_evicted_total"), 1.0);
    assert_eq!(metric(&m, "icapd_connections_refused_total"), 1.0);
}

/// Clients that connect and reset at once (SO_LINGER 0), in a burst, while a well-behaved
/// client checks the same shard: some resets reach the kernel before the shard looks at the
/// accepted connection's peer address, whose lookup then fails. The shard must close such a
/// connection exactly once and go on serving (closing it twice aborted a debug build and, in a
/// release build, closed whatever connection had reused the descriptor number; HAProxy's
/// retries when a node dies produce exactly this).
#[test]
fn connections_reset_before_the_accept_are_closed_once_and_the_shard_serves_on() {
    let server = start(DEADLINES);
    let prober = Prober::start(&server, false);
    let persistent = Prober::start(&server, true);
    for _ in 0..3000 {
        let s = TcpStream::connect(("127.0.0.1", server.port)).expect("the server still accepts (it did not die)");
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    prober.finish("resets before the accept (fresh connections)");
    persistent.finish("resets before the accept (one kept connection)");
    check_serves(&server).expect("the shard still serves after the resets");
}
