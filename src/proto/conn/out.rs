//! The send side of a connection: what is queued for the client, in order.
//!
//! Heads, chunk framing and block pages are formatted into one scratch buffer; body bytes echoed
//! back are segments of the receive blocks, pinned while queued and unpinned as soon as they are
//! written, so the vectored write sends them without a copy and their blocks go back to the
//! pool as soon as the client took them.

use super::recv::RecvBuf;
use crate::proto::blocks::Seg;
use std::collections::VecDeque;
use std::io::IoSlice;

#[derive(Clone, Copy, Debug)]
enum Piece {
    Scratch { start: usize, end: usize },
    Static(&'static [u8]),
    Seg(Seg),
}

/// Scratch capacity kept between answers; a larger one (a big echoed header section, a big
/// block page) is given back once the queue empties.
const SCRATCH_KEEP_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub struct OutQueue {
    pieces: VecDeque<Piece>,
    front_done: usize,
    scratch: Vec<u8>,
    /// Bytes queued since the last [`OutQueue::take_queued`].
    queued: u64,
}

impl OutQueue {
    pub fn new() -> Self {
        OutQueue { pieces: VecDeque::with_capacity(16), front_done: 0, scratch: Vec::with_capacity(1024), queued: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Bytes queued since the last call (for a transaction's `out_bytes`).
    pub fn take_queued(&mut self) -> u64 {
        std::mem::take(&mut self.queued)
    }

    /// Formats into the scratch buffer and queues what was written.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.scratch.len();
        write(&mut self.scratch);
        self.queued += (self.scratch.len() - start) as u64;
        self.pieces.push_back(Piece::Scratch { start, end: self.scratch.len() });
    }

    pub fn push_static(&mut self, bytes: &'static [u8]) {
        self.queued += bytes.len() as u64;
        self.pieces.push_back(Piece::Static(bytes));
    }

    /// Queues a body segment that is already pinned on the caller's behalf; the pin now
    /// belongs to the queue.
    pub fn push_pinned(&mut self, seg: Seg) {
        self.queued += seg.len() as u64;
        self.pieces.push_back(Piece::Seg(seg));
    }

    /// Fills `iov` with the bytes to write next; returns how many slices were filled.
    pub fn poll<'a>(&'a self, recv: &'a RecvBuf, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, piece) in self.pieces.iter().enumerate() {
            if n == iov.len() {
                break;
            }
            let bytes: &[u8] = match *piece {
                Piece::Scratch { start, end } => &self.scratch[start..end],
                Piece::Static(s) => s,
                Piece::Seg(seg) => recv.bytes(seg),
            };
            let bytes = if i == 0 { &bytes[self.front_done..] } else { bytes };
            iov[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// `n` bytes of what [`OutQueue::poll`] offered were written; written segments unpin.
    pub fn written(&mut self, mut n: usize, recv: &mut RecvBuf) {
        while n > 0 {
            let front = *self.pieces.front().expect("written bytes were offered");
            let len = match front {
                Piece::Scratch { start, end } => end - start,
                Piece::Static(s) => s.len(),
                Piece::Seg(seg) => seg.len(),
            };
            let left = len - self.front_done;
            if n >= left {
                n -= left;
                self.pieces.pop_front();
                self.front_done = 0;
                if let Piece::Seg(seg) = front {
                    recv.unpin(seg);
                }
            } else {
                self.front_done += n;
                n = 0;
            }
        }
        if self.pieces.is_empty() {
            self.scratch.clear();
            if self.scratch.capacity() > SCRATCH_KEEP_BYTES {
                self.scratch = Vec::with_capacity(1024);
            }
        }
    }

    /// Drops everything queued (the connection is gone), unpinning its segments.
    pub fn clear(&mut self, recv: &mut RecvBuf) {
        while let Some(p) = self.pieces.pop_front() {
            if let Piece::Seg(seg) = p {
                recv.unpin(seg);
            }
        }
        self.front_done = 0;
        self.scratch.clear();
    }

    /// Segments queued (each holds one pin).
    pub fn pinned(&self) -> usize {
        self.pieces.iter().filter(|p| matches!(p, Piece::Seg(_))).count()
    }
}

impl Default for OutQueue {
    fn default() -> Self {
        Self::new()
    }
}
