//! Tests: fixed tables for each feature, chunking invariance against a brute-force reference,
//! and a randomized property test. Every comparison is on the sorted multiset of
//! `(pattern id, absolute end)` reports, so both lost and duplicated matches fail.

use super::*;

/// Deterministic xorshift64* generator; tests must not depend on outside randomness.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..n).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}

type Reports = Vec<(u32, u64)>;

/// Brute force over every position and pattern.
fn naive(patterns: &[Pattern], data: &[u8]) -> Reports {
    let mut out = Vec::new();
    for (id, p) in patterns.iter().enumerate() {
        let len = p.bytes.len();
        for start in 0..=data.len().saturating_sub(len) {
            if start + len > data.len() {
                break;
            }
            let hit = (0..len).all(|i| {
                let m = p.mask.as_ref().map_or(0xFF, |m| m[i]);
                data[start + i] & m == p.bytes[i] & m
            });
            if hit {
                out.push((id as u32, (start + len) as u64));
            }
        }
    }
    out.sort_unstable();
    out
}

fn window_reports(set: &LiteralSet, data: &[u8]) -> Reports {
    let mut out = Vec::new();
    set.scan_window(data, 0, &mut |id, end| out.push((id, end as u64)));
    out.sort_unstable();
    out
}

/// Feeds `data` in chunks of the given lengths (the last chunk takes the rest) and checks the
/// timing promises on the way: nothing is reported before its bytes arrive, a chunk of at
/// least `STAGE_MAX` bytes reports everything it completes, and at most `STAGE_MAX − 1`
/// bytes are ever held back.
fn stream_reports(
    set: &LiteralSet,
    stream: &mut LiteralStream,
    data: &[u8],
    lens: &[usize],
    reference: &Reports,
) -> Reports {
    stream.reset();
    let mut ends: Vec<u64> = reference.iter().map(|r| r.1).collect();
    ends.sort_unstable();
    let mut out: Reports = Vec::new();
    let mut at = 0;
    let mut lens = lens.iter().copied();
    while at < data.len() {
        let n = lens.next().unwrap_or(data.len() - at).min(data.len() - at);
        let before = out.len();
        stream.feed(set, &data[at..at + n], &mut |id, end| out.push((id, end)));
        at += n;
        assert_eq!(stream.offset(), at as u64);
        assert!(out[before..].iter().all(|&(_, end)| end <= at as u64), "reported a match before its bytes");
        let settled = if n >= stream::STAGE_MAX { at } else { at.saturating_sub(stream::STAGE_MAX - 1) };
        let due = ends.partition_point(|&end| end <= settled as u64);
        assert!(out.len() >= due, "held back a match past the staging bound: {} < {due} at {at}", out.len());
    }
    stream.finish(set, &mut |id, end| out.push((id, end)));
    // A second finish must not report anything again.
    stream.finish(set, &mut |id, end| out.push((id, end)));
    out.sort_unstable();
    out
}

/// Checks `patterns` on `data` against the reference: whole window, whole chunk, every single
/// split point, byte by byte, and `random_splits` random chunkings.
fn check_all_chunkings(patterns: &[Pattern], data: &[u8], random_splits: usize, seed: u64) -> Reports {
    let set = LiteralSet::new(patterns.to_vec()).expect("valid patterns");
    let want = naive(patterns, data);
    assert_eq!(window_reports(&set, data), want, "scan_window over the whole object");
    let split = LiteralSet::build(patterns.to_vec(), plan_every_length).expect("valid patterns");
    assert_eq!(window_reports(&split, data), want, "scan_window with one tier per anchor length");
    let mut stream = LiteralStream::new(&set);
    assert_eq!(stream_reports(&set, &mut stream, data, &[data.len()], &want), want, "one chunk");
    for split in 0..=data.len() {
        assert_eq!(stream_reports(&set, &mut stream, data, &[split], &want), want, "split at {split}");
    }
    let ones = vec![1; data.len()];
    assert_eq!(stream_reports(&set, &mut stream, data, &ones, &want), want, "byte by byte");
    let mut rng = Rng::new(seed);
    for round in 0..random_splits {
        let mut lens = Vec::new();
        let mut total = 0;
        while total < data.len() {
            // Mix tiny, medium and large chunks, zero-length ones included.
            let n = match rng.below(4) {
                0 => rng.below(4),
                1 => rng.below(64),
                2 => rng.below(1500),
                _ => rng.below(5000),
            };
            lens.push(n);
            total += n;
        }
        assert_eq!(stream_reports(&set, &mut stream, data, &lens, &want), want, "random chunking {round}: {lens:?}");
    }
    want
}

fn hex(s: &str) -> Pattern {
    Pattern::from_hex(s).expect("valid hex")
}

fn ends(reports: &Reports, id: u32) -> Vec<u64> {
    reports.iter().filter(|r| r.0 == id).map(|r| r.1).collect()
}

#[test]
fn exact_patterns_short_and_long() {
    let patterns = vec![
        Pattern::exact(*b"needle"),
        Pattern::exact(*b"a considerably longer needle"),
        Pattern::exact(*b"x"),
        Pattern::exact(*b"haystack!"),
    ];
    let data = b"x haystack! with a needle and a considerably longer needle, x";
    let r = check_all_chunkings(&patterns, data, 20, 1);
    assert_eq!(ends(&r, 0), vec![25, 58]);
    assert_eq!(ends(&r, 1), vec![58]);
    assert_eq!(ends(&r, 2), vec![1, 61]);
    assert_eq!(ends(&r, 3), vec![11]);
}

#[test]
fn masked_any_byte_and_nibbles() {
    let patterns = vec![
        hex("4d5a ?? 00 50 45 00 00 4c 01"),  // MZ, any byte, then a PE-ish run
        hex("de ad be ef ?f ca fe ba be"),    // low-nibble wildcard
        hex("01 02 03 04 05 06 07 08 0? 10"), // high-nibble wildcard at the end
        hex("?? ?? 41 42 43 ?? ??"),          // wildcards around a short run
    ];
    let mut data = Vec::new();
    data.extend_from_slice(&[0x4d, 0x5a, 0x99, 0x00, 0x50, 0x45, 0x00, 0x00, 0x4c, 0x01]);
    data.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x3f, 0xca, 0xfe, 0xba, 0xbe]);
    data.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x3e, 0xca, 0xfe, 0xba, 0xbe]); // nibble mismatch
    data.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0x0c, 0x10]);
    data.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0x1c, 0x10]); // high nibble mismatch
    data.extend_from_slice(b"zzABCzz ABC!");
    let r = check_all_chunkings(&patterns, &data, 20, 2);
    assert_eq!(ends(&r, 0), vec![10]);
    assert_eq!(ends(&r, 1), vec![19]);
    assert_eq!(ends(&r, 2), vec![38]);
    assert_eq!(ends(&r, 3), vec![55]);
}

#[test]
fn overlapping_occurrences() {
    let patterns = vec![
        Pattern::exact(*b"aa"),
        Pattern::exact(*b"aaaaaaaaaa"),       // strided, self-overlapping
        Pattern::exact(*b"abababababab"),     // period 2
        hex("61 ?? 61 ?? 61 61 61 61 61 61"), // masked, overlapping itself
    ];
    let mut data = b"aaa".to_vec();
    data.extend_from_slice(b"-aaaaaaaaaaaaaa-abababababababab");
    let r = check_all_chunkings(&patterns, &data, 20, 3);
    assert_eq!(ends(&r, 0).len(), 2 + 13);
    assert_eq!(ends(&r, 1).len(), 5);
    assert_eq!(ends(&r, 2).len(), 3);
    assert_eq!(ends(&r, 3).len(), 7); // the wildcards also match the "-" separator
}

#[test]
fn patterns_sharing_prefixes_and_grams() {
    let patterns = vec![
        Pattern::exact(*b"signature-prefix-one"),
        Pattern::exact(*b"signature-prefix-two"),
        Pattern::exact(*b"signature-prefix"),
        Pattern::exact(*b"signature-prefix-one-and-more"),
        Pattern::exact(*b"prefix-one"),
    ];
    let data = b"..signature-prefix-one-and-more..signature-prefix-two..signature-prefix-thr";
    let r = check_all_chunkings(&patterns, data, 20, 4);
    assert_eq!(ends(&r, 0), vec![22]);
    assert_eq!(ends(&r, 1), vec![53]);
    assert_eq!(ends(&r, 2), vec![18, 49, 71]);
    assert_eq!(ends(&r, 3), vec![31]);
    assert_eq!(ends(&r, 4), vec![22]);
}

#[test]
fn every_length_from_one_to_past_q() {
    let text = b"0123456789abcdefghij";
    let patterns: Vec<Pattern> = (1..=text.len()).map(|n| Pattern::exact(&text[text.len() - n..])).collect();
    let mut data = b"__".to_vec();
    data.extend_from_slice(text);
    data.extend_from_slice(b"__");
    data.extend_from_slice(&text[5..]);
    let r = check_all_chunkings(&patterns, &data, 20, 5);
    for (id, p) in patterns.iter().enumerate() {
        let expected = if p.bytes.len() <= text.len() - 5 { 2 } else { 1 };
        assert_eq!(ends(&r, id as u32).len(), expected, "pattern of length {}", p.bytes.len());
    }
}

#[test]
fn occurrences_at_object_start_and_end() {
    let patterns = vec![
        Pattern::exact(*b"BEGIN-MARK"),
        Pattern::exact(*b"END-MARK!!"),
        Pattern::exact(*b"B"),
        Pattern::exact(*b"!"),
    ];
    let data = b"BEGIN-MARK in the middle END-MARK!!";
    let r = check_all_chunkings(&patterns, data, 10, 6);
    assert_eq!(ends(&r, 0), vec![10]);
    assert_eq!(ends(&r, 1), vec![data.len() as u64]);
    assert_eq!(ends(&r, 2), vec![1]);
    assert_eq!(ends(&r, 3), vec![data.len() as u64 - 1, data.len() as u64]);
    // An object that is exactly one pattern.
    let r = check_all_chunkings(&patterns[..1], b"BEGIN-MARK", 5, 7);
    assert_eq!(r, vec![(0, 10)]);
}

#[test]
fn empty_set_matches_nothing() {
    let set = LiteralSet::new(Vec::new()).expect("empty set");
    assert_eq!(set.len(), 0);
    assert!(set.is_empty());
    assert_eq!(set.max_len(), 0);
    let data = vec![7u8; 3000];
    assert!(window_reports(&set, &data).is_empty());
    check_all_chunkings(&[], &data, 5, 8);
}

#[test]
fn empty_object_and_empty_chunks() {
    let set = LiteralSet::new(vec![Pattern::exact(*b"abc")]).expect("set");
    let mut s = LiteralStream::new(&set);
    let mut n = 0;
    s.feed(&set, b"", &mut |_, _| n += 1);
    s.finish(&set, &mut |_, _| n += 1);
    assert_eq!((n, s.offset()), (0, 0));
    s.feed(&set, b"ab", &mut |_, _| n += 1);
    s.feed(&set, b"", &mut |_, _| n += 1);
    s.feed(&set, b"c", &mut |_, _| n += 1);
    s.finish(&set, &mut |_, _| n += 1);
    assert_eq!(n, 1);
}

#[test]
fn duplicate_patterns_are_each_reported() {
    let patterns = vec![
        Pattern::exact(*b"duplicated signature"),
        Pattern::exact(*b"dup"),
        Pattern::exact(*b"duplicated signature"),
        Pattern::exact(*b"dup"),
        hex("64 75 70 6c 69 63 61 74 65 64 20 73 69 67 6e 61 74 75 72 65"), // same bytes, all-exact mask
    ];
    let data = b"a duplicated signature, dup";
    let r = check_all_chunkings(&patterns, data, 10, 9);
    assert_eq!(r, vec![(0, 22), (1, 5), (1, 27), (2, 22), (3, 5), (3, 27), (4, 22)]);
}

#[test]
fn build_errors_name_the_pattern() {
    let ok = Pattern::exact(*b"fine");
    let err = |p: Pattern| LiteralSet::new(vec![ok.clone(), p]).err().map(|e| format!("{e:?}"));
    assert_eq!(err(Pattern::exact(Vec::new())).as_deref(), Some("Empty(1)"));
    assert_eq!(err(Pattern::exact(vec![1; PATTERN_LEN_MAX + 1])).as_deref(), Some("TooLong(1)"));
    assert!(LiteralSet::new(vec![Pattern::exact(vec![1; PATTERN_LEN_MAX])]).is_ok());
    assert_eq!(err(hex("?? 4? ?5")).as_deref(), Some("AllWildcard(1)"));
    assert_eq!(err(Pattern { bytes: vec![1, 2], mask: Some(vec![0xFF]) }).as_deref(), Some("MaskLength(1)"));
}

#[test]
fn hex_parsing() {
    assert_eq!(hex("4d5A"), Pattern::exact(vec![0x4d, 0x5a]));
    assert_eq!(hex("4d ?? 4? ?a"), Pattern { bytes: vec![0x4d, 0, 0x40, 0x0a], mask: Some(vec![0xFF, 0, 0xF0, 0x0F]) });
    assert_eq!(Pattern::from_hex("4d5"), Err(HexError { at: 2 }));
    assert_eq!(Pattern::from_hex("4g"), Err(HexError { at: 1 }));
}

#[test]
fn report_after_bounds_window_reports() {
    let set = LiteralSet::new(vec![Pattern::exact(*b"abcdefghijkl"), Pattern::exact(*b"ab")]).expect("set");
    let data = b"abcdefghijkl abcdefghijkl";
    let mut got = Vec::new();
    set.scan_window(data, 12, &mut |id, end| got.push((id, end)));
    got.sort_unstable();
    assert_eq!(got, vec![(0, 25), (1, 15)]);
    got.clear();
    set.scan_window(data, 11, &mut |id, end| got.push((id, end)));
    got.sort_unstable();
    assert_eq!(got, vec![(0, 12), (0, 25), (1, 15)]);
    got.clear();
    set.scan_window(data, data.len(), &mut |id, end| got.push((id, end)));
    assert!(got.is_empty());
}

#[test]
fn set_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<LiteralSet>();
    shared::<LiteralStream>();
}

#[test]
fn stream_reset_reuses_state() {
    let set = LiteralSet::new(vec![Pattern::exact(*b"0123456789abcdef")]).expect("set");
    let mut s = LiteralStream::new(&set);
    let mut got = Vec::new();
    s.feed(&set, b"xx0123456789abc", &mut |id, end| got.push((id, end)));
    s.reset();
    // After reset, the old tail must not combine with the new object's bytes.
    s.feed(&set, b"def", &mut |id, end| got.push((id, end)));
    s.finish(&set, &mut |id, end| got.push((id, end)));
    assert!(got.is_empty());
    s.reset();
    s.feed(&set, b"0123456789abcdef", &mut |id, end| got.push((id, end)));
    s.finish(&set, &mut |id, end| got.push((id, end)));
    assert_eq!(got, vec![(0, 16)]);
}

#[test]
fn planner_splits_only_when_it_pays() {
    // A few short anchors beside a large set: the short ones get their own stride-1 tier.
    let mut sorted: Vec<(u32, usize)> = (0..5).map(|id| (id, 8)).collect();
    sorted.extend((5..20_005).map(|id| (id, 32)));
    let tiers = plan_tiers(&sorted);
    assert_eq!(tiers.iter().map(|(l, m)| (*l, m.len())).collect::<Vec<_>>(), vec![(8, 5), (32, 20_000)]);
    // Similar anchors (the bench's 16..=32 lengths) stay in one tier at any size.
    for count in [10u32, 1_000, 100_000] {
        let sorted: Vec<(u32, usize)> = (0..count).map(|id| (id, 16 + (id as usize * 7) % 17)).collect::<Vec<_>>();
        let mut sorted = sorted;
        sorted.sort_unstable_by_key(|&(id, l)| (l, id));
        let tiers = plan_tiers(&sorted);
        assert_eq!(tiers.len(), 1, "{count} patterns");
        assert_eq!(tiers[0].0, 16);
    }
    // Every entry lands in exactly one tier, in order.
    let sorted: Vec<(u32, usize)> = (0..3000).map(|id| (id, 4 + id as usize % 29)).collect();
    let mut sorted = sorted;
    sorted.sort_unstable_by_key(|&(id, l)| (l, id));
    let covered: Vec<(u32, usize)> = plan_tiers(&sorted).into_iter().flat_map(|(_, m)| m.iter().copied()).collect();
    assert_eq!(covered, sorted);
    assert!(plan_tiers(&[]).is_empty());
}

#[test]
fn many_tiers_scan_correctly() {
    // Anchors of every length from 1 to 40, each length in its own tier (the test planner),
    // so every tier shape and the short path run side by side.
    let mut rng = Rng::new(10);
    let all: Vec<u8> = (0..=255).collect();
    let patterns: Vec<Pattern> =
        (1..=40).flat_map(|len| [rng.bytes(len, &all), rng.bytes(len, b"ab")]).map(Pattern::exact).collect();
    let set = LiteralSet::build(patterns.clone(), plan_every_length).expect("set");
    assert!(set.tiers.len() >= 25, "{set:?}");
    let mut data = rng.bytes(8_000, &all);
    for (i, p) in patterns.iter().enumerate() {
        let at = 20 + i * 95;
        data[at..at + p.bytes.len()].copy_from_slice(&p.bytes);
    }
    let want = naive(&patterns, &data);
    assert_eq!(window_reports(&set, &data), want);
    let mut stream = LiteralStream::new(&set);
    for split in (0..data.len()).step_by(7) {
        assert_eq!(stream_reports(&set, &mut stream, &data, &[split], &want), want, "split at {split}");
    }
    assert_eq!(stream_reports(&set, &mut stream, &data, &vec![1; data.len()], &want), want, "byte by byte");
}

#[test]
fn zero_padding_and_repetitive_data() {
    // Signatures full of zero bytes over zero-filled data: every filter check hits, and the
    // results must still be exact.
    let patterns = vec![
        hex("00000000000000000000000000000000 4d5a"),
        hex("0000 ?? 00000000000000 ff ff"),
        Pattern::exact(vec![0u8; 9]),
        Pattern::exact(vec![0u8; 3]),
    ];
    let mut data = vec![0u8; 400];
    data[100] = 0x4d;
    data[101] = 0x5a;
    data[300] = 0xff;
    data[301] = 0xff;
    check_all_chunkings(&patterns, &data, 10, 12);
}

#[test]
fn longest_patterns_stream_correctly() {
    let mut rng = Rng::new(13);
    let all: Vec<u8> = (0..=255).collect();
    let long = rng.bytes(PATTERN_LEN_MAX, &all);
    let mut masked = rng.bytes(3000, &all);
    let mut mask = vec![0xFF; 3000];
    for i in (0..3000).step_by(7) {
        mask[i] = [0x00, 0xF0, 0x0F][i % 3];
        masked[i] &= mask[i];
    }
    let patterns = vec![
        Pattern::exact(long.clone()),
        Pattern { bytes: masked.clone(), mask: Some(mask) },
        Pattern::exact(*b"short"),
    ];
    let mut data = rng.bytes(12_000, &all);
    data[100..100 + PATTERN_LEN_MAX].copy_from_slice(&long);
    data[6000..9000].copy_from_slice(&masked);
    data[11_000..11_005].copy_from_slice(b"short");
    let r = check_all_chunkings(&patterns, &data, 20, 14);
    assert_eq!(r, vec![(0, 4196), (1, 9000), (2, 11_005)]);
}

/// Random patterns of mixed lengths, some masked, planted into random data over a small or a
/// full alphabet (small alphabets produce many overlapping and partial matches), checked
/// against the reference under many random chunkings.
#[test]
fn randomized_property() {
    let mut rng = Rng::new(0x5eed);
    let full: Vec<u8> = (0..=255).collect();
    for case in 0..60 {
        let alphabet: &[u8] = match case % 3 {
            0 => b"ab",
            1 => b"abcd\x00",
            _ => &full,
        };
        let count = 1 + rng.below(40);
        let mut patterns = Vec::new();
        for _ in 0..count {
            let len = match rng.below(3) {
                0 => 1 + rng.below(8),
                1 => 8 + rng.below(24),
                _ => 1 + rng.below(64),
            };
            let mut bytes = rng.bytes(len, alphabet);
            let mask = if rng.below(3) == 0 {
                let mut mask: Vec<u8> = (0..len).map(|_| [0xFF, 0xFF, 0xFF, 0x00, 0xF0, 0x0F][rng.below(6)]).collect();
                let keep = rng.below(len);
                mask[keep] = 0xFF;
                for (b, m) in bytes.iter_mut().zip(&mask) {
                    *b &= m;
                }
                Some(mask)
            } else {
                None
            };
            patterns.push(Pattern { bytes, mask });
        }
        let len = rng.below(6000);
        let mut data = rng.bytes(len, alphabet);
        for _ in 0..rng.below(30) {
            let p = &patterns[rng.below(patterns.len())];
            if p.bytes.len() <= data.len() {
                let at = rng.below(data.len() - p.bytes.len() + 1);
                for (i, &b) in p.bytes.iter().enumerate() {
                    let m = p.mask.as_ref().map_or(0xFF, |m| m[i]);
                    data[at + i] = (b & m) | (rng.next() as u8 & !m);
                }
            }
        }
        // Odd cases use the test planner, so tier boundaries fall between every length.
        let plan: Planner = if case % 2 == 0 { plan_tiers } else { plan_every_length };
        let set = LiteralSet::build(patterns.clone(), plan).expect("valid random patterns");
        let want = naive(&patterns, &data);
        assert_eq!(window_reports(&set, &data), want, "case {case}: whole window");
        let mut stream = LiteralStream::new(&set);
        for round in 0..25 {
            let mut lens = Vec::new();
            let mut total = 0;
            let scale = [3, 40, 700, 3000][round % 4];
            while total < data.len() {
                let n = rng.below(scale);
                lens.push(n);
                total += n;
            }
            assert_eq!(stream_reports(&set, &mut stream, &data, &lens, &want), want, "case {case} round {round}");
        }
    }
}

#[test]
fn every_split_on_random_sets() {
    // Full split-point and byte-by-byte coverage over random mixed sets on moderate inputs.
    let mut rng = Rng::new(77);
    for case in 0..4 {
        let alphabet: &[u8] = if case % 2 == 0 { b"xyz" } else { b"\x00\x01\x02\x03\x04\x05\x06\x07" };
        let patterns: Vec<Pattern> = (0..12).map(|i| Pattern::exact(rng.bytes(1 + (i * 5) % 40, alphabet))).collect();
        let mut data = rng.bytes(1500, alphabet);
        for p in &patterns {
            let at = rng.below(data.len() - p.bytes.len());
            data[at..at + p.bytes.len()].copy_from_slice(&p.bytes);
        }
        check_all_chunkings(&patterns, &data, 10, case);
    }
}

#[test]
fn filter_windows_avoid_shared_prefixes_and_padding() {
    let mut rng = Rng::new(21);
    let all: Vec<u8> = (0..=255).collect();
    let header = rng.bytes(24, &all);
    // A family of 50 signatures sharing a 24-byte header, and one padded with zeros.
    let mut patterns: Vec<Pattern> = (0..50)
        .map(|_| {
            let mut p = header.clone();
            p.extend(rng.bytes(16, &all));
            Pattern::exact(p)
        })
        .collect();
    let mut padded = vec![0u8; 20];
    padded.extend(rng.bytes(16, &all));
    patterns.push(Pattern::exact(padded));
    let mut store = Store::default();
    let runs: Vec<Runs> = patterns.iter().enumerate().map(|(i, p)| store.add(i, p).expect("valid")).collect();
    let ids: Vec<u32> = (0..patterns.len() as u32).collect();
    let placed = place_windows(&store, &runs, &ids, 16);
    for &(id, at) in &placed[..50] {
        // Every gram of the window must include a byte past the header (gram start >= 17).
        assert!((17..=24).contains(&at), "family member {id} keyed at {at}, inside the shared header");
    }
    assert_eq!(placed[50], (50, 20), "padded pattern keyed past its zeros");
    // And the family is still found exactly, alongside the shared header alone.
    let mut data = rng.bytes(3000, &all);
    for (i, p) in patterns.iter().enumerate() {
        let at = 10 + i * 55;
        data[at..at + p.bytes.len()].copy_from_slice(&p.bytes);
    }
    patterns.push(Pattern::exact(header));
    let set = LiteralSet::new(patterns.clone()).expect("set");
    assert_eq!(window_reports(&set, &data), naive(&patterns, &data));
}
