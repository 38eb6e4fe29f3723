//! Receive blocks: the buffers socket bytes are read into and body bytes are retained in.
//!
//! A connection owns a short queue of blocks. Bytes are read into the newest block's free
//! tail; body data is recorded as [`Seg`]ments (block sequence number plus range), handed to the
//! inspector as slices of the block, and, when the body has to go back to the client, written
//! from the same block with vectored writes. A block returns to the shard's [`BlockPool`] once
//! no segment refers to it, so the steady state allocates nothing.
//!
//! Two sizes exist: the large receive block, and a small one an idle keep-alive connection
//! waits with, so that thousands of idle connections cost kilobytes each.
//!
//! The pool shrinks back when load drops: [`BlockPool::trim`] (called by the shard on a timer)
//! frees the free blocks that nobody took since the previous trim, so after a burst the
//! shard's memory returns to its baseline instead of staying at the burst's peak.

/// A run of bytes inside one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    pub seq: u64,
    pub start: u32,
    pub end: u32,
}

impl Seg {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One receive buffer and how much of it holds data.
#[derive(Debug)]
pub struct Block {
    pub seq: u64,
    pub buf: Box<[u8]>,
    pub filled: usize,
}

/// Per-shard free lists of blocks. Not shared across threads; a shard's connections borrow
/// from it in turn.
#[derive(Debug)]
pub struct BlockPool {
    large_bytes: usize,
    small_bytes: usize,
    large: Vec<Box<[u8]>>,
    small: Vec<Box<[u8]>>,
    keep_max: usize,
    /// Free blocks kept however idle the shard is.
    floor: usize,
    /// Fewest free blocks of each size since the last trim: that many were not needed.
    low: (usize, usize),
    /// Blocks of each size allocated and not yet freed (in use plus free).
    allocated: (usize, usize),
}

impl BlockPool {
    /// A pool handing out blocks of the two sizes, keeping at most `keep_max` free blocks of
    /// each size, with `prefill` large blocks allocated up front.
    pub fn new(large_bytes: usize, small_bytes: usize, keep_max: usize, prefill: usize) -> Self {
        let mut pool = BlockPool {
            large_bytes,
            small_bytes,
            large: Vec::with_capacity(keep_max),
            small: Vec::with_capacity(keep_max),
            keep_max,
            floor: prefill.min(keep_max),
            low: (0, 0),
            allocated: (0, 0),
        };
        for _ in 0..pool.floor {
            pool.large.push(vec![0u8; large_bytes].into_boxed_slice());
        }
        pool.allocated.0 = pool.floor;
        pool.low = (pool.large.len(), 0);
        pool
    }

    pub fn take(&mut self, small: bool) -> Box<[u8]> {
        let (list, bytes, low, allocated) = if small {
            (&mut self.small, self.small_bytes, &mut self.low.1, &mut self.allocated.1)
        } else {
            (&mut self.large, self.large_bytes, &mut self.low.0, &mut self.allocated.0)
        };
        let buf = list.pop().unwrap_or_else(|| {
            *allocated += 1;
            vec![0u8; bytes].into_boxed_slice()
        });
        *low = (*low).min(list.len());
        buf
    }

    pub fn give(&mut self, buf: Box<[u8]>) {
        let large = buf.len() == self.large_bytes;
        let (list, allocated) =
            if large { (&mut self.large, &mut self.allocated.0) } else { (&mut self.small, &mut self.allocated.1) };
        if list.len() < self.keep_max {
            list.push(buf);
        } else {
            *allocated -= 1;
        }
    }

    /// Frees the free blocks that were not needed since the last trim (keeping the prefill);
    /// returns the bytes freed.
    pub fn trim(&mut self) -> usize {
        let unused_large = self.low.0.min(self.large.len().saturating_sub(self.floor));
        let unused_small = self.low.1.min(self.small.len());
        self.large.truncate(self.large.len() - unused_large);
        self.small.truncate(self.small.len() - unused_small);
        self.allocated.0 -= unused_large;
        self.allocated.1 -= unused_small;
        self.low = (self.large.len(), self.small.len());
        unused_large * self.large_bytes + unused_small * self.small_bytes
    }

    /// Bytes of blocks allocated (in use by connections plus free in the pool).
    pub fn allocated_bytes(&self) -> usize {
        self.allocated.0 * self.large_bytes + self.allocated.1 * self.small_bytes
    }

    /// Bytes of free blocks held for reuse.
    pub fn free_bytes(&self) -> usize {
        self.large.len() * self.large_bytes + self.small.len() * self.small_bytes
    }

    pub fn large_bytes(&self) -> usize {
        self.large_bytes
    }

    /// Free blocks held, (large, small).
    pub fn free_counts(&self) -> (usize, usize) {
        (self.large.len(), self.small.len())
    }
}

#[cfg(test)]
mod tests {
    use super::BlockPool;

    #[test]
    fn trim_frees_what_was_not_needed_since_the_last_trim() {
        let mut pool = BlockPool::new(100, 10, 64, 2);
        let burst: Vec<_> = (0..10).map(|_| pool.take(false)).collect();
        assert_eq!(pool.allocated_bytes(), 1000);
        for b in burst {
            pool.give(b);
        }
        // The burst needed all ten: nothing goes at the first trim.
        assert_eq!(pool.trim(), 0);
        // Quiet since then: all but the prefill go.
        assert_eq!(pool.trim(), 800);
        assert_eq!((pool.allocated_bytes(), pool.free_bytes()), (200, 200));
        // Steady use of three blocks keeps three.
        let a: Vec<_> = (0..3).map(|_| pool.take(false)).collect();
        for b in a {
            pool.give(b);
        }
        assert_eq!(pool.trim(), 0);
        assert_eq!(pool.allocated_bytes(), 300);
    }
}
