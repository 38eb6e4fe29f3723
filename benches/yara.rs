//! YARA throughput: a set of 1,000 rules of one random 16-32-byte hex string each (the shape of
//! the side-by-side benchmark's signatures) over 16 MiB of random and of text-like bytes, both
//! whole and streamed through icapd's block feeder in 64 KiB chunks. Each run asserts how many
//! rules matched (the planted ones), so a broken fast path cannot look fast.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use icapd::scan::yara_stream::YaraFeeder;

const RULES: usize = 1000;
const DATA_BYTES: usize = 16 << 20;
const PLANTED: usize = 10;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn signatures(seed: &mut u64) -> Vec<Vec<u8>> {
    (0..RULES).map(|_| (0..16 + xorshift(seed) % 17).map(|_| xorshift(seed) as u8).collect()).collect()
}

fn rules_source(sigs: &[Vec<u8>]) -> String {
    let mut src = String::new();
    for (i, s) in sigs.iter().enumerate() {
        let hex: Vec<String> = s.iter().map(|b| format!("{b:02x}")).collect();
        src.push_str(&format!("rule R{i} {{ strings: $a = {{ {} }} condition: $a }}\n", hex.join(" ")));
    }
    src
}

fn data(kind: &str, sigs: &[Vec<u8>], seed: &mut u64) -> Vec<u8> {
    let words =
        ["the", "scanner", "proxy", "object", "stream", "signature", "icap", "header", "content", "of", "and", "to"];
    let mut d = Vec::with_capacity(DATA_BYTES);
    while d.len() < DATA_BYTES {
        if kind == "random" {
            d.extend_from_slice(&xorshift(seed).to_le_bytes());
        } else {
            d.extend_from_slice(words[(xorshift(seed) % words.len() as u64) as usize].as_bytes());
            d.push(if xorshift(seed) % 9 == 0 { b'\n' } else { b' ' });
        }
    }
    d.truncate(DATA_BYTES);
    for i in 0..PLANTED {
        let at = (i + 1) * DATA_BYTES / (PLANTED + 2) + 5;
        d[at..at + sigs[i].len()].copy_from_slice(&sigs[i]);
    }
    d
}

fn bench(c: &mut Criterion) {
    let mut seed = 0x1234_5678_9abc_def1;
    let sigs = signatures(&mut seed);
    let rules = yara_x::compile(rules_source(&sigs).as_str()).expect("rules compile");
    let mut group = c.benchmark_group("yara_1000_rules");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(DATA_BYTES as u64));
    for kind in ["random", "text"] {
        let d = data(kind, &sigs, &mut seed);
        let mut whole = yara_x::Scanner::new(&rules);
        group.bench_function(format!("{kind}_whole"), |b| {
            b.iter(|| assert_eq!(whole.scan(&d).unwrap().matching_rules().len(), PLANTED))
        });
        let mut blocks = yara_x::blocks::Scanner::new(&rules);
        let mut feeder = YaraFeeder::new(1024);
        group.bench_function(format!("{kind}_streamed_64k"), |b| {
            b.iter(|| {
                feeder.reset();
                for chunk in d.chunks(64 * 1024) {
                    feeder.feed(&mut blocks, chunk).unwrap();
                }
                feeder.finish(&mut blocks).unwrap();
                assert_eq!(blocks.finish().unwrap().matching_rules().len(), PLANTED);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
