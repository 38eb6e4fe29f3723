//! A shard's busy fraction over a short window, from numbers the server hands in (sans-IO: no
//! clock is read here).

/// Busy time accumulated against elapsed time; every `window_ns` the fraction of the window
/// spent busy becomes the published value, smoothed with the previous one so that a single
/// burst does not trigger moves.
#[derive(Debug, Clone)]
pub struct BusyWindow {
    window_ns: u64,
    started_ns: u64,
    busy_ns: u64,
    /// The smoothed fraction, in thousandths.
    permille: u32,
}

impl BusyWindow {
    pub fn new(window_ns: u64, now_ns: u64) -> BusyWindow {
        BusyWindow { window_ns: window_ns.max(1), started_ns: now_ns, busy_ns: 0, permille: 0 }
    }

    /// Adds time the shard spent working (parsing, scanning, writing).
    pub fn add_busy(&mut self, ns: u64) {
        self.busy_ns = self.busy_ns.saturating_add(ns);
    }

    /// At `now_ns`: `Some(permille)` when a window has closed (the new smoothed value, to
    /// publish), `None` while the current one is still open.
    pub fn tick(&mut self, now_ns: u64) -> Option<u32> {
        let elapsed = now_ns.saturating_sub(self.started_ns);
        if elapsed < self.window_ns {
            return None;
        }
        let raw = ((self.busy_ns.min(elapsed) as u128 * 1000) / elapsed as u128) as u32;
        // Half the new window, half the old value: a step settles within a few windows.
        self.permille = (self.permille + raw).div_ceil(2).min(1000);
        self.started_ns = now_ns;
        self.busy_ns = 0;
        Some(self.permille)
    }

    pub fn permille(&self) -> u32 {
        self.permille
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_closes_on_time_and_smooths_steps() {
        let mut w = BusyWindow::new(100, 0);
        w.add_busy(50);
        assert_eq!(w.tick(99), None);
        assert_eq!(w.tick(100), Some(250)); // half of 500
        w.add_busy(100);
        assert_eq!(w.tick(200), Some(625)); // (250 + 1000) / 2, rounded up
        assert_eq!(w.tick(300), Some(313));
        // Busy time beyond the elapsed time (a long scan counted at its end) caps at 100 %.
        w.add_busy(10_000);
        assert_eq!(w.tick(400), Some(657));
    }
}
