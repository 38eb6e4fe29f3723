//! Per-shard counters, and their merge across shards.
//!
//! A shard records every finished transaction into its own [`ShardMetrics`]: fixed arrays
//! indexed by method, service and status, two histograms, and two small bounded maps (threat
//! names and limit events). Recording touches only the shard's own memory: no atomics, no
//! locks, and no allocation except the first time a new threat name is seen (bounded by
//! `threat_labels_max`). A scrape takes a copy from every shard and adds the copies up with
//! [`ShardMetrics::merge`]; the cost of aggregation is the scraper's.

use super::histogram::Histogram;
use super::record::{Action, TxnRecord};
use crate::access::POLICIES;
use crate::proto::error::ProtoError;
use crate::proto::service::SERVICES;
use crate::proto::Method;
use std::collections::BTreeMap;

/// Method label slots: OPTIONS, REQMOD, RESPMOD and `-` (the request line never parsed).
pub const METHODS: [&str; 4] = ["OPTIONS", "REQMOD", "RESPMOD", "-"];
/// Service label slots: the services of [`SERVICES`] in order, then `-` (none of ours).
pub const SERVICE_SLOTS: usize = SERVICES.len() + 1;
/// Statuses counted by value; anything else is counted under `other`. 0 stands for an answer
/// that was cut off after it had started.
pub const STATUSES: [u16; 15] = [0, 100, 200, 204, 400, 403, 404, 405, 408, 413, 431, 500, 501, 503, 505];
const STATUS_SLOTS: usize = STATUSES.len() + 1;
/// Every action, in the order of [`ShardMetrics::actions`].
pub const ACTIONS: [Action; 4] = [Action::Passed, Action::Blocked, Action::PartiallyBlocked, Action::Error];
/// The label under which threat names beyond the cap are counted.
pub const OTHER_LABEL: &str = "other";

/// Everything one shard counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMetrics {
    /// Transactions by [method][service][status].
    pub requests: [[[u64; STATUS_SLOTS]; SERVICE_SLOTS]; METHODS.len()],
    /// Transactions by [`ACTIONS`] index.
    pub actions: [u64; ACTIONS.len()],
    /// Bytes of ICAP heads and encapsulated HTTP headers received.
    pub head_bytes_in: u64,
    /// De-chunked body bytes received.
    pub body_bytes_in: u64,
    /// Bytes queued for clients (heads, echoed headers and bodies, block pages).
    pub bytes_out: u64,
    /// Blocked objects by threat name, at most `labels_max` names (then [`OTHER_LABEL`]).
    pub threats: BTreeMap<Box<str>, u64>,
    /// Objects decided by a scan limit, by limit name (the part after
    /// [`super::record::LIMIT_THREAT_PREFIX`]), bounded like `threats`.
    pub limits: BTreeMap<Box<str>, u64>,
    /// Blocked objects whose threat was in a member of a container, by member path
    /// (`archive.zip/dir/file.exe`), bounded like `threats`.
    pub found_in: BTreeMap<Box<str>, u64>,
    /// Protocol errors by kind (a closed enum: bounded by construction).
    pub errors: Vec<(ProtoError, u64)>,
    /// From the first byte of the head to the answer being queued.
    pub latency: Histogram,
    /// Processing (parsing and scanning) time per transaction.
    pub busy: Histogram,
    /// Connections accepted, and refused with 503 at the cap.
    pub connections_accepted: u64,
    pub connections_refused: u64,
    /// Idle keep-alive connections closed at the cap to make room for a new one.
    pub connections_evicted: u64,
    /// Connection tasks that panicked (each closed only its own connection).
    pub connection_panics: u64,
    /// Access-log lines dropped because the log writer fell behind.
    pub log_lines_dropped: u64,
    /// Transactions by the policy they ran under, by [`crate::access::POLICIES`] index.
    pub by_policy: [u64; POLICIES.len()],
    /// Connections closed at accept because their address is not in `allow_clients`.
    pub connections_denied: u64,
    /// Connections this shard accepted and handed to a shard with fewer connections, and
    /// connections other shards handed to this one (src/server/handoff.rs).
    pub connections_handed_off: u64,
    pub connections_received: u64,
    /// Keep-alive connections this shard moved to a less busy shard at a transaction boundary,
    /// and connections other shards moved here.
    pub connections_moved_out: u64,
    pub connections_moved_in: u64,
    /// The shard's busy fraction over its last balance window, in thousandths (a gauge: the
    /// total over shards is meaningless and stays 0).
    pub busy_permille: u32,
    /// TLS handshakes completed, and their duration (from accept to the first application byte
    /// being readable: the client's pace included, since that is what a slow handshake costs).
    pub tls_handshakes: u64,
    pub tls_handshake: Histogram,
    /// TLS handshakes that failed, by [`TLS_FAILURES`] index.
    pub tls_handshake_failures: [u64; TLS_FAILURES.len()],
    labels_max: usize,
}

/// Why a TLS handshake failed, as the `reason` label: `timeout` (not finished within
/// `tls_handshake_ms`), `protocol` (rustls refused the peer's records: no common version or
/// suite, a bad or missing client certificate, garbage such as plain ICAP on the TLS port) and
/// `closed` (the peer went away or the socket failed before the handshake finished).
pub const TLS_FAILURES: [&str; 3] = ["timeout", "protocol", "closed"];

impl ShardMetrics {
    /// Empty counters; `labels_max` bounds the threat and limit label sets.
    pub fn new(labels_max: usize) -> Self {
        ShardMetrics {
            requests: [[[0; STATUS_SLOTS]; SERVICE_SLOTS]; METHODS.len()],
            actions: [0; ACTIONS.len()],
            head_bytes_in: 0,
            body_bytes_in: 0,
            bytes_out: 0,
            threats: BTreeMap::new(),
            limits: BTreeMap::new(),
            found_in: BTreeMap::new(),
            errors: Vec::new(),
            latency: Histogram::default(),
            busy: Histogram::default(),
            connections_accepted: 0,
            connections_refused: 0,
            connections_evicted: 0,
            connection_panics: 0,
            log_lines_dropped: 0,
            by_policy: [0; POLICIES.len()],
            connections_denied: 0,
            connections_handed_off: 0,
            connections_received: 0,
            connections_moved_out: 0,
            connections_moved_in: 0,
            busy_permille: 0,
            tls_handshakes: 0,
            tls_handshake: Histogram::default(),
            tls_handshake_failures: [0; TLS_FAILURES.len()],
            labels_max,
        }
    }

    /// Counts one finished transaction.
    pub fn record(&mut self, rec: &TxnRecord<'_>) {
        let o = rec.outcome;
        let m = method_slot(o.method);
        let s = service_slot(o.service);
        self.requests[m][s][status_slot(o.status)] += 1;
        let action = rec.action();
        let a = ACTIONS.iter().position(|&x| x == action).expect("ACTIONS lists every action");
        self.actions[a] += 1;
        self.head_bytes_in += o.head_bytes;
        self.body_bytes_in += o.body_bytes;
        self.bytes_out += o.out_bytes;
        if let Some(threat) = rec.threat() {
            bump_bounded(&mut self.threats, threat, 1, self.labels_max);
        }
        if let Some(limit) = rec.limit() {
            bump_bounded(&mut self.limits, limit, 1, self.labels_max);
        }
        if let (Some(path), Some(_)) = (o.found_in.as_deref(), rec.threat()) {
            bump_bounded(&mut self.found_in, path, 1, self.labels_max);
        }
        if let Some(e) = o.error {
            self.count_error(e, 1);
        }
        self.latency.record(rec.latency);
        self.busy.record(rec.busy);
        self.by_policy[o.who.policy.slot()] += 1;
    }

    fn count_error(&mut self, e: ProtoError, n: u64) {
        match self.errors.iter_mut().find(|(k, _)| *k == e) {
            Some((_, count)) => *count += n,
            None => self.errors.push((e, n)),
        }
    }

    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: &ShardMetrics) {
        for (a, b) in self.requests.iter_mut().flatten().flatten().zip(other.requests.iter().flatten().flatten()) {
            *a += b;
        }
        for (a, b) in self.actions.iter_mut().zip(other.actions.iter()) {
            *a += b;
        }
        self.head_bytes_in += other.head_bytes_in;
        self.body_bytes_in += other.body_bytes_in;
        self.bytes_out += other.bytes_out;
        for (name, &n) in &other.threats {
            bump_bounded(&mut self.threats, name, n, self.labels_max);
        }
        for (name, &n) in &other.limits {
            bump_bounded(&mut self.limits, name, n, self.labels_max);
        }
        for (path, &n) in &other.found_in {
            bump_bounded(&mut self.found_in, path, n, self.labels_max);
        }
        for &(e, n) in &other.errors {
            self.count_error(e, n);
        }
        self.latency.merge(&other.latency);
        self.busy.merge(&other.busy);
        self.connections_accepted += other.connections_accepted;
        self.connections_refused += other.connections_refused;
        self.connections_evicted += other.connections_evicted;
        self.connection_panics += other.connection_panics;
        self.log_lines_dropped += other.log_lines_dropped;
        for (a, b) in self.by_policy.iter_mut().zip(other.by_policy.iter()) {
            *a += b;
        }
        self.connections_denied += other.connections_denied;
        self.connections_handed_off += other.connections_handed_off;
        self.connections_received += other.connections_received;
        self.connections_moved_out += other.connections_moved_out;
        self.connections_moved_in += other.connections_moved_in;
        self.tls_handshakes += other.tls_handshakes;
        self.tls_handshake.merge(&other.tls_handshake);
        for (a, b) in self.tls_handshake_failures.iter_mut().zip(other.tls_handshake_failures.iter()) {
            *a += b;
        }
    }

    /// Transactions counted, over every label.
    pub fn transactions(&self) -> u64 {
        self.actions.iter().sum()
    }

    /// Non-zero request counters as (method, service, status) labels.
    pub fn request_series(&self) -> impl Iterator<Item = (&'static str, &'static str, String, u64)> + '_ {
        self.requests.iter().enumerate().flat_map(move |(m, by_service)| {
            by_service.iter().enumerate().flat_map(move |(s, by_status)| {
                by_status.iter().enumerate().filter(|(_, &n)| n > 0).map(move |(st, &n)| {
                    let status = STATUSES.get(st).map_or_else(|| "other".to_string(), |v| v.to_string());
                    (METHODS[m], service_label(s), status, n)
                })
            })
        })
    }
}

/// Adds `n` under `name`, or under [`OTHER_LABEL`] once `max` names are held.
fn bump_bounded(map: &mut BTreeMap<Box<str>, u64>, name: &str, n: u64, max: usize) {
    if let Some(count) = map.get_mut(name) {
        *count += n;
        return;
    }
    let named = map.keys().filter(|k| &***k != OTHER_LABEL).count();
    let key = if named < max { name } else { OTHER_LABEL };
    *map.entry(key.into()).or_insert(0) += n;
}

fn method_slot(method: Option<Method>) -> usize {
    match method {
        Some(Method::Options) => 0,
        Some(Method::Reqmod) => 1,
        Some(Method::Respmod) => 2,
        None => 3,
    }
}

fn service_slot(service: Option<&str>) -> usize {
    service.and_then(|name| SERVICES.iter().position(|s| s.name == name)).unwrap_or(SERVICES.len())
}

fn service_label(slot: usize) -> &'static str {
    SERVICES.get(slot).map_or("-", |s| s.name)
}

fn status_slot(status: u16) -> usize {
    STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Verdict;
    use crate::proto::conn::TxnOutcome;
    use std::time::{Duration, Instant};

    fn outcome(method: Option<Method>, service: Option<&'static str>, status: u16, threat: Option<&str>) -> TxnOutcome {
        TxnOutcome {
            method,
            service,
            status,
            verdict: threat.map(|t| Verdict::Infected { threat: t.into() }),
            body_bytes: 100,
            head_bytes: 10,
            out_bytes: 50,
            started: Instant::now(),
            aborted: false,
            error: None,
            limit: None,
            found_in: None,
            who: Default::default(),
        }
    }

    fn record(m: &mut ShardMetrics, o: &TxnOutcome) {
        let rec = TxnRecord {
            outcome: o,
            client: None,
            local: None,
            shard: 0,
            latency: Duration::from_micros(300),
            busy: Duration::from_micros(40),
            unix_millis: 0,
        };
        m.record(&rec);
    }

    #[test]
    fn counts_by_label_and_merges() {
        let mut a = ShardMetrics::new(2);
        let mut b = ShardMetrics::new(2);
        record(&mut a, &outcome(Some(Method::Respmod), Some("respmod"), 204, None));
        record(&mut a, &outcome(Some(Method::Respmod), Some("avscan"), 200, Some("Eicar")));
        record(&mut b, &outcome(None, None, 400, None));
        record(&mut b, &outcome(Some(Method::Options), Some("respmod"), 200, None));
        record(
            &mut b,
            &outcome(Some(Method::Reqmod), Some("reqmod"), 200, Some("Heuristics.Limits.Exceeded.MaxScanSize")),
        );
        a.merge(&b);
        let series: Vec<_> = a.request_series().collect();
        assert!(series.contains(&("RESPMOD", "respmod", "204".into(), 1)));
        assert!(series.contains(&("RESPMOD", "avscan", "200".into(), 1)));
        assert!(series.contains(&("-", "-", "400".into(), 1)));
        assert_eq!(series.len(), 5);
        assert_eq!(a.transactions(), 5);
        assert_eq!(a.actions, [2, 2, 0, 1], "passed, blocked, partially blocked, error");
        assert_eq!(a.limits.get("MaxScanSize"), Some(&1));
        assert_eq!(a.body_bytes_in, 500);
        assert_eq!(a.latency.count, 5);
        assert_eq!(a.by_policy, [5, 0, 0], "every one under the default policy");
        let mut skipped = outcome(Some(Method::Respmod), Some("respmod"), 204, None);
        skipped.who.policy = crate::access::PolicyKind::Skip;
        record(&mut b, &skipped);
        a.merge(&b);
        assert_eq!(a.by_policy, [5 + 3, 1, 0]);
    }

    #[test]
    fn threat_labels_are_bounded() {
        let mut m = ShardMetrics::new(2);
        for name in ["A", "B", "C", "D", "A"] {
            record(&mut m, &outcome(Some(Method::Respmod), Some("respmod"), 200, Some(name)));
        }
        let got: Vec<_> = m.threats.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(got, [("A".to_string(), 2), ("B".to_string(), 1), ("other".to_string(), 2)]);
        let mut merged = ShardMetrics::new(2);
        merged.merge(&m);
        merged.merge(&m);
        assert_eq!(merged.threats.len(), 3, "merging keeps the bound");
        assert_eq!(merged.threats.get("other"), Some(&4));
    }

    #[test]
    fn unknown_statuses_go_to_other() {
        let mut m = ShardMetrics::new(4);
        record(&mut m, &outcome(Some(Method::Respmod), Some("respmod"), 299, None));
        let series: Vec<_> = m.request_series().collect();
        assert_eq!(series, [("RESPMOD", "respmod", "other".to_string(), 1)]);
    }

    #[test]
    fn finds_inside_containers_are_counted_by_member_path() {
        let mut m = ShardMetrics::new(2);
        let mut o = outcome(Some(Method::Respmod), Some("respmod"), 200, Some("Eicar-Test-Signature"));
        o.found_in = Some("a.zip/dir/e.com".into());
        record(&mut m, &o);
        record(&mut m, &o);
        // A clean object with a stale path is not a find.
        let mut clean = outcome(Some(Method::Respmod), Some("respmod"), 204, None);
        clean.found_in = Some("b.zip/x".into());
        record(&mut m, &clean);
        assert_eq!(m.found_in.get("a.zip/dir/e.com"), Some(&2));
        assert_eq!(m.found_in.len(), 1);
        let mut merged = ShardMetrics::new(2);
        merged.merge(&m);
        assert_eq!(merged.found_in, m.found_in);
    }
}
