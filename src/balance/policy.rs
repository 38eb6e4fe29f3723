//! Where a connection should live: placement at accept and moves at transaction boundaries.
//! Pure functions of the board's loads and a few numbers the shard keeps; see the module docs
//! of [`super`] for the reasoning.

use super::board::Load;

/// The knobs (all with `[limits]` overrides: `balance_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// A shard keeps a new connection while it holds no more than the least-loaded shard plus
    /// this many; 0 places every connection on a shard with the fewest.
    pub accept_slack: u32,
    /// A move is considered only when the shard's busy fraction exceeds the target's by more
    /// than this (thousandths).
    pub move_margin_permille: u32,
    /// After moving a connection away, a shard waits this long before the next move; a moved
    /// connection stays where it arrived at least this long.
    pub move_cooldown_ns: u64,
    /// The per-shard connection cap: nothing is placed or moved onto a full shard.
    pub connections_per_shard_max: u32,
}

/// Where a connection accepted on `me` should be served: `me`, or a shard with fewer
/// connections. Ties go to the less busy shard, then to the next one after `me` in order, so
/// shards accepting at the same moment do not all pick shard 0.
pub fn place(me: usize, loads: &[Load], t: &Tuning) -> usize {
    let mine = loads[me].connections;
    let n = loads.len();
    let mut best = me;
    let mut best_key = (mine, loads[me].busy_permille);
    for step in 1..n {
        let s = (me + step) % n;
        let l = loads[s];
        if l.connections >= t.connections_per_shard_max {
            continue;
        }
        let key = (l.connections, l.busy_permille);
        if key < best_key {
            best = s;
            best_key = key;
        }
    }
    if best != me && mine > best_key.0 + t.accept_slack {
        best
    } else if mine >= t.connections_per_shard_max && best != me {
        // Full here but room elsewhere: hand it over rather than evict or refuse.
        best
    } else {
        me
    }
}

/// What a shard remembers between move decisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct MoveGate {
    last_move_ns: Option<u64>,
}

/// One connection at a transaction boundary, as the move decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// The connection's share of its shard's last window, in thousandths.
    pub busy_permille: u32,
    /// When it arrived on this shard.
    pub arrived_ns: u64,
}

impl MoveGate {
    /// Whether the connection `c`, at a transaction boundary on shard `me` at `now_ns`, should
    /// move, and where. A `Some` is a decision: the gate counts it (call only when the move
    /// will be made).
    pub fn should_move(&mut self, me: usize, c: Candidate, loads: &[Load], now_ns: u64, t: &Tuning) -> Option<usize> {
        if let Some(last) = self.last_move_ns {
            if now_ns.saturating_sub(last) < t.move_cooldown_ns {
                return None;
            }
        }
        if now_ns.saturating_sub(c.arrived_ns) < t.move_cooldown_ns {
            return None;
        }
        let here = loads[me];
        if here.connections < 2 {
            // A lone connection only takes its load elsewhere.
            return None;
        }
        let (target, there) = loads
            .iter()
            .enumerate()
            .filter(|&(s, l)| s != me && l.connections < t.connections_per_shard_max)
            .min_by_key(|&(s, l)| (l.busy_permille, l.connections, (s + loads.len() - me) % loads.len()))?;
        let gap = here.busy_permille.saturating_sub(there.busy_permille);
        if gap <= t.move_margin_permille {
            return None;
        }
        // Moving `c` leaves here - c and there + c. Only a connection that does some work and
        // carries at most half the gap moves: the target then stays no busier than this shard
        // was left, so the same connection has no reason to come back (no flip-flop).
        if c.busy_permille == 0 || 2 * c.busy_permille > gap {
            return None;
        }
        self.last_move_ns = Some(now_ns);
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tuning =
        Tuning { accept_slack: 0, move_margin_permille: 200, move_cooldown_ns: 1_000, connections_per_shard_max: 4 };

    fn loads(v: &[(u32, u32)]) -> Vec<Load> {
        v.iter().map(|&(connections, busy_permille)| Load { connections, busy_permille }).collect()
    }

    #[test]
    fn placement_keeps_counts_within_one_whoever_accepts() {
        // Every connection accepted on shard 0 (the worst hash): they still spread.
        for shards in 1..=8usize {
            for conns in 0..=3 * shards {
                let mut l = vec![Load::default(); shards];
                for _ in 0..conns {
                    let s = place(0, &l, &Tuning { connections_per_shard_max: 1000, ..T });
                    l[s].connections += 1;
                }
                let max = l.iter().map(|x| x.connections).max().unwrap();
                let min = l.iter().map(|x| x.connections).min().unwrap();
                assert!(max - min <= 1, "{shards} shards, {conns} connections: {l:?}");
            }
        }
    }

    #[test]
    fn placement_prefers_the_idle_shard_and_skips_full_ones() {
        assert_eq!(place(0, &loads(&[(1, 900), (0, 50), (0, 10)]), &T), 2);
        assert_eq!(place(0, &loads(&[(1, 0), (1, 0)]), &T), 0);
        assert_eq!(place(1, &loads(&[(0, 0), (2, 0), (4, 0)]), &T), 0);
        // Shard 1 is full; shard 2 has fewer connections than us but is at the cap too.
        assert_eq!(place(0, &loads(&[(3, 0), (4, 0), (4, 0)]), &T), 0);
        // We are full and shard 2 has room: hand over even though counts are close.
        assert_eq!(place(0, &loads(&[(4, 0), (4, 0), (3, 0)]), &Tuning { accept_slack: 2, ..T }), 2);
    }

    #[test]
    fn moves_need_a_gap_a_fitting_connection_and_a_cooled_gate() {
        let c = |busy| Candidate { busy_permille: busy, arrived_ns: 0 };
        let l = loads(&[(3, 900), (1, 100)]);
        let mut g = MoveGate::default();
        // Too early for a connection that arrived at 0.
        assert_eq!(g.should_move(0, c(300), &l, 500, &T), None);
        // Carries more than half the gap (800): moving it only moves the hot spot.
        assert_eq!(g.should_move(0, c(401), &l, 5_000, &T), None);
        // Does no work: moving it changes nothing.
        assert_eq!(g.should_move(0, c(0), &l, 5_000, &T), None);
        assert_eq!(g.should_move(0, c(300), &l, 5_000, &T), Some(1));
        // The gate is closed for the cooldown, then open again.
        assert_eq!(g.should_move(0, c(300), &l, 5_500, &T), None);
        assert_eq!(g.should_move(0, c(300), &l, 6_000, &T), Some(1));
        // Within the margin, or alone on the shard: stay.
        let mut g = MoveGate::default();
        assert_eq!(g.should_move(0, c(100), &loads(&[(3, 500), (1, 300)]), 5_000, &T), None);
        assert_eq!(g.should_move(0, c(100), &loads(&[(1, 900), (0, 0)]), 5_000, &T), None);
        // The only lighter shard is full.
        assert_eq!(g.should_move(0, c(100), &loads(&[(3, 900), (4, 0)]), 5_000, &T), None);
    }
}
