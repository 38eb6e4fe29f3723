//! Memory is a budget: whatever clients send, icapd's resident memory stays bounded and falls
//! back near its baseline afterwards.
//!
//! Several clients at once send multi-GiB bodies (generated on the fly) with `Allow: 204`,
//! after an early block (the body starts with the test inspector's marker, so the answer comes
//! first and the rest is drained), and without reading the answers to an echo. Peak RSS
//! (sampled `VmRSS`, and `VmHWM` at the end) must stay within [`PEAK_ALLOWANCE_MIB`] of the
//! baseline: each connection holds at most `conn_retained_bytes_max` (512 KiB) of receive
//! blocks, so five connections need under 3 MiB of blocks; the allowance covers that, the
//! pools' prefill, thread stacks and allocator slack, and is two orders of magnitude below what
//! one such body cost when blocks followed the body (RSS +1 GiB per GiB sent). Then, with the
//! clients gone, the pools give their blocks back within a second or two and RSS must fall to
//! within [`AFTER_ALLOWANCE_MIB`] of the baseline.
//!
//! The body size defaults to 1 GiB per client; `ICAPD_BUDGET_TEST_MIB` changes it.

mod common;

use common::*;
use icapd::inspect::TEST_MARKER;
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEAK_ALLOWANCE_MIB: u64 = 64;
const AFTER_ALLOWANCE_MIB: u64 = 16;

fn body_bytes() -> u64 {
    std::env::var("ICAPD_BUDGET_TEST_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024) << 20
}

/// Samples a process's VmRSS every 20 ms until stopped; keeps the highest.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { stop, peak, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// Sends one RESPMOD with a generated body while another thread reads the answer; returns its
/// status.
fn upload(server: &Server, allow_204: bool, first: &'static [u8], total: u64) -> std::thread::JoinHandle<u16> {
    let stream = server.connect();
    stream.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    std::thread::spawn(move || {
        let mut w = stream.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            w.write_all(&respmod_head("respmod", None, allow_204)).unwrap();
            // After an early answer the server may close once it has drained; either is fine.
            let _ = send_generated_body(&mut w, first, total);
        });
        let resp = read_response(&mut BufReader::new(stream)).expect("an answer");
        writer.join().unwrap();
        resp.status
    })
}

/// Sends an echo request (no `Allow: 204`) and never reads the answer: the server must stop
/// reading the body once its output backs up. Returns how many body bytes got through.
fn stalled_echo(server: &Server, total: u64) -> std::thread::JoinHandle<u64> {
    let mut stream = server.connect();
    stream.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    std::thread::spawn(move || {
        stream.write_all(&respmod_head("respmod", None, false)).unwrap();
        let mut counter = Counting { inner: &mut stream, n: 0 };
        let _ = send_generated_body(&mut counter, b"", total);
        counter.n
    })
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn big_bodies_do_not_grow_memory_and_it_returns_afterwards() {
    let total = body_bytes();
    let server = Server::start(&["--inspector", "test"], None);
    let pid = server.child.id();
    // Warm up: one small transaction of each kind, so the baseline includes what any served
    // request allocates once.
    for allow_204 in [true, false] {
        let resp = exchange(&server.connect(), respmod(&pseudo_random(300_000, 1), allow_204)).unwrap();
        assert!(resp.status == 200 || resp.status == 204);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = rss_kib(pid);
    let sampler = Sampler::start(pid);
    let started = Instant::now();

    let clients = vec![
        upload(&server, true, b"", total),
        upload(&server, true, b"", total),
        upload(&server, true, TEST_MARKER, total),
        upload(&server, false, TEST_MARKER, total),
    ];
    let stalled = stalled_echo(&server, total);
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let through = stalled.join().unwrap();
    let peak = sampler.finish().max(hwm_kib(pid).min(u64::MAX));
    let elapsed = started.elapsed();
    assert_eq!(statuses, [204, 204, 200, 200], "clean ones 204, the marked ones blocked");
    assert!(
        through < 256 << 20,
        "the server kept reading an echo nobody read ({through} bytes got through)"
    );

    // With every client gone the pools shrink back (trimmed every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = rss_kib(pid);
    while after > baseline + (AFTER_ALLOWANCE_MIB << 10) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = rss_kib(pid);
    }
    eprintln!(
        "budgets: {} MiB per client in {:.1} s; RSS baseline {} KiB, peak {} KiB (+{} KiB), after {} KiB; stalled echo let {} KiB through",
        total >> 20,
        elapsed.as_secs_f64(),
        baseline,
        peak,
        peak.saturating_sub(baseline),
        after,
        through >> 10
    );
    assert!(peak <= baseline + (PEAK_ALLOWANCE_MIB << 10), "peak RSS {peak} KiB over baseline {baseline} KiB");
    assert!(after <= baseline + (AFTER_ALLOWANCE_MIB << 10), "RSS {after} KiB did not return near {baseline} KiB");
    assert!(check_serves(&server).is_ok());
    server.stop();
}

/// With a shard budget for two transactions, five clients in the middle of a transaction at
/// once: three wait (are not read from) until a reservation is free, then all five are
/// answered; /metrics shows the waits and, afterwards, nothing charged.
#[test]
fn when_the_shard_budget_is_spent_new_work_waits_and_is_counted() {
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let config = "[limits]\nshard_memory_bytes_max = 1048576\nconn_retained_bytes_max = 524288\n";
    let server = Server::start(&["--shards", "1", "--inspector", "test", "--metrics", &metrics_addr], Some(config));
    let body = pseudo_random(200_000, 9);
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let stream = server.connect();
            let body = body.clone();
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                let mut input = respmod_head("respmod", None, true);
                input.extend(chunked(&body, 16 * 1024));
                input.extend_from_slice(b"0\r\n\r\n");
                let (first, rest) = input.split_at(2000);
                w.write_all(first).unwrap();
                std::thread::sleep(Duration::from_millis(700));
                w.write_all(rest).unwrap();
                read_response(&mut BufReader::new(stream)).map(|r| r.status)
            })
        })
        .collect();
    let statuses: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == Ok(204)), "{statuses:?}");
    let (status, page) = http_get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&page);
    assert_eq!(metric(&m, "icapd_memory_budget_bytes"), 1048576.0);
    assert!(metric(&m, "icapd_memory_budget_waits_total") >= 3.0, "{page}");
    assert!(metric(&m, "icapd_memory_budget_refusals_total{use=\"connections\"}") >= 3.0);
    assert_eq!(metric(&m, "icapd_memory_budget_used_bytes{use=\"connections\"}"), 0.0);
    assert!(metric(&m, "icapd_memory_budget_peak_bytes") <= 1048576.0);
    assert!(metric(&m, "icapd_receive_block_bytes") > 0.0);
    server.stop();
}
