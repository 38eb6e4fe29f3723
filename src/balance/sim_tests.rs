//! A simulation of shards and persistent connections with skewed, changing rates: the kernel's
//! hash alone against placement at accept plus moves at transaction boundaries. No sockets and
//! no clock: a window is one step, a connection's rate is the fraction of one shard it would
//! keep busy, and a shard's busy fraction is the sum of its connections' rates (at most 1).
//!
//! Reported per case (run with `--nocapture` to see the table), averaged over the measured
//! windows, for both designs: idle shards; the max/mean ratio of shard busy fractions; and the
//! work left waiting, the demand on saturated shards beyond their capacity while the machine
//! as a whole has room, as a share of all demand (what an unbalanced machine loses in rate).

use super::board::{Board, Load};
use super::policy::{place, Candidate, MoveGate, Tuning};

/// xorshift64*: deterministic, good enough for workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WINDOW_NS: u64 = 1_000;
const WINDOWS: u64 = 400;
const WARMUP: u64 = 50;
/// Every this many windows a quarter of the connections change rate.
const PHASE: u64 = 40;

const TUNING: Tuning = Tuning {
    accept_slack: 0,
    move_margin_permille: 150,
    move_cooldown_ns: 3 * WINDOW_NS,
    connections_per_shard_max: 1_000_000,
};

/// A skewed rate: Pareto-like weights, scaled so all connections together want `demand` of the
/// machine, each capped below one shard (a connection is served sequentially).
fn rates(rng: &mut Rng, n: usize, shards: usize, demand: f64) -> Vec<f64> {
    let w: Vec<f64> = (0..n).map(|_| 1.0 / (0.05 + rng.unit()).powf(1.2)).collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|x| (x / sum * demand * shards as f64).min(0.95)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    idle_shards: f64,
    max_over_mean: f64,
    waiting: f64,
    moves: u64,
}

fn simulate(shards: usize, conns: usize, seed: u64, balanced: bool) -> Outcome {
    let mut rng = Rng(seed | 1);
    let mut rate = rates(&mut rng, conns, shards, 0.5);
    let board = Board::new(shards);
    let mut loads: Vec<Load> = Vec::with_capacity(shards);
    // Placement: the hash picks the accepting shard; the balanced design may hand over.
    let mut home = Vec::with_capacity(conns);
    let mut arrived = vec![0u64; conns];
    for _ in 0..conns {
        let hashed = rng.below(shards);
        let s = if balanced {
            board.read_into(&mut loads);
            place(hashed, &loads, &TUNING)
        } else {
            hashed
        };
        board.arrived(s);
        home.push(s);
    }
    let mut gates = vec![MoveGate::default(); shards];
    let (mut idle_sum, mut ratio_sum, mut waiting_sum, mut moves) = (0.0, 0.0, 0.0, 0u64);
    for w in 0..WINDOWS {
        let now = w * WINDOW_NS;
        if w > 0 && w % PHASE == 0 {
            let fresh = rates(&mut rng, conns, shards, 0.5);
            for (i, r) in fresh.into_iter().enumerate() {
                if rng.below(4) == 0 {
                    rate[i] = r;
                }
            }
        }
        let mut demand = vec![0.0f64; shards];
        for (i, &s) in home.iter().enumerate() {
            demand[s] += rate[i];
        }
        let busy: Vec<f64> = demand.iter().map(|d| d.min(1.0)).collect();
        if w >= WARMUP {
            idle_sum += busy.iter().filter(|&&b| b == 0.0).count() as f64;
            let mean = busy.iter().sum::<f64>() / shards as f64;
            let max = busy.iter().cloned().fold(0.0, f64::max);
            ratio_sum += if mean > 0.0 { max / mean } else { 1.0 };
            let total: f64 = demand.iter().sum();
            let over: f64 = demand.iter().map(|d| (d - 1.0).max(0.0)).sum();
            waiting_sum += if total > 0.0 { over / total } else { 0.0 };
        }
        if !balanced {
            continue;
        }
        for (s, b) in busy.iter().enumerate() {
            board.publish_busy(s, (b * 1000.0).round() as u32);
        }
        // Each connection reaches a transaction boundary during the window, in some order.
        let mut order: Vec<usize> = (0..conns).collect();
        for i in (1..conns).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for i in order {
            let s = home[i];
            let share = if demand[s] > 1.0 { rate[i] / demand[s] } else { rate[i] };
            let c = Candidate { busy_permille: (share * 1000.0).round() as u32, arrived_ns: arrived[i] };
            board.read_into(&mut loads);
            if let Some(t) = gates[s].should_move(s, c, &loads, now, &TUNING) {
                board.moved(s, t, c.busy_permille);
                home[i] = t;
                arrived[i] = now;
                moves += 1;
            }
        }
    }
    let measured = (WINDOWS - WARMUP) as f64;
    Outcome {
        idle_shards: idle_sum / measured,
        max_over_mean: ratio_sum / measured,
        waiting: waiting_sum / measured,
        moves,
    }
}

#[test]
fn balancing_leaves_no_shard_idle_and_narrows_the_load_spread() {
    eprintln!("shards conns | hash: idle max/mean waiting | balanced: idle max/mean waiting moves");
    for shards in [16usize, 64] {
        for conns in [16usize, 32, 64, 128, 256] {
            let (mut hash, mut bal) = (Vec::new(), Vec::new());
            for seed in 1..=5u64 {
                hash.push(simulate(shards, conns, seed * 7919 + conns as u64, false));
                bal.push(simulate(shards, conns, seed * 7919 + conns as u64, true));
            }
            let mean = |v: &[Outcome], f: fn(&Outcome) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
            let (hi, hr) = (mean(&hash, |o| o.idle_shards), mean(&hash, |o| o.max_over_mean));
            let (bi, br) = (mean(&bal, |o| o.idle_shards), mean(&bal, |o| o.max_over_mean));
            let (hw, bw) = (mean(&hash, |o| o.waiting), mean(&bal, |o| o.waiting));
            let moves = mean(&bal, |o| o.moves as f64);
            eprintln!(
                "{shards:6} {conns:5} | {hi:10.2} {hr:8.2} {:6.1}% | {bi:14.2} {br:8.2} {:6.1}% {moves:6.0}",
                hw * 100.0,
                bw * 100.0
            );
            // Placement alone guarantees a connection on every shard once there are enough.
            if conns >= shards {
                assert_eq!(bi, 0.0, "{shards} shards, {conns} connections: idle shards");
                assert!(hi > 0.0 || conns >= 4 * shards, "the hash is expected to leave shards idle here");
            } else {
                assert!(bi <= hi, "{shards}/{conns}: more idle shards than the hash");
            }
            assert!(br <= hr, "{shards}/{conns}: wider spread than the hash ({br} > {hr})");
            assert!(bw <= hw, "{shards}/{conns}: more work waiting than with the hash ({bw} > {hw})");
            // Moves stay rare: far fewer than one per connection per phase.
            assert!(moves < (conns as f64) * (WINDOWS / PHASE) as f64, "{shards}/{conns}: {moves} moves");
        }
    }
}

#[test]
fn equal_connections_never_move() {
    // Four equal connections on two shards, placed 2 and 2: nothing to gain, nothing moves.
    let board = Board::new(2);
    let mut loads = Vec::new();
    let mut gates = [MoveGate::default(); 2];
    for s in [0, 1, 0, 1] {
        board.arrived(s);
    }
    for w in 10..100u64 {
        board.publish_busy(0, 400);
        board.publish_busy(1, 400);
        board.read_into(&mut loads);
        for s in [0, 1, 0, 1] {
            let c = Candidate { busy_permille: 200, arrived_ns: 0 };
            assert_eq!(gates[s].should_move(s, c, &loads, w * WINDOW_NS, &TUNING), None);
        }
    }
}
