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
        };
        for _ in 0..prefill.min(keep_max) {
            pool.large.push(vec![0u8; large_bytes].into_boxed_slice());
        }
        pool
    }

    pub fn take(&mut self, small: bool) -> Box<[u8]> {
        let (list, bytes) =
            if small { (&mut self.small, self.small_bytes) } else { (&mut self.large, self.large_bytes) };
        list.pop().unwrap_or_else(|| vec![0u8; bytes].into_boxed_slice())
    }

    pub fn give(&mut self, buf: Box<[u8]>) {
        let list = if buf.len() == self.large_bytes { &mut self.large } else { &mut self.small };
        if list.len() < self.keep_max {
            list.push(buf);
        }
    }

    pub fn large_bytes(&self) -> usize {
        self.large_bytes
    }

    /// Free blocks held, (large, small).
    pub fn free_counts(&self) -> (usize, usize) {
        (self.large.len(), self.small.len())
    }
}
