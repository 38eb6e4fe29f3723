//! The load board the shards share: one slot per shard, written by its owner only.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// What one shard publishes about itself.
#[derive(Debug, Default)]
pub struct Slot {
    /// Connections open on the shard (plain and TLS), counted at accept or arrival and at close
    /// or departure.
    connections: AtomicU32,
    /// Busy fraction over the last window, in thousandths (0..=1000).
    busy_permille: AtomicU32,
    /// Connections handed to another shard at accept, and moved away at a transaction boundary.
    handed_off: AtomicU64,
    moved_out: AtomicU64,
}

/// A shard's view of another shard's slot (or its own), read in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub connections: u32,
    pub busy_permille: u32,
}

/// Every shard's slot.
#[derive(Debug)]
pub struct Board {
    slots: Box<[Slot]>,
}

impl Board {
    pub fn new(shards: usize) -> Board {
        Board { slots: (0..shards).map(|_| Slot::default()).collect() }
    }

    pub fn shards(&self) -> usize {
        self.slots.len()
    }

    /// Every shard's load, into `out` (cleared first; no allocation once it has the capacity).
    pub fn read_into(&self, out: &mut Vec<Load>) {
        out.clear();
        out.extend(self.slots.iter().map(|s| Load {
            connections: s.connections.load(Relaxed),
            busy_permille: s.busy_permille.load(Relaxed),
        }));
    }

    pub fn load(&self, shard: usize) -> Load {
        let s = &self.slots[shard];
        Load { connections: s.connections.load(Relaxed), busy_permille: s.busy_permille.load(Relaxed) }
    }

    /// A connection arrived on `shard` (accepted there, or handed or moved to it).
    pub fn arrived(&self, shard: usize) {
        self.slots[shard].connections.fetch_add(1, Relaxed);
    }

    /// A connection left `shard` (closed, or moved away).
    pub fn left(&self, shard: usize) {
        let c = &self.slots[shard].connections;
        // Never below zero, even if a caller pairs wrongly: a wrapped count would make the
        // shard look full forever.
        let _ = c.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    pub fn publish_busy(&self, shard: usize, busy_permille: u32) {
        self.slots[shard].busy_permille.store(busy_permille.min(1000), Relaxed);
    }

    pub fn count_hand_off(&self, shard: usize) {
        self.slots[shard].handed_off.fetch_add(1, Relaxed);
    }

    /// A connection carrying `busy_permille` of `from`'s last window moved to `to`: the counts
    /// move with it, and so does its share of the busy estimates until each shard publishes its
    /// next measured window. Without that, every shard that reads the board in the same window
    /// sees the same least-busy target and sends it a connection (a herd).
    pub fn moved(&self, from: usize, to: usize, busy_permille: u32) {
        self.left(from);
        self.arrived(to);
        self.slots[from].moved_out.fetch_add(1, Relaxed);
        let _ = self.slots[from].busy_permille.fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(busy_permille)));
        let _ = self.slots[to].busy_permille.fetch_update(Relaxed, Relaxed, |b| Some((b + busy_permille).min(1000)));
    }

    /// Takes back a [`Board::moved`] whose connection could not be delivered (the target's
    /// queue was full): it stays on `from`.
    pub fn move_failed(&self, from: usize, to: usize, busy_permille: u32) {
        self.left(to);
        self.arrived(from);
        let _ = self.slots[from].moved_out.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        let _ = self.slots[to].busy_permille.fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(busy_permille)));
        let _ = self.slots[from].busy_permille.fetch_update(Relaxed, Relaxed, |b| Some((b + busy_permille).min(1000)));
    }

    /// (connections handed off at accept, connections moved away) by `shard`.
    pub fn moves(&self, shard: usize) -> (u64, u64) {
        let s = &self.slots[shard];
        (s.handed_off.load(Relaxed), s.moved_out.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_arrivals_and_departures_and_never_wrap() {
        let b = Board::new(3);
        b.arrived(1);
        b.arrived(1);
        b.left(1);
        b.left(2);
        b.publish_busy(0, 1500);
        let mut v = Vec::new();
        b.read_into(&mut v);
        assert_eq!(v, [Load { connections: 0, busy_permille: 1000 }, Load { connections: 1, busy_permille: 0 }, Load::default()]);
        b.moved(0, 1, 300);
        b.read_into(&mut v);
        assert_eq!(v[..2], [Load { connections: 0, busy_permille: 700 }, Load { connections: 2, busy_permille: 300 }]);
        assert_eq!(b.moves(0), (0, 1));
        b.move_failed(0, 1, 300);
        b.read_into(&mut v);
        assert_eq!(v[..2], [Load { connections: 1, busy_permille: 1000 }, Load { connections: 1, busy_permille: 0 }]);
        assert_eq!(b.moves(0), (0, 0));
    }
}
