//! An inspector that looks at nothing and finds nothing: the protocol path alone.

use super::{Inspector, Progress, Txn, Verdict};

#[derive(Debug, Default)]
pub struct NullInspector;

impl Inspector for NullInspector {
    fn begin(&mut self, _txn: &Txn<'_>) -> Progress {
        Progress::More
    }

    fn feed(&mut self, _data: &[u8]) -> Progress {
        Progress::More
    }

    fn finish(&mut self) -> Verdict {
        Verdict::Clean
    }

    fn istag(&self) -> &str {
        "icapd-null"
    }
}
