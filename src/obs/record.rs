//! One finished transaction as the operator sees it: what the connection state machine
//! reported ([`TxnOutcome`]) plus what only the server knows (addresses, shard, clocks).

use crate::inspect::Verdict;
use crate::proto::conn::TxnOutcome;
use crate::proto::Method;
use std::net::SocketAddr;
use std::time::Duration;

/// What happened to the object, in c-icap virus_scan's words so that existing log parsers
/// understand it (`passed`, `blocked`, `partiallyblocked`), plus `error` for protocol errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Passed,
    Blocked,
    /// A threat was found after the echo had started: the connection was cut before the rest
    /// of the object, so the client got a truncated, unusable object.
    PartiallyBlocked,
    Error,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Passed => "passed",
            Action::Blocked => "blocked",
            Action::PartiallyBlocked => "partiallyblocked",
            Action::Error => "error",
        }
    }
}

/// The threat names the engine gives limit verdicts start with this (ClamAV's convention).
pub const LIMIT_THREAT_PREFIX: &str = "Heuristics.Limits.Exceeded.";
/// Other heuristic verdicts (a broken Content-Encoding, ...) start with this.
pub const HEURISTIC_THREAT_PREFIX: &str = "Heuristics.";

/// A finished transaction with its context.
#[derive(Clone, Copy, Debug)]
pub struct TxnRecord<'a> {
    pub outcome: &'a TxnOutcome,
    pub client: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub shard: usize,
    /// From the first byte of the head to the answer being queued.
    pub latency: Duration,
    /// Time this connection spent processing (parsing and scanning) since the previous answer.
    pub busy: Duration,
    /// Wall-clock time of the answer, for the log line.
    pub unix_millis: u64,
}

impl TxnRecord<'_> {
    pub fn method_name(&self) -> &'static str {
        match self.outcome.method.or(self.outcome.who.method) {
            Some(Method::Options) => "OPTIONS",
            Some(Method::Reqmod) => "REQMOD",
            Some(Method::Respmod) => "RESPMOD",
            None => "-",
        }
    }

    /// The service for the log: ours, or the name the request asked for when it is not one
    /// of ours (sanitised and bounded), so that a typo in a proxy's configuration shows.
    pub fn service(&self) -> Option<&str> {
        self.outcome.service.or_else(|| self.outcome.who.service.as_str())
    }

    pub fn threat(&self) -> Option<&str> {
        match &self.outcome.verdict {
            Some(Verdict::Infected { threat }) => Some(threat),
            _ => None,
        }
    }

    pub fn action(&self) -> Action {
        let o = self.outcome;
        match (&o.verdict, o.aborted) {
            (Some(Verdict::Infected { .. }), true) => Action::PartiallyBlocked,
            (Some(Verdict::Infected { .. }), false) => Action::Blocked,
            _ if o.status == 0 || o.status >= 400 || o.aborted => Action::Error,
            _ => Action::Passed,
        }
    }

    /// The scan limit that decided this object, when a limit verdict blocked it.
    ///
    /// The name is the limit's part of the threat name: `MaxScanSize` for
    /// `Heuristics.Limits.Exceeded.MaxScanSize`, `Broken.ContentEncoding` for
    /// `Heuristics.Broken.ContentEncoding`. With `policy.over_limit = pass` the object passed,
    /// and the limit still shows here.
    pub fn limit(&self) -> Option<&str> {
        let name = match self.outcome.limit {
            Some(name) => name,
            None => self.threat().filter(|t| t.starts_with(LIMIT_THREAT_PREFIX))?,
        };
        Some(
            name.strip_prefix(LIMIT_THREAT_PREFIX)
                .or_else(|| name.strip_prefix(HEURISTIC_THREAT_PREFIX))
                .unwrap_or(name),
        )
    }

    /// Bytes received for this transaction: the ICAP head, the encapsulated headers and the
    /// de-chunked body (chunk framing is not counted).
    pub fn bytes_in(&self) -> u64 {
        self.outcome.head_bytes + self.outcome.body_bytes
    }
}
