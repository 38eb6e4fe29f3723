//! icap-bench: an ICAP load generator that drives any ICAP server and checks every answer.
//!
//! It exists because the usual tools measure the wrong thing: c-icap's own `c-icap-stretch`
//! writes requests in small segments without TCP_NODELAY and stalls about 40 ms per request on
//! Nagle and delayed ACKs. Here every request is encoded before the clock starts and written in
//! as few `write` calls as the kernel allows on TCP_NODELAY sockets.
//!
//! ```text
//! args ─> request (encode objects once) ─> worker threads, each an event loop over its
//!         connections (conn), paced by a schedule (closed_loop | open_loop)
//!      ─> response (sans-IO reader) ─> verdict (right answer for this object?) ─> stats
//!      ─> report (markdown table + JSON)
//! ```
//!
//! A closed loop keeps N requests in flight and measures capacity; an open loop sends at a
//! fixed rate and measures latency from each request's intended send time, so a stalled server
//! is charged for every request it delayed. With `--eicar-every N` every Nth object carries
//! EICAR and must be blocked while all others pass; a wrong verdict fails the run.

mod args;
mod body;
mod closed_loop;
mod conn;
#[cfg(test)]
mod fake_server;
mod open_loop;
mod report;
mod request;
mod response;
mod schedule;
mod stats;
mod tls;
mod verdict;
mod worker;

use args::{Options, Parsed};
use request::{Framing, Method, Workload};
use stats::Progress;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let o = match args::parse(&argv) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return;
        }
        Err(e) => {
            eprintln!("icap-bench: {e}");
            std::process::exit(2);
        }
    };
    match run(&o) {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("icap-bench: {e}");
            std::process::exit(2);
        }
    }
}

/// Runs the benchmark; returns whether every request was answered and every answer was right.
fn run(o: &Options) -> Result<bool, String> {
    let addr: SocketAddr = o
        .server
        .to_socket_addrs()
        .map_err(|e| format!("--server {}: {e}", o.server))?
        .next()
        .ok_or(format!("--server {}: no address", o.server))?;
    let bodies = if o.body_files.is_empty() {
        vec![body::synthetic(o.body_size)]
    } else {
        o.body_files
            .iter()
            .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
            .collect::<Result<_, _>>()?
    };
    let method_name = match o.method {
        Method::Respmod => "RESPMOD",
        Method::Reqmod => "REQMOD",
    };
    let framing = Framing {
        method: o.method,
        authority: o.server.clone(),
        service: o.service.clone().unwrap_or_else(|| method_name.to_ascii_lowercase()),
        allow_204: o.allow_204,
        preview: o.preview,
        chunk_bytes: o.chunk_size,
    };
    let tls = if o.tls { Some(tls::TlsClient::new(&o.server, o.tls_ca.as_deref(), o.tls_no_verify)?) } else { None };
    let workload = Arc::new(Workload::new(&framing, &bodies, o.expect_blocked, o.eicar_every, o.eicar_at));
    drop(bodies);

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = o.threads.unwrap_or(cpus).min(o.connections);
    let progress: Arc<Vec<Progress>> = Arc::new((0..threads).map(|_| Progress::default()).collect());
    let start = Instant::now();
    let end = start + o.duration;
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let cfg = worker::WorkerConfig {
                addr,
                connections: o.connections / threads + usize::from(w < o.connections % threads),
                allow_204: o.allow_204,
                timeout: o.timeout,
                tls: tls.clone(),
            };
            let quota = o.requests.map(|n| n / threads as u64 + u64::from((w as u64) < n % threads as u64));
            let rate = o.rate;
            let (workload, progress) = (workload.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut schedule: Box<dyn schedule::Schedule> = match rate {
                    Some(r) => Box::new(open_loop::OpenLoop::new(w, threads, r, quota, start, end)),
                    None => Box::new(closed_loop::ClosedLoop::new(w, threads, quota, end)),
                };
                worker::run(&cfg, &workload, schedule.as_mut(), &progress[w])
            })
        })
        .collect();

    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if !o.quiet {
            let (answered, wrong, errors) = progress.iter().fold((0, 0, 0), |acc, p| {
                use std::sync::atomic::Ordering::Relaxed;
                (acc.0 + p.answered.load(Relaxed), acc.1 + p.wrong.load(Relaxed), acc.2 + p.errors.load(Relaxed))
            });
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\r[{secs:6.1} s] {answered} answered, {:.0} req/s, {wrong} wrong, {errors} errors   ",
                answered as f64 / secs
            );
        }
    }
    let mut tally = stats::Tally::default();
    for h in handles {
        tally.merge(h.join().map_err(|_| "a worker thread panicked".to_string())?);
    }
    let elapsed_secs = start.elapsed().as_secs_f64();
    if !o.quiet {
        eprintln!();
    }
    let ok = tally.wrong == 0 && tally.error_count() == 0 && tally.answered() > 0;
    let report = report::Report {
        label: o.label.clone().unwrap_or_else(|| o.server.clone()),
        server: o.server.clone(),
        method: method_name,
        offered_rate: o.rate,
        connections: o.connections,
        threads,
        body_bytes: workload.mean_body_bytes(),
        preview: o.preview,
        allow_204: o.allow_204,
        eicar_every: o.eicar_every,
        elapsed_secs,
        client_cpu_secs: cpu_secs(),
        tally,
    };
    print!("{}", report.markdown());
    match o.json.as_deref() {
        Some("-") => print!("{}", report.json()),
        Some(path) => std::fs::write(path, report.json()).map_err(|e| format!("--json {path}: {e}"))?,
        None => {}
    }
    let _ = std::io::stdout().flush();
    Ok(ok)
}

/// CPU time (user + system) this process has used so far.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed value we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}
