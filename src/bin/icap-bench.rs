//! icap-bench: a closed-loop ICAP load generator.
//!
//! N keep-alive connections, each on its own thread, send the same prebuilt request in one
//! write on a TCP_NODELAY socket, read and check the whole answer, and repeat until the
//! duration is over. Every answer is checked (status, and for a 200 echo the body length) so
//! a server that answers fast but wrong is reported as failing, not as fast.
//!
//! This is the closed-loop core of the benchmark tool; open-loop pacing, HDR histograms and
//! JSON output belong to the benchmark issue and are not here yet.

use icapd::proto::chunked::{Chunk, ChunkDecoder};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
icap-bench: closed-loop ICAP load generator

USAGE:
    icap-bench [OPTIONS]

OPTIONS:
    --server HOST:PORT   ICAP server [default: 127.0.0.1:1344]
    --service NAME       service name [default: respmod]
    --method M           respmod | reqmod [default: respmod]
    --connections N      keep-alive connections, one thread each [default: 8]
    --duration SECS      how long to run [default: 10]
    --body-size BYTES    body size [default: 1024]
    --chunk-size BYTES   ICAP chunk size [default: 65536]
    --preview N|off      send a preview of N bytes [default: 1024]
    --no204              do not send Allow: 204
";

struct Options {
    server: String,
    service: String,
    reqmod: bool,
    connections: usize,
    duration: Duration,
    body_size: usize,
    chunk_size: usize,
    preview: Option<usize>,
    allow_204: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        server: "127.0.0.1:1344".into(),
        service: "respmod".into(),
        reqmod: false,
        connections: 8,
        duration: Duration::from_secs(10),
        body_size: 1024,
        chunk_size: 65536,
        preview: Some(1024),
        allow_204: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|_| format!("{a}: '{s}' is not a number"));
        match a.as_str() {
            "--server" => o.server = v()?,
            "--service" => o.service = v()?,
            "--method" => o.reqmod = v()? == "reqmod",
            "--connections" => o.connections = num(v()?)?.max(1),
            "--duration" => o.duration = Duration::from_secs(num(v()?)? as u64),
            "--body-size" => o.body_size = num(v()?)?,
            "--chunk-size" => o.chunk_size = num(v()?)?.max(1),
            "--preview" => {
                let p = v()?;
                o.preview = if p == "off" { None } else { Some(num(p)?) };
            }
            "--no204" => o.allow_204 = false,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

/// The request bytes, and whether the server must be told to continue after a preview.
fn build_request(o: &Options) -> (Vec<u8>, Option<Vec<u8>>) {
    let body: Vec<u8> = (0..o.body_size as u64).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let req_hdr = if o.reqmod {
        format!("POST http://bench.test/upload HTTP/1.1\r\nHost: bench.test\r\nContent-Length: {}\r\n\r\n", o.body_size)
    } else {
        "GET http://bench.test/object HTTP/1.1\r\nHost: bench.test\r\n\r\n".to_string()
    };
    let res_hdr =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", o.body_size);
    let (method, encap, hdrs) = if o.reqmod {
        ("REQMOD", format!("req-hdr=0, req-body={}", req_hdr.len()), req_hdr.clone())
    } else {
        (
            "RESPMOD",
            format!("req-hdr=0, res-hdr={}, res-body={}", req_hdr.len(), req_hdr.len() + res_hdr.len()),
            format!("{req_hdr}{res_hdr}"),
        )
    };
    let mut head = format!("{method} icap://{}/{} ICAP/1.0\r\nHost: {}\r\n", o.server, o.service, o.server);
    if o.allow_204 {
        head.push_str("Allow: 204\r\n");
    }
    if let Some(p) = o.preview {
        head.push_str(&format!("Preview: {p}\r\n"));
    }
    head.push_str(&format!("Encapsulated: {encap}\r\n\r\n{hdrs}"));
    let chunked = |data: &[u8], out: &mut Vec<u8>| {
        for piece in data.chunks(o.chunk_size) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
    };
    let mut first = head.into_bytes();
    match o.preview {
        Some(p) if body.len() <= p => {
            chunked(&body, &mut first);
            first.extend_from_slice(b"0; ieof\r\n\r\n");
            (first, None)
        }
        Some(p) => {
            chunked(&body[..p], &mut first);
            first.extend_from_slice(b"0\r\n\r\n");
            let mut rest = Vec::new();
            chunked(&body[p..], &mut rest);
            rest.extend_from_slice(b"0\r\n\r\n");
            (first, Some(rest))
        }
        None => {
            chunked(&body, &mut first);
            first.extend_from_slice(b"0\r\n\r\n");
            (first, None)
        }
    }
}

/// Reads one response; returns (status, decoded body bytes).
fn read_response(r: &mut BufReader<TcpStream>, decoder: &mut ChunkDecoder) -> std::io::Result<(u16, usize)> {
    let mut status = 0;
    let mut encap_last: Option<(bool, usize)> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if status == 0 {
            status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(1);
        } else if line == "\r\n" {
            break;
        } else if let Some(v) = line.strip_prefix("Encapsulated: ") {
            let last = v.trim_end().rsplit(", ").next().unwrap_or("");
            if let Some((name, off)) = last.split_once('=') {
                encap_last = Some((name != "null-body", off.parse().unwrap_or(0)));
            }
        }
    }
    let Some((has_body, hdr_len)) = encap_last else { return Ok((status, 0)) };
    let mut skip = vec![0u8; hdr_len];
    r.read_exact(&mut skip)?;
    if !has_body {
        return Ok((status, 0));
    }
    decoder.reset();
    let mut body = 0;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (n, chunk) = decoder.decode(buf).map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Chunk::Data { start, end } = chunk {
            body += end - start;
        }
        r.consume(n);
        if let Chunk::End { .. } = chunk {
            return Ok((status, body));
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    bad: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

fn worker(o: Arc<Options>, first: Arc<Vec<u8>>, rest: Arc<Option<Vec<u8>>>, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let expect_body = if o.allow_204 { 0 } else { o.body_size };
    let mut decoder = ChunkDecoder::new(1024, 65536);
    'reconnect: while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(&o.server) else {
            tally.errors += 1;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut writer = stream.try_clone().expect("clone socket");
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            if writer.write_all(&first).is_err() {
                tally.errors += 1;
                continue 'reconnect;
            }
            let mut result = read_response(&mut reader, &mut decoder);
            if let (Ok((100, _)), Some(rest)) = (&result, rest.as_ref()) {
                // Large bodies are written from a second thread while we read the echo.
                let mut w = writer.try_clone().expect("clone socket");
                let rest = rest.clone();
                let sender = std::thread::spawn(move || w.write_all(&rest));
                result = read_response(&mut reader, &mut decoder);
                let _ = sender.join();
            }
            match result {
                Ok((status, body)) if (status == 204 && o.allow_204) || (status == 200 && body == expect_body) => {
                    tally.ok += 1;
                    tally.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Ok(_) => tally.bad += 1,
                Err(_) => {
                    tally.errors += 1;
                    continue 'reconnect;
                }
            }
        }
    }
    tally
}

fn main() {
    let o = match parse_args() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("icap-bench: {e}");
            std::process::exit(2);
        }
    };
    let (first, rest) = build_request(&o);
    let (first, rest) = (Arc::new(first), Arc::new(rest));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..o.connections)
        .map(|_| {
            let (o, first, rest, stop) = (o.clone(), first.clone(), rest.clone(), stop.clone());
            std::thread::spawn(move || worker(o, first, rest, stop))
        })
        .collect();
    std::thread::sleep(o.duration);
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for h in handles {
        let t = h.join().expect("worker");
        total.ok += t.ok;
        total.bad += t.bad;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
    }
    let secs = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let pct = |p: f64| {
        total
            .latencies_us
            .get(((total.latencies_us.len() as f64 * p) as usize).min(total.latencies_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let rps = total.ok as f64 / secs;
    println!("| requests/s | body MB/s | p50 µs | p99 µs | p99.9 µs | max µs | ok | wrong | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
        rps,
        rps * o.body_size as f64 / 1e6,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        total.latencies_us.last().copied().unwrap_or(0),
        total.ok,
        total.bad,
        total.errors
    );
    if total.bad > 0 || total.ok == 0 {
        std::process::exit(1);
    }
}
