//! Criterion benches of the whole request path with the signature engine, without sockets: the
//! connection state machine, the chunk decoder, the engine inspector over 1,001 signatures of
//! the side-by-side benchmark's kind (1,000 random 16-32-byte `.ndb` body signatures plus
//! EICAR), and the response encoder, driven the way a shard drives them (bytes into the receive
//! block, `handle_read`, `poll_transmit`, `handle_written`).
//!
//! Each iteration checks the answer: a 204 for a clean 1 KB preview, a block for the same object
//! with EICAR, and a byte-exact 1 MB echo without `Allow: 204`, so a broken fast path cannot
//! look fast. The difference between these figures and `icap-bench` over loopback is what the
//! sockets and the executor cost.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use icapd::inspect::Inspector;
use icapd::limits::Limits;
use icapd::proto::blocks::BlockPool;
use icapd::proto::chunked::{Chunk, ChunkDecoder};
use icapd::proto::conn::Conn;
use icapd::proto::response::ServerInfo;
use icapd::scan::engine::{EngineInspector, ScanCtx};
use icapd::scan::policy::{Early204, OverLimit};
use icapd::scan::ScanPolicy;
use icapd::signatures::{load, LoadOptions};
use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const SIGNATURES: usize = 1000;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A signature folder with one `.ndb` of random body signatures plus EICAR; removed on drop.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Folder {
        let dir = std::env::temp_dir().join(format!("icapd-bench-request-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let mut seed = 0x5eed_1234_abcd_ef01;
        let mut ndb = String::new();
        for i in 0..SIGNATURES {
            let len = 16 + xorshift(&mut seed) % 17;
            let hex: String = (0..len).map(|_| format!("{:02x}", xorshift(&mut seed) as u8)).collect();
            ndb.push_str(&format!("Bench-Random-{i:06}:0:*:{hex}\n"));
        }
        let eicar_hex: String = EICAR.iter().map(|b| format!("{b:02x}")).collect();
        ndb.push_str(&format!("Eicar-Test-Signature:0:*:{eicar_hex}\n"));
        std::fs::write(dir.join("bench.ndb"), ndb).expect("write the signature file");
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn body(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect()
}

const REQ_HDR: &str = "GET http://www.example.com/file.bin HTTP/1.1\r\nHost: www.example.com\r\n\r\n";

/// A RESPMOD request as Squid sends it; the preview (if any) covers the whole body with ieof.
fn respmod(body: &[u8], preview: bool, allow_204: bool) -> Vec<u8> {
    let res_hdr =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut head = String::from("RESPMOD icap://127.0.0.1:1344/respmod ICAP/1.0\r\nHost: 127.0.0.1:1344\r\n");
    if allow_204 {
        head.push_str("Allow: 204\r\n");
    }
    if preview {
        head.push_str(&format!("Preview: {}\r\n", body.len()));
    }
    head.push_str(&format!(
        "Encapsulated: req-hdr=0, res-hdr={}, res-body={}\r\n\r\n{REQ_HDR}{res_hdr}",
        REQ_HDR.len(),
        REQ_HDR.len() + res_hdr.len()
    ));
    let mut req = head.into_bytes();
    for piece in body.chunks(64 * 1024) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(if preview { b"0; ieof\r\n\r\n" } else { b"0\r\n\r\n" });
    req
}

/// One connection with the engine inspector, fed like a shard feeds it.
struct Path {
    conn: Conn,
    pool: BlockPool,
    now: Instant,
    out: Vec<u8>,
}

impl Path {
    fn new(folder: &Folder) -> Path {
        let limits = Limits::default();
        let gen = load(&folder.0, LoadOptions::default()).expect("signatures load");
        assert_eq!(gen.summary.body, SIGNATURES + 1, "every signature loads");
        let policy = ScanPolicy {
            over_limit: OverLimit::Block,
            early_204: Early204::default(),
            encrypted: icapd::scan::unpack::EncryptedPolicy::Block,
        };
        let ctx = ScanCtx::new(Arc::new(gen), limits.scan(), policy);
        let inspector: Box<dyn Inspector> = Box::new(EngineInspector::new(ctx));
        let info = ServerInfo { max_connections: 4096, preview_bytes: 1024, options_ttl_secs: 3600 };
        let pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 16, 4);
        let now = Instant::now();
        Path { conn: Conn::new(limits, info, inspector, now), pool, now, out: Vec::with_capacity(2 << 20) }
    }

    /// Sends one request and returns everything the connection wrote back.
    fn exchange(&mut self, mut req: &[u8]) -> &[u8] {
        self.out.clear();
        while !req.is_empty() {
            assert!(self.conn.wants_read(), "the connection stopped reading mid-request");
            let buf = self.conn.recv_buf(&mut self.pool);
            let n = buf.len().min(req.len());
            buf[..n].copy_from_slice(&req[..n]);
            req = &req[n..];
            self.conn.handle_read(n, self.now, 1_795_000_000);
            self.flush();
        }
        self.flush();
        &self.out
    }

    fn flush(&mut self) {
        while self.conn.has_output() {
            let mut iov = [IoSlice::new(&[]); 8];
            let n = self.conn.poll_transmit(&mut iov);
            let mut written = 0;
            for s in &iov[..n] {
                self.out.extend_from_slice(s);
                written += s.len();
            }
            self.conn.handle_written(written, &mut self.pool);
        }
    }
}

/// The number of body bytes in a 200 response with `res-hdr` and `res-body`.
fn echoed_body_bytes(resp: &[u8]) -> usize {
    let head_end = memchr::memmem::find(resp, b"\r\n\r\n").expect("a complete ICAP head") + 4;
    let head = std::str::from_utf8(&resp[..head_end]).expect("an ASCII head");
    assert!(head.starts_with("ICAP/1.0 200 "), "{head}");
    let encap = head.lines().find_map(|l| l.strip_prefix("Encapsulated: ")).expect("Encapsulated");
    let body_at: usize = encap.rsplit("res-body=").next().and_then(|v| v.parse().ok()).expect("a res-body offset");
    let mut rest = &resp[head_end + body_at..];
    let mut decoder = ChunkDecoder::new(256, 4096);
    let mut bytes = 0;
    loop {
        let (n, ev) = decoder.decode(rest).expect("a well-formed chunked body");
        match ev {
            Chunk::Data { start, end } => bytes += end - start,
            Chunk::End { .. } => return bytes,
            Chunk::NeedMore => panic!("the echo is incomplete"),
        }
        rest = &rest[n..];
    }
}

fn request_path(c: &mut Criterion) {
    let folder = Folder::new();
    let mut path = Path::new(&folder);
    let mut group = c.benchmark_group("request_path_engine_1001_sigs");

    let clean = body(1024);
    let mut infected = clean.clone();
    infected[400..400 + EICAR.len()].copy_from_slice(EICAR);
    let clean_req = respmod(&clean, true, true);
    let infected_req = respmod(&infected, true, true);
    group.throughput(Throughput::Elements(1));
    group.bench_function("respmod_1k_preview_ieof_204", |b| {
        b.iter(|| assert!(path.exchange(black_box(&clean_req)).starts_with(b"ICAP/1.0 204 ")))
    });
    group.bench_function("respmod_1k_eicar_blocked", |b| {
        b.iter(|| {
            let out = path.exchange(black_box(&infected_req));
            assert!(out.starts_with(b"ICAP/1.0 200 "));
            assert!(memchr::memmem::find(out, b"X-Infection-Found: ").is_some());
            assert!(memchr::memmem::find(out, b"HTTP/1.1 403").is_some());
        })
    });

    let big = body(1 << 20);
    let echo_req = respmod(&big, false, false);
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.sample_size(20);
    group.bench_function("respmod_1m_no204_echo", |b| {
        b.iter(|| assert_eq!(echoed_body_bytes(path.exchange(black_box(&echo_req))), big.len()))
    });
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
