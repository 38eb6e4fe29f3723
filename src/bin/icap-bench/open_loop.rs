//! Open loop: requests are due at a fixed rate, whether or not earlier ones were answered.
//!
//! Request `k` of the run is due at `start + k / rate`, and its latency is measured from that
//! intended time, not from when a connection was free to send it. A server that stalls for a
//! second therefore shows a second of latency on every request that fell due during the stall,
//! instead of the single slow sample a closed loop would record (coordinated omission). Each
//! worker takes every `workers`-th request; a due request waits for a free connection of its
//! worker, and that wait counts.

use crate::schedule::Schedule;
use std::time::{Duration, Instant};

pub struct OpenLoop {
    start: Instant,
    end: Instant,
    interval_ns: u64,
    /// Index (within this worker) of the next request.
    k: u64,
    index: u64,
    stride: u64,
    left: Option<u64>,
}

impl OpenLoop {
    pub fn new(index: usize, workers: usize, rate: f64, quota: Option<u64>, start: Instant, end: Instant) -> Self {
        OpenLoop {
            start,
            end,
            interval_ns: ((1e9 / rate) as u64).max(1),
            k: 0,
            index: index as u64,
            stride: workers as u64,
            left: quota,
        }
    }

    fn seq(&self) -> u64 {
        self.index + self.k * self.stride
    }

    fn due(&self) -> Instant {
        self.start + Duration::from_nanos(self.interval_ns.saturating_mul(self.seq()))
    }
}

impl Schedule for OpenLoop {
    fn next(&mut self, now: Instant) -> Option<(u64, Instant)> {
        if self.exhausted(now) || self.due() > now {
            return None;
        }
        let due = (self.seq(), self.due());
        self.k += 1;
        if let Some(left) = self.left.as_mut() {
            *left -= 1;
        }
        Some(due)
    }

    fn wake_at(&self) -> Option<Instant> {
        Some(self.due())
    }

    fn exhausted(&self, now: Instant) -> bool {
        self.left == Some(0) || now >= self.end || self.due() >= self.end
    }

    /// Requests that fell due before the end but were never sent.
    fn unsent(&self) -> u64 {
        if self.left == Some(0) || self.due() >= self.end {
            return 0;
        }
        let span_ns = self.end.saturating_duration_since(self.start).as_nanos() as u64;
        let total_due = span_ns.div_ceil(self.interval_ns);
        // Own requests are index, index + stride, ... below total_due.
        let own_due = total_due.saturating_sub(self.index).div_ceil(self.stride);
        let own_due = self.left.map_or(own_due, |left| own_due.min(self.k + left));
        own_due.saturating_sub(self.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_come_due_at_their_times() {
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        // 10 req/s over two workers: worker 1 owns 1, 3, 5, 7, 9 at 100 ms, 300 ms, ...
        let mut s = OpenLoop::new(1, 2, 10.0, None, start, end);
        assert_eq!(s.next(start), None);
        assert_eq!(s.wake_at(), Some(start + Duration::from_millis(100)));
        let late = start + Duration::from_millis(350);
        assert_eq!(s.next(late), Some((1, start + Duration::from_millis(100))));
        assert_eq!(s.next(late), Some((3, start + Duration::from_millis(300))));
        assert_eq!(s.next(late), None);
        // At the end, 5, 7 and 9 were due but never sent.
        assert!(s.exhausted(end));
        assert_eq!(s.next(end), None);
        assert_eq!(s.unsent(), 3);
    }

    #[test]
    fn a_quota_ends_the_schedule() {
        let start = Instant::now();
        let mut s = OpenLoop::new(0, 1, 1000.0, Some(2), start, start + Duration::from_secs(10));
        let later = start + Duration::from_secs(1);
        assert_eq!(s.next(later).map(|x| x.0), Some(0));
        assert_eq!(s.next(later).map(|x| x.0), Some(1));
        assert_eq!(s.next(later), None);
        assert!(s.exhausted(later));
        assert_eq!(s.unsent(), 0);
    }
}
