//! Closed loop: every connection sends its next request as soon as the previous one is answered.
//!
//! This measures the most a server does with N requests in flight. Latency is taken from the
//! moment each request is sent; under a closed loop a slow answer also delays the requests
//! behind it, so these latencies describe the server at its own pace, not at a given load (the
//! open loop is for that).

use crate::schedule::Schedule;
use std::time::Instant;

pub struct ClosedLoop {
    next_seq: u64,
    stride: u64,
    left: Option<u64>,
    end: Instant,
}

impl ClosedLoop {
    /// Worker `index` of `workers` numbers its requests `index, index + workers, ...` so that
    /// request numbers are unique across the run; `quota` bounds how many it sends.
    pub fn new(index: usize, workers: usize, quota: Option<u64>, end: Instant) -> Self {
        ClosedLoop { next_seq: index as u64, stride: workers as u64, left: quota, end }
    }
}

impl Schedule for ClosedLoop {
    fn next(&mut self, now: Instant) -> Option<(u64, Instant)> {
        if self.exhausted(now) {
            return None;
        }
        if let Some(left) = self.left.as_mut() {
            *left -= 1;
        }
        let seq = self.next_seq;
        self.next_seq += self.stride;
        Some((seq, now))
    }

    fn wake_at(&self) -> Option<Instant> {
        None
    }

    fn exhausted(&self, now: Instant) -> bool {
        now >= self.end || self.left == Some(0)
    }

    fn unsent(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_are_strided_and_bounded() {
        let now = Instant::now();
        let mut s = ClosedLoop::new(1, 3, Some(3), now + Duration::from_secs(60));
        let seqs: Vec<u64> = std::iter::from_fn(|| {
            s.next(now).map(|(seq, origin)| {
                assert_eq!(origin, now);
                seq
            })
        })
        .collect();
        assert_eq!(seqs, vec![1, 4, 7]);
        assert!(s.exhausted(now));
        let mut timed = ClosedLoop::new(0, 1, None, now);
        assert_eq!(timed.next(now), None);
    }
}
