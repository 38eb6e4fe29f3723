//! A fixed-bucket latency histogram in the shape Prometheus expects.
//!
//! The bucket bounds are fixed at compile time so that every shard's histogram merges with
//! every other by adding arrays, recording is one comparison loop over 17 bounds with no
//! allocation, and the exported series are the same on every server (dashboards can sum
//! them across a fleet).

use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 50 µs to 10 s.
pub const BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Counts per bucket (not cumulative; the renderer accumulates), plus the total and the sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// `buckets[i]` counts observations `<= BOUNDS_US[i]` and `> BOUNDS_US[i - 1]`; the last
    /// slot counts those above every bound.
    pub buckets: [u64; BOUNDS_US.len() + 1],
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BOUNDS_US.len());
        self.buckets[slot] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Cumulative counts per bound, as Prometheus `le` buckets (the `+Inf` bucket is `count`).
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut total = 0;
        BOUNDS_US.iter().zip(self.buckets.iter()).map(move |(&bound, &n)| {
            total += n;
            (bound, total)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        let mut h = Histogram::default();
        for us in [0, 50, 51, 100, 9_999_999, 10_000_000, 10_000_001, u64::MAX / 1000] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.buckets[0], 2, "0 and 50 µs");
        assert_eq!(h.buckets[1], 2, "51 and 100 µs");
        assert_eq!(h.buckets[BOUNDS_US.len() - 1], 2, "up to 10 s");
        assert_eq!(h.buckets[BOUNDS_US.len()], 2, "above every bound");
        assert_eq!(h.count, 8);
        let cum: Vec<_> = h.cumulative().collect();
        assert_eq!(cum[0], (50, 2));
        assert_eq!(cum.last(), Some(&(10_000_000, 6)));
    }

    #[test]
    fn merge_adds() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(1));
        b.record(Duration::from_secs(60));
        a.merge(&b);
        assert_eq!(a.count, 3);
        assert_eq!(a.buckets[4], 2);
        assert_eq!(a.sum_us, 2_000 + 60_000_000);
    }
}
