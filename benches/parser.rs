//! Criterion benches of the protocol core without sockets: the head parser, the chunk decoder
//! and the whole connection path for a 1 KB RESPMOD with preview. Each bench checks its result
//! so that a broken fast path cannot look fast.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use icapd::inspect::InspectorKind;
use icapd::limits::Limits;
use icapd::proto::blocks::BlockPool;
use icapd::proto::chunked::{Chunk, ChunkDecoder};
use icapd::proto::conn::Conn;
use icapd::proto::head::{HeadParser, HeadStatus};
use icapd::proto::response::ServerInfo;
use std::io::IoSlice;
use std::time::Instant;

const REQ_HDR: &str = "GET http://www.example.com/download/file.bin HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n\r\n";
const RES_HDR: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\nDate: Tue, 24 Nov 2026 10:00:00 GMT\r\nServer: origin\r\n\r\n";

fn squid_respmod(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "RESPMOD icap://127.0.0.1:1344/respmod ICAP/1.0\r\nHost: 127.0.0.1:1344\r\nDate: Tue, 24 Nov 2026 10:00:00 GMT\r\nEncapsulated: req-hdr=0, res-hdr={}, res-body={}\r\nPreview: 1024\r\nAllow: 204, trailers\r\nX-Client-IP: 10.1.2.3\r\n\r\n{REQ_HDR}{RES_HDR}",
        REQ_HDR.len(),
        REQ_HDR.len() + RES_HDR.len()
    )
    .into_bytes();
    req.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    req.extend_from_slice(b"\r\n0; ieof\r\n\r\n");
    req
}

fn head_parser(c: &mut Criterion) {
    let req = squid_respmod(&[b'x'; 1024]);
    let head_len = memchr::memmem::find(&req, b"\r\n\r\n").unwrap() + 4;
    let head = &req[..head_len];
    let mut group = c.benchmark_group("head");
    group.throughput(Throughput::Bytes(head.len() as u64));
    let mut parser = HeadParser::new(&Limits::default());
    group.bench_function("squid_respmod_head", |b| {
        b.iter(|| {
            parser.reset();
            let status = parser.parse(black_box(head)).unwrap();
            assert_eq!(status, HeadStatus::Complete(head.len()));
        })
    });
    group.finish();
}

fn chunk_decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked");
    for chunk in [64usize, 4096, 65536] {
        let total = 1 << 20;
        let mut body = Vec::new();
        for _ in 0..total / chunk {
            body.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
            body.extend(std::iter::repeat_n(b'a', chunk));
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        group.throughput(Throughput::Bytes(body.len() as u64));
        let mut decoder = ChunkDecoder::new(256, 4096);
        group.bench_function(format!("1MiB_in_{chunk}B_chunks"), |b| {
            b.iter(|| {
                decoder.reset();
                let mut input = &body[..];
                let mut data = 0;
                loop {
                    let (n, ev) = decoder.decode(input).unwrap();
                    match ev {
                        Chunk::Data { start, end } => data += end - start,
                        Chunk::End { .. } => break,
                        Chunk::NeedMore => unreachable!("the whole body is given"),
                    }
                    input = &input[n..];
                }
                assert_eq!(data, total);
            })
        });
    }
    group.finish();
}

fn request_path(c: &mut Criterion) {
    let req = squid_respmod(&[b'x'; 1024]);
    let limits = Limits::default();
    let info = ServerInfo { max_connections: 4096, preview_bytes: 1024, options_ttl_secs: 3600 };
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 16, 4);
    let now = Instant::now();
    let mut conn = Conn::new(limits, info, InspectorKind::Null.build().expect("a built-in inspector"), now);
    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("respmod_1k_preview_ieof_204", |b| {
        b.iter(|| {
            let buf = conn.recv_buf(&mut pool);
            buf[..req.len()].copy_from_slice(&req);
            conn.handle_read(req.len(), now, 1_795_000_000);
            let mut iov = [IoSlice::new(&[]); 8];
            let n = conn.poll_transmit(&mut iov);
            let written: usize = iov[..n].iter().map(|s| s.len()).sum();
            assert!(iov[0].starts_with(b"ICAP/1.0 204"));
            conn.handle_written(written, &mut pool);
        })
    });
    group.finish();
}

criterion_group!(benches, head_parser, chunk_decoder, request_path);
criterion_main!(benches);
