//! The ends of one segment that the gap after it can still use: the shared bookkeeping of
//! the `.ndb` body matcher ([`super::body`]) and the `.ldb` subsignature matcher
//! ([`super::ldb`]).
//!
//! A multi-segment pattern `S0 gap S1 …` matches when segment k starts within its gap after
//! some end of segment k−1. The matchers see segment occurrences in order of their ends, so
//! the starts of segment k only grow, and each kind of gap needs a different memory of the
//! ends of segment k−1:
//!
//! * For a bounded gap `{n-m}` ([`Reach`]), a start `s` needs an end in `[s-m, s-n]`. An end
//!   `e` with `e + m` below the smallest start still possible can never be used again and is
//!   dropped, so what is kept lies within the last `m` bytes plus a segment: memory bounded by
//!   the signature, not by a count of ends. Consecutive ends (a segment repeated byte by byte)
//!   with the same tag are one run `[first, last]`, so each end is pushed and dropped once.
//!   Occurrences come in order of their ends; where a segment has variants of different
//!   lengths their starts do not, so the caller prunes with the smallest start any later
//!   occurrence can have (its end minus the longest variant), and a query skips the few runs
//!   out of reach of its own start.
//! * For `*` and `{n-}` the earliest end is the best witness for every later start; where the
//!   start of the whole pattern matters (an offset decided at the end of the object), the
//!   earliest end *per pattern start* is kept ([`Firsts`]).
//!
//! The tag of an end is the start of the whole pattern it belongs to, for the `.ldb` matcher's
//! offsets that are only decided at the end of the object; where the start does not matter it
//! is always 0, and a whole stretch of ends is one run.

use std::collections::{HashSet, VecDeque};

/// Ends `first..=last` of a segment, all belonging to a pattern that started at `tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: u64,
    pub last: u64,
    pub tag: u64,
}

/// The ends of one segment still within reach of the bounded gap after it, as ascending,
/// disjoint runs.
#[derive(Debug, Default)]
pub struct Reach {
    runs: VecDeque<Run>,
}

impl Reach {
    pub fn clear(&mut self) {
        self.runs.clear();
    }

    /// Runs held.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Drops every end that no start at or after `horizon` can reach through a gap of at most
    /// `max` bytes; returns how many runs were dropped.
    pub fn prune(&mut self, horizon: u64, max: u64) -> usize {
        let mut dropped = 0;
        while self.runs.front().is_some_and(|r| r.last.saturating_add(max) < horizon) {
            self.runs.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// Whether recording `end` with `tag` would need a new run (for the caller's budget).
    pub fn needs_run(&self, end: u64, tag: u64) -> bool {
        !self.runs.back().is_some_and(|r| r.tag == tag && r.last.saturating_add(1) >= end)
    }

    /// Records an end; ends arrive in ascending order. Returns whether a new run was started.
    pub fn push(&mut self, end: u64, tag: u64) -> bool {
        match self.runs.back_mut() {
            Some(r) if r.tag == tag && r.last.saturating_add(1) >= end => {
                r.last = r.last.max(end);
                false
            }
            _ => {
                self.runs.push_back(Run { first: end, last: end, tag });
                true
            }
        }
    }

    /// Whether some end lies in `[start - max, start - min]`. The first run that reaches
    /// `start` holds the earliest end in reach, the best candidate; the runs before it (only
    /// those a pruning horizon below `start` left) are skipped.
    pub fn any(&self, start: u64, min: u64, max: u64) -> bool {
        self.runs
            .iter()
            .find(|r| r.last.saturating_add(max) >= start)
            .is_some_and(|r| r.first.max(start.saturating_sub(max)).saturating_add(min) <= start)
    }

    /// Calls `f` with the tag of every run holding an end in `[start - max, start - min]`;
    /// the work is the number of such runs plus those skipped as in [`Reach::any`].
    pub fn each(&self, start: u64, min: u64, max: u64, mut f: impl FnMut(u64)) {
        for r in &self.runs {
            if r.last.saturating_add(max) < start {
                continue;
            }
            if r.first.saturating_add(min) > start {
                break;
            }
            f(r.tag);
        }
    }
}

/// For a `*` or `{n-}` gap where the pattern's start matters: the earliest end of the segment
/// for each distinct pattern start, in the order they were seen, and how many of them the next
/// segment has already taken over (each start is passed on once: its earliest end is the best
/// witness, so a later occurrence of the next segment has nothing to add for it).
#[derive(Debug, Default)]
pub struct Firsts {
    items: Vec<(u64, u64)>,
    seen: HashSet<u64>,
    taken: usize,
}

impl Firsts {
    pub fn clear(&mut self) {
        self.items.clear();
        self.seen.clear();
        self.taken = 0;
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether recording a pattern start `tag` would add an entry.
    pub fn is_new(&self, tag: u64) -> bool {
        !self.seen.contains(&tag)
    }

    /// Records `end` for the pattern start `tag` unless an earlier end is known for it; ends
    /// arrive in ascending order. Returns whether an entry was added.
    pub fn push(&mut self, end: u64, tag: u64) -> bool {
        if !self.seen.insert(tag) {
            return false;
        }
        self.items.push((end, tag));
        true
    }

    /// Calls `f` with every pattern start not passed on yet whose earliest end `e` satisfies
    /// `e + min <= start`, and marks them passed on. Starts only grow, so what qualifies once
    /// qualifies for good.
    pub fn take_new(&mut self, start: u64, min: u64, mut f: impl FnMut(u64)) {
        while let Some(&(end, tag)) = self.items.get(self.taken) {
            if end.saturating_add(min) > start {
                break;
            }
            f(tag);
            self.taken += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_keeps_every_end_within_the_gap() {
        let mut r = Reach::default();
        // Ends 10, 11, 12 (one run), then 40 with another tag, then 41 with the first.
        assert!(r.push(10, 0));
        assert!(!r.push(11, 0));
        assert!(!r.push(12, 0));
        assert!(r.push(40, 7));
        assert!(r.needs_run(41, 0));
        assert!(r.push(41, 0));
        assert_eq!(r.len(), 3);
        // {5-20}: a start at 30 can use 10..=12 (gap 18..=20), not 40 or 41.
        r.prune(30, 20);
        assert!(r.any(30, 5, 20));
        let mut tags = Vec::new();
        r.each(30, 5, 20, |t| tags.push(t));
        assert_eq!(tags, [0]);
        // A start at 33 is 21 bytes past 12: that run is dropped for good.
        assert_eq!(r.prune(33, 20), 1);
        assert!(!r.any(33, 5, 20));
        // A start at 50 reaches 40 (tag 7) and 41 (tag 0).
        r.prune(50, 20);
        let mut tags = Vec::new();
        r.each(50, 5, 20, |t| tags.push(t));
        assert_eq!(tags, [7, 0]);
        assert!(r.any(50, 5, 20));
        assert!(r.any(50, 10, 20), "40 + 10 = 50 fits");
        assert!(!r.any(50, 11, 20), "neither 40 nor 41 is 11 bytes before 50");
        // A run left in place by a lower pruning horizon is skipped by a later start.
        let mut r = Reach::default();
        r.push(2, 0);
        r.push(9, 3);
        r.prune(4, 3);
        assert_eq!(r.len(), 2);
        assert!(!r.any(6, 2, 3), "2 is 4 bytes before 6, 9 is after it");
        let mut tags = Vec::new();
        r.each(12, 2, 3, |t| tags.push(t));
        assert_eq!(tags, [3]);
    }

    #[test]
    fn firsts_pass_each_start_on_once() {
        let mut f = Firsts::default();
        assert!(f.push(10, 0));
        assert!(!f.push(20, 0), "0 already has an earlier end");
        assert!(f.push(30, 25));
        let mut got = Vec::new();
        f.take_new(15, 3, |t| got.push(t));
        assert_eq!(got, [0]);
        f.take_new(34, 3, |t| got.push(t));
        assert_eq!(got, [0, 25], "each start once");
        f.take_new(100, 3, |t| got.push(t));
        assert_eq!(got, [0, 25]);
        assert_eq!(f.len(), 2);
    }
}
