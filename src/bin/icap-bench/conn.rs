//! One keep-alive connection to the server, driven by readiness events.
//!
//! The socket is non-blocking with TCP_NODELAY. A request is written from its prebuilt bytes
//! as fast as the kernel takes them, while the answer is read as it comes: a server echoing a
//! 10 MB body without `Allow: 204` sends while it receives, so writing everything before reading
//! would deadlock on full socket buffers. After a preview the rest is written only once
//! `100 Continue` arrives; a final answer to the preview ends the request there.
//!
//! The connection is dropped (and opened again for the next request) whenever the byte stream
//! can no longer be trusted to be in step: the server closed or said `Connection: close`, it
//! answered before the request was fully written, or it sent something unexpected.

use crate::request::Object;
use crate::response::{Response, ResponseReader};
use crate::stats::{ErrorKind, Tally};
use crate::tls::{Stream, TlsClient};
use crate::verdict::{self, Outcome};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Reads per readiness event, so that one fast sender cannot starve the other connections.
const READS_PER_EVENT_MAX: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    First,
    Rest,
    /// Nothing (more) to write: waiting for `100 Continue` or the final answer.
    None,
}

struct Job<'w> {
    obj: &'w Object,
    /// Latency is measured from here: the send time in a closed loop, the intended send time in
    /// an open loop.
    origin: Instant,
    deadline: Instant,
    part: Part,
    written: usize,
    /// The preview went out and the server has not said `100 Continue` yet.
    awaiting_continue: bool,
    /// A write failed; the answer (or the end of the connection) is still read.
    write_failed: bool,
}

pub struct Conn<'w> {
    addr: SocketAddr,
    allow_204: bool,
    /// Connect with TLS (`--tls`).
    tls: Option<TlsClient>,
    stream: Option<Stream>,
    reader: ResponseReader,
    job: Option<Job<'w>>,
}

impl<'w> Conn<'w> {
    pub fn new(addr: SocketAddr, allow_204: bool, tls: Option<TlsClient>) -> Self {
        Conn { addr, allow_204, tls, stream: None, reader: ResponseReader::new(), job: None }
    }

    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.stream.as_ref().map(|s| s.tcp.as_raw_fd())
    }

    /// Something to write: the request (unless a TLS handshake waits for the server), or TLS
    /// records rustls could not write yet.
    pub fn wants_write(&self) -> bool {
        let stream = self.stream.as_ref();
        (self.job.as_ref().is_some_and(|j| j.part != Part::None) && !stream.is_some_and(Stream::handshaking))
            || stream.is_some_and(Stream::pending_output)
    }

    /// Decrypted bytes wait in rustls: read them without waiting for the socket.
    pub fn buffered_input(&mut self) -> bool {
        self.stream.as_mut().is_some_and(Stream::buffered_input)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.job.as_ref().map(|j| j.deadline)
    }

    /// Starts sending `obj`; returns false (with the error counted) when no connection could
    /// be opened.
    pub fn start(&mut self, obj: &'w Object, origin: Instant, timeout: Duration, tally: &mut Tally) -> bool {
        if self.stream.is_none() {
            match TcpStream::connect(self.addr).and_then(|s| {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Stream::new(s, self.tls.as_ref())
            }) {
                Ok(s) => {
                    self.stream = Some(s);
                    self.reader.reset();
                }
                Err(e) => {
                    tally.error(ErrorKind::Connect, || format!("connect {}: {e}", self.addr));
                    return false;
                }
            }
        }
        if obj.infected {
            tally.infected_sent += 1;
        }
        let deadline = Instant::now() + timeout;
        self.job = Some(Job {
            obj,
            origin,
            deadline,
            part: Part::First,
            written: 0,
            awaiting_continue: false,
            write_failed: false,
        });
        self.on_writable();
        true
    }

    /// Writes as much of the current part as the socket takes.
    pub fn on_writable(&mut self) {
        let Some(stream) = self.stream.as_mut() else { return };
        match stream.flush_tls() {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::WouldBlock => return,
            Err(_) => {
                if let Some(job) = self.job.as_mut() {
                    job.part = Part::None;
                    job.write_failed = true;
                }
                return;
            }
        }
        let Some(job) = self.job.as_mut() else { return };
        loop {
            let buf: &[u8] = match job.part {
                Part::First => &job.obj.first,
                Part::Rest => job.obj.rest.as_deref().unwrap_or(&[]),
                Part::None => return,
            };
            if job.written == buf.len() {
                job.written = 0;
                if job.part == Part::First && job.obj.rest.is_some() {
                    job.awaiting_continue = true;
                }
                job.part = Part::None;
                return;
            }
            match stream.write(&buf[job.written..]) {
                Ok(n) => job.written += n,
                Err(e) if e.kind() == IoKind::WouldBlock => return,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(_) => {
                    // The server may have answered and closed (a block); reading tells.
                    job.part = Part::None;
                    job.write_failed = true;
                    return;
                }
            }
        }
    }

    /// Reads what arrived and acts on every complete answer.
    pub fn on_readable(&mut self, buf: &mut [u8], tally: &mut Tally) {
        for _ in 0..READS_PER_EVENT_MAX {
            let Some(stream) = self.stream.as_mut() else { return };
            let n = match stream.read(buf) {
                Ok(0) => return self.on_eof(tally),
                Ok(n) => n,
                Err(e) if e.kind() == IoKind::WouldBlock => return,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                // A reset after a cut echo ends the stream like a close does.
                Err(_) => return self.on_eof(tally),
            };
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (used, resp) = match self.reader.feed(input) {
                    Ok(r) => r,
                    Err(e) => return self.fail(ErrorKind::Protocol, e.to_string(), tally),
                };
                input = &input[used..];
                let Some(resp) = resp else { break };
                if !self.on_response(resp, tally) {
                    return;
                }
                if !input.is_empty() && self.job.is_none() {
                    return self.fail(ErrorKind::Protocol, "bytes after the answer".into(), tally);
                }
            }
        }
    }

    /// Fails the current request if its deadline passed.
    pub fn check_deadline(&mut self, now: Instant, tally: &mut Tally) {
        if self.job.as_ref().is_some_and(|j| now >= j.deadline) {
            self.fail(ErrorKind::Timeout, "no complete answer within the request timeout".into(), tally);
        }
    }

    /// Handles one complete response; returns false when the connection was dropped.
    fn on_response(&mut self, resp: Response, tally: &mut Tally) -> bool {
        let Some(job) = self.job.as_mut() else {
            self.fail(ErrorKind::Protocol, format!("unsolicited ICAP {}", resp.status), tally);
            return false;
        };
        if resp.status == 100 {
            if !job.awaiting_continue {
                self.fail(ErrorKind::Protocol, "100 Continue without a preview pending".into(), tally);
                return false;
            }
            job.awaiting_continue = false;
            job.part = Part::Rest;
            job.written = 0;
            self.on_writable();
            return true;
        }
        // An answer while a part is still being written leaves the stream out of step.
        let in_step = !job.write_failed && job.part == Part::None;
        self.finish(resp, tally);
        if !in_step {
            self.drop_stream();
            return false;
        }
        true
    }

    fn finish(&mut self, resp: Response, tally: &mut Tally) {
        let Some(job) = self.job.take() else { return };
        let now = Instant::now();
        *tally.statuses.entry(resp.status).or_default() += 1;
        let outcome = verdict::classify(&resp, job.obj.body_bytes, self.allow_204);
        match outcome {
            Outcome::Passed => tally.passed += 1,
            Outcome::BlockPage => tally.block_page += 1,
            Outcome::BlockCut => tally.block_cut += 1,
            Outcome::BlockShort => tally.block_short += 1,
            Outcome::Bad => {}
        }
        if !verdict::correct(outcome, job.obj.infected) {
            tally.wrong += 1;
            let infected = job.obj.infected;
            tally.sample(|| {
                format!("wrong verdict: {} object answered {outcome:?} ({resp:?})", infected_name(infected))
            });
        }
        tally.body_bytes += job.obj.body_bytes as u64;
        tally.record_latency(now.saturating_duration_since(job.origin).as_micros() as u64);
        if resp.close {
            self.drop_stream();
        }
    }

    fn on_eof(&mut self, tally: &mut Tally) {
        match self.reader.eof() {
            Ok(Some(resp)) if self.job.is_some() => self.finish(resp, tally),
            Ok(Some(_)) | Ok(None) if self.job.is_none() => {}
            Ok(_) => return self.fail(ErrorKind::Io, "server closed the connection without an answer".into(), tally),
            Err(e) => return self.fail(ErrorKind::Protocol, e.to_string(), tally),
        }
        self.drop_stream();
    }

    fn fail(&mut self, kind: ErrorKind, what: String, tally: &mut Tally) {
        if self.job.take().is_some() || kind != ErrorKind::Io {
            tally.error(kind, || what);
        }
        self.drop_stream();
    }

    fn drop_stream(&mut self) {
        self.stream = None;
        self.reader.reset();
    }
}

fn infected_name(infected: bool) -> &'static str {
    if infected {
        "infected"
    } else {
        "clean"
    }
}
