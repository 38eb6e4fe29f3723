//! Per-object streaming state: turns a sequence of chunks into windows for
//! [`LiteralSet::scan_window`] so that each occurrence is reported exactly once, whatever the
//! chunking.
//!
//! The invariant: occurrences ending at or before the *reported point* have been reported,
//! and the stream keeps `hist`, the `h = min(max_len − 1, reported point)` bytes just before
//! that point. Any occurrence ending after the point starts at most `max_len` bytes before its
//! end, so it lies inside `hist` followed by the new bytes. A chunk is consumed in two scans:
//!
//! 1. a stitched window `hist ‖ staged ‖ chunk[..k]` with `k = min(max_len − 1, chunk.len())`,
//!    reporting ends after `h`; this covers every occurrence ending in the staged bytes or
//!    in the chunk's first `k` bytes;
//! 2. the chunk in place, reporting ends after `k`: such an occurrence ends at least
//!    `max_len` bytes into the chunk, so it starts inside it.
//!
//! Only the seam (at most `2·max_len` bytes plus staging) is copied; the chunk body is
//! scanned where it lies.
//!
//! Scanning a chunk costs its length plus up to `2·(max_len − 1)` bytes of seam, which would
//! dominate for tiny chunks (one byte at a time would cost `O(max_len)` per byte). A chunk
//! that, together with what is already staged, is shorter than the staging threshold is
//! therefore only copied and scanned later, together with what follows. The threshold is
//! `max_len − 1` clamped to 256..=1024 bytes. Up to 1 KiB it equals the history's length, so
//! a flush scans at least as many new bytes as old ones; past that the cap wins, so that
//! chunks of 1 KiB and more are always reported in the call that completes them and tiny
//! ones are held back by less than 1 KiB (at the price of re-scanning up to 4 KiB of history
//! per KiB staged when the set has 4 KiB patterns). [`LiteralStream::finish`] flushes what is
//! staged.

use super::LiteralSet;

/// Lower and upper bounds of the staging threshold (see the module docs).
const STAGE_MIN: usize = 256;
pub const STAGE_MAX: usize = 1024;

/// Streaming scan state for one object at a time; reuse it across objects with
/// [`LiteralStream::reset`]. Its buffer is allocated once, in [`LiteralStream::new`].
#[derive(Debug)]
pub struct LiteralStream {
    /// `hist` at `[..hist_len]`, staged bytes at `[hist_len..hist_len + staged]`, and room
    /// for the stitched seam after them.
    buf: Box<[u8]>,
    hist_len: usize,
    staged: usize,
    /// `max_len − 1` of the set this stream was sized for.
    hist_cap: usize,
    /// A chunk is staged while `staged + chunk.len() < stage_cap`.
    stage_cap: usize,
    /// Bytes fed so far, staged ones included.
    offset: u64,
}

impl LiteralStream {
    /// A stream sized for `set`, which must be the set passed to every later call.
    pub fn new(set: &LiteralSet) -> Self {
        let hist_cap = set.max_len().saturating_sub(1);
        let stage_cap = hist_cap.clamp(STAGE_MIN, STAGE_MAX);
        LiteralStream {
            buf: vec![0; hist_cap + stage_cap + hist_cap].into_boxed_slice(),
            hist_len: 0,
            staged: 0,
            hist_cap,
            stage_cap,
            offset: 0,
        }
    }

    /// Starts a new object, keeping the buffer.
    pub fn reset(&mut self) {
        self.hist_len = 0;
        self.staged = 0;
        self.offset = 0;
    }

    /// Bytes fed since the last reset (including bytes still staged).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Feeds the next bytes of the object; `on_match(pattern_id, absolute_end)` is called for
    /// each occurrence this chunk completes (or, for staged tiny chunks, an earlier one did).
    pub fn feed(&mut self, set: &LiteralSet, chunk: &[u8], on_match: &mut dyn FnMut(u32, u64)) {
        if set.max_len().saturating_sub(1) > self.hist_cap {
            self.grow(set);
        }
        let n = chunk.len();
        let pending = self.hist_len + self.staged;
        if self.staged + n < self.stage_cap {
            self.buf[pending..pending + n].copy_from_slice(chunk);
            self.staged += n;
            self.offset += n as u64;
            return;
        }

        // The absolute offsets of `buf[0]` and of the chunk's first byte.
        let buf_base = self.offset - pending as u64;
        let chunk_base = self.offset;
        let k = self.hist_cap.min(n);
        let seam = pending + k;
        self.buf[pending..seam].copy_from_slice(&chunk[..k]);
        set.scan_window(&self.buf[..seam], self.hist_len, &mut |id, end| on_match(id, buf_base + end as u64));
        if n > k {
            set.scan_window(chunk, k, &mut |id, end| on_match(id, chunk_base + end as u64));
        }

        if n >= self.hist_cap {
            self.buf[..self.hist_cap].copy_from_slice(&chunk[n - self.hist_cap..]);
            self.hist_len = self.hist_cap;
        } else {
            // The whole chunk is in the seam, so the new history is the seam's tail.
            let keep = self.hist_cap.min(seam);
            self.buf.copy_within(seam - keep..seam, 0);
            self.hist_len = keep;
        }
        self.staged = 0;
        self.offset += n as u64;
    }

    /// Misuse with a larger set than this stream was made for: enlarge the buffer, keeping
    /// history and staged bytes, rather than index out of bounds. Occurrences of the longer
    /// patterns that straddle this point may still be missed, since the shorter history
    /// cannot cover them; debug builds flag the misuse.
    #[cold]
    fn grow(&mut self, set: &LiteralSet) {
        debug_assert!(false, "LiteralStream used with a set it was not made for");
        let mut bigger = LiteralStream::new(set);
        let pending = self.hist_len + self.staged;
        bigger.buf[..pending].copy_from_slice(&self.buf[..pending]);
        bigger.hist_len = self.hist_len;
        bigger.staged = self.staged;
        bigger.offset = self.offset;
        *self = bigger;
    }

    /// Ends the object: reports occurrences completed by staged bytes. The stream can then be
    /// [`reset`](LiteralStream::reset) for the next object; feeding more bytes instead simply
    /// continues the same object.
    pub fn finish(&mut self, set: &LiteralSet, on_match: &mut dyn FnMut(u32, u64)) {
        if self.staged == 0 {
            return;
        }
        let end = self.hist_len + self.staged;
        let base = self.offset - end as u64;
        set.scan_window(&self.buf[..end], self.hist_len, &mut |id, e| on_match(id, base + e as u64));
        let keep = self.hist_cap.min(end);
        self.buf.copy_within(end - keep..end, 0);
        self.hist_len = keep;
        self.staged = 0;
    }
}
