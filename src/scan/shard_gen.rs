//! A shard's view of one signature generation, with the yara-x scanners built for it.
//!
//! yara-x scanners borrow the compiled `Rules`, and building one is not free (it instantiates
//! the rules' WASM module, about 0.5 ms), so a shard keeps them alive per generation instead of
//! building one per request, and drops them with the generation instead of leaking it:
//!
//! * one whole-object scanner per rule set, used synchronously inside one call;
//! * a pool of block scanners, lent to a connection for the duration of one object (a block
//!   scanner accumulates matches until `finish`, so it cannot be shared by two objects in
//!   flight). The pool grows on demand up to `yara_block_scanners_max`, which bounds the
//!   virtual memory the instances reserve. When all are lent, the object keeps its
//!   whole-object copy, asks again at every chunk (another object may have given one back; the
//!   copy then catches the scanner up), and is scanned from the copy at the end if it never
//!   gets one. The copy is kept in memory up to `yara_whole_bytes_max` and spooled beyond
//!   ([`super::spool`]), so only an object whose copy cannot be kept (no spool directory, a
//!   spool failure, a refused budget) while every scanner is still lent is not seen by the
//!   streaming rules: that is the named limit `Heuristics.Limits.Exceeded.MaxYaraScanners`,
//!   through `policy.over_limit`. Building
//!   scanners past the cap instead would make the cap meaningless, and blocking the object at
//!   `begin` would refuse objects that a moment later could be scanned.
//!
//! Every scanner records at most `yara_matches_per_pattern_max` matches per pattern. Only an
//! object at least that long can reach it, so only then are the results checked: when a rule
//! whose condition counts matches or tests their offsets has a pattern at the cap, that rule's
//! outcome is not known, and the scan reports it ([`YaraFound::saturated`]) for the caller's
//! over-limit policy; a matching rule that does not depend on the cap still names the threat.
//!
//! The scanners' borrow of the rules is extended to `'static` because the rules live in the
//! `Arc<Generation>` held by the same [`ShardGen`]; every scanner is dropped before that `Arc`
//! (field order here, and [`LentBlock`] holds an `Rc<ShardGen>` that outlives its scanner).
//! `ShardGen` is shard-local (`Rc`), so lending costs no atomic operation.

use crate::signatures::Generation;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

type BlockScanner = yara_x::blocks::Scanner<'static>;
type WholeScanner = yara_x::Scanner<'static>;

#[derive(Default)]
struct Pool {
    blocks: Vec<BlockScanner>,
    created: usize,
    stream_whole: Option<WholeScanner>,
    preview: Option<WholeScanner>,
    whole: Option<WholeScanner>,
    whole_mz: Option<WholeScanner>,
}

/// One generation as seen by one shard.
///
/// Block scanners have no timeout: yara-x's timeout runs in wall time from the first block, so a
/// slow download would be judged by its duration. Scan time is CPU time, measured by the server
/// and charged per transaction (`scan_time_max`); one block's work is bounded by the block. A
/// whole-buffer scan is one synchronous call that nothing can interrupt from outside, so it
/// gets what is left of the object's budget as its timeout (on its own thread, one call's wall
/// time is its CPU time unless the machine is overloaded).
pub struct ShardGen {
    // Declared before `gen` so that every scanner is dropped before the rules it borrows.
    pool: RefCell<Pool>,
    pub gen: Arc<Generation>,
    /// `yara_matches_per_pattern_max`, set on every scanner.
    matches_max: usize,
}

/// What one YARA evaluation found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct YaraFound {
    /// The first matching rule (`YARA.<name>`) whose outcome is known.
    pub rule: Option<String>,
    /// A rule that counts matches or tests offsets had a pattern at the cap on matches: its
    /// outcome is not known (`Heuristics.Limits.Exceeded.MaxYaraMatches`).
    pub saturated: bool,
}

impl ShardGen {
    pub fn new(gen: Arc<Generation>, matches_max: usize) -> Rc<ShardGen> {
        Rc::new(ShardGen { pool: RefCell::new(Pool::default()), gen, matches_max: matches_max.max(1) })
    }

    fn rules_static(rules: &yara_x::Rules) -> &'static yara_x::Rules {
        // SAFETY: `rules` lives inside `self.gen` (an Arc, so its address is stable), and every
        // scanner made from this reference is dropped before `self.gen` (see the module docs).
        unsafe { &*(rules as *const yara_x::Rules) }
    }

    /// Lends a block scanner for the streaming rule set, if there is one and the pool allows.
    pub fn lend_block(self: &Rc<Self>, max: usize) -> Option<LentBlock> {
        let rules = self.gen.yara.stream.as_ref()?;
        let mut pool = self.pool.borrow_mut();
        let scanner = match pool.blocks.pop() {
            Some(s) => s,
            None if pool.created < max => {
                pool.created += 1;
                let mut s = yara_x::blocks::Scanner::new(Self::rules_static(rules));
                s.max_matches_per_pattern(self.matches_max);
                s
            }
            None => return None,
        };
        Some(LentBlock { scanner: Some(scanner), owner: self.clone(), used: false, finished: false })
    }

    /// Runs the monotone streaming rules over a preview: a rule that holds on it holds on the
    /// whole object, so it may answer now. The first matching rule's name.
    pub fn scan_preview_rules(&self, data: &[u8], time_left: Duration) -> Result<YaraFound, yara_x::ScanError> {
        self.scan_whole_buffer(self.gen.yara.preview.as_ref(), |pool| &mut pool.preview, data, time_left)
    }

    /// Runs the streaming rules over one contiguous buffer (the whole object, when no block
    /// scanner was free); the first matching rule's name.
    pub fn scan_stream_rules(&self, data: &[u8], time_left: Duration) -> Result<YaraFound, yara_x::ScanError> {
        self.scan_whole_buffer(self.gen.yara.stream.as_ref(), |pool| &mut pool.stream_whole, data, time_left)
    }

    /// Runs the whole-object rules over the complete object: the set with the rules that need
    /// `MZ` at the start only on an object that starts with it (on any other they are false;
    /// see [`crate::signatures::yara`]).
    pub fn scan_whole_rules(&self, data: &[u8], time_left: Duration) -> Result<YaraFound, yara_x::ScanError> {
        let set = &self.gen.yara;
        if set.whole_mz.is_some() && data.starts_with(b"MZ") {
            self.scan_whole_buffer(set.whole_mz.as_ref(), |pool| &mut pool.whole_mz, data, time_left)
        } else {
            self.scan_whole_buffer(set.whole.as_ref(), |pool| &mut pool.whole, data, time_left)
        }
    }

    /// Scans `data` with `rules` using the pool's scanner in `slot`, built on first use.
    fn scan_whole_buffer(
        &self,
        rules: Option<&yara_x::Rules>,
        slot: impl FnOnce(&mut Pool) -> &mut Option<WholeScanner>,
        data: &[u8],
        time_left: Duration,
    ) -> Result<YaraFound, yara_x::ScanError> {
        let Some(rules) = rules else { return Ok(YaraFound::default()) };
        let mut pool = self.pool.borrow_mut();
        let scanner = slot(&mut pool).get_or_insert_with(|| {
            let mut s = yara_x::Scanner::new(Self::rules_static(rules));
            s.max_matches_per_pattern(self.matches_max);
            s
        });
        scanner.set_timeout(time_left.max(Duration::from_millis(1)));
        let results = scanner.scan(data)?;
        Ok(self.found(&results, data.len() as u64))
    }

    /// The first matching rule, and whether the cap on matches made some rule's outcome
    /// unknown (checked only on an object long enough to reach it, private rules included).
    fn found(&self, results: &yara_x::ScanResults<'_, '_>, len: u64) -> YaraFound {
        let saturable = &self.gen.yara.saturable;
        let at_cap = |r: &yara_x::Rule<'_, '_>| {
            saturable.contains(r.identifier()) && r.patterns().any(|p| p.matches().len() >= self.matches_max)
        };
        let saturated = len >= self.matches_max as u64
            && !saturable.is_empty()
            && (results.matching_rules().include_private(true).any(|r| at_cap(&r))
                || results.non_matching_rules().include_private(true).any(|r| at_cap(&r)));
        let rule = results
            .matching_rules()
            .find(|r| !saturated || !saturable.contains(r.identifier()))
            .map(|r| format!("YARA.{}", r.identifier()));
        YaraFound { rule, saturated }
    }
}

/// A block scanner on loan to one object; goes back to its pool when dropped.
pub struct LentBlock {
    // Declared before `owner`: the scanner must be gone before the generation can be.
    scanner: Option<BlockScanner>,
    owner: Rc<ShardGen>,
    /// Whether a block was scanned for the current object (see [`LentBlock::mark_used`]).
    used: bool,
    /// Whether `finish` ran for the current object. A block scanner keeps its matches until
    /// then, so one given back used but unfinished (the object ended early) is finished on
    /// return: otherwise the next object would start with the previous object's matches.
    finished: bool,
}

impl LentBlock {
    pub fn scanner(&mut self) -> &mut BlockScanner {
        self.scanner.as_mut().expect("present until drop")
    }

    /// Records that a block was scanned. yara-x panics when asked to finish an object of
    /// which it scanned nothing, so an unused scanner is neither finished nor reset.
    pub fn mark_used(&mut self) {
        self.used = true;
    }

    /// Evaluates the rules over everything fed (`len` bytes of object); the first matching
    /// rule's name, and whether the cap on matches made a rule's outcome unknown. The scanner
    /// is reset for its next object.
    pub fn finish(&mut self, len: u64) -> Result<YaraFound, yara_x::ScanError> {
        if !self.used {
            // Nothing was scanned: no pattern can have matched.
            return Ok(YaraFound::default());
        }
        self.finished = true;
        let scanner = self.scanner.as_mut().expect("present until drop");
        let results = scanner.finish()?;
        Ok(self.owner.found(&results, len))
    }
}

impl Drop for LentBlock {
    fn drop(&mut self) {
        if let Some(mut scanner) = self.scanner.take() {
            // finish() marks the scanner for a reset before its next scan. If it fails the
            // scanner's state is unknown, so it is not reused.
            if !self.used || self.finished || scanner.finish().is_ok() {
                self.owner.pool.borrow_mut().blocks.push(scanner);
            } else {
                self.owner.pool.borrow_mut().created -= 1;
            }
        }
    }
}
