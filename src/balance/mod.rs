//! Spreading connections and load across shards, whatever the kernel's SO_REUSEPORT hash does.
//!
//! Every shard has its own listener, and the kernel hashes each connection's addresses to pick
//! the shard that accepts it. Squid keeps a handful of persistent ICAP connections, so a few
//! hashes decide where all the work goes: with 4 connections on 2 shards, one shard did all the
//! work in 1–2 runs of 10. This module decides, sans-IO, where a connection should live:
//!
//! * **At accept** ([`policy::place`]): a shard that holds more connections than the least
//!   loaded one (by more than [`policy::Tuning::accept_slack`]) hands the new connection to it.
//!   Counting connections, not busy time, is what makes placement deterministic: N connections
//!   on M shards end up within one of each other, before any of them has sent a byte.
//! * **Over a connection's life** ([`policy::should_move`]): persistent connections differ in
//!   rate, so at a transaction boundary (nothing buffered, nothing owed) a connection may move
//!   from a busy shard to one with more headroom. The signal is each shard's busy fraction
//!   over a short window ([`busy::BusyWindow`]), and three rules keep connections from
//!   bouncing: the gap must exceed a margin, the connection must carry at most half the gap (so
//!   the target ends no busier than the source was left: a bigger one would only move the hot
//!   spot, and could come straight back), and each shard moves at most one
//!   connection per window while a moved connection stays put for a cooldown.
//!
//! The shards share one [`board::Board`]: per shard, its connection count and its last busy
//! fraction. A shard writes only its own slot, on connection open and close and once per
//! window, never per request, and reads the others' slots only when it accepts or considers a
//! move; relaxed atomics suffice because every decision tolerates a slightly stale view.

pub mod board;
pub mod busy;
pub mod policy;

#[cfg(test)]
mod sim_tests;
