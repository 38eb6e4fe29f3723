//! The member tree of one top-level object: how deep extraction is, how many members and
//! bytes it produced, the path of the member being scanned (`archive.zip/dir/file.exe`), and
//! what the limits and the policy made of each event.
//!
//! Limits are counted over the whole tree, so a nest cannot multiply them: members and
//! extracted bytes per top-level object, bytes per member, the ratio of extracted bytes to the
//! object's own bytes, and the bytes buffered for the random-access formats. A limit under the
//! `block` policy ends the scan at once with the limit's threat name; under `pass` it is
//! recorded (so the logs and metrics see it) and the work it bounds is skipped: the member's
//! remaining bytes, or the rest of the container.

use super::{Policy, UnpackLimits};
use crate::scan::object::Hit;
use crate::scan::policy::OverLimit;

/// ClamAV's names for the container limits and faults.
pub const THREAT_RECURSION: &str = "Heuristics.Limits.Exceeded.MaxRecursion";
pub const THREAT_FILES: &str = "Heuristics.Limits.Exceeded.MaxFiles";
pub const THREAT_FILE_SIZE: &str = "Heuristics.Limits.Exceeded.MaxFileSize";
pub const THREAT_SCAN_SIZE: &str = "Heuristics.Limits.Exceeded.MaxScanSize";
pub const THREAT_RATIO: &str = "Heuristics.Limits.Exceeded.MaxCompressionRatio";
pub const THREAT_BUFFER: &str = "Heuristics.Limits.Exceeded.MaxBufferSize";

/// Longest member name kept in a path (longer names are cut), and longest path.
pub const NAME_BYTES_MAX: usize = 255;
pub const PATH_BYTES_MAX: usize = 1024;

/// How an event is to be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Stop everything: the object is decided (`hit` is set).
    Stop,
    /// Skip what the limit bounds and go on.
    Skip,
}

pub struct Tree {
    pub limits: UnpackLimits,
    pub policy: Policy,
    /// Members opened in this object, at every depth.
    pub members: u32,
    /// Bytes extracted from members, at every depth.
    pub extracted: u64,
    /// Bytes of the top-level object.
    pub input: u64,
    /// Bytes held for random-access formats right now, at every depth.
    pub buffered: u64,
    /// The path of the member being fed (names joined by `/`).
    pub path: String,
    /// The first limit or fault met, whatever the policy made of it.
    pub limit: Option<&'static str>,
    /// The hit that decided the object, and where.
    pub hit: Option<Hit>,
    pub found_in: Option<String>,
    /// A limit that skipped one member (too deep, too big) under `block`: the rest of the
    /// object is still scanned, and if nothing is found this decides it (with its path).
    pub pending: Option<(&'static str, String)>,
}

impl Tree {
    pub fn new(limits: UnpackLimits, policy: Policy) -> Tree {
        Tree {
            limits,
            policy,
            members: 0,
            extracted: 0,
            input: 0,
            buffered: 0,
            path: String::with_capacity(256),
            limit: None,
            hit: None,
            found_in: None,
            pending: None,
        }
    }

    pub fn reset(&mut self, top_name: &str) {
        self.members = 0;
        self.extracted = 0;
        self.input = 0;
        self.buffered = 0;
        self.path.clear();
        push_name(&mut self.path, top_name);
        self.limit = None;
        self.hit = None;
        self.found_in = None;
        self.pending = None;
    }

    /// A scanner found something in the object at `depth` (0: the top-level object).
    pub fn found(&mut self, hit: Hit, depth: u32) -> Act {
        if self.hit.is_none() {
            self.hit = Some(hit);
            self.found_in = (depth > 0).then(|| self.path.clone());
        }
        Act::Stop
    }

    /// A find whose place was taken when it was made (`None`: the top-level object).
    pub fn found_at(&mut self, hit: Hit, found_in: Option<String>) -> Act {
        if self.hit.is_none() {
            self.hit = Some(hit);
            self.found_in = found_in;
        }
        Act::Stop
    }

    /// A limit was exceeded at `depth`.
    pub fn over(&mut self, threat: &'static str, depth: u32) -> Act {
        self.limit.get_or_insert(threat);
        match self.policy.over_limit {
            OverLimit::Block => self.found(Hit::Threat(threat.into()), depth),
            OverLimit::Pass => Act::Skip,
        }
    }

    /// A limit that skips only one member: under `block` the verdict waits for the end of
    /// the object, so that a signature found elsewhere in it names the threat instead.
    pub fn defer(&mut self, threat: &'static str) -> Act {
        self.limit.get_or_insert(threat);
        if self.policy.over_limit == OverLimit::Block && self.pending.is_none() {
            self.pending = Some((threat, self.path.clone()));
        }
        Act::Skip
    }

    /// The object ended with nothing found: a deferred limit decides it.
    pub fn settle_pending(&mut self) {
        if let (None, Some((threat, path))) = (&self.hit, self.pending.take()) {
            self.hit = Some(Hit::Threat(threat.into()));
            self.found_in = Some(path);
        }
    }

    /// A container could not be read to its end (broken, encrypted, or over its own limit).
    pub fn fault(&mut self, fault: super::Fault, depth: u32) -> Act {
        match fault {
            super::Fault::Encrypted(name) => {
                self.limit.get_or_insert(name);
                match self.policy.encrypted {
                    super::EncryptedPolicy::Block => self.found(Hit::Threat(name.into()), depth),
                    super::EncryptedPolicy::Pass => Act::Skip,
                }
            }
            super::Fault::Broken(name) | super::Fault::Limit(name) => self.over(name, depth),
        }
    }

    /// Counts extracted bytes against the per-object limits.
    pub fn extract(&mut self, bytes: usize, depth: u32) -> Option<Act> {
        self.extracted += bytes as u64;
        if self.extracted > self.limits.scan_bytes_max {
            return Some(self.over(THREAT_SCAN_SIZE, depth));
        }
        if self.extracted > self.limits.ratio_floor_bytes
            && self.extracted / self.limits.ratio_max.max(1) > self.input.max(1)
        {
            return Some(self.over(THREAT_RATIO, depth));
        }
        None
    }
}

/// Appends `/name` (or `name` to an empty path), cleaned for a log line: control bytes, quotes,
/// backslashes and blanks become `_`, and names and the path are cut to their bounds.
pub fn push_name(path: &mut String, name: &str) {
    if name.is_empty() || path.len() >= PATH_BYTES_MAX {
        return;
    }
    if !path.is_empty() {
        path.push('/');
    }
    let mut room = NAME_BYTES_MAX.min(PATH_BYTES_MAX - path.len());
    for c in name.chars() {
        if c.len_utf8() > room {
            break;
        }
        room -= c.len_utf8();
        path.push(if c.is_control() || c == '"' || c == '\\' || c == ' ' { '_' } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_and_bounded() {
        let mut p = String::new();
        push_name(&mut p, "a.zip");
        push_name(&mut p, "dir/x y\n\"z\".exe");
        assert_eq!(p, "a.zip/dir/x_y__z_.exe");
        push_name(&mut p, "");
        assert_eq!(p, "a.zip/dir/x_y__z_.exe");
        for _ in 0..100 {
            push_name(&mut p, &"n".repeat(300));
        }
        assert!(p.len() <= PATH_BYTES_MAX);
    }
}
