//! The HAProxy agent-check listener: one line about this node's load per connection.
//!
//! HAProxy's `agent-check` connects to this port every `agent-inter`, reads one line and
//! closes. We answer `up N%`, where N is the share of capacity left, which HAProxy applies as
//! a percentage of the server's configured weight, so `balance leastconn` among nodes of
//! different speed or load follows real work rather than connection counts alone; and
//! `drain` once a stop was asked for, which sets the weight to 0: HAProxy sends no new
//! connections while the ones in flight finish (see `agent_drain_ms`).
//!
//! The load is the larger of two fractions, both measured from the shards' own counters
//! (asked for over their control channels, as a metrics scrape does, so the data path pays
//! nothing but a copy at its next control tick):
//! - connections: open connections over `connections_per_shard_max` times the shards;
//! - busy: processing time the shards recorded since the previous check, over the wall time
//!   elapsed times the shards (the first check reports connections only).
//!
//! It runs on its own blocking thread, one connection at a time, like the metrics listener.

use super::Control;
use crate::obs::snapshot::ShardSnapshot;
use crossbeam_channel::Sender;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by the main thread when a stop signal arrives; from then on the answer is `drain`.
static DRAINING: AtomicBool = AtomicBool::new(false);

pub fn set_draining() {
    DRAINING.store(true, Ordering::SeqCst);
}

pub fn is_draining() -> bool {
    DRAINING.load(Ordering::SeqCst)
}

/// The busy total seen at the previous check, to turn a running sum into a rate.
#[derive(Clone, Copy, Debug)]
pub struct Previous {
    pub at: Instant,
    pub busy_us: u64,
}

/// The agent's line for these snapshots. `shards` is how many shards run (a shard that did
/// not answer in time counts as idle rather than holding up the answer).
pub fn answer(
    draining: bool,
    snapshots: &[ShardSnapshot],
    shards: usize,
    connections_per_shard_max: usize,
    previous: Option<Previous>,
    now: Instant,
) -> (String, Previous) {
    let busy_us: u64 = snapshots.iter().map(|s| s.metrics.busy.sum_us).sum();
    let current = Previous { at: now, busy_us };
    if draining {
        return ("drain\n".into(), current);
    }
    let shards = shards.max(1) as f64;
    let open: usize = snapshots.iter().map(|s| s.active).sum();
    let connections = open as f64 / (connections_per_shard_max.max(1) as f64 * shards);
    let busy = match previous {
        Some(p) if now > p.at && busy_us >= p.busy_us => {
            (busy_us - p.busy_us) as f64 / (now.duration_since(p.at).as_micros() as f64 * shards)
        }
        _ => 0.0,
    };
    let load = connections.max(busy).clamp(0.0, 1.0);
    // Never 0%: HAProxy would treat a weight of 0 as drain, which only a stop should cause.
    let idle = ((1.0 - load) * 100.0).round().clamp(1.0, 100.0) as u32;
    (format!("up {idle}%\n"), current)
}

/// Binds `addr` (an error here stops the server at startup) and starts the thread.
pub fn start(
    addr: SocketAddr,
    controls: Vec<Sender<Control>>,
    connections_per_shard_max: usize,
    deadline: Duration,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen for agent checks on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("icapd-agent".into())
        .spawn(move || {
            let mut previous = None;
            for stream in listener.incoming() {
                let mut stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("icapd: agent listener: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let draining = is_draining();
                let snapshots = if draining {
                    Vec::new()
                } else {
                    super::metrics_listener::collect(&controls, Instant::now() + deadline)
                };
                let (line, now) =
                    answer(draining, &snapshots, controls.len(), connections_per_shard_max, previous, Instant::now());
                previous = Some(now);
                let _ = stream.set_write_timeout(Some(deadline));
                let _ = stream.write_all(line.as_bytes());
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        })
        .map_err(|e| format!("cannot start the agent thread: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::metrics::ShardMetrics;

    fn shard(active: usize, busy_us: u64) -> ShardSnapshot {
        let mut metrics = ShardMetrics::new(4);
        metrics.busy.sum_us = busy_us;
        ShardSnapshot { shard: 0, cpu: 0, active, generation: None, istag: String::new(), metrics }
    }

    #[test]
    fn idle_capacity_follows_the_busier_of_connections_and_processing_time() {
        let t0 = Instant::now();
        let (line, prev) = answer(false, &[shard(0, 0), shard(0, 0)], 2, 100, None, t0);
        assert_eq!(line, "up 100%\n");
        // 50 of 200 connections open: 75% left.
        let (line, _) = answer(false, &[shard(30, 0), shard(20, 0)], 2, 100, None, t0);
        assert_eq!(line, "up 75%\n");
        // One second later, 1.2 s of processing over two shards: 60% busy, 40% left.
        let t1 = t0 + Duration::from_secs(1);
        let (line, prev) = answer(false, &[shard(1, 700_000), shard(1, 500_000)], 2, 100, Some(prev), t1);
        assert_eq!(line, "up 40%\n");
        // Saturated: never reported as 0% (which HAProxy would take for drain).
        let t2 = t1 + Duration::from_secs(1);
        let (line, _) = answer(false, &[shard(100, 5_000_000), shard(100, 5_000_000)], 2, 100, Some(prev), t2);
        assert_eq!(line, "up 1%\n");
        // A shard that did not answer counts as idle.
        let (line, _) = answer(false, &[shard(100, 0)], 2, 100, None, t0);
        assert_eq!(line, "up 50%\n");
    }

    #[test]
    fn a_stopping_server_says_drain() {
        let (line, _) = answer(true, &[shard(0, 0)], 1, 100, None, Instant::now());
        assert_eq!(line, "drain\n");
    }
}
