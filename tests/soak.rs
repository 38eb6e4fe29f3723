//! Soak: sustained mixed load against the real binary with the signature engine and the
//! bundled `signatures/` folder, with resident memory and open descriptors compared before and
//! after.
//!
//! Four kinds of client run at once, each on its own threads:
//!
//! * clean: keep-alive RESPMODs of 0 to 300 KB, with preview + `ieof`, preview + `100
//!   Continue`, `Allow: 204`, or a full echo that must come back byte-exact (and two threads of
//!   small previews only, so that many requests run);
//! * infected: EICAR at a random offset (block page, or a cut-off echo once the echo has
//!   started), and REQMODs to the bundled blocked host;
//! * malformed: a rotating list of hostile requests, each with its exact status;
//! * slow: slowloris heads and stalled bodies, which must end in 408 at the (short) deadlines.
//!
//! Every answer is checked; a single wrong verdict fails the test. The load runs first for a
//! warm-up, so that the block pools, the allocator and the per-connection scanners reach their
//! working size; then memory and descriptors are sampled with no client connected, the load
//! runs for `ICAPD_SOAK_SECS` seconds (20 by default), and they are sampled again the same way.
//!
//! The bounds: open descriptors must be exactly what they were (every connection closed, by
//! whichever side, must give its descriptor back), and resident memory may grow by at most
//! [`RSS_GROWTH_MAX_KIB`]. That leaves room for allocator and pool fluctuation (each shard may
//! keep up to 256 free 128 KiB receive blocks, and which of them are resident depends on the
//! peak concurrency of the moment) while a leak of one kilobyte per request, over the tens of
//! thousands of requests of even the default run, would exceed it.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EICAR: &[u8] = include_bytes!("samples/eicar.com");
/// Largest growth of resident memory allowed between the two samples (see the module docs).
const RSS_GROWTH_MAX_KIB: u64 = 16 * 1024;
const CONFIG: &str = "reload_poll_ms = 0\n[limits]\nheader_read_deadline_ms = 1000\nbody_inactivity_ms = 1000\nidle_keepalive_ms = 5000\n";
/// Generous bound for a slow client to be answered after its deadline (a hang guard).
const SLOW_BOUND: Duration = Duration::from_secs(6);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Clean,
    Infected,
    Malformed,
    Slow,
}

/// What one client thread did.
#[derive(Default)]
struct Tally {
    requests: u64,
    wrong: Vec<String>,
}

/// Small deterministic generator for sizes, offsets and modes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn threat(r: &Response) -> Option<&str> {
    r.header("X-Infection-Found").and_then(|v| v.split("Threat=").nth(1)).map(|t| t.trim_end_matches(';'))
}

/// One clean transaction on a keep-alive connection; an error describes a wrong answer.
/// `small`: only small previews with `ieof`, the cheapest transaction, so that the run counts
/// enough requests for a per-request leak to show.
fn clean_once(
    port: u16,
    conn: &mut Option<(TcpStream, BufReader<TcpStream>)>,
    rng: &mut Rng,
    small: bool,
) -> Result<(), String> {
    let (s, r) = conn.get_or_insert_with(|| connect(port));
    let mode = if small { 0 } else { rng.below(4) };
    let len = match mode {
        0 => rng.below(1025) as usize,
        _ => 1025 + rng.below(300_000) as usize,
    };
    let body = pseudo_random(len, rng.below(u64::MAX));
    match mode {
        0 => {
            s.write_all(&respmod_preview_ieof(&body)).map_err(|e| e.to_string())?;
            let resp = read_response(r).map_err(|e| format!("preview+ieof: {e:?}"))?;
            (resp.status == 204).then_some(()).ok_or(format!("preview+ieof answered {}", resp.status))
        }
        1 => {
            let mut req = respmod_head("respmod", Some(1024), true);
            req.extend(chunked(&body[..1024], 1024));
            req.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&req).map_err(|e| e.to_string())?;
            let resp = read_response(r).map_err(|e| format!("preview: {e:?}"))?;
            if resp.status != 100 {
                return Err(format!("preview answered {} instead of 100", resp.status));
            }
            let mut rest = chunked(&body[1024..], 8192);
            rest.extend_from_slice(b"0\r\n\r\n");
            s.write_all(&rest).map_err(|e| e.to_string())?;
            let resp = read_response(r).map_err(|e| format!("after 100: {e:?}"))?;
            (resp.status == 204).then_some(()).ok_or(format!("after 100 answered {}", resp.status))
        }
        2 => {
            s.write_all(&respmod(&body, true)).map_err(|e| e.to_string())?;
            let resp = read_response(r).map_err(|e| format!("allow 204: {e:?}"))?;
            (resp.status == 204).then_some(()).ok_or(format!("clean with Allow: 204 answered {}", resp.status))
        }
        _ => {
            let resp = exchange(s, respmod(&body, false)).map_err(|e| format!("echo: {e:?}"))?;
            if resp.status != 200 || resp.body.as_deref() != Some(&body[..]) {
                return Err(format!("echo of {len} bytes: status {} or body differs", resp.status));
            }
            Ok(())
        }
    }
}

/// One infected transaction on a fresh connection.
fn infected_once(port: u16, rng: &mut Rng) -> Result<(), String> {
    let (mut s, mut r) = connect(port);
    let mode = rng.below(4);
    if mode == 3 {
        let hdr = "GET http://www.blocked.icapd.test/x HTTP/1.1\r\nHost: www.blocked.icapd.test\r\n\r\n";
        let req = format!(
            "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nAllow: 204\r\nEncapsulated: req-hdr=0, null-body={}\r\n\r\n{hdr}",
            hdr.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let resp = read_response(&mut r).map_err(|e| format!("blocked host: {e:?}"))?;
        return (threat(&resp) == Some("Icapd-Test-Blocked-Host")).then_some(()).ok_or(format!(
            "blocked host answered {} {:?}",
            resp.status,
            threat(&resp)
        ));
    }
    let len = match mode {
        0 => EICAR.len() + rng.below(200_000) as usize,
        1 => EICAR.len() + rng.below(20_000) as usize,
        _ => 100_000 + rng.below(200_000) as usize,
    };
    let mut body = pseudo_random(len, rng.below(u64::MAX));
    let at = rng.below((len - EICAR.len() + 1) as u64) as usize;
    body[at..at + EICAR.len()].copy_from_slice(EICAR);
    let allow_204 = mode == 0;
    match exchange(&s, respmod(&body, allow_204)) {
        Ok(resp)
            if threat(&resp).is_some_and(|t| t.to_ascii_lowercase().contains("eicar"))
                && resp.hdr.starts_with(b"HTTP/1.1 403") =>
        {
            Ok(())
        }
        // A streamed echo cut off before its last chunk: the object never arrives whole.
        Err(ReadError::Truncated(_)) if mode == 2 => Ok(()),
        other => Err(format!("EICAR at {at} of {len} (mode {mode}): {other:?}")),
    }
}

/// Hostile requests and their exact answers.
fn malformed_cases() -> Vec<(Vec<u8>, u16)> {
    let res = |hdr: &str| {
        format!(
            "RESPMOD icap://127.0.0.1/respmod ICAP/1.0\r\nAllow: 204\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{hdr}3\r\nabc\r\n0\r\n\r\n",
            hdr.len()
        )
        .into_bytes()
    };
    vec![
        (b"HELLO\r\n\r\n".to_vec(), 400),
        (b"OPTIONS icap://h/respmod ICAP/1.0\nHost: h\n\n".to_vec(), 400),
        (b"OPTIONS icap://h/respmod ICAP/2.0\r\n\r\n".to_vec(), 505),
        (b"PROPFIND icap://h/respmod ICAP/1.0\r\n\r\n".to_vec(), 501),
        (b"OPTIONS icap://h/nothing ICAP/1.0\r\n\r\n".to_vec(), 404),
        (format!("OPTIONS icap://h/respmod ICAP/1.0\r\nX: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(), 431),
        (b"RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-hdr=0, res-body=900000\r\n\r\n".to_vec(), 413),
        (res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400),
        ([&respmod_head("respmod", None, true)[..], b"0x3\r\nabc\r\n0\r\n\r\n"].concat(), 400),
        ([&respmod_head("respmod", None, true)[..], b"10000000000000000\r\n"].concat(), 400),
    ]
}

fn malformed_once(port: u16, cases: &[(Vec<u8>, u16)], rng: &mut Rng) -> Result<(), String> {
    let (bytes, status) = &cases[rng.below(cases.len() as u64) as usize];
    let (mut s, mut r) = connect(port);
    let _ = s.write_all(bytes);
    match read_response(&mut r) {
        Ok(resp) if resp.status == *status => match read_response(&mut r) {
            Err(ReadError::Closed) => Ok(()),
            other => Err(format!("not closed after {status}: {other:?}")),
        },
        other => Err(format!("expected {status}, got {other:?}")),
    }
}

/// A slowloris head (one byte every 150 ms) or a stalled body; both must get a 408.
fn slow_once(port: u16, rng: &mut Rng) -> Result<(), String> {
    let (mut s, mut r) = connect(port);
    let started = Instant::now();
    let stall = rng.below(2) == 0;
    let head = respmod_head("respmod", None, true);
    let watcher = std::thread::spawn(move || (read_response(&mut r).map(|resp| resp.status), read_response(&mut r)));
    if stall {
        let _ = s.write_all(&[&head[..], b"400\r\nsome bytes and then nothing"].concat());
    } else {
        for &b in &head {
            if watcher.is_finished() || s.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    let (first, then) = watcher.join().unwrap();
    let took = started.elapsed();
    match (first, then) {
        (Ok(408), Err(ReadError::Closed)) if took < SLOW_BOUND => Ok(()),
        other => {
            Err(format!("slow client ({}) after {took:?}: {other:?}", if stall { "stalled body" } else { "slowloris" }))
        }
    }
}

/// Runs every kind of client for `secs`; returns per-kind tallies.
fn load(port: u16, secs: Duration, seed: u64) -> Vec<(Kind, Tally)> {
    let stop = Arc::new(AtomicBool::new(false));
    // Clean threads 0 and 1 send every flavour; 2 and 3 only small previews.
    let plan = [(Kind::Clean, 4), (Kind::Infected, 1), (Kind::Malformed, 1), (Kind::Slow, 4)];
    let mut threads = Vec::new();
    for (kind, n) in plan {
        for i in 0..n {
            let stop = stop.clone();
            let seed = seed * 1000 + i * 10 + kind as u64 + 1;
            threads.push((
                kind,
                std::thread::spawn(move || {
                    let mut rng = Rng(seed);
                    let mut tally = Tally::default();
                    let mut conn = None;
                    let cases = malformed_cases();
                    while !stop.load(Ordering::Relaxed) {
                        let result = match kind {
                            Kind::Clean => clean_once(port, &mut conn, &mut rng, i >= 2),
                            Kind::Infected => infected_once(port, &mut rng),
                            Kind::Malformed => malformed_once(port, &cases, &mut rng),
                            Kind::Slow => slow_once(port, &mut rng),
                        };
                        tally.requests += 1;
                        if let Err(e) = result {
                            conn = None;
                            tally.wrong.push(e);
                        }
                    }
                    tally
                }),
            ));
        }
    }
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().map(|(kind, t)| (kind, t.join().unwrap())).collect()
}

/// Waits until no client connection is left on the server: the descriptor count stops
/// changing (sampled 300 ms apart), or equals `target` when one is given.
fn quiesce(pid: u32, target: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = open_fds(pid);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = open_fds(pid);
        let settled = match target {
            Some(t) => now == t,
            None => now == last,
        };
        if settled || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn soak_mixed_load_keeps_memory_and_descriptors_flat_with_no_wrong_verdict() {
    let secs: u64 = std::env::var("ICAPD_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let signatures = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    let server = Server::start(&["--shards", "2", "--signatures", signatures.to_str().unwrap()], Some(CONFIG));
    let pid = server.child.id();

    let warm_up = Duration::from_secs((secs / 4).clamp(5, 60));
    let warm = load(server.port, warm_up, 1);
    let fds_before = quiesce(pid, None);
    let rss_before = rss_kib(pid);

    let started = Instant::now();
    let main = load(server.port, Duration::from_secs(secs), 2);
    let ran = started.elapsed();
    let fds_after = quiesce(pid, Some(fds_before));
    let rss_after = rss_kib(pid);

    let mut wrong = Vec::new();
    let mut by_kind = std::collections::BTreeMap::<Kind, u64>::new();
    for (kind, tally) in warm.iter().chain(main.iter()) {
        wrong.extend(tally.wrong.iter().map(|w| format!("{kind:?}: {w}")));
    }
    for (kind, tally) in &main {
        *by_kind.entry(*kind).or_default() += tally.requests;
    }
    let total: u64 = by_kind.values().sum();
    println!(
        "soak: {secs} s of mixed load after {} s of warm-up, 2 shards, engine + bundled signatures",
        warm_up.as_secs()
    );
    println!(
        "soak: requests {total} in {:.1} s: {}",
        ran.as_secs_f64(),
        by_kind.iter().map(|(k, n)| format!("{k:?} {n}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "soak: RSS {rss_before} KiB before, {rss_after} KiB after ({:+} KiB)",
        rss_after as i64 - rss_before as i64
    );
    println!("soak: open fds {fds_before} before, {fds_after} after");
    println!("soak: wrong verdicts or answers: {}", wrong.len());

    assert!(
        wrong.is_empty(),
        "{} wrong answers, first ones:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    for kind in [Kind::Clean, Kind::Infected, Kind::Malformed, Kind::Slow] {
        assert!(by_kind.get(&kind).copied().unwrap_or(0) > 0, "no {kind:?} request ran");
    }
    assert_eq!(fds_after, fds_before, "open descriptors changed");
    assert!(
        rss_after <= rss_before + RSS_GROWTH_MAX_KIB,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB (bound {RSS_GROWTH_MAX_KIB} KiB)"
    );
    assert_eq!(server.stop().code(), Some(0));
}
