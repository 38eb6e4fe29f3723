//! One worker thread: an event loop over its share of the connections.
//!
//! A thread per connection would spend the client's CPU on context switches, and the client
//! shares the machine with the server it measures. So each worker drives several connections
//! with `ppoll`, which also gives the open loop sub-millisecond pacing. The loop starts due
//! requests on idle connections, writes and reads whatever the sockets allow, fails requests
//! past their timeout, and ends once the schedule is exhausted and every answer is in.

use crate::conn::Conn;
use crate::request::Workload;
use crate::schedule::Schedule;
use crate::stats::{Progress, Tally};
use crate::tls::TlsClient;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest sleep in one poll, so the progress counters stay fresh.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// Receive buffer per worker.
const READ_BUF_BYTES: usize = 256 * 1024;
/// Pause after a failed connect before the next try, so a dead server is not hammered.
const CONNECT_RETRY: Duration = Duration::from_millis(10);

pub struct WorkerConfig {
    pub addr: SocketAddr,
    pub connections: usize,
    pub allow_204: bool,
    pub timeout: Duration,
    pub tls: Option<TlsClient>,
}

pub fn run(cfg: &WorkerConfig, workload: &Workload, schedule: &mut dyn Schedule, progress: &Progress) -> Tally {
    let mut tally = Tally::default();
    let mut conns: Vec<Conn> =
        (0..cfg.connections).map(|_| Conn::new(cfg.addr, cfg.allow_204, cfg.tls.clone())).collect();
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(cfg.connections);
    let mut polled: Vec<usize> = Vec::with_capacity(cfg.connections);
    let mut last_publish = Instant::now();
    loop {
        let now = Instant::now();
        for conn in conns.iter_mut().filter(|c| !c.busy()) {
            let Some((seq, origin)) = schedule.next(now) else { break };
            if !conn.start(workload.object(seq), origin, cfg.timeout, &mut tally) {
                std::thread::sleep(CONNECT_RETRY);
                break;
            }
        }
        let busy = conns.iter().any(|c| c.busy());
        if !busy && schedule.exhausted(Instant::now()) {
            break;
        }

        fds.clear();
        polled.clear();
        for (i, conn) in conns.iter().enumerate() {
            let Some(fd) = conn.fd() else { continue };
            let events = if conn.wants_write() { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN };
            fds.push(libc::pollfd { fd, events, revents: 0 });
            polled.push(i);
        }
        let mut wake = now + POLL_SLICE;
        // A due request only needs a wake-up when a connection is free to send it; otherwise
        // the next answer is the event to wait for (waking for a past due time would spin).
        if conns.iter().any(|c| !c.busy()) {
            if let Some(t) = schedule.wake_at() {
                wake = wake.min(t);
            }
        }
        for d in conns.iter().filter_map(|c| c.deadline()) {
            wake = wake.min(d);
        }
        // TLS: decrypted bytes already in rustls announce no readiness, so do not sleep on them.
        let buffered = conns.iter_mut().any(|c| c.buffered_input());
        let wait = if buffered { Duration::ZERO } else { wake.saturating_duration_since(Instant::now()) };
        let ts =
            libc::timespec { tv_sec: wait.as_secs() as libc::time_t, tv_nsec: wait.subsec_nanos() as libc::c_long };
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd entries that lives
        // across the call; the timeout points to a live timespec; no signal mask is passed.
        let ready = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
        if ready > 0 {
            for (pfd, &i) in fds.iter().zip(&polled) {
                if pfd.revents & libc::POLLOUT != 0 {
                    conns[i].on_writable();
                }
                if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    conns[i].on_readable(&mut buf, &mut tally);
                }
            }
        }
        if buffered {
            for conn in conns.iter_mut() {
                if conn.buffered_input() {
                    conn.on_readable(&mut buf, &mut tally);
                }
            }
        }
        let now = Instant::now();
        for conn in conns.iter_mut() {
            conn.check_deadline(now, &mut tally);
        }
        if now.duration_since(last_publish) >= POLL_SLICE {
            progress.publish(&tally);
            last_publish = now;
        }
    }
    tally.unsent += schedule.unsent();
    progress.publish(&tally);
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{self, EicarAt};
    use crate::closed_loop::ClosedLoop;
    use crate::fake_server;
    use crate::open_loop::OpenLoop;
    use crate::request::{Framing, Method};

    fn workload(body_bytes: usize, preview: Option<usize>, allow_204: bool, eicar_every: u64) -> Workload {
        let f = Framing {
            method: Method::Respmod,
            authority: "127.0.0.1".into(),
            service: "respmod".into(),
            allow_204,
            preview,
            chunk_bytes: 16 * 1024,
        };
        Workload::new(&f, &[body::synthetic(body_bytes)], false, eicar_every, EicarAt::Middle)
    }

    fn closed(addr: SocketAddr, w: &Workload, allow_204: bool, requests: u64) -> Tally {
        let cfg = WorkerConfig { addr, connections: 3, allow_204, timeout: Duration::from_secs(20), tls: None };
        let mut schedule = ClosedLoop::new(0, 1, Some(requests), Instant::now() + Duration::from_secs(60));
        run(&cfg, w, &mut schedule, &Progress::default())
    }

    #[test]
    fn preview_204_and_block_pages() {
        let addr = fake_server::start(false);
        let t = closed(addr, &workload(1024, Some(1024), true, 5), true, 40);
        assert_eq!(
            (t.answered(), t.passed, t.block_page, t.wrong, t.error_count()),
            (40, 32, 8, 0, 0),
            "{:?}",
            t.samples
        );
        assert_eq!(t.infected_sent, 8);
        assert_eq!(t.latency_us.len(), 40);
        assert_eq!(t.body_bytes, 40 * 1024);
    }

    #[test]
    fn continue_echo_and_cut_echoes_reconnect() {
        let addr = fake_server::start(false);
        let t = closed(addr, &workload(300_000, Some(1024), false, 4), false, 24);
        assert_eq!(
            (t.answered(), t.passed, t.block_cut, t.wrong, t.error_count()),
            (24, 18, 6, 0, 0),
            "{:?}",
            t.samples
        );
        // Without a preview the whole request goes out in one part.
        let t = closed(addr, &workload(70_000, None, false, 0), false, 10);
        assert_eq!((t.passed, t.wrong, t.error_count()), (10, 0, 0), "{:?}", t.samples);
        // Allow 204 with a body past the preview: continue, then 204 or a block page.
        let t = closed(addr, &workload(5000, Some(1024), true, 2), true, 10);
        assert_eq!((t.passed, t.block_page, t.wrong, t.error_count()), (5, 5, 0, 0), "{:?}", t.samples);
    }

    #[test]
    fn a_server_that_passes_everything_is_wrong_on_every_infected_object() {
        let addr = fake_server::start(true);
        let t = closed(addr, &workload(1024, Some(1024), true, 3), true, 30);
        assert_eq!((t.answered(), t.passed, t.wrong, t.error_count()), (30, 30, 10, 0));
        assert!(t.samples[0].contains("wrong verdict: infected object answered Passed"), "{:?}", t.samples);
    }

    #[test]
    fn open_loop_sends_what_falls_due() {
        let addr = fake_server::start(false);
        let w = workload(1024, Some(1024), true, 0);
        let cfg = WorkerConfig { addr, connections: 4, allow_204: true, timeout: Duration::from_secs(20), tls: None };
        let start = Instant::now();
        let mut schedule = OpenLoop::new(0, 1, 500.0, None, start, start + Duration::from_millis(200));
        let t = run(&cfg, &w, &mut schedule, &Progress::default());
        // 100 requests fall due in 200 ms; each is answered or counted as never sent.
        assert_eq!(t.answered() + t.unsent, 100);
        assert!(t.answered() > 0);
        assert_eq!((t.wrong, t.error_count()), (0, 0), "{:?}", t.samples);
    }

    #[test]
    fn a_dead_server_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let w = workload(10, None, true, 0);
        let t = closed(port, &w, true, 2);
        assert_eq!(t.answered(), 0);
        assert_eq!(t.errors.get(&crate::stats::ErrorKind::Connect), Some(&2));
    }
}
