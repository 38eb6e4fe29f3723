//! The streaming literal matcher (`icapd::scan::literal`), against brute force.
//!
//! The payload starts with the patterns: a count byte (1 to 6 patterns), then per pattern a
//! length byte (1 to 40 bytes), a mask byte (odd: a mask follows the bytes) and the bytes; the
//! rest is the text. Flags are unused. Patterns are short so that the fuzzer can make them
//! occur, and up to 40 bytes so that every path is built: the short-anchor automaton, 4-byte
//! and 8-byte strided tiers, and patterns longer than the staging threshold's minimum apart.
//!
//! Checks: the occurrences reported (pattern id and end offset, each exactly once) equal the
//! brute-force list, for one whole-window scan, for `scan_window` with a nonzero
//! `report_after`, and for the stream fed whole, at the fuzzer's split points and byte by byte.
#![no_main]

use icapd::scan::literal::{LiteralSet, LiteralStream, Pattern};
use icapd_fuzz::{every_byte, piece_ends, Input};
use libfuzzer_sys::fuzz_target;

fn read_patterns(mut p: &[u8]) -> Option<(Vec<Pattern>, &[u8])> {
    let (&count, rest) = p.split_first()?;
    p = rest;
    let mut patterns = Vec::new();
    for _ in 0..(count % 6) + 1 {
        let (&len, rest) = p.split_first()?;
        let (&masked, rest) = rest.split_first()?;
        let len = (len % 40) as usize + 1;
        let need = if masked & 1 == 1 { 2 * len } else { len };
        if rest.len() < need {
            return None;
        }
        let bytes = rest[..len].to_vec();
        let mask = (masked & 1 == 1).then(|| rest[len..2 * len].to_vec());
        patterns.push(Pattern { bytes, mask });
        p = &rest[need..];
    }
    Some((patterns, p))
}

fn brute_force(patterns: &[Pattern], text: &[u8]) -> Vec<(u32, u64)> {
    let mut found = Vec::new();
    for (id, p) in patterns.iter().enumerate() {
        let len = p.bytes.len();
        for end in len..=text.len() {
            let window = &text[end - len..end];
            let hit = match &p.mask {
                None => window == p.bytes.as_slice(),
                Some(mask) => window.iter().zip(&p.bytes).zip(mask).all(|((&d, &b), &m)| d & m == b & m),
            };
            if hit {
                found.push((id as u32, end as u64));
            }
        }
    }
    found.sort_unstable();
    found
}

fn stream(set: &LiteralSet, s: &mut LiteralStream, text: &[u8], cuts: &[usize]) -> Vec<(u32, u64)> {
    s.reset();
    let mut found = Vec::new();
    let mut prev = 0;
    for end in piece_ends(cuts, text.len()) {
        s.feed(set, &text[prev..end], &mut |id, at| found.push((id, at)));
        prev = end;
    }
    s.finish(set, &mut |id, at| found.push((id, at)));
    assert_eq!(s.offset(), text.len() as u64);
    found.sort_unstable();
    found
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let Some((patterns, text)) = read_patterns(input.payload) else { return };
    let Ok(set) = LiteralSet::new(patterns.clone()) else { return };
    let want = brute_force(&patterns, text);

    let mut window = Vec::new();
    set.scan_window(text, 0, &mut |id, end| window.push((id, end as u64)));
    window.sort_unstable();
    assert_eq!(window, want, "scan_window over the whole text");

    let cuts = icapd_fuzz::cuts_of(input.gaps, text.len());
    if let Some(&after) = cuts.first() {
        let mut late = Vec::new();
        set.scan_window(text, after, &mut |id, end| late.push((id, end as u64)));
        late.sort_unstable();
        let want_late: Vec<_> = want.iter().copied().filter(|&(_, end)| end > after as u64).collect();
        assert_eq!(late, want_late, "scan_window reporting after {after}");
    }

    let mut s = LiteralStream::new(&set);
    assert_eq!(stream(&set, &mut s, text, &[]), want, "stream, whole");
    assert_eq!(stream(&set, &mut s, text, &cuts), want, "stream, split at {cuts:?}");
    assert_eq!(stream(&set, &mut s, text, &every_byte(text.len())), want, "stream, byte by byte");
});
