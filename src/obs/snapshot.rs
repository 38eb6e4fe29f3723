//! What a scrape collects: a copy of every shard's counters and state, and the control
//! plane's facts (start time, signature generations, reloads). Both pages render from these.

use super::metrics::ShardMetrics;
use crate::signatures::generation::Summary;
use std::net::SocketAddr;

/// One shard's state at the moment it answered the scrape.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub cpu: usize,
    /// Open connections (busy and idle keep-alive).
    pub active: usize,
    /// The signature generation this shard answers with now (None without the engine).
    pub generation: Option<u64>,
    pub istag: String,
    pub metrics: ShardMetrics,
}

/// The signature set the control plane loaded last.
#[derive(Clone, Debug)]
pub struct SignatureInfo {
    pub generation: u64,
    pub istag: String,
    pub summary: Summary,
    /// Wall-clock time the generation finished loading, in seconds since the epoch.
    pub loaded_unix: u64,
}

/// Process-wide facts kept by the control plane (the main, reload and log threads).
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub version: &'static str,
    pub listen: SocketAddr,
    pub inspector: &'static str,
    pub started_unix: u64,
    pub uptime_secs: u64,
    /// Shards configured, and their CPUs in shard order.
    pub cpus: Vec<usize>,
    pub signatures: Option<SignatureInfo>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Access-log lines the writer could not write (I/O errors), as opposed to lines dropped
    /// by shards when the writer fell behind (counted per shard).
    pub log_write_errors: u64,
}
