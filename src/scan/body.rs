//! ClamAV body signatures on top of the literal matcher.
//!
//! Every segment of every `.ndb` signature becomes one (possibly masked) pattern of one
//! [`LiteralSet`]; the literal stream reports segment occurrences with their absolute end
//! offsets, and this module joins them into whole-signature matches:
//!
//! * a one-segment signature (the common case, EICAR included) matches when its segment does,
//!   and, with a fixed offset, only when the segment starts exactly there;
//! * a multi-segment signature matches when segment k starts within its gap after an end of
//!   segment k-1. For `*` and `{n-}` gaps the earliest end of segment k-1 is the best witness;
//!   for bounded `{n-m}` gaps the last [`RECENT_ENDS`] ends are kept. A pathological input that
//!   repeats one segment more than that many times within one gap can therefore hide a match;
//!   this bound keeps per-connection state small and is stated in the README.
//!
//! Partial chains are kept in a short list per object (objects rarely contain any segment at
//! all, so the list is almost always empty), bounded by [`PARTIALS_MAX`].

use super::literal::{LiteralSet, LiteralStream, Pattern};
use crate::signatures::ndb::{Gap, NdbOffset, NdbSignature};

/// Ends of a segment remembered for bounded gaps.
pub const RECENT_ENDS: usize = 8;
/// Partial multi-segment matches remembered per object.
pub const PARTIALS_MAX: usize = 4096;

struct Program {
    name: String,
    offset: NdbOffset,
    seg_lens: Vec<u64>,
    gaps: Vec<Gap>,
}

/// Compiled body signatures of one generation; shared read-only by all shards.
pub struct BodySet {
    literal: LiteralSet,
    /// For each literal pattern id: (signature index, segment index).
    seg_of: Vec<(u32, u16)>,
    programs: Vec<Program>,
}

impl BodySet {
    pub fn new(sigs: Vec<NdbSignature>) -> Result<BodySet, String> {
        let mut patterns = Vec::new();
        let mut seg_of = Vec::new();
        let mut programs = Vec::with_capacity(sigs.len());
        for (si, sig) in sigs.into_iter().enumerate() {
            let mut seg_lens = Vec::with_capacity(sig.segments.len());
            for (k, seg) in sig.segments.into_iter().enumerate() {
                seg_lens.push(seg.bytes.len() as u64);
                let exact = seg.mask.iter().all(|&m| m == 0xFF);
                patterns.push(Pattern { bytes: seg.bytes, mask: if exact { None } else { Some(seg.mask) } });
                seg_of.push((si as u32, k as u16));
            }
            programs.push(Program { name: sig.name, offset: sig.offset, seg_lens, gaps: sig.gaps });
        }
        let literal = LiteralSet::new(patterns).map_err(|e| format!("building the body matcher: {e:?}"))?;
        Ok(BodySet { literal, seg_of, programs })
    }

    pub fn signatures(&self) -> usize {
        self.programs.len()
    }

    pub fn name(&self, sig: u32) -> &str {
        &self.programs[sig as usize].name
    }

    pub fn literal(&self) -> &LiteralSet {
        &self.literal
    }
}

#[derive(Clone, Copy, Debug)]
struct Partial {
    sig: u32,
    seg: u16,
    min_end: u64,
    recent: [u64; RECENT_ENDS],
    recent_len: u8,
    next: u8,
}

/// Per-connection matching state for one [`BodySet`]; reused across objects.
pub struct BodyStream {
    literal: LiteralStream,
    hits: Vec<(u64, u32)>,
    partials: Vec<Partial>,
    found: Option<u32>,
}

impl BodyStream {
    pub fn new(set: &BodySet) -> Self {
        BodyStream {
            literal: LiteralStream::new(&set.literal),
            hits: Vec::with_capacity(64),
            partials: Vec::with_capacity(16),
            found: None,
        }
    }

    pub fn reset(&mut self) {
        self.literal.reset();
        self.hits.clear();
        self.partials.clear();
        self.found = None;
    }

    /// The first signature found so far, if any.
    pub fn found(&self) -> Option<u32> {
        self.found
    }

    pub fn feed(&mut self, set: &BodySet, chunk: &[u8]) -> Option<u32> {
        if self.found.is_some() {
            return self.found;
        }
        let hits = &mut self.hits;
        self.literal.feed(&set.literal, chunk, &mut |p, end| hits.push((end, p)));
        self.join(set)
    }

    pub fn finish(&mut self, set: &BodySet) -> Option<u32> {
        if self.found.is_none() {
            let hits = &mut self.hits;
            self.literal.finish(&set.literal, &mut |p, end| hits.push((end, p)));
            self.join(set);
        }
        self.found
    }

    /// Processes the segment hits of the last call in order of their end offsets.
    fn join(&mut self, set: &BodySet) -> Option<u32> {
        self.hits.sort_unstable();
        for i in 0..self.hits.len() {
            let (end, pattern) = self.hits[i];
            let (sig, seg) = set.seg_of[pattern as usize];
            if self.on_segment(set, sig, seg, end) {
                self.found = Some(sig);
                break;
            }
        }
        self.hits.clear();
        self.found
    }

    /// Records one segment occurrence; true when it completes its signature.
    fn on_segment(&mut self, set: &BodySet, sig: u32, seg: u16, end: u64) -> bool {
        let prog = &set.programs[sig as usize];
        let k = seg as usize;
        let Some(start) = end.checked_sub(prog.seg_lens[k]) else { return false };
        if k == 0 {
            if let NdbOffset::Exact(n) = prog.offset {
                if start != n {
                    return false;
                }
            }
        } else {
            let Some(prev) = self.partials.iter().find(|p| p.sig == sig && p.seg == seg - 1) else { return false };
            let ok = match prog.gaps[k - 1] {
                Gap::Any => prev.min_end <= start,
                Gap::AtLeast(min) => prev.min_end.saturating_add(u64::from(min)) <= start,
                Gap::Range { min, max } => prev.recent[..prev.recent_len as usize]
                    .iter()
                    .any(|&e| e <= start && (start - e) >= u64::from(min) && (start - e) <= u64::from(max)),
            };
            if !ok {
                return false;
            }
        }
        if k + 1 == prog.seg_lens.len() {
            return true;
        }
        self.remember(sig, seg, end);
        false
    }

    fn remember(&mut self, sig: u32, seg: u16, end: u64) {
        if let Some(p) = self.partials.iter_mut().find(|p| p.sig == sig && p.seg == seg) {
            p.min_end = p.min_end.min(end);
            p.recent[p.next as usize] = end;
            p.next = (p.next + 1) % RECENT_ENDS as u8;
            p.recent_len = (p.recent_len + 1).min(RECENT_ENDS as u8);
            return;
        }
        if self.partials.len() == PARTIALS_MAX {
            self.partials.remove(0);
        }
        let mut recent = [0; RECENT_ENDS];
        recent[0] = end;
        self.partials.push(Partial { sig, seg, min_end: end, recent, recent_len: 1, next: 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;
    use crate::signatures::ndb::parse_ndb;
    use std::path::Path;

    fn set(lines: &str) -> BodySet {
        let (sigs, problems) = parse_ndb(lines, Path::new("t.ndb"));
        assert!(problems.is_empty(), "{problems:?}");
        BodySet::new(sigs).unwrap()
    }

    fn scan(set: &BodySet, data: &[u8], cuts: &[usize]) -> Option<String> {
        let mut stream = BodyStream::new(set);
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            stream.feed(set, &data[prev..cut]);
            prev = cut;
        }
        stream.finish(set).map(|s| set.name(s).to_string())
    }

    fn all_ways(set: &BodySet, data: &[u8]) -> Option<String> {
        let whole = scan(set, data, &[]);
        for_each_split(data.len(), |cuts| assert_eq!(scan(set, data, cuts), whole, "cuts {cuts:?}"));
        whole
    }

    #[test]
    fn gaps_offsets_and_wildcards() {
        let s = set("Any:0:*:616263\nAt4:0:4:787878\nStar:0:*:5151*5252\nRange:0:*:4141{2-3}4242\nAtLeast:0:*:3131{4-}3232\nMask:0:*:6d??6e3?\n");
        assert_eq!(all_ways(&s, b"..abc..").as_deref(), Some("Any"));
        assert_eq!(all_ways(&s, b"0123xxx").as_deref(), Some("At4"));
        assert_eq!(all_ways(&s, b"012xxx.."), None, "fixed offset 4 only");
        assert_eq!(all_ways(&s, b"QQ----------RR").as_deref(), Some("Star"));
        assert_eq!(all_ways(&s, b"RR----QQ"), None, "segments in order");
        assert_eq!(all_ways(&s, b"AA..BB").as_deref(), Some("Range"));
        assert_eq!(all_ways(&s, b"AA...BB").as_deref(), Some("Range"));
        assert_eq!(all_ways(&s, b"AA.BB"), None);
        assert_eq!(all_ways(&s, b"AA....BB"), None);
        assert_eq!(all_ways(&s, b"AA....AA..BB").as_deref(), Some("Range"), "a later first segment counts");
        assert_eq!(all_ways(&s, b"11....22").as_deref(), Some("AtLeast"));
        assert_eq!(all_ways(&s, b"11...22"), None);
        assert_eq!(all_ways(&s, b"m\x00n5").as_deref(), Some("Mask"));
        assert_eq!(all_ways(&s, b"m\x00n6").as_deref(), Some("Mask"), "3? matches 0x36");
        assert_eq!(all_ways(&s, b"m\x00nF"), None, "3? does not match 0x46");
    }

    #[test]
    fn eicar() {
        let s = set("Eicar-Test-Signature:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n");
        let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let mut data = vec![0u8; 300];
        data.extend_from_slice(eicar);
        data.extend_from_slice(&[1u8; 50]);
        assert_eq!(all_ways(&s, &data).as_deref(), Some("Eicar-Test-Signature"));
        data[310] ^= 1;
        assert_eq!(all_ways(&s, &data), None);
    }
}
