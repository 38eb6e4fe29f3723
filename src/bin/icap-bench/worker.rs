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
}

pub fn run(cfg: &WorkerConfig, workload: &Workload, schedule: &mut dyn Schedule, progress: &Progress) -> Tally {
    let mut tally = Tally::default();
    let mut conns: Vec<Conn> = (0..cfg.connections).map(|_| Conn::new(cfg.addr, cfg.allow_204)).collect();
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
        if let Some(t) = schedule.wake_at() {
            wake = wake.min(t);
        }
        for d in conns.iter().filter_map(|c| c.deadline()) {
            wake = wake.min(d);
        }
        let wait = wake.saturating_duration_since(Instant::now());
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
