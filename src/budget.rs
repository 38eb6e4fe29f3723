//! The per-shard memory budget: one number that every big buffer of a shard is charged against.
//!
//! A shard serves its connections from one thread, so the budget is a handful of `Cell`s behind
//! an `Rc` (no atomics). What is charged, and by whom:
//!
//! * [`Use::Connections`]: the server reserves `conn_buffer_bytes_max` for every connection in
//!   the middle of a transaction (the receive blocks, output and header copy that connection
//!   can hold at most; [`crate::proto::conn::Conn`] never holds more). A connection that cannot
//!   get its reservation is not read from until it can (new work waits; the client sees TCP
//!   back-pressure), so admitted transactions always have the memory to finish.
//! * [`Use::WholeObject`]: the in-memory copy of an object for whole-object YARA rules, charged as
//!   it grows. When the budget refuses, the object goes to the spool or through `over_limit`.
//! * [`Use::Decoder`]: the windows and buffers of Content-Encoding decoders.
//! * [`Use::Container`]: buffers of container extraction (charged by the unpacker with
//!   [`ShardBudget::try_charge`] and released by dropping the [`Charge`]).
//!
//! A refused charge is counted per use ([`BudgetStats::refused`]); nothing is ever allocated
//! past the budget, so a flood of clients meets waits and named refusals, never the OOM killer.
//! The figures reach `/metrics` through [`BudgetStats`].

use std::cell::Cell;
use std::rc::Rc;

/// What a charge pays for (the label of the budget series in `/metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Connections = 0,
    WholeObject = 1,
    Decoder = 2,
    Container = 3,
}

/// Every use, in label order.
pub const USES: [Use; 4] = [Use::Connections, Use::WholeObject, Use::Decoder, Use::Container];

impl Use {
    pub fn label(self) -> &'static str {
        match self {
            Use::Connections => "connections",
            Use::WholeObject => "whole_object",
            Use::Decoder => "decoder",
            Use::Container => "container",
        }
    }
}

/// The budget of one shard.
#[derive(Debug)]
pub struct ShardBudget {
    limit: usize,
    used: [Cell<usize>; USES.len()],
    peak: Cell<usize>,
    refused: [Cell<u64>; USES.len()],
    waits: Cell<u64>,
}

impl ShardBudget {
    pub fn new(limit: usize) -> Rc<ShardBudget> {
        Rc::new(ShardBudget {
            limit,
            used: Default::default(),
            peak: Cell::new(0),
            refused: Default::default(),
            waits: Cell::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now, over every use.
    pub fn used(&self) -> usize {
        self.used.iter().map(Cell::get).sum()
    }

    /// Bytes charged now for one use.
    pub fn used_by(&self, what: Use) -> usize {
        self.used[what as usize].get()
    }

    /// Charges `bytes` for `what` if they fit, else counts a refusal and returns `None`.
    pub fn try_charge(self: &Rc<Self>, what: Use, bytes: usize) -> Option<Charge> {
        if !self.fits(bytes) {
            let r = &self.refused[what as usize];
            r.set(r.get() + 1);
            return None;
        }
        self.add(what, bytes);
        Some(Charge { budget: self.clone(), what, bytes })
    }

    /// Whether `bytes` more would fit now.
    pub fn fits(&self, bytes: usize) -> bool {
        self.used().checked_add(bytes).is_some_and(|total| total <= self.limit)
    }

    /// Counts one connection that had to wait for its reservation.
    pub fn count_wait(&self) {
        self.waits.set(self.waits.get() + 1);
    }

    fn add(&self, what: Use, bytes: usize) {
        let u = &self.used[what as usize];
        u.set(u.get() + bytes);
        self.peak.set(self.peak.get().max(self.used()));
    }

    fn sub(&self, what: Use, bytes: usize) {
        let u = &self.used[what as usize];
        u.set(u.get() - bytes);
    }

    /// A copy of the figures for a scrape.
    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            limit: self.limit as u64,
            used: self.used.each_ref().map(|c| c.get() as u64),
            peak: self.peak.get() as u64,
            refused: self.refused.each_ref().map(Cell::get),
            waits: self.waits.get(),
            pool_allocated: 0,
            pool_free: 0,
        }
    }
}

/// Bytes charged to a budget; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Rc<ShardBudget>,
    what: Use,
    bytes: usize,
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows the charge to `bytes` if the budget has room (a refusal is counted); shrinking
    /// always succeeds.
    pub fn resize(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            self.budget.sub(self.what, self.bytes - bytes);
            self.bytes = bytes;
            return true;
        }
        let more = bytes - self.bytes;
        if !self.budget.fits(more) {
            let r = &self.budget.refused[self.what as usize];
            r.set(r.get() + 1);
            return false;
        }
        self.budget.add(self.what, more);
        self.bytes = bytes;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.sub(self.what, self.bytes);
    }
}

/// A shard's budget figures, added up over shards for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BudgetStats {
    pub limit: u64,
    /// Bytes charged now, by [`USES`] index.
    pub used: [u64; USES.len()],
    /// Highest total charged at once (summed over shards: an upper bound of the joint peak).
    pub peak: u64,
    /// Charges refused, by [`USES`] index.
    pub refused: [u64; USES.len()],
    /// Connections that waited for their reservation.
    pub waits: u64,
    /// Receive blocks allocated (in use plus free in the pool), and of those free.
    pub pool_allocated: u64,
    pub pool_free: u64,
}

impl BudgetStats {
    pub fn merge(&mut self, other: &BudgetStats) {
        self.limit += other.limit;
        for (a, b) in self.used.iter_mut().zip(other.used) {
            *a += b;
        }
        self.peak += other.peak;
        for (a, b) in self.refused.iter_mut().zip(other.refused) {
            *a += b;
        }
        self.waits += other.waits;
        self.pool_allocated += other.pool_allocated;
        self.pool_free += other.pool_free;
    }

    /// Writes the Prometheus series (totals over shards).
    pub fn write_prometheus(&self, o: &mut String) {
        use std::fmt::Write;
        fn head(o: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        head(
            o,
            "icapd_memory_budget_bytes",
            "gauge",
            "Memory budget of the shards together (shard_memory_bytes_max each).",
        );
        let _ = writeln!(o, "icapd_memory_budget_bytes {}", self.limit);
        head(o, "icapd_memory_budget_used_bytes", "gauge", "Bytes charged to the shards' memory budgets now, by use.");
        for (u, n) in USES.iter().zip(self.used) {
            let _ = writeln!(o, "icapd_memory_budget_used_bytes{{use=\"{}\"}} {n}", u.label());
        }
        head(o, "icapd_memory_budget_peak_bytes", "gauge", "Highest charge of each shard's budget, added over shards.");
        let _ = writeln!(o, "icapd_memory_budget_peak_bytes {}", self.peak);
        head(o, "icapd_memory_budget_refusals_total", "counter", "Charges the memory budget refused, by use.");
        for (u, n) in USES.iter().zip(self.refused) {
            let _ = writeln!(o, "icapd_memory_budget_refusals_total{{use=\"{}\"}} {n}", u.label());
        }
        head(
            o,
            "icapd_memory_budget_waits_total",
            "counter",
            "Connections that waited (were not read from) for budget.",
        );
        let _ = writeln!(o, "icapd_memory_budget_waits_total {}", self.waits);
        head(o, "icapd_receive_block_bytes", "gauge", "Receive-block memory allocated (in use and free in the pools).");
        let _ = writeln!(o, "icapd_receive_block_bytes {}", self.pool_allocated);
        head(
            o,
            "icapd_receive_block_free_bytes",
            "gauge",
            "Receive-block memory free in the pools (trimmed when idle).",
        );
        let _ = writeln!(o, "icapd_receive_block_free_bytes {}", self.pool_free);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_or_are_refused_and_counted_and_come_back_on_drop() {
        let b = ShardBudget::new(1000);
        let a = b.try_charge(Use::Connections, 600).unwrap();
        assert!(b.try_charge(Use::WholeObject, 500).is_none());
        let mut c = b.try_charge(Use::WholeObject, 400).unwrap();
        assert_eq!(b.used(), 1000);
        assert!(!c.resize(401));
        assert!(c.resize(100));
        assert_eq!(b.used_by(Use::WholeObject), 100);
        drop(a);
        assert_eq!(b.used(), 100);
        drop(c);
        let s = b.stats();
        assert_eq!((s.used, s.peak, s.refused), ([0; 4], 1000, [0, 2, 0, 0]));
    }
}
