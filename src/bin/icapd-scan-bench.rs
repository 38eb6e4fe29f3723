//! icapd-scan-bench: the signature engine's throughput in-process, on the bytes `icap-bench`
//! sends, as the baseline for the end-to-end figure.
//!
//! It loads a signature folder through `icapd::signatures::load`, builds the same
//! `EngineInspector` a shard builds for each connection, and runs one object through
//! `begin` / `feed` / `finish` again and again, fed in slices of one receive block the way the
//! server hands over body bytes. The body is `icap-bench`'s synthetic body (the same source
//! file is included), or a file. Every pass must give the expected verdict (clean, or infected
//! with `--eicar`), so a broken fast path cannot look fast. The ratio of the end-to-end
//! `Allow: 204` throughput to this figure is what the ICAP layer costs. Both the wall-clock rate
//! and the rate per CPU second are reported; the second is the one to trust on a busy machine.

#[path = "icap-bench/body.rs"]
mod body;

use icapd::inspect::{Inspector, Progress, Txn, Verdict};
use icapd::limits::Limits;
use icapd::proto::Method;
use icapd::scan::engine::{EngineInspector, ScanCtx};
use icapd::scan::policy::{Early204, OverLimit};
use icapd::scan::ScanPolicy;
use icapd::signatures::{load, LoadOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
icapd-scan-bench: in-process scanning throughput of icapd's engine

USAGE:
    icapd-scan-bench --signatures DIR [OPTIONS]

OPTIONS:
    --signatures DIR     signature folder, loaded as icapd loads it (required)
    --body-size BYTES    synthetic body (icap-bench's bytes); suffixes K, M [default: 10M]
    --body-file PATH     scan this file instead
    --eicar              plant EICAR and expect every pass to be infected
    --eicar-at OFFSET|middle   where EICAR goes [default: middle]
    --feed-bytes BYTES   bytes per feed call [default: the receive block, 128K]
    --duration SECS      how long to repeat the object [default: 5]
    --json               print one JSON object instead of the text line
";

struct Options {
    signatures: Option<PathBuf>,
    body_size: usize,
    body_file: Option<PathBuf>,
    eicar: bool,
    eicar_at: body::EicarAt,
    feed_bytes: usize,
    duration: Duration,
    json: bool,
}

fn size(s: &str) -> Option<usize> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1024),
        b'M' | b'm' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        signatures: None,
        body_size: 10 << 20,
        body_file: None,
        eicar: false,
        eicar_at: body::EicarAt::Middle,
        feed_bytes: icapd::limits::RECV_BLOCK_BYTES,
        duration: Duration::from_secs(5),
        json: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--signatures" => o.signatures = Some(PathBuf::from(value()?)),
            "--body-size" => {
                let v = value()?;
                o.body_size = size(&v).ok_or(format!("--body-size: '{v}' is not a size"))?
            }
            "--body-file" => o.body_file = Some(PathBuf::from(value()?)),
            "--eicar" => o.eicar = true,
            "--eicar-at" => {
                let v = value()?;
                o.eicar_at = if v == "middle" {
                    body::EicarAt::Middle
                } else {
                    body::EicarAt::Offset(size(&v).ok_or(format!("--eicar-at: '{v}' is not an offset"))?)
                }
            }
            "--feed-bytes" => {
                let v = value()?;
                o.feed_bytes = size(&v).filter(|&n| n > 0).ok_or(format!("--feed-bytes: '{v}' is not a size"))?
            }
            "--duration" => {
                let v = value()?;
                let secs: f64 =
                    v.parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0).ok_or(format!("--duration: '{v}'"))?;
                o.duration = Duration::from_secs_f64(secs)
            }
            "--json" => o.json = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a} (see --help)")),
        }
    }
    Ok(o)
}

fn main() {
    if let Err(e) = parse().and_then(|o| run(&o)) {
        eprintln!("icapd-scan-bench: {e}");
        std::process::exit(2);
    }
}

fn run(o: &Options) -> Result<(), String> {
    let dir = o.signatures.as_ref().ok_or("--signatures DIR is required")?;
    let gen = load(dir, LoadOptions::default())?;
    let sigs = gen.summary.body + gen.summary.hashes + gen.summary.yara_stream + gen.summary.yara_whole;
    let limits = Limits::default();
    let policy = ScanPolicy {
        over_limit: OverLimit::Block,
        early_204: Early204::default(),
        encrypted: icapd::scan::unpack::EncryptedPolicy::Block,
    };
    let ctx = ScanCtx::new(Arc::new(gen), limits.scan(), policy);
    let mut inspector = EngineInspector::new(ctx);

    let clean = match &o.body_file {
        Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => body::synthetic(o.body_size),
    };
    let object = if o.eicar { body::with_eicar(&clean, o.eicar_at) } else { clean };
    let res_hdr = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        object.len()
    );
    let req_hdr = b"GET http://bench.test/object HTTP/1.1\r\nHost: bench.test\r\n\r\n";
    let txn = Txn {
        method: Method::Respmod,
        service: "respmod",
        req_hdr: Some(req_hdr),
        res_hdr: Some(res_hdr.as_bytes()),
        policy: Default::default(),
    };

    let mut passes = 0u64;
    let mut best = Duration::MAX;
    let started = Instant::now();
    let cpu_started = thread_cpu();
    while passes == 0 || started.elapsed() < o.duration {
        let t0 = Instant::now();
        let verdict = scan_once(&mut inspector, &txn, &object, o.feed_bytes);
        best = best.min(t0.elapsed());
        match (&verdict, o.eicar) {
            (Verdict::Clean, false) | (Verdict::Infected { .. }, true) => {}
            _ => {
                return Err(format!(
                    "pass {passes}: unexpected verdict {verdict:?} (expected {})",
                    if o.eicar { "infected" } else { "clean" }
                ))
            }
        }
        passes += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = (thread_cpu() - cpu_started).max(1e-9);
    let mb_s = passes as f64 * object.len() as f64 / secs / 1e6;
    let mb_cpu_s = passes as f64 * object.len() as f64 / cpu_secs / 1e6;
    let best_mb_s = object.len() as f64 / best.as_secs_f64() / 1e6;
    if o.json {
        println!(
            "{{\"signatures\": {sigs}, \"body_bytes\": {}, \"feed_bytes\": {}, \"passes\": {passes}, \"mb_per_s\": {mb_s:.1}, \"mb_per_cpu_s\": {mb_cpu_s:.1}, \"best_pass_mb_per_s\": {best_mb_s:.1}, \"eicar\": {}}}",
            object.len(),
            o.feed_bytes,
            o.eicar
        );
    } else {
        println!(
            "{sigs} signatures, {} B object in {} B feeds: {passes} passes, {mb_s:.1} MB/s, {mb_cpu_s:.1} MB per CPU second (best pass {best_mb_s:.1} MB/s), every verdict {}",
            object.len(),
            o.feed_bytes,
            if o.eicar { "infected" } else { "clean" }
        );
    }
    Ok(())
}

/// CPU time of this thread in seconds: on a shared machine the wall clock also counts the time
/// other processes had the CPU, the thread's CPU time does not.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the value we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// One object through the inspector the way a connection drives it.
fn scan_once(inspector: &mut EngineInspector, txn: &Txn<'_>, object: &[u8], feed_bytes: usize) -> Verdict {
    if let Progress::Done(v) = inspector.begin(txn) {
        return v;
    }
    for piece in object.chunks(feed_bytes) {
        if let Progress::Done(v) = inspector.feed(piece) {
            return v;
        }
    }
    inspector.finish()
}
