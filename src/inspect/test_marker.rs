//! An inspector that flags bodies containing [`TEST_MARKER`], wherever the chunk boundaries
//! fall. It exists so every verdict path of the server (block in preview, block after 100
//! Continue, abort of a streaming echo) can be tested before the signature engine exists.
//!
//! Matching carries a partial-match length across feeds (the marker has no repeated prefix,
//! so a mismatch can restart from zero without missing an occurrence).

use super::{Inspector, Progress, Txn, Verdict};

/// The marker string. No proper prefix of it is also a suffix, which the matcher relies on.
pub const TEST_MARKER: &[u8] = b"ICAPD-TEST-THREAT";
/// The threat name reported for the marker.
pub const TEST_THREAT: &str = "Icapd.Test.Marker";

#[derive(Debug, Default)]
pub struct TestInspector {
    matched: usize,
    found: bool,
}

impl TestInspector {
    pub fn new() -> Self {
        TestInspector::default()
    }
}

impl Inspector for TestInspector {
    fn begin(&mut self, _txn: &Txn<'_>) -> Progress {
        self.matched = 0;
        self.found = false;
        Progress::More
    }

    fn feed(&mut self, data: &[u8]) -> Progress {
        if !self.found {
            for &b in data {
                if b == TEST_MARKER[self.matched] {
                    self.matched += 1;
                    if self.matched == TEST_MARKER.len() {
                        self.found = true;
                        break;
                    }
                } else {
                    self.matched = usize::from(b == TEST_MARKER[0]);
                }
            }
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
        let clean = b"ICAPD-TEST-THREA ICAPD-TEST-THREAt".to_vec();
        for (body, expect_infected) in [(infected, true), (clean, false)] {
            let whole = verdict(&body, &[]);
            assert_eq!(matches!(whole, Verdict::Infected { .. }), expect_infected);
            for_each_split(body.len(), |cuts| assert_eq!(verdict(&body, cuts), whole));
        }
    }
}
