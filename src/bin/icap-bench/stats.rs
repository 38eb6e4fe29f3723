//! What one worker thread counted, merged into the run's totals at the end.
//!
//! Each worker owns its tally and its latency histogram, so recording a request touches no
//! shared state; the only shared values are the per-worker progress counters the progress line
//! reads, each written by one thread.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Highest latency the histogram records exactly (one hour, in microseconds); longer ones are
/// clamped to it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Kinds of failure that are not a verdict: the request got no complete answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    Connect,
    /// A read or write failed, or the server closed the connection with no answer.
    Io,
    /// No complete answer within the request timeout.
    Timeout,
    /// The answer could not be parsed, or bytes came when none were expected.
    Protocol,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
        }
    }
}

pub struct Tally {
    pub latency_us: Histogram<u64>,
    /// Final ICAP status of every answered request.
    pub statuses: BTreeMap<u16, u64>,
    pub passed: u64,
    pub block_page: u64,
    pub block_cut: u64,
    pub block_short: u64,
    /// Answers that were not right for the object (a block of a clean object, a pass of an
    /// infected one, or a broken answer).
    pub wrong: u64,
    pub infected_sent: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Body bytes of the answered requests.
    pub body_bytes: u64,
    /// Open loop: requests whose send time came but that were never sent because every
    /// connection was still busy when the run ended.
    pub unsent: u64,
    /// The first few error and wrong-verdict descriptions, for the operator.
    pub samples: Vec<String>,
}

const SAMPLES_MAX: usize = 8;

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            passed: 0,
            block_page: 0,
            block_cut: 0,
            block_short: 0,
            wrong: 0,
            infected_sent: 0,
            errors: BTreeMap::new(),
            body_bytes: 0,
            unsent: 0,
            samples: Vec::new(),
        }
    }
}

impl Tally {
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn blocked(&self) -> u64 {
        self.block_page + self.block_cut + self.block_short
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn record_latency(&mut self, us: u64) {
        self.latency_us.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    pub fn error(&mut self, kind: ErrorKind, what: impl FnOnce() -> String) {
        *self.errors.entry(kind).or_default() += 1;
        self.sample(what);
    }

    pub fn sample(&mut self, what: impl FnOnce() -> String) {
        if self.samples.len() < SAMPLES_MAX {
            self.samples.push(what());
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latency_us.add(&other.latency_us).expect("histograms with the same bounds");
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.passed += other.passed;
        self.block_page += other.block_page;
        self.block_cut += other.block_cut;
        self.block_short += other.block_short;
        self.wrong += other.wrong;
        self.infected_sent += other.infected_sent;
        self.body_bytes += other.body_bytes;
        self.unsent += other.unsent;
        for s in other.samples {
            if self.samples.len() < SAMPLES_MAX {
                self.samples.push(s);
            }
        }
    }
}

/// Counters one worker publishes for the progress line.
#[derive(Default)]
pub struct Progress {
    pub answered: AtomicU64,
    pub wrong: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    pub fn publish(&self, t: &Tally) {
        self.answered.store(t.answered(), Ordering::Relaxed);
        self.wrong.store(t.wrong, Ordering::Relaxed);
        self.errors.store(t.error_count(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.record_latency(100);
        b.record_latency(0);
        b.record_latency(LATENCY_US_MAX * 10);
        *a.statuses.entry(204).or_default() += 1;
        *b.statuses.entry(204).or_default() += 2;
        *b.statuses.entry(200).or_default() += 1;
        b.error(ErrorKind::Timeout, || "slow".into());
        b.block_cut = 1;
        a.merge(b);
        assert_eq!(a.latency_us.len(), 3);
        assert_eq!(a.latency_us.min(), 1);
        assert!(a.latency_us.max() >= LATENCY_US_MAX);
        assert_eq!(a.answered(), 4);
        assert_eq!(a.error_count(), 1);
        assert_eq!(a.blocked(), 1);
        assert_eq!(a.samples, vec!["slow".to_string()]);
    }
}
