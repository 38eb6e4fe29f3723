//! When each worker starts its next request: the one difference between the closed and the
//! open loop, so both share the connection handling and the accounting.

use std::time::Instant;

pub trait Schedule {
    /// The next request to start at `now`, if one is due: its number in the run and the instant
    /// its latency is measured from.
    fn next(&mut self, now: Instant) -> Option<(u64, Instant)>;
    /// When a request next falls due, for a schedule that paces them.
    fn wake_at(&self) -> Option<Instant>;
    /// No further request will be started.
    fn exhausted(&self, now: Instant) -> bool;
    /// Requests that fell due but were never started.
    fn unsent(&self) -> u64;
}
