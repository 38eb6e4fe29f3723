//! Streaming multi-pattern matching of byte signatures with optional bit masks.
//!
//! A content scanner spends nearly all of its time on bytes that match nothing: compressed
//! archives, images and encrypted streams. On such high-entropy data an Aho–Corasick DFA
//! built from thousands of 16–32-byte signatures has a transition table far larger than the
//! CPU caches, so every input byte costs a cache miss (about 0.08 GB/s on this project's
//! hardware with 1,000 signatures). This module instead *skips*: it looks at only a few
//! positions of the input, rejects almost all of them with one probe into a cache-resident
//! bit set, and pays for exact work only where a signature can really start.
//!
//! # Tiers
//!
//! Each pattern is reduced to an *anchor*: a window of exact bytes (mask `0xFF`) inside it.
//! Wildcards (`??`, nibbles) never take part in filtering; they are checked only when the
//! whole pattern is verified against the text.
//!
//! * **Strided q-gram tiers.** A tier holds patterns whose anchor window has length `L`, and
//!   reads `q`-byte grams (`q = 8`, one `u64` load, when `L >= 8`; `q = 4` for `L` in 4..=7).
//!   It inspects text positions `0, s, 2s, …` with stride `s = L − q + 1`. Any `L`-byte
//!   anchor occurrence contains exactly `s` gram start positions, i.e. exactly one multiple of
//!   `s`, so indexing the `s` grams at anchor offsets `0..=L−q` of every pattern finds each
//!   occurrence exactly once: no false negatives, no duplicates, and no de-duplication state.
//!   A position is first tested against a blocked Bloom filter (two bits inside one `u64`
//!   word, 64 to 128 bits per indexed gram, capped at 4 MiB), which costs one cache access
//!   and passes about 0.1% of non-matching positions; survivors look the exact gram up in an
//!   open-addressing table and compare each candidate pattern in full, with its mask.
//!   Four-byte grams exist for anchors of 4 to 7 bytes: a stride of 1 to 4 still beats
//!   walking an automaton (measured here: ten 6-byte patterns, 1.5 GB/s strided against
//!   0.5 GB/s for aho-corasick), while eight-byte grams are used whenever the anchor allows,
//!   because text shares far fewer 8-grams than 4-grams with real signatures.
//! * **Short path.** Patterns with no exact run of four bytes cannot be strided usefully;
//!   their longest exact run goes into an overlapping Aho–Corasick automaton and each anchor
//!   hit is verified. This path is *slow* when it holds many patterns or their anchors are
//!   common bytes (every anchor hit costs a verification, and a 1–3-byte anchor hits often),
//!   so signature fragments should be kept long where the signature format allows it.
//!
//! The shortest anchor of a tier sets its stride, so one pattern with an 8-byte anchor makes
//! its whole tier check every position. When that tier also holds thousands of long patterns,
//! each of those checks probes a filter that has outgrown L2 and costs two to three times as
//! much as a probe into a tiny one. The builder therefore sorts patterns by anchor length and
//! cuts the list into at most four contiguous tiers, chosen by a small dynamic
//! program over an explicit cost model (see `plan_tiers`): few short anchors get a stride-1
//! tier with an L1-sized filter, and the large set keeps its long stride. For sets of similar
//! anchor lengths the model keeps one tier, since a second pass would cost more than it saves.
//!
//! Inside the runs long enough for its tier, each pattern's window is placed where its grams
//! are shared with the fewest other patterns of the tier, then where they look least common
//! (few zero or `0xFF` bytes, many distinct bytes): signature families that share a header
//! are keyed on the bytes that tell them apart, and zero padding does not become a filter key
//! (see `place_windows`).
//!
//! # Streaming
//!
//! [`LiteralSet::scan_window`] is a pure function of one contiguous window, and
//! [`LiteralStream`] builds the stream out of windows: it keeps the last `max_len − 1` bytes
//! already scanned, scans the seam between them and a new chunk in a small stitched window,
//! and scans the chunk itself in place, so only `O(max_len)` bytes are copied per chunk.
//! Tiny chunks are staged and scanned together (at most 1 KiB is held back) so that feeding
//! one byte at a time costs linear work. Every occurrence has exactly one window in which it
//! is both complete and inside the reported range, so reports are identical for every way of
//! splitting an object.
//!
//! # Costs and limits
//!
//! The set is immutable after [`LiteralSet::new`] and holds no interior mutability, so it is
//! shared by all shards behind an `Arc` without locks. Scanning never allocates. Patterns are
//! at most [`PATTERN_LEN_MAX`] bytes so that stream buffers stay small. Adversarial input that
//! repeats a gram many patterns share (for example a signature built mostly of one repeated
//! byte) costs a verification per hit; the anchor placement avoids the common cases but cannot
//! rule this out, which is inherent to any filter-and-verify matcher. The hash constants are
//! fixed, so input crafted against a known signature set can make every inspected position
//! pass the filter; that costs one table probe per position, a constant-factor slowdown and
//! never more than linear work.
//!
//! Building is `O(total pattern bytes)` plus sorting the grams: about 5 ms for 1,000
//! signatures and 1 s for 100,000 on this project's hardware, most of it the set-wide gram
//! counts that place the filter windows.

mod short;
mod stream;
mod stride;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use short::ShortPath;
use stride::StrideTier;

pub use stream::{LiteralStream, STAGE_MAX};

/// Longest accepted pattern, in bytes. Stream buffers hold about three times this much.
pub const PATTERN_LEN_MAX: usize = 4096;
/// Most patterns one set accepts; keeps every internal index within `u32`.
pub const PATTERN_COUNT_MAX: usize = 1 << 24;

/// Shortest anchor a strided tier accepts; shorter anchors go to the Aho–Corasick path.
const STRIDE_ANCHOR_MIN: usize = 4;
/// Longest anchor window a tier uses. Longer windows give longer strides, but every extra
/// byte adds one gram per pattern to the filter; past 32 the filter's growth outweighs it.
const STRIDE_ANCHOR_MAX: usize = 32;
/// Most strided tiers; each one is a separate pass over the window.
const TIERS_MAX: usize = 4;

/// One signature pattern.
///
/// `mask` is `None` for an exact byte string. Otherwise it has the same length as `bytes`, and
/// a data byte `d` matches position `i` iff `(d & mask[i]) == (bytes[i] & mask[i])`: mask
/// `0xFF` is an exact byte, `0x00` any byte (ClamAV `??`), `0xF0` / `0x0F` nibble wildcards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub bytes: Vec<u8>,
    pub mask: Option<Vec<u8>>,
}

impl Pattern {
    /// An exact byte string.
    pub fn exact(bytes: impl Into<Vec<u8>>) -> Pattern {
        Pattern { bytes: bytes.into(), mask: None }
    }

    /// Parses the byte part of a ClamAV body signature: pairs of hex digits, where either
    /// digit may be `?` (`??` any byte, `4?` high nibble 4, `?d` low nibble d). Whitespace
    /// between pairs is ignored. Alternatives, ranges and `*` are not byte patterns and are
    /// rejected; the caller splits a signature at them.
    pub fn from_hex(text: &str) -> Result<Pattern, HexError> {
        let mut bytes = Vec::with_capacity(text.len() / 2);
        let mut mask = Vec::with_capacity(text.len() / 2);
        let digits: Vec<(usize, u8)> = text.bytes().enumerate().filter(|(_, b)| !b.is_ascii_whitespace()).collect();
        let mut pairs = digits.chunks_exact(2);
        for pair in &mut pairs {
            let mut byte = 0u8;
            let mut bits = 0u8;
            for &(at, c) in pair {
                let (value, known) = match c {
                    b'?' => (0, 0),
                    _ => match (c as char).to_digit(16) {
                        Some(v) => (v as u8, 0xF),
                        None => return Err(HexError { at }),
                    },
                };
                byte = (byte << 4) | value;
                bits = (bits << 4) | known;
            }
            bytes.push(byte);
            mask.push(bits);
        }
        if let [(at, _)] = pairs.remainder() {
            return Err(HexError { at: *at });
        }
        let mask = if mask.iter().all(|&m| m == 0xFF) { None } else { Some(mask) };
        Ok(Pattern { bytes, mask })
    }
}

/// A hex signature that [`Pattern::from_hex`] could not read; `at` is the byte offset of the
/// offending character (or of the unpaired last digit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HexError {
    pub at: usize,
}

impl std::fmt::Display for HexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid hex signature at byte {}", self.at)
    }
}

impl std::error::Error for HexError {}

/// Why a set could not be built. Every variant but `Automaton` names the offending pattern by
/// its index.
#[derive(Debug)]
pub enum BuildError {
    /// The pattern has no bytes.
    Empty(usize),
    /// The pattern is longer than [`PATTERN_LEN_MAX`].
    TooLong(usize),
    /// No byte of the pattern is exact (mask `0xFF`), so nothing can anchor it.
    AllWildcard(usize),
    /// The mask's length differs from the pattern's.
    MaskLength(usize),
    /// More than [`PATTERN_COUNT_MAX`] patterns; the index is the first one over.
    TooMany(usize),
    /// The automaton for short anchors could not be built (it exceeded a size limit).
    Automaton(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Empty(i) => write!(f, "pattern {i} is empty"),
            BuildError::TooLong(i) => write!(f, "pattern {i} is longer than {PATTERN_LEN_MAX} bytes"),
            BuildError::AllWildcard(i) => write!(f, "pattern {i} has no exact byte"),
            BuildError::MaskLength(i) => write!(f, "pattern {i} has a mask of a different length"),
            BuildError::TooMany(i) => write!(f, "pattern {i} is beyond the limit of {PATTERN_COUNT_MAX}"),
            BuildError::Automaton(e) => write!(f, "short-anchor automaton: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// An immutable, compiled set of patterns. Pattern ids are indices into the `Vec` given to
/// [`LiteralSet::new`]. `Send + Sync`: build once, share by `Arc`.
pub struct LiteralSet {
    store: Store,
    tiers: Vec<StrideTier>,
    short: Option<ShortPath>,
    max_len: usize,
}

impl std::fmt::Debug for LiteralSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteralSet")
            .field("patterns", &self.len())
            .field("max_len", &self.max_len)
            .field("tiers", &self.tiers)
            .field("short_patterns", &self.short.as_ref().map_or(0, ShortPath::len))
            .finish()
    }
}

impl LiteralSet {
    /// Compiles `patterns`; a pattern's id is its index. An empty list is allowed and builds
    /// a set that matches nothing.
    pub fn new(patterns: Vec<Pattern>) -> Result<LiteralSet, BuildError> {
        LiteralSet::build(patterns, plan_tiers)
    }

    /// [`LiteralSet::new`] with the tier planner as a parameter, so tests can force tier
    /// layouts the cost model would only choose for very large sets.
    fn build(patterns: Vec<Pattern>, plan: Planner) -> Result<LiteralSet, BuildError> {
        if patterns.len() > PATTERN_COUNT_MAX {
            return Err(BuildError::TooMany(PATTERN_COUNT_MAX));
        }
        let mut store = Store::default();
        let mut runs = Vec::with_capacity(patterns.len());
        for (i, p) in patterns.iter().enumerate() {
            runs.push(store.add(i, p)?);
        }
        let max_len = store.info.iter().map(|p| p.len).max().unwrap_or(0);

        // Patterns too short to stride go to the automaton; the rest are planned into tiers.
        let mut short: Vec<(u32, usize)> = Vec::new();
        let mut long: Vec<(u32, usize)> = Vec::new();
        for (id, r) in (0u32..).zip(&runs) {
            let longest = r.longest();
            if longest >= STRIDE_ANCHOR_MIN {
                long.push((id, longest.min(STRIDE_ANCHOR_MAX)));
            } else {
                short.push((id, longest));
            }
        }
        let mut short_anchors = Vec::with_capacity(short.len());
        short.sort_unstable_by_key(|&(id, anchor)| (anchor, id));
        for group in short.chunk_by(|a, b| a.1 == b.1) {
            let ids: Vec<u32> = group.iter().map(|&(id, _)| id).collect();
            let len = group[0].1;
            short_anchors.extend(place_windows(&store, &runs, &ids, len).into_iter().map(|(id, at)| (id, at, len)));
        }
        let short = if short_anchors.is_empty() {
            None
        } else {
            Some(ShortPath::new(&store, &short_anchors).map_err(BuildError::Automaton)?)
        };

        long.sort_unstable_by_key(|&(id, anchor)| (anchor, id));
        let mut tiers = Vec::new();
        for (l, members) in plan(&long) {
            let ids: Vec<u32> = members.iter().map(|&(id, _)| id).collect();
            let anchors = place_windows(&store, &runs, &ids, l);
            tiers.push(StrideTier::new(&store, l, &anchors));
        }
        Ok(LiteralSet { store, tiers, short, max_len })
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.store.info.len()
    }

    /// True when the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.store.info.is_empty()
    }

    /// Length of the longest pattern (0 for an empty set).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Heap bytes held by the compiled set (filters, tables, pattern bytes, automaton).
    pub fn memory_usage(&self) -> usize {
        self.store.memory_usage()
            + self.tiers.iter().map(StrideTier::memory_usage).sum::<usize>()
            + self.short.as_ref().map_or(0, ShortPath::memory_usage)
    }

    /// Reports every occurrence lying entirely in `window` whose end (exclusive, relative to
    /// the window's start) is greater than `report_after`, as `on_match(pattern_id, end)`.
    /// Overlapping occurrences are all reported; the order of reports is unspecified.
    pub fn scan_window(&self, window: &[u8], report_after: usize, on_match: &mut dyn FnMut(u32, usize)) {
        if window.len() <= report_after {
            return;
        }
        for tier in &self.tiers {
            tier.scan(&self.store, window, report_after, on_match);
        }
        if let Some(short) = &self.short {
            short.scan(&self.store, window, report_after, on_match);
        }
    }
}

/// Where one pattern lives in the [`Store`] arenas.
#[derive(Clone, Copy, Debug)]
struct PatInfo {
    /// Offset of the pattern's (pre-masked) bytes in `Store::bytes`.
    at: usize,
    len: usize,
    /// Offset of its mask in `Store::masks`, or [`NO_MASK`] for an exact pattern.
    mask_at: usize,
}

const NO_MASK: usize = usize::MAX;

/// All pattern bytes, in two arenas, with the one verification routine every path uses.
#[derive(Default)]
struct Store {
    info: Vec<PatInfo>,
    /// Pattern bytes, already ANDed with their masks so verification is one AND per word.
    bytes: Vec<u8>,
    /// Masks of masked patterns only.
    masks: Vec<u8>,
}

impl Store {
    /// Validates and appends pattern `index`, returning its exact runs.
    fn add(&mut self, index: usize, p: &Pattern) -> Result<Runs, BuildError> {
        let len = p.bytes.len();
        if len == 0 {
            return Err(BuildError::Empty(index));
        }
        if len > PATTERN_LEN_MAX {
            return Err(BuildError::TooLong(index));
        }
        let at = self.bytes.len();
        let runs = match &p.mask {
            Some(mask) if mask.len() != len => return Err(BuildError::MaskLength(index)),
            Some(mask) if mask.iter().any(|&m| m != 0xFF) => {
                let runs = Runs::of_mask(mask);
                if runs.longest() == 0 {
                    return Err(BuildError::AllWildcard(index));
                }
                self.bytes.extend(p.bytes.iter().zip(mask).map(|(b, m)| b & m));
                self.info.push(PatInfo { at, len, mask_at: self.masks.len() });
                self.masks.extend_from_slice(mask);
                runs
            }
            _ => {
                self.bytes.extend_from_slice(&p.bytes);
                self.info.push(PatInfo { at, len, mask_at: NO_MASK });
                Runs::whole(len)
            }
        };
        Ok(runs)
    }

    /// The pattern's bytes (wildcard positions zeroed); exact runs read from here are the
    /// literal bytes of the signature.
    fn exact_bytes(&self, id: u32) -> &[u8] {
        let p = self.info[id as usize];
        &self.bytes[p.at..p.at + p.len]
    }

    /// If pattern `id` occurs in `hay` starting at `start` and ends after `report_after`,
    /// returns its end. The end is checked first: it is free and often rules the match out.
    #[inline]
    fn verify(&self, id: u32, hay: &[u8], start: usize, report_after: usize) -> Option<usize> {
        let p = self.info[id as usize];
        let end = start.checked_add(p.len)?;
        if end <= report_after {
            return None;
        }
        let text = hay.get(start..end)?;
        let want = &self.bytes[p.at..p.at + p.len];
        let hit = match p.mask_at {
            NO_MASK => text == want,
            m => masked_eq(text, want, &self.masks[m..m + p.len]),
        };
        hit.then_some(end)
    }

    fn memory_usage(&self) -> usize {
        self.info.capacity() * std::mem::size_of::<PatInfo>() + self.bytes.capacity() + self.masks.capacity()
    }
}

/// `text & mask == want` over equal-length slices, eight bytes at a time.
fn masked_eq(text: &[u8], want: &[u8], mask: &[u8]) -> bool {
    let mut t = text.chunks_exact(8);
    let mut w = want.chunks_exact(8);
    let mut m = mask.chunks_exact(8);
    for ((t, w), m) in (&mut t).zip(&mut w).zip(&mut m) {
        if word(t) & word(m) != word(w) {
            return false;
        }
    }
    t.remainder().iter().zip(w.remainder()).zip(m.remainder()).all(|((t, w), m)| t & m == *w)
}

/// Reads up to eight bytes as a little-endian integer (missing high bytes are zero).
#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = bytes.len().min(8);
    a[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(a)
}

/// The maximal runs of exact bytes in a pattern, as (offset, length).
struct Runs(Vec<(usize, usize)>);

impl Runs {
    fn whole(len: usize) -> Runs {
        Runs(vec![(0, len)])
    }

    fn of_mask(mask: &[u8]) -> Runs {
        let mut runs = Vec::new();
        let mut start = None;
        for (i, &m) in mask.iter().enumerate() {
            match (m == 0xFF, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    runs.push((s, i - s));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            runs.push((s, mask.len() - s));
        }
        Runs(runs)
    }

    fn longest(&self) -> usize {
        self.0.iter().map(|&(_, len)| len).max().unwrap_or(0)
    }

    /// Start offsets of the `len`-byte windows that lie inside exact runs, in order: all of
    /// them when there are at most [`WINDOW_STARTS_MAX`], else that many evenly spaced.
    fn window_starts(&self, len: usize) -> Vec<usize> {
        let fitting = || self.0.iter().filter(move |&&(_, run)| run >= len);
        let total: usize = fitting().map(|&(_, run)| run - len + 1).sum();
        let step = total.div_ceil(WINDOW_STARTS_MAX).max(1);
        fitting().flat_map(|&(start, run)| start..start + run - len + 1).step_by(step).collect()
    }
}

/// Window starts scored per pattern: enough to step around a shared prefix or padding, few
/// enough that a set of 4 KiB signatures builds quickly.
const WINDOW_STARTS_MAX: usize = 16;

/// Chooses, for each pattern in `ids`, the offset of its `len`-byte filter window.
///
/// Every gram of the window becomes a filter key, and the text positions that carry the key
/// pay a verification for *each* pattern indexed under it. So the window is chosen, first, to
/// minimise the largest number of patterns sharing one of its grams (signature families
/// often share a header or prefix, and their differing bytes make better keys) and, second,
/// to maximise [`gram_rarity`] of its worst gram, which keeps padding out of the filter.
fn place_windows(store: &Store, runs: &[Runs], ids: &[u32], len: usize) -> Vec<(u32, usize)> {
    let q = if len >= STRIDE_ANCHOR_MIN { stride::shape(len).0 } else { len };
    let starts: Vec<Vec<usize>> = ids.iter().map(|&id| runs[id as usize].window_starts(len)).collect();

    // How many patterns could index each gram; a pattern counts once per gram.
    let mut sharing: HashMap<u64, u32, GramHash> =
        HashMap::with_capacity_and_hasher(ids.len() * (len - q + 1), GramHash::default());
    let mut grams = Vec::new();
    for (&id, starts) in ids.iter().zip(&starts) {
        let bytes = store.exact_bytes(id);
        grams.clear();
        for &w in starts {
            grams.extend((w..=w + len - q).map(|at| word(&bytes[at..at + q])));
        }
        grams.sort_unstable();
        grams.dedup();
        for &g in &grams {
            *sharing.entry(g).or_insert(0) += 1;
        }
    }

    let mut keys: Vec<(u32, i32)> = Vec::new();
    ids.iter()
        .zip(&starts)
        .map(|(&id, starts)| {
            let bytes = store.exact_bytes(id);
            let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else { return (id, 0) };
            // Each covered position's (sharing, rarity), computed once for all windows.
            keys.clear();
            keys.extend((first..=last + len - q).map(|at| {
                let g = &bytes[at..at + q];
                (sharing.get(&word(g)).copied().unwrap_or(0), gram_rarity(g))
            }));
            let score = |w: usize| {
                let window = &keys[w - first..=w - first + len - q];
                let shared = window.iter().map(|k| k.0).max().unwrap_or(0);
                let rarity = window.iter().map(|k| k.1).min().unwrap_or(0);
                (shared, -rarity)
            };
            // Starts are ascending, so ties go to the earliest window.
            (id, starts.iter().copied().min_by_key(|&w| score(w)).unwrap_or(first))
        })
        .collect()
}

/// Hashes gram keys with the filter's own mixer: SipHash's flooding resistance buys nothing
/// for keys taken from the signature set itself, and it triples the build time of large sets.
type GramHash = std::hash::BuildHasherDefault<GramHasher>;

#[derive(Default)]
struct GramHasher(u64);

impl std::hash::Hasher for GramHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            self.write_u64(word(chunk));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = stride::mix(self.0 ^ n);
    }
}

/// A cheap guess at how rare a gram is in real data: two points per distinct byte, less one
/// for each `0x00` or `0xFF`, the usual padding and fill bytes.
fn gram_rarity(gram: &[u8]) -> i32 {
    let mut score = 0i32;
    for (i, &b) in gram.iter().enumerate() {
        if !gram[..i].contains(&b) {
            score += 2;
        }
        if b == 0 || b == 0xFF {
            score -= 1;
        }
    }
    score
}

/// A tier planner: takes `(pattern id, clamped anchor length)` sorted by length and returns
/// each tier's window length with its members, covering every entry exactly once.
type Planner = for<'a> fn(&'a [(u32, usize)]) -> Vec<(usize, &'a [(u32, usize)])>;

/// Splits patterns (sorted by clamped anchor length) into strided tiers.
///
/// A tier's `L` is the shortest anchor among its members, so only contiguous ranges of the
/// sorted list are sensible tiers, and the best split into at most [`TIERS_MAX`] ranges is a
/// small dynamic program over the distinct anchor lengths (at most 29). The cost of a tier,
/// per text byte and in units of one L1-resident filter check (about 2 ns here), is
///
/// ```text
/// PASS + (check(filter size) + fp · PROBE) / s
/// ```
///
/// Each tier is another pass over the window (`PASS`); it checks one position per stride
/// `s = L − q + 1`; a check costs more once the filter leaves L1 and L2 (measured on this
/// project's hardware: ×1.3 at 128 KiB, ×2.2 at 1 MiB, ×2.8 at 4 MiB, which `check` models as
/// `1 + log2(size / 32 KiB) / 4`); and a fraction `fp` of checks pass the filter and pay a
/// table probe (`PROBE`, a cache miss). Merging a tier into a shorter one costs more grams,
/// i.e. a larger filter; splitting costs a pass and the larger tier's checks at its own
/// stride. The split pays off when a few short anchors sit beside a large set: the few then
/// get a stride-1 tier whose filter stays in L1, instead of dragging every check of the large
/// set's filter (in L3) down to stride 1. The model assumes high-entropy text, where true
/// gram hits are negligible; text that really contains a signature's grams costs verification
/// however the tiers are drawn.
fn plan_tiers(sorted: &[(u32, usize)]) -> Vec<(usize, &[(u32, usize)])> {
    const PASS: f64 = 0.02;
    const PROBE: f64 = 20.0;
    if sorted.is_empty() {
        return Vec::new();
    }
    // Group boundaries: indices where the anchor length changes.
    let mut bounds: Vec<usize> = vec![0];
    bounds.extend((1..sorted.len()).filter(|&i| sorted[i].1 != sorted[i - 1].1));
    bounds.push(sorted.len());
    let groups = bounds.len() - 1;
    let cost = |from: usize, to: usize| -> f64 {
        let l = sorted[bounds[from]].1;
        let members = bounds[to] - bounds[from];
        let (_, step) = stride::shape(l);
        let grams = members * step;
        let bits = stride::bloom_bits(grams) as f64;
        let check = 1.0 + ((bits / 8.0) / (32.0 * 1024.0)).log2().max(0.0) / 4.0;
        let fp = stride::bloom_false_positive(grams as f64, bits);
        PASS + (check + fp * PROBE) / step as f64
    };
    // best[t][g]: cheapest cover of groups g.. with at most t tiers.
    let mut best = vec![vec![f64::INFINITY; groups + 1]; TIERS_MAX + 1];
    let mut choice = vec![vec![groups; groups + 1]; TIERS_MAX + 1];
    for row in best.iter_mut() {
        row[groups] = 0.0;
    }
    for t in 1..=TIERS_MAX {
        for g in (0..groups).rev() {
            for end in g + 1..=groups {
                let c = cost(g, end) + best[t - 1][end];
                if c < best[t][g] {
                    best[t][g] = c;
                    choice[t][g] = end;
                }
            }
        }
    }
    let mut tiers = Vec::new();
    let (mut t, mut g) = (TIERS_MAX, 0);
    while g < groups {
        let end = choice[t][g];
        tiers.push((sorted[bounds[g]].1, &sorted[bounds[g]..bounds[end]]));
        g = end;
        t -= 1;
    }
    tiers
}

/// A planner for tests: one tier per distinct anchor length, the most tiers possible.
#[cfg(test)]
fn plan_every_length(sorted: &[(u32, usize)]) -> Vec<(usize, &[(u32, usize)])> {
    sorted.chunk_by(|a, b| a.1 == b.1).map(|run| (run[0].1, run)).collect()
}
