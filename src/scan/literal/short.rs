//! Patterns whose longest exact run is shorter than four bytes.
//!
//! A strided filter needs a window of at least `q` exact bytes, so these patterns are found
//! through their longest exact run instead: the distinct runs go into one Aho–Corasick
//! automaton searched with overlapping semantics (every occurrence of every run, including
//! overlapping ones), and each hit is verified against the whole masked pattern. With few
//! short patterns the automaton is tiny and its prefilter skips quickly; many of them, or runs
//! made of common bytes, make this path verify at a large fraction of positions, which is why
//! the builder sends a pattern here only when it has no run of four exact bytes.

use aho_corasick::{AhoCorasick, MatchKind};

use super::Store;

/// A pattern whose anchor run starts `offset` bytes into it.
#[derive(Clone, Copy)]
struct Cand {
    pattern: u32,
    offset: u32,
}

pub(super) struct ShortPath {
    ac: AhoCorasick,
    /// For automaton pattern `i`, the range of `cands` sharing that run.
    ranges: Vec<(u32, u32)>,
    cands: Vec<Cand>,
}

impl ShortPath {
    /// Builds the automaton from `(pattern id, run offset, run length)` triples.
    pub(super) fn new(store: &Store, anchors: &[(u32, usize, usize)]) -> Result<ShortPath, String> {
        let mut keyed: Vec<(&[u8], Cand)> = anchors
            .iter()
            .map(|&(id, off, len)| (&store.exact_bytes(id)[off..off + len], Cand { pattern: id, offset: off as u32 }))
            .collect();
        keyed.sort_unstable_by_key(|&(run, c)| (run, c.pattern));
        let mut runs = Vec::new();
        let mut ranges = Vec::new();
        let mut cands = Vec::with_capacity(keyed.len());
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            runs.push(group[0].0);
            ranges.push((cands.len() as u32, group.len() as u32));
            cands.extend(group.iter().map(|&(_, c)| c));
        }
        let ac = AhoCorasick::builder().match_kind(MatchKind::Standard).build(&runs).map_err(|e| e.to_string())?;
        Ok(ShortPath { ac, ranges, cands })
    }

    /// Number of patterns on this path.
    pub(super) fn len(&self) -> usize {
        self.cands.len()
    }

    pub(super) fn memory_usage(&self) -> usize {
        self.ac.memory_usage()
            + self.ranges.capacity() * std::mem::size_of::<(u32, u32)>()
            + self.cands.capacity() * std::mem::size_of::<Cand>()
    }

    /// Reports occurrences of short-anchored patterns in `hay` that end after `report_after`.
    pub(super) fn scan(&self, store: &Store, hay: &[u8], report_after: usize, on_match: &mut dyn FnMut(u32, usize)) {
        // Standard match semantics with no anchoring is exactly what overlapping search
        // supports, so this iterator cannot hit its documented panic.
        for m in self.ac.find_overlapping_iter(hay) {
            let (start, len) = self.ranges[m.pattern().as_usize()];
            for c in &self.cands[start as usize..(start + len) as usize] {
                let Some(at) = m.start().checked_sub(c.offset as usize) else { continue };
                if let Some(end) = store.verify(c.pattern, hay, at, report_after) {
                    on_match(c.pattern, end);
                }
            }
        }
    }
}
