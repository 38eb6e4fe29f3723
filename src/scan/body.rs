//! ClamAV body signatures on top of the literal matcher.
//!
//! Every distinct segment of every `.ndb` signature becomes one (possibly masked) pattern of
//! one [`LiteralSet`]: identical segments of different signatures share a pattern, so a common
//! header costs one verification, and each pattern lists the (signature, segment) pairs it
//! stands for. The literal stream reports pattern occurrences with their absolute end offsets,
//! in order of their ends, and this module joins them into whole-signature matches:
//!
//! * a one-segment signature (the common case, EICAR included) matches when its segment does,
//!   and, with a fixed offset, only when the segment starts exactly there;
//! * a multi-segment signature matches when segment k starts within its gap after an end of
//!   segment k-1. For `*` and `{n-}` gaps the earliest end of segment k-1 is the best witness,
//!   so one number is kept. For a bounded `{n-m}` gap *every* end of segment k-1 still within
//!   reach is kept, as a [`Reach`] (shared with the `.ldb` matcher): the state of one partial
//!   match is bounded by its gap, and each end is pushed and dropped once, so the work is
//!   linear however often a segment repeats.
//!
//! Partial matches live in a small table per object (objects rarely contain any segment at
//! all, so it is almost always empty). It is bounded by `body_partials_max` partial matches and
//! `body_partial_ends_max` runs of ends in all; nothing is ever evicted to make room (an
//! attacker could otherwise flush the real partial match with other signatures' first
//! segments). Past either bound the stream reports [`BodyStream::overflowed`] and the engine
//! applies the over-limit policy with `Heuristics.Limits.Exceeded.MaxPartialMatches`; the
//! stream itself goes on matching with what it holds (one-segment signatures and the partial
//! matches already recorded), so under `over_limit = pass` a later EICAR is still found.

use super::literal::{LiteralSet, LiteralStream, Pattern};
use super::reach::Reach;
use crate::signatures::ndb::{Gap, NdbOffset, NdbSignature};
use std::collections::HashMap;

struct Program {
    name: String,
    offset: NdbOffset,
    seg_lens: Vec<u64>,
    gaps: Vec<Gap>,
    /// Index of this signature's first segment among all segments of the set.
    first_seg: u32,
}

/// Compiled body signatures of one generation; shared read-only by all shards.
pub struct BodySet {
    literal: LiteralSet,
    /// `uses[uses_at[p]..uses_at[p + 1]]` are the (signature, segment) pairs of pattern `p`.
    uses_at: Vec<u32>,
    uses: Vec<(u32, u16)>,
    programs: Vec<Program>,
}

impl BodySet {
    pub fn new(sigs: Vec<NdbSignature>) -> Result<BodySet, String> {
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut index: HashMap<(Vec<u8>, Option<Vec<u8>>), u32> = HashMap::new();
        let mut pattern_of = Vec::new();
        let mut programs = Vec::with_capacity(sigs.len());
        let mut segs = 0u32;
        for (si, sig) in sigs.into_iter().enumerate() {
            let mut seg_lens = Vec::with_capacity(sig.segments.len());
            let first_seg = segs;
            for (k, seg) in sig.segments.into_iter().enumerate() {
                seg_lens.push(seg.bytes.len() as u64);
                let exact = seg.mask.iter().all(|&m| m == 0xFF);
                let key = (seg.bytes, if exact { None } else { Some(seg.mask) });
                let id = *index.entry(key.clone()).or_insert_with(|| {
                    patterns.push(Pattern { bytes: key.0, mask: key.1 });
                    (patterns.len() - 1) as u32
                });
                pattern_of.push((id, si as u32, k as u16));
                segs += 1;
            }
            programs.push(Program { name: sig.name, offset: sig.offset, seg_lens, gaps: sig.gaps, first_seg });
        }
        let mut uses_at = vec![0u32; patterns.len() + 1];
        for &(id, _, _) in &pattern_of {
            uses_at[id as usize + 1] += 1;
        }
        for i in 1..uses_at.len() {
            uses_at[i] += uses_at[i - 1];
        }
        let mut fill = uses_at.clone();
        let mut uses = vec![(0, 0); pattern_of.len()];
        for (id, sig, seg) in pattern_of {
            uses[fill[id as usize] as usize] = (sig, seg);
            fill[id as usize] += 1;
        }
        let literal = LiteralSet::new(patterns).map_err(|e| format!("building the body matcher: {e:?}"))?;
        Ok(BodySet { literal, uses_at, uses, programs })
    }

    pub fn signatures(&self) -> usize {
        self.programs.len()
    }

    /// Distinct segment patterns (identical segments of different signatures count once).
    pub fn patterns(&self) -> usize {
        self.uses_at.len() - 1
    }

    pub fn name(&self, sig: u32) -> &str {
        &self.programs[sig as usize].name
    }

    pub fn literal(&self) -> &LiteralSet {
        &self.literal
    }

    fn uses(&self, pattern: u32) -> &[(u32, u16)] {
        &self.uses[self.uses_at[pattern as usize] as usize..self.uses_at[pattern as usize + 1] as usize]
    }
}

/// One segment of one signature seen at least once in this object.
#[derive(Debug, Default)]
struct Partial {
    /// Earliest end seen (the witness for a `*` or `{n-}` gap after the segment).
    min_end: u64,
    /// For a bounded gap after the segment: the ends still within reach.
    runs: Reach,
}

/// Per-connection matching state for one [`BodySet`]; reused across objects.
pub struct BodyStream {
    literal: LiteralStream,
    hits: Vec<(u64, u32)>,
    /// Global segment index to slot in `slots`.
    slot_of: HashMap<u32, u32>,
    /// Partial matches; `slots[..used]` belong to the current object, the rest keep their
    /// allocations for the next one.
    slots: Vec<Partial>,
    used: usize,
    /// Runs held in all partial matches.
    runs: usize,
    partials_max: usize,
    runs_max: usize,
    overflowed: bool,
    found: Option<u32>,
    /// Work done joining segments (runs touched), for the linear-time tests.
    ops: u64,
}

impl BodyStream {
    /// A stream with the default bounds of [`crate::limits`].
    pub fn new(set: &BodySet) -> Self {
        Self::with_limits(set, crate::limits::BODY_PARTIALS_MAX, crate::limits::BODY_PARTIAL_ENDS_MAX)
    }

    /// A stream holding at most `partials_max` partial matches and `runs_max` runs of ends.
    pub fn with_limits(set: &BodySet, partials_max: usize, runs_max: usize) -> Self {
        BodyStream {
            literal: LiteralStream::new(&set.literal),
            hits: Vec::with_capacity(64),
            slot_of: HashMap::with_capacity(16),
            slots: Vec::with_capacity(16),
            used: 0,
            runs: 0,
            partials_max,
            runs_max,
            overflowed: false,
            found: None,
            ops: 0,
        }
    }

    pub fn reset(&mut self) {
        self.literal.reset();
        self.hits.clear();
        self.slot_of.clear();
        self.used = 0;
        self.runs = 0;
        self.overflowed = false;
        self.found = None;
        self.ops = 0;
    }

    /// The first signature found so far, if any.
    pub fn found(&self) -> Option<u32> {
        self.found
    }

    /// Whether a bound on partial matches was reached: from then on the object is not scanned
    /// exactly, and the caller must apply the over-limit policy.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Runs of ends touched so far (a measure of the joining work).
    pub fn ops(&self) -> u64 {
        self.ops
    }

    pub fn feed(&mut self, set: &BodySet, chunk: &[u8]) -> Option<u32> {
        // Past a bound the stream goes on with the partial matches it holds: the engine applies
        // the over-limit policy (MaxPartialMatches) when it sees `overflowed`.
        if self.found.is_some() {
            return self.found;
        }
        let hits = &mut self.hits;
        self.literal.feed(&set.literal, chunk, &mut |p, end| hits.push((end, p)));
        self.join(set)
    }

    /// Reports what staged bytes complete without ending the object: the next `feed`
    /// continues it. Called before a preview is judged, so every preview byte has been seen.
    pub fn flush(&mut self, set: &BodySet) -> Option<u32> {
        if self.found.is_none() {
            let hits = &mut self.hits;
            self.literal.finish(&set.literal, &mut |p, end| hits.push((end, p)));
            self.join(set);
        }
        self.found
    }

    pub fn finish(&mut self, set: &BodySet) -> Option<u32> {
        self.flush(set)
    }

    /// Processes the segment hits of the last call in order of their end offsets.
    fn join(&mut self, set: &BodySet) -> Option<u32> {
        self.hits.sort_unstable();
        'hits: for i in 0..self.hits.len() {
            let (end, pattern) = self.hits[i];
            for &(sig, seg) in set.uses(pattern) {
                if self.on_segment(set, sig, seg, end) {
                    self.found = Some(sig);
                    break 'hits;
                }
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
            let Some(&slot) = self.slot_of.get(&(prog.first_seg + k as u32 - 1)) else { return false };
            let prev = &mut self.slots[slot as usize];
            let ok = match prog.gaps[k - 1] {
                Gap::Any => prev.min_end <= start,
                Gap::AtLeast(min) => prev.min_end.saturating_add(u64::from(min)) <= start,
                Gap::Range { min, max } => {
                    let (min, max) = (u64::from(min), u64::from(max));
                    // Starts of this segment only grow, so ends out of reach now stay so.
                    let dropped = prev.runs.prune(start, max);
                    self.runs -= dropped;
                    self.ops += dropped as u64 + 1;
                    prev.runs.any(start, min, max)
                }
            };
            if !ok {
                return false;
            }
        }
        if k + 1 == prog.seg_lens.len() {
            return true;
        }
        self.remember(set, sig, seg, end);
        false
    }

    fn remember(&mut self, set: &BodySet, sig: u32, seg: u16, end: u64) {
        let prog = &set.programs[sig as usize];
        let k = seg as usize;
        let global = prog.first_seg + k as u32;
        let slot = match self.slot_of.get(&global) {
            Some(&slot) => slot as usize,
            None => {
                if self.used == self.partials_max {
                    // Nothing is evicted: this partial match is not recorded, and the engine
                    // is told (MaxPartialMatches).
                    self.overflowed = true;
                    return;
                }
                if self.used == self.slots.len() {
                    self.slots.push(Partial::default());
                }
                let slot = self.used;
                self.used += 1;
                self.slots[slot].min_end = end;
                self.slots[slot].runs.clear();
                self.slot_of.insert(global, slot as u32);
                slot
            }
        };
        let p = &mut self.slots[slot];
        p.min_end = p.min_end.min(end);
        if let Gap::Range { max, .. } = prog.gaps[k] {
            // A later occurrence of the next segment starts at `end - its length` or later.
            let horizon = end.saturating_sub(prog.seg_lens[k + 1]);
            let dropped = p.runs.prune(horizon, u64::from(max));
            self.runs -= dropped;
            self.ops += dropped as u64 + 1;
            if p.runs.needs_run(end, 0) && self.runs == self.runs_max {
                self.overflowed = true;
                return;
            }
            if p.runs.push(end, 0) {
                self.runs += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::{for_each_split, pieces};
    use crate::signatures::ndb::parse_ndb;
    use std::path::Path;

    fn set(lines: &str) -> BodySet {
        let (sigs, problems) = parse_ndb(lines, Path::new("t.ndb"));
        assert!(problems.is_empty(), "{problems:?}");
        BodySet::new(sigs).unwrap()
    }

    fn scan(set: &BodySet, data: &[u8], cuts: &[usize]) -> Option<String> {
        let mut stream = BodyStream::new(set);
        for piece in pieces(data, cuts) {
            stream.feed(set, piece);
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

    // Issue 13, item 1: a bounded gap remembers every end still within reach.
    #[test]
    fn bounded_gaps_remember_every_end_in_reach() {
        let s = set("Gap:0:*:414243{1000-2000}58595a\n");
        let mut data = vec![b'.'; 1800];
        data[0..3].copy_from_slice(b"ABC");
        // Nine later copies of the first segment, all too close to the second one.
        for i in 0..9 {
            data[1500 + i * 20..1503 + i * 20].copy_from_slice(b"ABC");
        }
        data[1700..1703].copy_from_slice(b"XYZ");
        assert_eq!(all_ways(&s, &data).as_deref(), Some("Gap"));
        // The true first segment is 1697 bytes before the second: out of reach of {1000-1600}.
        let near = set("Gap:0:*:414243{1000-1600}58595a\n");
        assert_eq!(all_ways(&near, &data), None);
        // In reach through a later copy only.
        data[600..603].copy_from_slice(b"ABC");
        assert_eq!(all_ways(&near, &data).as_deref(), Some("Gap"));
    }

    #[test]
    fn repeated_segments_cost_linear_work() {
        // 20,000 first segments each followed by a second one that cannot complete the gap: a
        // matcher that looked at every remembered end per second segment would do 2·10⁸ steps.
        let s = set("Far:0:*:41424344{200000-200010}5758595a\nRun:0:*:61616161{5000-5001}62626262\n");
        let data = b"ABCDWXYZ".repeat(20_000);
        let mut stream = BodyStream::new(&s);
        assert_eq!(stream.feed(&s, &data), None);
        assert_eq!(stream.finish(&s), None);
        assert!(!stream.overflowed());
        let hits = 40_000;
        assert!(stream.ops() <= 3 * hits, "{} operations for {hits} segment hits", stream.ops());
        // A segment repeated byte by byte is one run of ends, whatever its length.
        let mut data = vec![b'a'; 100_000];
        data.extend_from_slice(b"bbbb");
        let mut stream = BodyStream::with_limits(&s, 16, 4);
        assert_eq!(stream.feed(&s, &data).map(|sig| s.name(sig).to_string()).as_deref(), Some("Run"));
        assert!(stream.ops() <= 3 * 100_000, "{}", stream.ops());
    }

    // Issue 13, item 2: partial matches are never evicted by other signatures' segments.
    fn many_gapped(gap: &str) -> (BodySet, Vec<u8>) {
        let mut lines = format!("Real:0:*:a1b2c3d4{gap}e5f60718\n");
        let mut data = b"\xa1\xb2\xc3\xd4".to_vec();
        for i in 0..4096u32 {
            let seg = [0xf1, (i >> 8) as u8, i as u8, 0xf2];
            lines.push_str(&format!(
                "Other{i}:0:*:{}{gap}0102030405\n",
                seg.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ));
            data.extend_from_slice(&seg);
        }
        data.extend_from_slice(b"....\xe5\xf6\x07\x18");
        (set(&lines), data)
    }

    #[test]
    fn other_signatures_cannot_flush_a_partial_match() {
        for gap in ["*", "{4-}", "{4-20000}"] {
            let (s, data) = many_gapped(gap);
            assert_eq!(scan(&s, &data, &[]).as_deref(), Some("Real"), "{gap}");
            for cut in (1..data.len()).step_by(997) {
                assert_eq!(scan(&s, &data, &[cut]).as_deref(), Some("Real"), "{gap} cut {cut}");
            }
            let every: Vec<usize> = (1..data.len()).collect();
            assert_eq!(scan(&s, &data, &every).as_deref(), Some("Real"), "{gap} byte by byte");
            // With room for fewer partial matches the stream says so instead of forgetting one,
            // and goes on with those it holds (the real one came first).
            let mut small = BodyStream::with_limits(&s, 100, 1 << 16);
            assert_eq!(small.feed(&s, &data), Some(0));
            assert!(small.overflowed(), "{gap}");
        }
        // Runs of ends count against their own bound.
        let s = set("R:0:*:41424344{10-100000}5758595a\n");
        let mut small = BodyStream::with_limits(&s, 100, 50);
        small.feed(&s, &b"ABCD.".repeat(60));
        assert!(small.overflowed());
        // Past a bound the stream goes on: a one-segment signature later is still found.
        let s = set("R:0:*:41424344{10-100000}5758595a\nOne:0:*:6f6e652d6f6e65\n");
        let mut small = BodyStream::with_limits(&s, 100, 50);
        let mut data = b"ABCD.".repeat(60);
        data.extend_from_slice(b"one-one");
        assert_eq!(small.feed(&s, &data).map(|sig| s.name(sig).to_string()).as_deref(), Some("One"));
        assert!(small.overflowed());
    }

    #[test]
    fn identical_segments_are_one_pattern() {
        let s = set("One:0:*:41424344*45464748\nTwo:0:*:41424344{2-4}494a4b4c\nThree:0:*:41424344\n");
        assert_eq!((s.signatures(), s.patterns()), (3, 3));
        let t = set("One:0:*:41424344*45464748\nTwo:0:*:41424344{2-4}494a4b4c\n");
        assert_eq!(t.patterns(), 3);
        assert_eq!(all_ways(&t, b"ABCD..IJKL").as_deref(), Some("Two"));
        assert_eq!(all_ways(&t, b"ABCD.....IJKL..EFGH").as_deref(), Some("One"));
        assert_eq!(all_ways(&t, b"ABCD.....IJKL"), None);
        // One pattern standing for two segments of the same signature.
        let u = set("Twice:0:*:41424344{1-2}41424344\n");
        assert_eq!(all_ways(&u, b"ABCD.ABCD").as_deref(), Some("Twice"));
        assert_eq!(all_ways(&u, b"ABCDABCD"), None);
    }
}
