//! Criterion benches of the container layer (`scan::unpack`) through the whole engine:
//!
//! * extraction: a zip of mixed members (text deflated, random bytes stored, a nested
//!   `.tar.gz` of text) about 48 MiB extracted, fed in 128 KiB pieces (one receive block
//!   each); throughput is in extracted bytes;
//! * a 10 MiB body that is no container, the same way, to show that the magic check is all
//!   such a body pays (compare with `engine/identity page` in `benches/decode.rs`).
//!
//! Every iteration asserts the verdict, and a second object with EICAR in its last member
//! must be found, so a layer that skipped members could not look fast.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use icapd::inspect::{Inspector, Progress, Txn, Verdict};
use icapd::limits::Limits;
use icapd::proto::Method;
use icapd::scan::engine::{EngineInspector, ScanCtx};
use icapd::scan::policy::{Early204, OverLimit};
use icapd::scan::unpack::EncryptedPolicy;
use icapd::scan::ScanPolicy;
use icapd::signatures::{load, LoadOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PIECE_BYTES: usize = 128 << 10;
const MEMBER_BYTES: usize = 4 << 20;
const EICAR: &[u8] = include_bytes!("../tests/samples/eicar.com");

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &["the ", "proxy ", "<div>", "</div>\n", "scanning ", "archive ", "member ", "of "];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[(rng(&mut x) % WORDS.len() as u64) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len).map(|_| rng(&mut x) as u8).collect()
}

fn tar_gz(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}

/// The mixed zip and the bytes it extracts to (counting the nested archive's members once,
/// at their deepest level, as well as the archive itself).
fn mixed_zip(last: &[u8]) -> (Vec<u8>, u64) {
    use zip::CompressionMethod as M;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut extracted = 0u64;
    let mut add = |w: &mut zip::ZipWriter<_>, name: &str, data: &[u8], method| {
        w.start_file(name, zip::write::SimpleFileOptions::default().compression_method(method)).unwrap();
        w.write_all(data).unwrap();
        extracted += data.len() as u64;
    };
    for i in 0..5 {
        add(&mut w, &format!("docs/page{i}.html"), &text(MEMBER_BYTES, i + 1), M::Deflated);
        add(&mut w, &format!("bin/blob{i}.bin"), &random(MEMBER_BYTES, i + 100), M::Stored);
    }
    let inner: Vec<(String, Vec<u8>)> =
        (0..2).map(|i| (format!("src/f{i}.txt"), text(MEMBER_BYTES, i + 200))).collect();
    let tgz = tar_gz(&inner);
    add(&mut w, "src.tar.gz", &tgz, M::Stored);
    let inner_bytes: u64 = inner.iter().map(|(_, d)| d.len() as u64).sum();
    add(&mut w, "last.txt", last, M::Deflated);
    (w.finish().unwrap().into_inner(), extracted + inner_bytes)
}

fn inspector() -> EngineInspector {
    let gen = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures"), LoadOptions::default()).unwrap();
    let policy =
        ScanPolicy { over_limit: OverLimit::Block, early_204: Early204::default(), encrypted: EncryptedPolicy::Block };
    EngineInspector::new(ScanCtx::new(Arc::new(gen), Limits::default().scan(), policy))
}

fn verdict(inspector: &mut EngineInspector, body: &[u8]) -> Verdict {
    let txn =
        Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr: None, policy: Default::default() };
    assert_eq!(inspector.begin(&txn), Progress::More);
    for piece in body.chunks(PIECE_BYTES) {
        if let Progress::Done(v) = inspector.feed(black_box(piece)) {
            return v;
        }
    }
    inspector.finish()
}

fn unpack(c: &mut Criterion) {
    let mut inspector = inspector();
    let (zip, extracted) = mixed_zip(b"nothing to see");
    let (dirty, _) = mixed_zip(EICAR);
    assert_eq!(verdict(&mut inspector, &dirty), Verdict::Infected { threat: "Eicar-Test-Signature".into() });
    let plain = random(10 << 20, 7);
    let mut group = c.benchmark_group("unpack");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(extracted));
    group.bench_function("mixed zip, extracted bytes", |b| {
        b.iter(|| assert_eq!(verdict(&mut inspector, &zip), Verdict::Clean));
    });
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("10 MiB non-container body", |b| {
        b.iter(|| assert_eq!(verdict(&mut inspector, &plain), Verdict::Clean));
    });
    group.finish();
}

criterion_group!(benches, unpack);
criterion_main!(benches);
