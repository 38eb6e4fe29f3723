//! The inspection hook: what the connection state machine calls with body bytes.
//!
//! An [`Inspector`] is one per connection and reused for every transaction on it, so it can
//! allocate its scanning state once. The connection calls [`Inspector::begin`] when a request
//! with a body starts, [`Inspector::feed`] with each run of body bytes as a slice of the
//! receive buffer it arrived in (never a copy), and [`Inspector::finish`] at the end of the
//! body. A feed may return a verdict early, which lets the server answer during a preview or
//! stop an echo before the object is delivered whole.
//!
//! Two inspectors ship with the core: [`NullInspector`] (finds nothing, for measuring the
//! protocol path) and [`TestInspector`] (flags a marker string, for testing every verdict path
//! without the signature engine, and panics on a second marker, for testing fault isolation).

mod null;
mod test_marker;

pub use null::NullInspector;
pub use test_marker::{TestInspector, TEST_MARKER, TEST_PANIC_MARKER};

pub use crate::access::PolicyKind;
use crate::proto::Method;

/// What the inspector decided about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// A threat was found; the name goes into `X-Infection-Found` and the block page.
    Infected {
        threat: Box<str>,
    },
}

/// What a feed says about the object so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Keep feeding; no conclusion yet.
    More,
    /// The verdict is known; further bytes cannot change it.
    Done(Verdict),
}

/// Facts about the transaction an inspector may use to set itself up.
#[derive(Clone, Copy, Debug)]
pub struct Txn<'a> {
    pub method: Method,
    pub service: &'static str,
    /// The encapsulated HTTP request head, if any (REQMOD, and RESPMOD when the client sent it).
    pub req_hdr: Option<&'a [u8]>,
    /// The encapsulated HTTP response head, if any (RESPMOD).
    pub res_hdr: Option<&'a [u8]>,
    /// The scanning policy the operator's policy table chose for this transaction (who asks,
    /// see [`crate::access`]); inspectors that do not scan may ignore it.
    pub policy: PolicyKind,
}

/// The hook the signature engine implements. Implementations must not block: the connection
/// hands them at most one receive block per call and yields to other connections in between.
pub trait Inspector {
    /// A new transaction begins; forget anything about the previous one. Returning
    /// `Done(Infected)` answers before any body byte is read (URL deny lists); a `Done(Clean)`
    /// here only means the body need not be inspected.
    fn begin(&mut self, txn: &Txn<'_>) -> Progress;
    /// More body bytes, in order.
    fn feed(&mut self, data: &[u8]) -> Progress;
    /// The preview ended without `ieof` and nothing was found in it. Returning `Some` answers
    /// the preview with that verdict (a 204 for `Clean`) instead of `100 Continue`; only an
    /// explicit policy should do that, never merely because the first bytes looked clean.
    fn preview_verdict(&mut self) -> Option<Verdict> {
        None
    }
    /// Time spent on this object since the last call (measured by the caller: the inspector
    /// never reads a clock). May conclude with an over-limit verdict.
    fn charge(&mut self, _spent: std::time::Duration) -> Progress {
        Progress::More
    }
    /// The body ended; give the verdict.
    fn finish(&mut self) -> Verdict;
    /// The value of ISTag (without quotes, at most 32 bytes) that describes what this
    /// inspector checks; it must change whenever the checks change.
    fn istag(&self) -> &str;
    /// The scan or decode limit that decided the current object, if one did, whatever the
    /// over-limit policy made of it: with `pass` the verdict is clean, and this is how the
    /// event still reaches the logs and metrics. The name is the threat name the limit
    /// would block with (`Heuristics.Limits.Exceeded.MaxScanSize`, ...).
    fn limit_hit(&self) -> Option<&'static str> {
        None
    }
    /// Where inside the object the threat was found, when it was in a member of a container:
    /// the member path, names joined by `/` (`archive.zip/dir/file.exe`). `None` for a find in
    /// the object itself, and when nothing was found.
    fn found_in(&self) -> Option<&str> {
        None
    }
}

/// Test helper: runs one RESPMOD object through `inspector`, fed in the pieces `cuts` gives,
/// and returns the verdict (early or at the end), the way the connection drives it.
#[cfg(test)]
pub fn verdict_of(inspector: &mut dyn Inspector, body: &[u8], cuts: &[usize]) -> Verdict {
    let txn =
        Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr: None, policy: PolicyKind::Default };
    verdict_of_txn(inspector, &txn, body, cuts)
}

/// Like [`verdict_of`], for a transaction with the given encapsulated heads.
#[cfg(test)]
pub fn verdict_of_txn(inspector: &mut dyn Inspector, txn: &Txn<'_>, body: &[u8], cuts: &[usize]) -> Verdict {
    if let Progress::Done(v) = inspector.begin(txn) {
        return v;
    }
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        if let Progress::Done(v) = inspector.feed(&body[prev..cut]) {
            return v;
        }
        prev = cut;
    }
    inspector.finish()
}

/// Which inspector the server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InspectorKind {
    /// The signature engine over the `--signatures` folder (the default).
    Engine,
    Null,
    Test,
}

impl InspectorKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "engine" => Some(InspectorKind::Engine),
            "null" => Some(InspectorKind::Null),
            "test" => Some(InspectorKind::Test),
            _ => None,
        }
    }

    /// The name used on the command line and in the status page.
    pub fn name(self) -> &'static str {
        match self {
            InspectorKind::Engine => "engine",
            InspectorKind::Null => "null",
            InspectorKind::Test => "test",
        }
    }

    /// Builds a fresh built-in inspector for one connection (`None` for the engine, which needs
    /// its shard's scanning context).
    pub fn build(self) -> Option<Box<dyn Inspector>> {
        match self {
            InspectorKind::Engine => None,
            InspectorKind::Null => Some(Box::new(NullInspector)),
            InspectorKind::Test => Some(Box::new(TestInspector::new())),
        }
    }
}
