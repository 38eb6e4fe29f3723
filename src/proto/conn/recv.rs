//! The receive side of a connection: the blocks socket bytes are read into, with a pin count
//! per block.
//!
//! Body bytes are not copied: a body piece is a [`Seg`] (block sequence number and range), fed to
//! the inspector as a slice of its block and, when the body goes back to the client, written
//! from the same block. Whatever keeps a segment for later (the hold-back window, the output
//! queue) pins its block with [`RecvBuf::pin`] and unpins it when done. A block that is not the
//! newest and has no pins goes back to the pool at the next [`RecvBuf::sweep`], wherever it
//! is in the queue: one long-lived segment (a header section, the first piece of an echo) can
//! never keep the blocks after it alive. So what a connection holds is the newest block plus
//! the blocks its pinned segments lie in, and that is what [`RecvBuf::held_bytes`] reports.

use crate::proto::blocks::{BlockPool, Seg};
use std::collections::VecDeque;

/// One receive buffer. `buf` is `None` once the block went back to the pool while an older
/// block was still pinned (the slot keeps sequence numbers dense).
#[derive(Debug)]
struct Block {
    buf: Option<Box<[u8]>>,
    filled: usize,
    pins: u32,
}

#[derive(Debug)]
pub struct RecvBuf {
    /// Blocks in sequence order; the front one has sequence number `first_seq`.
    blocks: VecDeque<Block>,
    first_seq: u64,
    /// Bytes of the buffers present (the memory this connection holds in receive blocks).
    held: usize,
    /// Pins over all blocks (for the bookkeeping check).
    pins: usize,
}

impl RecvBuf {
    pub fn new() -> Self {
        RecvBuf { blocks: VecDeque::with_capacity(8), first_seq: 0, held: 0, pins: 0 }
    }

    /// Receive-block bytes this connection holds.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Pins over all blocks.
    pub fn pins(&self) -> usize {
        self.pins
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Sequence number of the newest block.
    pub fn newest_seq(&self) -> u64 {
        self.first_seq + self.blocks.len() as u64 - 1
    }

    fn newest(&self) -> &Block {
        self.blocks.back().expect("a connection that reads has a block")
    }

    /// The newest block's bytes (all of its capacity) and how many are filled.
    pub fn newest_buf(&self) -> (&[u8], usize) {
        let b = self.newest();
        (b.buf.as_deref().expect("the newest block is present"), b.filled)
    }

    /// Capacity of the newest block, if there is one.
    pub fn newest_capacity(&self) -> Option<usize> {
        self.blocks.back().and_then(|b| b.buf.as_ref()).map(|b| b.len())
    }

    /// Whether the newest block is pinned (a segment of it is kept).
    pub fn newest_pinned(&self) -> bool {
        self.blocks.back().is_some_and(|b| b.pins > 0)
    }

    /// The free tail of the newest block.
    pub fn free_tail(&mut self) -> &mut [u8] {
        let b = self.blocks.back_mut().expect("a connection that reads has a block");
        let filled = b.filled;
        &mut b.buf.as_mut().expect("the newest block is present")[filled..]
    }

    /// `n` bytes were read into the free tail.
    pub fn filled(&mut self, n: usize) {
        let b = self.blocks.back_mut().expect("a read follows free_tail");
        assert!(b.filled + n <= b.buf.as_ref().map_or(0, |b| b.len()));
        b.filled += n;
    }

    /// Forgets the newest block's contents (nothing in it is needed any more).
    pub fn reset_newest(&mut self) {
        let b = self.blocks.back_mut().expect("checked by the caller");
        debug_assert_eq!(b.pins, 0);
        b.filled = 0;
    }

    /// Appends a fresh block with `filled` bytes already in it.
    pub fn push(&mut self, buf: Box<[u8]>, filled: usize) {
        self.held += buf.len();
        self.blocks.push_back(Block { buf: Some(buf), filled, pins: 0 });
    }

    /// The bytes of a segment.
    pub fn bytes(&self, seg: Seg) -> &[u8] {
        let block = &self.blocks[(seg.seq - self.first_seq) as usize];
        &block.buf.as_ref().expect("a pinned or fresh segment's block is present")[seg.start as usize..seg.end as usize]
    }

    /// Keeps `seg`'s block until the matching [`RecvBuf::unpin`].
    pub fn pin(&mut self, seg: Seg) {
        self.blocks[(seg.seq - self.first_seq) as usize].pins += 1;
        self.pins += 1;
    }

    pub fn unpin(&mut self, seg: Seg) {
        let b = &mut self.blocks[(seg.seq - self.first_seq) as usize];
        b.pins = b.pins.checked_sub(1).expect("unpin matches a pin");
        self.pins -= 1;
    }

    /// Gives every unpinned block except the newest back to the pool, wherever it is.
    pub fn sweep(&mut self, pool: &mut BlockPool) {
        let last = self.blocks.len().saturating_sub(1);
        for (i, b) in self.blocks.iter_mut().enumerate() {
            if i < last && b.pins == 0 {
                if let Some(buf) = b.buf.take() {
                    self.held -= buf.len();
                    pool.give(buf);
                }
            }
        }
        while self.blocks.len() > 1 && self.blocks.front().is_some_and(|b| b.buf.is_none()) {
            self.blocks.pop_front();
            self.first_seq += 1;
        }
    }

    /// Gives every block back (the connection is gone, or starts over with a fresh block).
    pub fn release_all(&mut self, pool: &mut BlockPool) {
        debug_assert_eq!(self.pins, 0, "nothing may be pinned when all blocks go");
        while let Some(b) = self.blocks.pop_front() {
            self.first_seq += 1;
            if let Some(buf) = b.buf {
                pool.give(buf);
            }
        }
        self.held = 0;
    }
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_pinned_block_does_not_keep_the_later_ones() {
        let mut pool = BlockPool::new(16, 4, 8, 0);
        let mut r = RecvBuf::new();
        r.push(pool.take(false), 16);
        let first = Seg { seq: r.newest_seq(), start: 0, end: 4 };
        r.pin(first);
        for _ in 0..5 {
            r.push(pool.take(false), 16);
            r.sweep(&mut pool);
        }
        // The pinned first block and the newest one are held, nothing in between.
        assert_eq!(r.held_bytes(), 32);
        assert_eq!(r.bytes(first).len(), 4);
        r.unpin(first);
        r.sweep(&mut pool);
        assert_eq!(r.held_bytes(), 16);
        assert_eq!(r.blocks.len(), 1);
        r.release_all(&mut pool);
        assert_eq!(r.held_bytes(), 0);
    }
}
