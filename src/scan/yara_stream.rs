//! Feeding an object to a yara-x block scanner so that no chunking changes what it finds.
//!
//! yara-x never matches a pattern across two blocks, and it treats a block's edges as the edges
//! of the data (a `fullword` string or `\b` next to an edge passes the word test). The feeder
//! therefore cuts the object into its own blocks, copied into one buffer, whatever the chunks
//! were:
//!
//! * consecutive blocks overlap by at least `span - 1` bytes, where `span` is the longest
//!   match any streamed rule can have (computed from the rules when the generation is built,
//!   [`crate::signatures::yara::YaraSet::overlap`]). A match that does not end inside one
//!   block starts after the next block's start, so every match lies wholly inside some block.
//!   yara-x keeps one match per pattern and start offset, so a match seen in two overlapping
//!   blocks counts once (`#a == 2` stays exact);
//! * a block edge inside the object is placed next to a byte that is neither a letter, a digit,
//!   `_` nor NUL: a block ends before the last such byte in the second half of its new bytes,
//!   and the next one starts after the last such byte within [`EDGE_SEARCH_BYTES`] before
//!   where the overlap requires it to start. For such a byte every word test (ASCII or `wide`,
//!   `fullword` or `\b`) gives the same answer whether the byte is there or the block ends, so
//!   no word test is decided by an edge. Only when those bytes hold no such byte at all (a run
//!   of thousands of letters, digits and NULs) is the edge placed anyway; a word test right at
//!   it can then wrongly pass (a false positive, never a miss);
//! * a block is scanned once at least `block_min` new bytes have arrived (or at the end), so
//!   one byte at a time costs linear work and re-scanning the overlap costs at most half as
//!   much as the new bytes. The buffer is bounded by the overlap plus [`BLOCK_MAX_BYTES`]:
//!   larger chunks are taken in pieces.

use yara_x::blocks::Scanner;
use yara_x::ScanError;

/// New bytes a block holds at least (except the last).
pub const BLOCK_MIN_BYTES: usize = 4096;
/// New bytes taken into the buffer before a block is scanned.
pub const BLOCK_MAX_BYTES: usize = 32 * 1024;
/// How far before the ideal place a block may start, to start after a non-word byte.
pub const EDGE_SEARCH_BYTES: usize = 4096;

/// A byte whose presence or absence past a block edge no word test can tell apart.
fn edge_safe(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b == b'_' || b == 0)
}

pub struct YaraFeeder {
    /// Longest match a streamed rule can have.
    span: usize,
    block_min: usize,
    cap: usize,
    /// Bytes of the object from `base` on: `buf[..scanned]` was scanned in the last block and
    /// is kept as the overlap, the rest is new.
    buf: Vec<u8>,
    base: u64,
    scanned: usize,
    /// Whether any block reached the scanner for this object. yara-x must not be asked to
    /// finish an object it never scanned a block of.
    scanned_any: bool,
}

impl YaraFeeder {
    /// A feeder for rules whose longest match is `span` bytes. The buffer is allocated on
    /// first use.
    pub fn new(span: usize) -> Self {
        let span = span.max(1);
        let keep = span + EDGE_SEARCH_BYTES + 2;
        let block_min = BLOCK_MIN_BYTES.max(2 * keep);
        YaraFeeder {
            span,
            block_min,
            cap: keep + BLOCK_MAX_BYTES.max(block_min),
            buf: Vec::new(),
            base: 0,
            scanned: 0,
            scanned_any: false,
        }
    }

    /// The span this feeder was made for.
    pub fn span(&self) -> usize {
        self.span
    }

    pub fn reset(&mut self) {
        self.buf.clear();
        self.base = 0;
        self.scanned = 0;
        self.scanned_any = false;
    }

    /// Whether any block has been scanned since the last reset.
    pub fn scanned_any(&self) -> bool {
        self.scanned_any
    }

    pub fn feed(&mut self, scanner: &mut Scanner<'_>, mut chunk: &[u8]) -> Result<(), ScanError> {
        if self.buf.capacity() < self.cap {
            self.buf.reserve_exact(self.cap - self.buf.len());
        }
        while !chunk.is_empty() {
            let take = chunk.len().min(self.cap - self.buf.len());
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buf.len() - self.scanned >= self.block_min {
                self.flush(scanner, false)?;
            }
        }
        Ok(())
    }

    /// Scans whatever has not been scanned; call before `finish` on the scanner.
    pub fn finish(&mut self, scanner: &mut Scanner<'_>) -> Result<(), ScanError> {
        if self.buf.len() > self.scanned {
            self.flush(scanner, true)?;
        }
        Ok(())
    }

    fn flush(&mut self, scanner: &mut Scanner<'_>, last: bool) -> Result<(), ScanError> {
        let len = self.buf.len();
        // The block ends just before an edge-safe byte near the end of what is buffered.
        let end = if last {
            len
        } else {
            let lo = len.saturating_sub(self.block_min / 2).max(self.scanned + 1);
            (lo..len).rev().find(|&i| edge_safe(self.buf[i])).unwrap_or(len)
        };
        self.scanned_any = true;
        scanner.scan(self.base as usize, &self.buf[..end])?;
        if last {
            self.scanned = len;
            return Ok(());
        }
        // The next block starts at or before `end + 1 - span`, just after an edge-safe byte.
        let want = (end + 1).saturating_sub(self.span);
        let start = if want == 0 {
            0
        } else {
            let lo = want.saturating_sub(EDGE_SEARCH_BYTES).max(1);
            (lo..=want).rev().find(|&i| edge_safe(self.buf[i - 1])).unwrap_or(want)
        };
        self.buf.drain(..start);
        self.base += start as u64;
        self.scanned = end - start;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;
    use crate::signatures::yara::{compile, YaraSet};
    use std::path::PathBuf;

    fn rules(src: &str) -> YaraSet {
        compile(&[(PathBuf::from("t.yar"), src.to_string())], &mut Vec::new()).unwrap()
    }

    fn run(set: &YaraSet, data: &[u8], cuts: &[usize]) -> Vec<String> {
        let rules = set.stream.as_ref().unwrap();
        let mut scanner = Scanner::new(rules);
        let mut feeder = YaraFeeder::new(set.overlap);
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            feeder.feed(&mut scanner, &data[prev..cut]).unwrap();
            prev = cut;
        }
        feeder.finish(&mut scanner).unwrap();
        let results = scanner.finish().unwrap();
        results.matching_rules().map(|r| r.identifier().to_string()).collect()
    }

    /// What yara-x says about the whole object in one piece.
    fn whole(set: &YaraSet, data: &[u8]) -> Vec<String> {
        let mut scanner = yara_x::Scanner::new(set.stream.as_ref().unwrap());
        scanner.scan(data).unwrap().matching_rules().map(|r| r.identifier().to_string()).collect()
    }

    fn every_way(set: &YaraSet, data: &[u8], extra_cuts: &[usize]) -> Vec<String> {
        let want = whole(set, data);
        for_each_split(data.len(), |cuts| {
            assert_eq!(run(set, data, cuts), want, "cuts {:?}…", &cuts[..cuts.len().min(3)]);
        });
        for &cut in extra_cuts {
            for cuts in [vec![cut], vec![cut - 1, cut, cut + 1], (1..data.len()).step_by(cut.max(4096)).chain([cut]).collect::<std::collections::BTreeSet<_>>().into_iter().collect()] {
                assert_eq!(run(set, data, &cuts), want, "cuts {cuts:?}");
            }
        }
        want
    }

    #[test]
    fn boundaries_do_not_hide_strings() {
        let set = rules(
            r#"rule Two { strings: $a = "needle-one" $b = "needle-two" condition: $a and $b }
               rule Hex { strings: $h = { de ad ?? ef } condition: $h }
               rule Count { strings: $c = "xyz" condition: #c == 2 }"#,
        );
        let mut data = vec![b'.'; 20_000];
        data[100..110].copy_from_slice(b"needle-one");
        data[15_000..15_010].copy_from_slice(b"needle-two");
        data[9_000..9_004].copy_from_slice(&[0xde, 0xad, 0x00, 0xef]);
        data[5_000..5_003].copy_from_slice(b"xyz");
        data[12_000..12_003].copy_from_slice(b"xyz");
        assert_eq!(every_way(&set, &data, &[105, 5001, 9_002, 12_001, 15_005]), ["Two", "Hex", "Count"]);
    }

    // Issue 13, item 7a: strings and jumps longer than any fixed overlap, split anywhere.
    #[test]
    fn long_strings_and_jumps_straddling_an_edge_are_found() {
        let long: String = (0..3000).map(|i| format!("{:02x} ", (i * 7 % 251) as u8)).collect();
        let set = rules(&format!(
            "rule Long {{ strings: $l = {{ {long} }} condition: $l }}\n\
             rule Jump {{ strings: $j = {{ 4d 5a 90 [2000-2500] 50 45 00 00 }} condition: $j }}\n\
             rule Re {{ strings: $r = /BEGIN[a-z]{{1500,1800}}END/ condition: $r }}\n"
        ));
        assert!(set.overlap >= 3000, "{}", set.overlap);
        let mut data = vec![b'#'; 40_000];
        let bytes: Vec<u8> = (0..3000).map(|i| (i * 7 % 251) as u8).collect();
        data[1000..4000].copy_from_slice(&bytes);
        data[10_000..10_003].copy_from_slice(&[0x4d, 0x5a, 0x90]);
        data[12_203..12_207].copy_from_slice(&[0x50, 0x45, 0, 0]);
        data[20_000..20_005].copy_from_slice(b"BEGIN");
        data[20_005..21_605].fill(b'q');
        data[21_605..21_608].copy_from_slice(b"END");
        assert_eq!(every_way(&set, &data, &[2500, 11_000, 12_205, 20_900]), ["Long", "Jump", "Re"]);
    }

    // Issue 13, item 7b: a block edge is not a word boundary.
    #[test]
    fn fullword_and_word_boundaries_ignore_block_edges() {
        let set = rules(
            r#"rule Word { strings: $w = "evil" fullword condition: $w }
               rule Wide { strings: $w = "evil" wide fullword condition: $w }
               rule Bound { strings: $b = /\bbad\b/ condition: $b }
               rule Offset { strings: $o = "at-exact" condition: $o at 7000 and #o == 1 }"#,
        );
        let mut data = vec![b'a'; 12_000];
        // Long runs of letters, with a few spaces block edges can use.
        for i in (100..12_000).step_by(700) {
            data[i] = b' ';
        }
        // Glued to letters: no rule may match, wherever a block edge falls.
        data[5000..5004].copy_from_slice(b"evil");
        data[5999] = 0; // "a\0" before it: a wide letter
        data[6000..6008].copy_from_slice(b"e\0v\0i\0l\0");
        data[8000..8003].copy_from_slice(b"bad");
        data[7000..7008].copy_from_slice(b"at-exact");
        let cuts = [5000, 5004, 5999, 6000, 6001, 6008, 6009, 8000, 8003];
        assert_eq!(every_way(&set, &data, &cuts), ["Offset"]);
        // Separated, they match.
        data[4999] = b' ';
        data[5004] = b'.';
        data[5999] = b' ';
        data[7999] = b'-';
        data[8003] = b'-';
        assert_eq!(every_way(&set, &data, &cuts), ["Word", "Wide", "Bound", "Offset"]);
    }
}
