//! An inspector that flags bodies containing [`TEST_MARKER`], wherever the chunk boundaries
//! fall. It exists so every verdict path of the server (block in preview, block after 100
//! Continue, abort of a streaming echo) can be tested before the signature engine exists.
//!
//! It also panics on purpose when a body contains [`TEST_PANIC_MARKER`]. That is the only way
//! a test can make a transaction fail inside the server the way a bug would, and so prove that
//! a panic in one transaction closes only its own connection while the shard and every other
//! connection on it keep serving. Only `--inspector test` does this; the signature engine and
//! the null inspector never panic on input.
//!
//! Matching carries a partial-match length across feeds. On a mismatch the match restarts from
//! zero (or one, when the byte begins the marker), which is exact when no occurrence can begin
//! inside a partial match. That holds for both markers: the only borders of their prefixes are
//! the single byte `I` (and `IC` for the panic marker's whole length, which is a completed
//! match), and an occurrence starting at that `I` would need the mismatching byte to be the
//! very byte the marker expected. The unit tests compare against a naive search to be sure.

use super::{Inspector, Progress, Txn, Verdict};

/// The marker string. No occurrence can start inside a partial match (see the module docs).
pub const TEST_MARKER: &[u8] = b"ICAPD-TEST-THREAT";
/// The threat name reported for the marker.
pub const TEST_THREAT: &str = "Icapd.Test.Marker";
/// A body containing this makes the test inspector panic (see the module docs).
pub const TEST_PANIC_MARKER: &[u8] = b"ICAPD-TEST-PANIC";

/// Streaming matcher for one marker.
#[derive(Debug, Default)]
struct Matcher {
    matched: usize,
}

impl Matcher {
    /// Advances over `data`; true once the marker has been seen completely.
    fn feed(&mut self, marker: &[u8], data: &[u8]) -> bool {
        for &b in data {
            if b == marker[self.matched] {
                self.matched += 1;
                if self.matched == marker.len() {
                    return true;
                }
            } else {
                self.matched = usize::from(b == marker[0]);
            }
        }
        false
    }
}

#[derive(Debug, Default)]
pub struct TestInspector {
    threat: Matcher,
    panic: Matcher,
    found: bool,
}

impl TestInspector {
    pub fn new() -> Self {
        TestInspector::default()
    }
}

impl Inspector for TestInspector {
    fn begin(&mut self, _txn: &Txn<'_>) -> Progress {
        *self = TestInspector::default();
        Progress::More
    }

    fn feed(&mut self, data: &[u8]) -> Progress {
        if self.panic.feed(TEST_PANIC_MARKER, data) {
            panic!("test inspector: the body carries the panic marker");
        }
        if !self.found && self.threat.feed(TEST_MARKER, data) {
            self.found = true;
        }
        if self.found {
            Progress::Done(self.finish())
        } else {
            Progress::More
        }
    }

    fn finish(&mut self) -> Verdict {
        if self.found {
            Verdict::Infected { threat: TEST_THREAT.into() }
        } else {
            Verdict::Clean
        }
    }

    fn istag(&self) -> &str {
        "icapd-test-1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;

    fn verdict(body: &[u8], cuts: &[usize]) -> Verdict {
        crate::inspect::verdict_of(&mut TestInspector::new(), body, cuts)
    }

    #[test]
    fn every_split_agrees() {
        let infected = b"xxICAPD-ICAPD-TEST-THREATyy".to_vec();
        let clean = b"ICAPD-TEST-THREA ICAPD-TEST-THREAt ICAPD-TEST-PANI ICAPD-TEST-PANxC".to_vec();
        let tricky = b"ICAPD-TEST-PANICAPD-TEST-THREAT".to_vec();
        for (body, expect_infected) in [(infected, true), (clean, false)] {
            let whole = verdict(&body, &[]);
            assert_eq!(matches!(whole, Verdict::Infected { .. }), expect_infected);
            for_each_split(body.len(), |cuts| assert_eq!(verdict(&body, cuts), whole));
        }
        // The panic marker is found whole, split anywhere, and byte by byte.
        for_each_split(tricky.len(), |cuts| {
            let body = tricky.clone();
            let cuts = cuts.to_vec();
            let result = std::panic::catch_unwind(move || verdict(&body, &cuts));
            assert!(result.is_err(), "the panic marker must panic");
        });
    }

    #[test]
    fn matcher_agrees_with_a_naive_search() {
        // Every string of up to six marker pieces.
        let pieces: [&[u8]; 7] = [b"I", b"IC", b"ICAPD-", b"TEST-", b"PANI", b"C", b"THREAT"];
        let mut stack: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0)];
        while let Some((s, depth)) = stack.pop() {
            let naive = s.windows(TEST_PANIC_MARKER.len()).any(|w| w == TEST_PANIC_MARKER);
            assert_eq!(Matcher::default().feed(TEST_PANIC_MARKER, &s), naive, "{:?}", String::from_utf8_lossy(&s));
            let naive = s.windows(TEST_MARKER.len()).any(|w| w == TEST_MARKER);
            assert_eq!(Matcher::default().feed(TEST_MARKER, &s), naive);
            if depth < 6 {
                for p in pieces {
                    stack.push(([&s[..], p].concat(), depth + 1));
                }
            }
        }
    }
}
