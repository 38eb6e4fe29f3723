//! One strided q-gram tier: a Bloom filter that rejects positions, an exact gram table that
//! names candidate patterns, and the scan loop that drives both.
//!
//! The scan loop is the hot path of the whole scanner. Per inspected position it does one
//! unaligned load, one 64×64→128-bit multiply and one load from the filter, and branches on a
//! test that almost always fails; the positions are independent, so the CPU overlaps the
//! filter loads of many iterations even when the filter has outgrown L2. Everything past the
//! filter lives in a separate, non-inlined function so the loop stays small.

use super::Store;

/// Filter size per indexed gram (before rounding up to a power of two). With two bits per
/// gram inside one 64-bit word this passes about 0.1% of random positions (measured: 0.08 to
/// 0.11% for 10 to 10,000 signatures, 0.4% at the 4 MiB cap with 100,000), so table probes,
/// which are cache misses, cost far less than the filter checks themselves.
const BLOOM_BITS_PER_GRAM: usize = 64;
/// Largest filter, 4 MiB: beyond this it no longer fits the last-level cache share of one
/// core, and a larger table would trade cache misses on every check for fewer probes.
const BLOOM_BITS_MAX: usize = 1 << 25;
/// Smallest filter (64 bytes, one cache line).
const BLOOM_BITS_MIN: usize = 1 << 9;

/// Mixing constants for [`mix`]; any odd, well-scrambled 64-bit values serve.
const MIX_XOR: u64 = 0x2d35_8dcc_aa6c_78a5;
const MIX_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Gram size and stride for an anchor window of `l` bytes.
pub(super) fn shape(l: usize) -> (usize, usize) {
    let q = if l >= 8 { 8 } else { 4 };
    (q, l - q + 1)
}

/// Filter size, in bits, for a tier indexing `grams` grams.
pub(super) fn bloom_bits(grams: usize) -> usize {
    grams.saturating_mul(BLOOM_BITS_PER_GRAM).next_power_of_two().clamp(BLOOM_BITS_MIN, BLOOM_BITS_MAX)
}

/// Expected fraction of non-matching positions that pass the filter. This is the classic
/// two-hash estimate; the blocked layout is slightly worse, which the planner tolerates.
pub(super) fn bloom_false_positive(grams: f64, bits: f64) -> f64 {
    let unset = (-2.0 * grams / bits).exp();
    (1.0 - unset) * (1.0 - unset)
}

/// Folded multiply: the high and low halves of a 128-bit product, XORed, so that every
/// output bit depends on every input bit. One `mul` on x86-64 and aarch64.
#[inline(always)]
pub(super) fn mix(gram: u64) -> u64 {
    let p = u128::from(gram ^ MIX_XOR) * u128::from(MIX_MUL);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The two filter bits of a hash, within its word.
#[inline(always)]
fn bloom_mask(h: u64) -> u64 {
    (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63))
}

/// The `Q`-byte gram at `at`, little-endian. The caller guarantees `at + Q <= hay.len()`.
#[inline(always)]
fn load<const Q: usize>(hay: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a[..Q].copy_from_slice(&hay[at..at + Q]);
    u64::from_le_bytes(a)
}

/// One entry of the exact table: a distinct gram and its run of candidates.
#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    start: u32,
    /// Number of candidates; 0 marks an empty slot (every stored gram has at least one).
    len: u32,
}

/// A pattern that contains the slot's gram at `offset` (from the pattern's start).
#[derive(Clone, Copy)]
struct Cand {
    pattern: u32,
    offset: u32,
}

pub(super) struct StrideTier {
    /// Gram size, 4 or 8.
    q: usize,
    /// Anchor window length; no member pattern is shorter.
    l: usize,
    /// Distance between inspected positions, `l - q + 1`.
    step: usize,
    /// `64 - log2(bloom.len())`: the high hash bits pick the filter word.
    shift: u32,
    bloom: Box<[u64]>,
    table: Box<[Slot]>,
    table_mask: usize,
    cands: Box<[Cand]>,
    patterns: usize,
}

impl std::fmt::Debug for StrideTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrideTier")
            .field("l", &self.l)
            .field("q", &self.q)
            .field("step", &self.step)
            .field("patterns", &self.patterns)
            .field("grams", &self.cands.len())
            .field("bloom_bytes", &(self.bloom.len() * 8))
            .finish()
    }
}

impl StrideTier {
    /// Builds a tier with window length `l` from `(pattern id, window offset)` pairs; every
    /// window must be exact bytes of its pattern.
    pub(super) fn new(store: &Store, l: usize, anchors: &[(u32, usize)]) -> StrideTier {
        let (q, step) = shape(l);
        let mut grams: Vec<(u64, Cand)> = Vec::with_capacity(anchors.len() * step);
        for &(id, at) in anchors {
            let bytes = store.exact_bytes(id);
            debug_assert!(at + l <= bytes.len());
            for off in at..at + step {
                let g = if q == 8 { load::<8>(bytes, off) } else { load::<4>(bytes, off) };
                grams.push((g, Cand { pattern: id, offset: off as u32 }));
            }
        }
        grams.sort_unstable_by_key(|&(g, c)| (g, c.pattern, c.offset));

        let words = bloom_bits(grams.len()) / 64;
        let shift = 64 - words.trailing_zeros();
        let mut bloom = vec![0u64; words].into_boxed_slice();
        let distinct = grams.chunk_by(|a, b| a.0 == b.0).count();
        let table_len = (distinct * 2).next_power_of_two().max(8);
        let table_mask = table_len - 1;
        let mut table = vec![Slot::default(); table_len].into_boxed_slice();
        let mut cands = Vec::with_capacity(grams.len());
        for run in grams.chunk_by(|a, b| a.0 == b.0) {
            let key = run[0].0;
            let h = mix(key);
            bloom[(h >> shift) as usize] |= bloom_mask(h);
            let mut slot = (h >> 12) as usize & table_mask;
            while table[slot].len != 0 {
                slot = (slot + 1) & table_mask;
            }
            // Counts fit: PATTERN_COUNT_MAX · (STRIDE_ANCHOR_MAX − 3) < 2^32.
            table[slot] = Slot { key, start: cands.len() as u32, len: run.len() as u32 };
            cands.extend(run.iter().map(|&(_, c)| c));
        }
        StrideTier {
            q,
            l,
            step,
            shift,
            bloom,
            table,
            table_mask,
            cands: cands.into_boxed_slice(),
            patterns: anchors.len(),
        }
    }

    pub(super) fn memory_usage(&self) -> usize {
        self.bloom.len() * 8
            + self.table.len() * std::mem::size_of::<Slot>()
            + self.cands.len() * std::mem::size_of::<Cand>()
    }

    /// Reports this tier's occurrences in `hay` that end after `report_after`.
    pub(super) fn scan(&self, store: &Store, hay: &[u8], report_after: usize, on_match: &mut dyn FnMut(u32, usize)) {
        if self.q == 8 {
            self.scan_q::<8>(store, hay, report_after, on_match);
        } else {
            self.scan_q::<4>(store, hay, report_after, on_match);
        }
    }

    #[inline(always)]
    fn scan_q<const Q: usize>(
        &self,
        store: &Store,
        hay: &[u8],
        report_after: usize,
        on_match: &mut dyn FnMut(u32, usize),
    ) {
        if hay.len() < self.l {
            return;
        }
        let last = hay.len() - Q;
        let (step, shift, bloom) = (self.step, self.shift, &*self.bloom);
        let test = |at: usize| -> (u64, u64, bool) {
            let g = load::<Q>(hay, at);
            let h = mix(g);
            let m = bloom_mask(h);
            (g, h, bloom[(h >> shift) as usize] & m == m)
        };
        let mut at = 0;
        // Four independent positions per iteration and one branch for all of them: the
        // filter loads overlap, and the almost-never-taken branch is paid once per four.
        while at + 3 * step <= last {
            let r = [test(at), test(at + step), test(at + 2 * step), test(at + 3 * step)];
            if r[0].2 | r[1].2 | r[2].2 | r[3].2 {
                for (k, &(g, h, hit)) in r.iter().enumerate() {
                    if hit {
                        self.probe(store, g, h, at + k * step, hay, report_after, on_match);
                    }
                }
            }
            at += 4 * step;
        }
        while at <= last {
            let (g, h, hit) = test(at);
            if hit {
                self.probe(store, g, h, at, hay, report_after, on_match);
            }
            at += step;
        }
    }

    /// The slow path after a filter hit: find the gram's candidates and verify each one.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn probe(
        &self,
        store: &Store,
        g: u64,
        h: u64,
        at: usize,
        hay: &[u8],
        report_after: usize,
        on_match: &mut dyn FnMut(u32, usize),
    ) {
        let mut slot = (h >> 12) as usize & self.table_mask;
        loop {
            let s = self.table[slot];
            if s.len == 0 {
                return;
            }
            if s.key == g {
                let run = &self.cands[s.start as usize..s.start as usize + s.len as usize];
                for c in run {
                    let Some(start) = at.checked_sub(c.offset as usize) else { continue };
                    if let Some(end) = store.verify(c.pattern, hay, start, report_after) {
                        on_match(c.pattern, end);
                    }
                }
                return;
            }
            slot = (slot + 1) & self.table_mask;
        }
    }
}
