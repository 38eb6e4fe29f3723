//! Criterion benches of Content-Encoding decoding (`scan::decode`): 8 MiB of text-like bytes
//! encoded as gzip (level 6, the usual server default), br (quality 5, a typical on-the-fly
//! setting) and zstd (level 3), decoded through a `DecodeChain` in 128 KiB input pieces (one
//! receive block each), and the whole engine over the gzip form beside the same page unencoded,
//! to show what decoding adds to a scan. Throughput is in decoded bytes.
//!
//! Every iteration asserts what it decoded (length and CRC-32) or the
//! engine's verdict, so a broken decoder cannot look fast.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use icapd::inspect::{Inspector, Progress, Txn, Verdict};
use icapd::limits::Limits;
use icapd::proto::Method;
use icapd::scan::decode::{Coding, DecodeChain};
use icapd::scan::engine::{EngineInspector, ScanCtx};
use icapd::scan::policy::{Early204, OverLimit};
use icapd::scan::ScanPolicy;
use icapd::signatures::{load, LoadOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DATA_BYTES: usize = 8 << 20;
const PIECE_BYTES: usize = 128 << 10;

/// Words and markup from a small vocabulary with a pseudo-random order: compresses about 4:1
/// with gzip, as real HTML does.
fn text() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the ",
        "of ",
        "and ",
        "scanning ",
        "proxy ",
        "<div class=\"item\">",
        "</div>\n",
        "content ",
        "server ",
        "encoding ",
        "<a href=\"/path/",
        "\">",
        "</a> ",
        "request ",
        "response ",
        "body ",
        "signature ",
        "stream ",
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = Vec::with_capacity(DATA_BYTES + 64);
    while data.len() < DATA_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        if x % 7 == 0 {
            data.extend_from_slice(format!("{} ", x % 100_000).as_bytes());
        }
    }
    data.truncate(DATA_BYTES);
    data
}

fn encode(coding: Coding, data: &[u8]) -> Vec<u8> {
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Coding::Brotli => {
            let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
            e.write_all(data).unwrap();
            e.into_inner()
        }
        Coding::Zstd => {
            let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
            let n = zstd_safe::compress(&mut out[..], data, 3).unwrap();
            out.truncate(n);
            out
        }
        Coding::Deflate => unreachable!("not benched"),
    }
}

fn decode(c: &mut Criterion) {
    let data = text();
    // CRC-32 (SIMD, tens of GB/s) as the order-sensitive check, so checking costs little
    // beside decoding.
    let want = crc32fast::hash(&data);
    let limits = Limits::default().scan().decode;
    let mut group = c.benchmark_group("decode");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (name, coding) in [("gzip", Coding::Gzip), ("br", Coding::Brotli), ("zstd", Coding::Zstd)] {
        let encoded = encode(coding, &data);
        eprintln!(
            "decode/{name}: {} -> {} bytes ({:.1}:1)",
            data.len(),
            encoded.len(),
            data.len() as f64 / encoded.len() as f64
        );
        let mut chain = DecodeChain::new(limits);
        group.bench_function(name, |b| {
            b.iter(|| {
                chain.begin(&[coding], false);
                let mut len = 0usize;
                let mut sum = crc32fast::Hasher::new();
                let mut take = |out: &[u8]| {
                    len += out.len();
                    sum.update(out);
                    ControlFlow::Continue(())
                };
                for piece in encoded.chunks(PIECE_BYTES) {
                    let flow = chain.feed(black_box(piece), &mut take).expect("decodes");
                    assert!(flow.is_continue());
                }
                // What a decoder held back (brotli's unfinished piece) comes out at the end.
                let flow = chain.finish(&mut take).expect("complete");
                assert!(flow.is_continue());
                chain.end();
                assert_eq!((len, sum.finalize()), (data.len(), want), "{name} decoded the page exactly");
            })
        });
    }
    group.finish();
}

fn engine(c: &mut Criterion) {
    let data = text();
    let gz = encode(Coding::Gzip, &data);
    let gen = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures"), LoadOptions::default()).unwrap();
    let policy = ScanPolicy {
        over_limit: OverLimit::Block,
        early_204: Early204::default(),
        encrypted: icapd::scan::unpack::EncryptedPolicy::Block,
    };
    let ctx = ScanCtx::new(Arc::new(gen), Limits::default().scan(), policy);
    let mut inspector = EngineInspector::new(ctx);
    let mut group = c.benchmark_group("engine");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (name, fields, body) in [("identity page", "", &data), ("gzip page", "Content-Encoding: gzip\r\n", &gz)] {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{fields}\r\n");
        let txn = Txn {
            method: Method::Respmod,
            service: "respmod",
            req_hdr: None,
            res_hdr: Some(head.as_bytes()),
            policy: Default::default(),
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                assert_eq!(inspector.begin(&txn), Progress::More);
                for piece in body.chunks(PIECE_BYTES) {
                    assert_eq!(inspector.feed(black_box(piece)), Progress::More);
                }
                assert_eq!(inspector.finish(), Verdict::Clean, "{name}");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, engine);
criterion_main!(benches);
