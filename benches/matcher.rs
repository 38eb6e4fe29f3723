//! Criterion benches of the signature matcher (`scan::literal`) on 32 MiB of high-entropy
//! bytes and of text-like bytes, with 10 to 100,000 random 16–32-byte signatures, beside
//! aho-corasick's DFA on the same data as the baseline, and streamed in 64 KiB chunks.
//!
//! Every iteration asserts the number of matches against the number of planted occurrences,
//! so a broken fast path cannot look fast. The signatures are random bytes, so apart from the
//! planted copies they cannot occur in either input by chance (16 random bytes: 2^-128).

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use icapd::scan::literal::{LiteralSet, LiteralStream, Pattern};
use std::time::Duration;

const DATA_BYTES: usize = 32 << 20;
const PLANTED: usize = 1000;
const CHUNK_BYTES: usize = 64 << 10;

/// Deterministic xorshift64* generator, so every run benches the same bytes.
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
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

fn signatures(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let mut sig = vec![0; 16 + rng.below(17)];
            rng.fill(&mut sig);
            sig
        })
        .collect()
}

fn random_bytes(seed: u64) -> Vec<u8> {
    let mut data = vec![0; DATA_BYTES];
    Rng(seed).fill(&mut data);
    data
}

/// English-looking text: words built from common syllables, with spaces, punctuation and
/// line breaks, so that byte and gram frequencies are as skewed as in real HTML or mail.
fn text_bytes(seed: u64) -> Vec<u8> {
    const SYLLABLES: &[&str] = &[
        "the", "an", "in", "er", "on", "at", "re", "ing", "st", "en", "ou", "ha", "con", "tion", "is", "it", "al",
        "ar", "de", "le", "se", "ma", "pro", "com", "ter", "ver", "ly", "ed", "or", "ent", "ex", "per", "sion", "un",
        "di", "tr", "ment", "ca", "ti", "mo",
    ];
    const WORDS: &[&str] = &["the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "with", "as", "on"];
    let mut rng = Rng(seed);
    let mut data = Vec::with_capacity(DATA_BYTES + 64);
    while data.len() < DATA_BYTES {
        if rng.below(3) == 0 {
            data.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
        } else {
            for _ in 0..1 + rng.below(3) {
                data.extend_from_slice(SYLLABLES[rng.below(SYLLABLES.len())].as_bytes());
            }
        }
        data.push(match rng.below(20) {
            0 => b',',
            1 => b'.',
            2 => b'\n',
            _ => b' ',
        });
    }
    data.truncate(DATA_BYTES);
    data
}

/// Plants `PLANTED` signature copies at spread-out, non-overlapping places; returns the count.
fn plant(data: &mut [u8], sigs: &[Vec<u8>], seed: u64) -> usize {
    let mut rng = Rng(seed);
    let slot = data.len() / PLANTED;
    for k in 0..PLANTED {
        let sig = &sigs[rng.below(sigs.len())];
        let at = k * slot + rng.below(slot - sig.len());
        data[at..at + sig.len()].copy_from_slice(sig);
    }
    PLANTED
}

fn scan_count(set: &LiteralSet, data: &[u8]) -> usize {
    let mut count = 0;
    set.scan_window(data, 0, &mut |_, _| count += 1);
    count
}

fn stream_count(set: &LiteralSet, stream: &mut LiteralStream, data: &[u8]) -> usize {
    let mut count = 0;
    stream.reset();
    for chunk in data.chunks(CHUNK_BYTES) {
        stream.feed(set, chunk, &mut |_, _| count += 1);
    }
    stream.finish(set, &mut |_, _| count += 1);
    count
}

fn matcher(c: &mut Criterion) {
    let mut group = c.benchmark_group("literal");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(DATA_BYTES as u64));
    let random = random_bytes(0x1234_5678);
    let text = text_bytes(0x8765_4321);
    for count in [10, 1_000, 10_000, 100_000] {
        let sigs = signatures(count, 0xabcd ^ count as u64);
        let set = LiteralSet::new(sigs.iter().map(|s| Pattern::exact(s.clone())).collect()).expect("valid signatures");
        for (name, base) in [("random", &random), ("text", &text)] {
            let mut data = base.clone();
            let planted = plant(&mut data, &sigs, count as u64);
            group.bench_function(BenchmarkId::new(name, count), |b| {
                b.iter(|| assert_eq!(scan_count(&set, black_box(&data)), planted))
            });
            if name == "random" && (count == 1_000 || count == 10_000) {
                let ac = AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::DFA))
                    .match_kind(MatchKind::Standard)
                    .build(&sigs)
                    .expect("DFA builds");
                group.bench_function(BenchmarkId::new("random_ac_dfa", count), |b| {
                    b.iter(|| assert_eq!(ac.find_overlapping_iter(black_box(&data[..])).count(), planted))
                });
            }
            if name == "random" && count == 1_000 {
                let mut stream = LiteralStream::new(&set);
                group.bench_function(BenchmarkId::new("random_stream_64k", count), |b| {
                    b.iter(|| assert_eq!(stream_count(&set, &mut stream, black_box(&data)), planted))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, matcher);
criterion_main!(benches);
