//! Feeding an object to a yara-x block scanner so that strings straddling chunk boundaries
//! are still seen.
//!
//! yara-x never matches a pattern across two blocks. So besides each chunk (scanned in place,
//! at its offset), a small stitched block is scanned at every boundary: the last `overlap`
//! bytes already seen followed by the first `overlap` bytes of the new chunk. Any string of up
//! to `overlap + 1` bytes that straddles the boundary lies wholly inside it. yara-x allows
//! overlapping blocks and keeps one match per pattern and start offset, so a string seen in
//! both blocks counts once. Strings longer than the overlap can still be missed when they
//! straddle a boundary; the README says so.
//!
//! Tiny chunks are staged (copied) into one buffer and scanned when it holds enough, so a
//! client sending one byte at a time costs linear work, not one stitched scan per byte.

use yara_x::blocks::Scanner;
use yara_x::ScanError;

/// Chunks smaller than this are staged rather than scanned on their own.
pub const STAGE_MIN_BYTES: usize = 4096;

pub struct YaraFeeder {
    overlap: usize,
    stage_min: usize,
    /// `[tail | staged bytes]`; `buf_base` is the object offset of `buf[0]`.
    buf: Vec<u8>,
    tail_len: usize,
    buf_base: u64,
    /// Bytes fed so far.
    offset: u64,
    /// Whether any block reached the scanner for this object. yara-x must not be asked to
    /// finish an object it never scanned a block of.
    scanned: bool,
}

impl YaraFeeder {
    pub fn new(overlap: usize) -> Self {
        let stage_min = STAGE_MIN_BYTES.max(2 * overlap);
        YaraFeeder {
            overlap,
            stage_min,
            buf: Vec::with_capacity(stage_min * 2 + overlap),
            tail_len: 0,
            buf_base: 0,
            offset: 0,
            scanned: false,
        }
    }

    pub fn reset(&mut self) {
        self.buf.clear();
        self.tail_len = 0;
        self.buf_base = 0;
        self.offset = 0;
        self.scanned = false;
    }

    /// Whether any block has been scanned since the last reset.
    pub fn scanned_any(&self) -> bool {
        self.scanned
    }

    pub fn feed(&mut self, scanner: &mut Scanner<'_>, chunk: &[u8]) -> Result<(), ScanError> {
        if chunk.len() < self.stage_min {
            self.buf.extend_from_slice(chunk);
            self.offset += chunk.len() as u64;
            if self.buf.len() - self.tail_len >= self.stage_min {
                self.flush(scanner)?;
            }
            return Ok(());
        }
        if self.buf.len() > self.tail_len {
            self.flush(scanner)?;
        }
        // The stitched boundary block, then the chunk in place.
        self.scanned = true;
        if self.tail_len > 0 {
            let prefix = self.overlap.min(chunk.len());
            self.buf.extend_from_slice(&chunk[..prefix]);
            scanner.scan(self.buf_base as usize, &self.buf)?;
        }
        scanner.scan(self.offset as usize, chunk)?;
        self.offset += chunk.len() as u64;
        self.buf.clear();
        let keep = self.overlap.min(chunk.len());
        self.buf.extend_from_slice(&chunk[chunk.len() - keep..]);
        self.tail_len = keep;
        self.buf_base = self.offset - keep as u64;
        Ok(())
    }

    /// Scans whatever is staged; call before `finish` on the scanner.
    pub fn finish(&mut self, scanner: &mut Scanner<'_>) -> Result<(), ScanError> {
        if self.buf.len() > self.tail_len {
            self.flush(scanner)?;
        }
        Ok(())
    }

    fn flush(&mut self, scanner: &mut Scanner<'_>) -> Result<(), ScanError> {
        self.scanned = true;
        scanner.scan(self.buf_base as usize, &self.buf)?;
        let keep = self.overlap.min(self.buf.len());
        let drop = self.buf.len() - keep;
        self.buf.drain(..drop);
        self.buf_base += drop as u64;
        self.tail_len = keep;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;

    fn run(rules: &yara_x::Rules, data: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut scanner = Scanner::new(rules);
        let mut feeder = YaraFeeder::new(64);
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            feeder.feed(&mut scanner, &data[prev..cut]).unwrap();
            prev = cut;
        }
        feeder.finish(&mut scanner).unwrap();
        let results = scanner.finish().unwrap();
        results.matching_rules().map(|r| r.identifier().to_string()).collect()
    }

    #[test]
    fn boundaries_do_not_hide_strings() {
        let rules = yara_x::compile(
            r#"rule Two { strings: $a = "needle-one" $b = "needle-two" condition: $a and $b }
               rule Hex { strings: $h = { de ad ?? ef } condition: $h }
               rule Count { strings: $c = "xyz" condition: #c == 2 }"#,
        )
        .unwrap();
        let mut data = vec![b'.'; 20_000];
        data[100..110].copy_from_slice(b"needle-one");
        data[15_000..15_010].copy_from_slice(b"needle-two");
        data[9_000..9_004].copy_from_slice(&[0xde, 0xad, 0x00, 0xef]);
        data[5_000..5_003].copy_from_slice(b"xyz");
        data[12_000..12_003].copy_from_slice(b"xyz");
        let whole = run(&rules, &data, &[]);
        assert_eq!(whole, ["Two", "Hex", "Count"]);
        for_each_split(data.len(), |cuts| {
            assert_eq!(run(&rules, &data, cuts), whole, "cuts {:?}", &cuts[..cuts.len().min(3)])
        });
        // Big chunks with boundaries inside every string.
        for cut in [105, 9_002, 12_001, 15_005] {
            let cuts: Vec<usize> =
                (1..4).map(|i| i * 4999).chain([cut]).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            assert_eq!(run(&rules, &data, &cuts), whole);
        }
    }
}
