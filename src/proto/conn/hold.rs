//! The body bytes a connection keeps back from the client: the segments received but not yet
//! echoed, each pinning its receive block.
//!
//! Only a transaction that may echo the body (no `Allow: 204`) has one, and it lives inside that
//! transaction's body phase, so no other phase can hold on to body bytes.

use super::out::OutQueue;
use super::recv::RecvBuf;
use crate::proto::blocks::Seg;
use crate::proto::response;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Holdback {
    segs: VecDeque<Seg>,
    bytes: usize,
}

impl Holdback {
    pub fn new() -> Self {
        Holdback { segs: VecDeque::new(), bytes: 0 }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    /// Sequence number of the oldest block a kept segment lies in.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.segs.front().map(|s| s.seq)
    }

    pub fn push(&mut self, seg: Seg, recv: &mut RecvBuf) {
        recv.pin(seg);
        self.bytes += seg.len();
        self.segs.push_back(seg);
    }

    /// Forgets every kept byte (the answer does not carry them).
    pub fn clear(&mut self, recv: &mut RecvBuf) {
        for seg in self.segs.drain(..) {
            recv.unpin(seg);
        }
        self.bytes = 0;
    }

    /// Queues the oldest kept bytes as one chunk, keeping back the newest `keep` bytes, but at
    /// most `segs_max` segments, and none in a block older than `oldest_allowed`.
    pub fn emit_keeping(
        &mut self,
        keep: usize,
        segs_max: usize,
        oldest_allowed: u64,
        recv: &mut RecvBuf,
        out: &mut OutQueue,
    ) {
        let mut excess = self.bytes.saturating_sub(keep);
        // Whole segments beyond the segment bound or in too old a block go regardless of the
        // byte window.
        let segs_over = self.segs.len().saturating_sub(segs_max);
        let forced: usize = self
            .segs
            .iter()
            .enumerate()
            .take_while(|(i, s)| *i < segs_over || s.seq < oldest_allowed)
            .map(|(_, s)| s.len())
            .sum();
        excess = excess.max(forced);
        if excess == 0 {
            return;
        }
        out.push_with(|scratch| response::chunk_header(scratch, excess));
        let mut left = excess;
        while left > 0 {
            let front = self.segs.front_mut().expect("excess is within kept bytes");
            let take = left.min(front.len());
            let piece = Seg { seq: front.seq, start: front.start, end: front.start + take as u32 };
            front.start += take as u32;
            recv.pin(piece);
            out.push_pinned(piece);
            if front.is_empty() {
                let done = self.segs.pop_front().expect("just looked at it");
                recv.unpin(done);
            }
            left -= take;
        }
        self.bytes -= excess;
        out.push_static(b"\r\n");
    }
}
