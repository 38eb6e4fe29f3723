//! Three icapd nodes behind Debian's HAProxy running the shipped `tuning/haproxy/haproxy.cfg`
//! (addresses rewritten to loopback ports), with clients looping through HAProxy.
//!
//! It proves what the configuration and the agent port are for: a node stopped with SIGTERM
//! first tells HAProxy `drain` on its agent port, keeps accepting for `agent_drain_ms`, then
//! finishes what it has: not one transaction fails. A node killed with SIGKILL costs at most
//! the transactions it had in flight (one per client at most), because HAProxy retries the
//! connections it cannot open on another node and marks the dead one down by its OPTIONS
//! check. Every phase is bounded; the test stops by itself.

mod common;

use common::{free_port, read_response, respmod_preview_ieof, wait_timeout, Server};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
/// How long after a SIGKILL the node's sockets may still take connections in (they are torn
/// down a few milliseconds after the process is reaped; this is a generous bound).
const DEATH_WINDOW: Duration = Duration::from_millis(500);

struct Haproxy {
    child: Child,
    dir: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn haproxy_binary() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("haproxy is installed (Debian package haproxy; scripts/test installs it)")
}

/// The shipped configuration with its bind and server addresses on loopback, and without the
/// lines that need the packaged service's environment (chroot, user, syslog, admin socket,
/// the descriptor limit for its maxconn).
fn config(port: u16, nodes: &[(u16, u16)]) -> String {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/haproxy/haproxy.cfg"))
        .expect("tuning/haproxy/haproxy.cfg");
    let mut out = String::new();
    let mut servers = 0;
    for line in shipped.lines() {
        let t = line.trim_start();
        if ["chroot ", "user ", "group ", "stats socket ", "log /dev/log"].iter().any(|p| t.starts_with(p)) {
            continue;
        }
        if t.starts_with("log global") || t.starts_with("option tcplog") {
            continue;
        }
        if t.starts_with("maxconn ") {
            // The packaged service raises its descriptor limit for 20000; a test shell may not.
            out.push_str("    maxconn 1000\n");
            continue;
        }
        if t.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            continue;
        }
        if t.starts_with("server ") {
            servers += 1;
            if servers == 1 {
                for (i, (icap, agent)) in nodes.iter().enumerate() {
                    out.push_str(&format!("    server node{} 127.0.0.1:{icap} check agent-port {agent}\n", i + 1));
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(servers >= 2, "the shipped configuration lists its servers");
    for needed in [
        "balance leastconn",
        "option tcp-check",
        "tcp-check expect string ICAP/1.0\\ 200",
        "on-marked-down shutdown-sessions",
        "agent-check",
    ] {
        assert!(out.contains(needed), "the shipped configuration has {needed}");
    }
    out
}

fn start_haproxy(port: u16, nodes: &[(u16, u16)]) -> Haproxy {
    let dir = std::env::temp_dir().join(format!("icapd-haproxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, config(port, nodes)).unwrap();
    let check = Command::new(haproxy_binary()).arg("-c").arg("-f").arg(&cfg).output().unwrap();
    assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
    let child = Command::new(haproxy_binary())
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Haproxy { child, dir }
}

/// One line from an agent port.
fn agent_line(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).unwrap();
    line
}

/// One transaction through HAProxy on a new connection: Ok when it got the right answer,
/// else what went wrong.
fn transaction(port: u16, body: &[u8], blocked: bool) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(&respmod_preview_ieof(body)).map_err(|e| format!("write: {e}"))?;
    match read_response(&mut BufReader::new(s)) {
        Ok(r) if r.status == if blocked { 200 } else { 204 } => Ok(()),
        Ok(r) => Err(format!("status {}", r.status)),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

#[test]
fn a_sigtermed_node_drains_without_a_failed_transaction_and_a_killed_one_costs_only_its_in_flight() {
    let eicar = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/eicar.com")).unwrap();
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let agent = free_port();
        let server = Server::start(
            &["--shards", "1", "--agent", &format!("127.0.0.1:{agent}"), "--access-log", "off"],
            Some("agent_drain_ms = 1500\nshutdown_grace_ms = 5000\n"),
        );
        assert!(agent_line(agent).starts_with("up "), "the agent reports up");
        ports.push((server.port, agent));
        nodes.push(Some(server));
    }
    let front = free_port();
    let _haproxy = start_haproxy(front, &ports);
    let deadline = Instant::now() + Duration::from_secs(20);
    while transaction(front, b"warm-up", false).is_err() {
        assert!(Instant::now() < deadline, "HAProxy never passed a transaction");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Clients loop until told to stop (or 90 s, whichever comes first).
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let failures_at = Arc::new(Mutex::new(Vec::<(Instant, Duration, String)>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, tally, failures_at, eicar) = (stop.clone(), tally.clone(), failures_at.clone(), eicar.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(90);
                let mut i = c;
                while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                    let threat = i % 2 == 0;
                    let body: &[u8] = if threat { &eicar } else { b"a clean body through haproxy" };
                    let started = Instant::now();
                    match transaction(front, body, threat) {
                        Ok(()) => {
                            tally.ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(why) => {
                            tally.failed.fetch_add(1, Ordering::SeqCst);
                            failures_at.lock().unwrap().push((started, started.elapsed(), why));
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let wait_for_ok = |n: u64| {
        let target = tally.ok.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while tally.ok.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "the clients stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for_ok(100);

    // SIGTERM node 1: its agent says drain, HAProxy stops sending, it finishes and exits 0.
    let mut node1 = nodes[0].take().unwrap();
    node1.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(agent_line(ports[0].1), "drain\n");
    let status = wait_timeout(&mut node1.child, Duration::from_secs(20)).expect("node 1 exits after SIGTERM");
    assert!(status.success(), "node 1 exit status {status:?}");
    drop(node1);
    wait_for_ok(100);
    let failed_after_term = tally.failed.load(Ordering::SeqCst);
    assert_eq!(failed_after_term, 0, "transactions failed while node 1 drained");

    // SIGKILL node 2: only what it had in flight may fail, then HAProxy routes around it.
    let killed_at = Instant::now();
    let node2 = nodes[1].take().unwrap();
    node2.signal(libc::SIGKILL);
    // Dropping reaps it: from then on its sockets are gone, and nothing it held is in flight.
    drop(node2);
    let reaped_at = Instant::now();
    // Past HAProxy's detection (inter 2 s, fall 2), with traffic flowing on node 3.
    std::thread::sleep(Duration::from_secs(5));
    wait_for_ok(100);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let failed = tally.failed.load(Ordering::SeqCst);
    let ok = tally.ok.load(Ordering::SeqCst);
    eprintln!("haproxy test: {ok} transactions answered, {failed} failed after the SIGKILL");
    // In flight on the killed node: what its clients had sent when the kill came (one per
    // client at most), and what its dying listener still took in while the kernel tore it
    // down. That ends a few milliseconds after the process is reaped (io_uring defers the
    // release of the sockets its rings hold to a kernel worker), so the window allowed is
    // `DEATH_WINDOW`. A transaction started after it must not fail, although HAProxy keeps
    // choosing the dead node for about 4 s, until its OPTIONS check marks it down: each
    // refused connection is retried on another node.
    let failures = failures_at.lock().unwrap().clone();
    for (t, took, why) in &failures {
        eprintln!(
            "haproxy test: failure started {:?} after the kill, took {took:?}: {why}",
            t.saturating_duration_since(killed_at)
        );
    }
    let starts: Vec<Instant> = failures.iter().map(|f| f.0).collect();
    let in_flight_at_kill = starts.iter().filter(|t| **t < killed_at).count();
    eprintln!(
        "haproxy test: failed transactions started before the kill: {in_flight_at_kill}, after it: {} (reaped after {:?})",
        starts.len() - in_flight_at_kill,
        reaped_at - killed_at
    );
    assert!(in_flight_at_kill <= CLIENTS, "more failures than transactions in flight at the kill");
    let late = starts.iter().filter(|t| **t >= killed_at + DEATH_WINDOW).count();
    assert_eq!(late, 0, "transactions started after the node was gone failed");
    // With `observe layer4` HAProxy marks the node down at its first refused or reset
    // connection, so each client loses at most one more transaction to the dying socket.
    assert!(starts.len() <= 2 * CLIENTS, "{} transactions failed after the SIGKILL", starts.len());
    assert!(ok >= 300);
    nodes[2].take().unwrap().stop();
}
