//! The metrics listener: a small blocking HTTP server on its own thread, off the shards.
//!
//! It serves one request per connection, one connection at a time: a scrape asks every shard
//! for a copy of its counters over the shard's control channel (`Control::Scrape`), waits up
//! to `scrape_deadline` for the answers, merges them and renders the page. Keeping it off the
//! shards means a scraper, slow or hostile, costs the data path nothing but the copy each
//! shard makes at its next control tick. A shard that does not answer in time is left out of
//! that scrape (`icapd_shards_answering` says so) rather than delaying it.
//!
//! It is meant for a loopback or management address; it has no authentication, like most
//! Prometheus exporters.

use super::Control;
use crate::limits::Limits;
use crate::obs::scrape::{self, Page, Scrape, ScrapeParser};
use crate::obs::snapshot::{ProcessInfo, ShardSnapshot, SignatureInfo};
use crate::obs::{prometheus, status};
use crossbeam_channel::{bounded, Sender};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Facts the control plane updates (reload thread) and the listener reads. Locked only by
/// those two threads, never on the request path.
#[derive(Debug, Default)]
pub struct ControlState {
    pub signatures: Option<SignatureInfo>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

pub type SharedControl = Arc<Mutex<ControlState>>;

/// What the listener needs to describe the process.
pub struct Facts {
    pub listen: SocketAddr,
    pub inspector: &'static str,
    pub cpus: Vec<usize>,
    pub started: Instant,
    pub started_unix: u64,
    pub limits: Limits,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Binds `addr` (an error here stops the server at startup) and starts the thread.
pub fn start(
    addr: SocketAddr,
    facts: Facts,
    controls: Vec<Sender<Control>>,
    state: SharedControl,
    log_errors: Option<Arc<AtomicU64>>,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("icapd-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => serve(s, &facts, &controls, &state, log_errors.as_deref()),
                    Err(e) => {
                        eprintln!("icapd: metrics listener: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(())
}

fn serve(
    mut stream: TcpStream,
    facts: &Facts,
    controls: &[Sender<Control>],
    state: &SharedControl,
    log_errors: Option<&AtomicU64>,
) {
    let deadline = Instant::now() + facts.limits.scrape_deadline;
    let max = facts.limits.scrape_request_bytes_max;
    let mut parser = ScrapeParser::new(max);
    let mut buf = vec![0u8; max];
    let mut filled = 0;
    let verdict = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break Scrape::Reject(408);
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                filled += n;
                match parser.parse(&buf[..filled]) {
                    Scrape::Partial => continue,
                    other => break other,
                }
            }
        }
    };
    let answer = match verdict {
        Scrape::Page { page, head_only } => {
            let shards = collect(controls, deadline);
            let info = process_info(facts, state, log_errors);
            let body = match page {
                Page::Metrics => prometheus::render(&info, &shards, facts.limits.threat_labels_max),
                Page::Status => status::render(&info, &shards),
            };
            scrape::response(200, scrape::content_type(page), body.as_bytes(), head_only)
        }
        Scrape::Reject(code) => scrape::response(code, "text/plain; charset=utf-8", b"", false),
        Scrape::Partial => unreachable!("the read loop only ends on a decision"),
    };
    let _ = stream.set_write_timeout(Some(facts.limits.scrape_deadline));
    let _ = stream.write_all(&answer);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Asks every shard for a snapshot; returns those that answered before `deadline`.
pub(super) fn collect(controls: &[Sender<Control>], deadline: Instant) -> Vec<ShardSnapshot> {
    let (tx, rx) = bounded(controls.len());
    let mut asked = 0;
    for c in controls {
        let left = deadline.saturating_duration_since(Instant::now());
        if c.send_timeout(Control::Scrape(tx.clone()), left).is_ok() {
            asked += 1;
        }
    }
    drop(tx);
    let mut shards = Vec::with_capacity(asked);
    while shards.len() < asked {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => shards.push(s),
            Err(_) => break,
        }
    }
    shards.sort_by_key(|s| s.shard);
    shards
}

fn process_info(facts: &Facts, state: &SharedControl, log_errors: Option<&AtomicU64>) -> ProcessInfo {
    let st = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    ProcessInfo {
        version: env!("CARGO_PKG_VERSION"),
        listen: facts.listen,
        inspector: facts.inspector,
        started_unix: facts.started_unix,
        uptime_secs: facts.started.elapsed().as_secs(),
        cpus: facts.cpus.clone(),
        signatures: st.signatures.clone(),
        reloads_ok: st.reloads_ok,
        reloads_failed: st.reloads_failed,
        log_write_errors: log_errors.map_or(0, |e| e.load(Ordering::Relaxed)),
    }
}
