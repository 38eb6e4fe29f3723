//! The per-connection state machine: bytes in, responses out, no I/O.
//!
//! The server layer drives a [`Conn`] in a loop: it reads socket bytes into
//! [`Conn::recv_buf`], reports them with [`Conn::handle_read`], writes what
//! [`Conn::poll_transmit`] offers and reports that with [`Conn::handle_written`]. Time only
//! enters as arguments (`now` for deadlines, `unix_secs` for the Date header); when
//! [`Conn::poll_deadline`] passes, the server calls [`Conn::handle_timeout`].
//!
//! One transaction runs at a time, through one typed phase per protocol step. Each phase owns
//! exactly the data that step needs, and leaving a phase means consuming it:
//!
//! ```text
//! Idle -> Head -> Encap(Request) -> Body(Body { request, echo: Echo }) -> Idle
//!                                         \-> early answer -> Drain(Request) -> Idle
//! any error, or a threat after the echo started -> Closing
//! ```
//!
//! The receive blocks ([`recv::RecvBuf`]) and the output queue ([`out::OutQueue`]) are types
//! of their own. Only two things may keep received bytes alive: the hold-back window
//! ([`hold::Holdback`]), which exists only inside a `Body` phase whose client may need the body
//! back, and the output queue, which lets go of each segment as it is written. The echoed
//! header section is copied out of its block when the body phase starts (it is at most
//! `http_header_bytes_max`), so it pins nothing; and an unpinned block goes back to the pool
//! wherever it is in the queue. What a connection holds in receive blocks is therefore
//! bounded by `conn_retained_bytes_max` whatever the client does: see [`Conn::held_bytes`].
//!
//! Pipelined requests wait in the receive block and are parsed as soon as the previous
//! transaction ends, so answers leave in request order.
//!
//! ## What happens to the body
//!
//! Body bytes are decoded in place and fed to the [`Inspector`] as slices of the receive block.
//!
//! * With `Allow: 204` nothing is retained: the client keeps its own copy, a clean object is
//!   answered 204 and an infected one gets a block page, and neither needs the body. The
//!   answer waits for the end of the body (or the first threat).
//! * Without it (Squid for anything over 64 KB) the client needs the body back, and Squid
//!   stalls if a server waits for the whole object before answering. So once more than
//!   `holdback_bytes` are retained, the echo is committed: the 200 head goes out and every
//!   byte except the newest `holdback_bytes` is forwarded as it arrives. If a threat is found
//!   after that, the connection is closed without the final chunk, and because the hold-back
//!   window never left, the client never receives the object whole.
//! * After an early answer (`Drain`), the rest of the body is decoded and discarded: the
//!   newest block is reused in place, so draining a body of any size holds one block.

#[cfg(test)]
mod bound_tests;
mod hold;
#[cfg(test)]
mod late_threat_tests;
mod out;
#[cfg(test)]
mod rate_tests;
mod recv;

use self::hold::Holdback;
use self::out::OutQueue;
use self::recv::RecvBuf;
use super::blocks::{BlockPool, Seg};
use super::chunked::{Chunk, ChunkDecoder};
use super::error::ProtoError;
use super::head::{HeadParser, HeadStatus};
use super::httphead::{self, Section};
use super::identity::{RequestedService, Who};
use super::request::{self, Request};
use super::response::{self, ServerInfo};
use super::Method;
use crate::inspect::{Inspector, Progress, Txn, Verdict};
use crate::limits::Limits;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Instant;

/// Protocol phase of a connection, as the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Between requests, nothing of the next one received.
    Idle,
    /// Reading the ICAP head.
    Head,
    /// Head parsed; waiting for the encapsulated HTTP headers.
    EncapHeaders,
    /// Reading preview chunks.
    Preview,
    /// Reading the body (after 100 Continue, or without preview).
    Body,
    /// The answer was already given; reading and discarding the rest of the body.
    Drain,
    /// No more input is processed; close once the output is flushed.
    Closing,
}

/// How a finished transaction was answered, for counters and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    pub method: Option<Method>,
    /// The service named in the request URI, when it is one of ours.
    pub service: Option<&'static str>,
    /// ICAP status of the answer; 0 when an answer that had started was cut off by the client,
    /// an error or a deadline. A late threat that cuts an echo short keeps its 200 and is marked
    /// `aborted` (logged as `partiallyblocked`).
    pub status: u16,
    pub verdict: Option<Verdict>,
    /// Encapsulated body bytes received (after de-chunking), up to the answer.
    pub body_bytes: u64,
    /// Bytes of the ICAP head and the encapsulated HTTP headers.
    pub head_bytes: u64,
    /// Bytes queued for the client for this transaction (head, echoed headers and body).
    pub out_bytes: u64,
    /// When the first byte of the request head was processed (the caller's clock).
    pub started: Instant,
    /// The echo was cut off (threat found after the answer had started, or an error).
    pub aborted: bool,
    /// The protocol error that ended the transaction, if one did.
    pub error: Option<ProtoError>,
    /// The scan limit that decided the object, if one did (see [`Inspector::limit_hit`]).
    pub limit: Option<&'static str>,
    /// The member path of a find inside a container (see [`Inspector::found_in`]).
    pub found_in: Option<Box<str>>,
    /// The service asked for (even an unknown one), the identity and the policy.
    pub who: Who,
}

/// Outcomes a connection keeps for the caller before it polls them. Pipelined requests that
/// complete in one read can exceed this; the queue then grows, bounded by what one read holds.
const OUTCOMES_RESERVED: usize = 16;

/// Capacity of the header copy kept between transactions; a larger one is given back.
const HDR_KEEP_BYTES: usize = 4 * 1024;

/// What the client gets back of the body.
#[derive(Debug)]
enum Echo {
    /// `Allow: 204`: neither possible answer (204 or a block page) carries the body.
    NotNeeded,
    /// The 200 has not started: a copy of the header section to echo, and the body so far.
    Pending { hdr: Vec<u8>, held: Holdback },
    /// The 200 head and header section went out; all but the newest bytes follow as they come.
    Streaming { held: Holdback },
}

/// The body phase (preview or body) of one transaction.
#[derive(Debug)]
struct Body {
    req: Request,
    /// `Some` while reading the preview: the data bytes it may still carry.
    preview_left: Option<u64>,
    /// The inspector concluded clean before the end: nothing more is inspected.
    clean_early: bool,
    echo: Echo,
}

/// One typed phase, owning what that phase needs.
#[derive(Debug)]
enum Phase {
    Idle,
    Head,
    Encap(Request),
    Body(Body),
    /// Answered early; the rest of the body is discarded as it arrives.
    Drain(Request),
    Closing,
}

/// What an answer leaves the transaction in.
enum Answered {
    /// The answer is complete (the transaction can finish when its input has).
    Complete,
    /// Answered before the end of the body: drain the rest.
    Drain,
    /// A started echo was cut off: close.
    CutOff,
}

/// Per-connection state machine.
pub struct Conn {
    limits: Limits,
    info: ServerInfo,
    phase: Phase,
    recv: RecvBuf,
    out: OutQueue,
    /// Start of the current message (head) in the newest block.
    msg_start: usize,
    /// Parse position in the newest block.
    pos: usize,
    head: HeadParser,
    head_len: usize,
    chunks: ChunkDecoder,
    body_bytes: u64,
    /// A header copy's allocation, kept for the next transaction.
    spare_hdr: Vec<u8>,
    /// The body's last chunk was read (`ieof` or not) and its end is handled at the start of the
    /// next step: the server charges the scan time spent so far before the verdict is taken.
    end_pending: Option<bool>,
    /// Body bytes this step may still decode (`scan_turn_bytes` per step).
    turn_left: usize,
    /// The step stopped on purpose (a transaction ended, its turn was used up, or the body end
    /// waits for the scan time to be charged), not for want of input.
    paused: bool,
    inspector: Box<dyn Inspector>,
    /// Start of the idle period or head, or time of the last body activity.
    since: Instant,
    outcomes: VecDeque<TxnOutcome>,
    /// When the current transaction's body started (for the minimum transfer rate).
    body_started: Instant,
    /// When the current transaction's head started, and what it has queued for output.
    txn_started: Instant,
    txn_out_bytes: u64,
    last_error: Option<ProtoError>,
    block_page: Option<std::rc::Rc<str>>,
    /// The inspector has begun the current transaction (so what it reports is about it).
    began: bool,
    /// Who asks in the current transaction; the policy table and connecting address it is
    /// judged with.
    who: Who,
    policies: Option<std::rc::Rc<crate::access::PolicyTable>>,
    peer_ip: Option<std::net::IpAddr>,
}

impl Conn {
    pub fn new(limits: Limits, info: ServerInfo, inspector: Box<dyn Inspector>, now: Instant) -> Self {
        Conn {
            head: HeadParser::new(&limits),
            chunks: ChunkDecoder::new(limits.chunk_line_bytes_max, limits.trailer_bytes_max),
            limits,
            info,
            phase: Phase::Idle,
            recv: RecvBuf::new(),
            out: OutQueue::new(),
            msg_start: 0,
            pos: 0,
            head_len: 0,
            body_bytes: 0,
            spare_hdr: Vec::new(),
            end_pending: None,
            turn_left: 0,
            paused: false,
            inspector,
            since: now,
            outcomes: VecDeque::with_capacity(OUTCOMES_RESERVED),
            body_started: now,
            txn_started: now,
            txn_out_bytes: 0,
            last_error: None,
            block_page: None,
            began: false,
            who: Who::default(),
            policies: None,
            peer_ip: None,
        }
    }

    /// Judges transactions with the operator's policy table; `peer` is the connecting address
    /// (used for the table's networks when a request carries no `X-Client-IP`).
    pub fn set_policies(&mut self, table: std::rc::Rc<crate::access::PolicyTable>, peer: Option<std::net::IpAddr>) {
        self.policies = Some(table);
        self.peer_ip = peer;
    }

    /// Uses an operator's block page template instead of the built-in one.
    pub fn set_block_page(&mut self, template: std::rc::Rc<str>) {
        self.block_page = Some(template);
    }

    pub fn state(&self) -> State {
        match &self.phase {
            Phase::Idle => State::Idle,
            Phase::Head => State::Head,
            Phase::Encap(_) => State::EncapHeaders,
            Phase::Body(b) if b.preview_left.is_some() => State::Preview,
            Phase::Body(_) => State::Body,
            Phase::Drain(_) => State::Drain,
            Phase::Closing => State::Closing,
        }
    }

    /// The error that closed the connection, if one did.
    pub fn last_error(&self) -> Option<ProtoError> {
        self.last_error
    }

    /// Receive-block bytes this connection holds now. At most `conn_retained_bytes_max` whenever
    /// the output queue is empty, and the connection refuses to read ([`Conn::wants_read`])
    /// while a further block would take it past that: a client that does not read its answers
    /// is not read from either.
    pub fn held_bytes(&self) -> usize {
        self.recv.held_bytes()
    }

    /// Whether the server should read more input. False once closing, and while output is
    /// pending and another receive block would exceed `conn_retained_bytes_max` (write first).
    pub fn wants_read(&self) -> bool {
        if matches!(self.phase, Phase::Closing) {
            return false;
        }
        let next = self.recv.held_bytes() + self.limits.recv_block_bytes;
        next <= self.limits.conn_retained_bytes_max || self.out.is_empty()
    }

    /// Whether a transaction is in progress (the connection holds or will need more than its
    /// idle block).
    pub fn in_transaction(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::Closing)
    }

    /// Whether there are bytes to write.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Between transactions with nothing buffered, nothing owed and nothing to report: the
    /// connection carries no state but its socket, so the server may move it to another shard
    /// (bytes the client already sent are still in the socket, so pipelined order holds).
    pub fn at_rest(&self) -> bool {
        matches!(self.phase, Phase::Idle)
            && self.out.is_empty()
            && self.recv.pins() == 0
            && self.outcomes.is_empty()
            && self.end_pending.is_none()
            && (self.recv.is_empty() || self.recv.newest_buf().1 == self.pos)
    }

    /// The connection is finished: close the socket.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Closing) && self.out.is_empty()
    }

    /// Outcomes of transactions finished since the last call, oldest first.
    pub fn poll_outcome(&mut self) -> Option<TxnOutcome> {
        self.outcomes.pop_front()
    }

    /// When the current phase times out, if it can.
    pub fn poll_deadline(&self) -> Option<Instant> {
        let span = match self.phase {
            Phase::Idle => self.limits.idle_keepalive,
            Phase::Head | Phase::Encap(_) => self.limits.header_read_deadline,
            Phase::Body(_) | Phase::Drain(_) => {
                let silent = self.since + self.limits.body_inactivity;
                return Some(self.rate_deadline().map_or(silent, |d| d.min(silent)));
            }
            Phase::Closing => return None,
        };
        Some(self.since + span)
    }

    /// With a minimum transfer rate: when the body so far will have become too slow (the grace
    /// period plus the time the bytes received so far may take at the minimum rate).
    fn rate_deadline(&self) -> Option<Instant> {
        let rate = self.limits.transfer_rate_min_bytes_per_sec;
        if rate == 0 {
            return None;
        }
        let allowed = std::time::Duration::from_secs_f64(self.body_bytes as f64 / rate as f64);
        Some(self.body_started + self.limits.transfer_rate_grace + allowed)
    }

    /// The free space to read socket bytes into. Never empty while [`Conn::wants_read`].
    pub fn recv_buf(&mut self, pool: &mut BlockPool) -> &mut [u8] {
        self.recv.sweep(pool);
        let consumed = !self.recv.is_empty() && self.recv.newest_buf().1 == self.pos;
        let in_body = matches!(self.phase, Phase::Body(_) | Phase::Drain(_));
        if matches!(self.phase, Phase::Idle) && (self.recv.is_empty() || consumed) && self.recv.pins() == 0 {
            // Between requests with nothing buffered: wait with one small block.
            let keep_small = self.recv.held_bytes() < pool.large_bytes() && !self.recv.is_empty();
            if !keep_small {
                self.recv.release_all(pool);
                self.recv.push(pool.take(true), 0);
            }
            self.recv.reset_newest();
            self.pos = 0;
            self.msg_start = 0;
        } else if in_body && consumed && !self.recv.newest_pinned() {
            // Everything read so far was decoded and nothing of it is kept (a drain, an
            // `Allow: 204` body): read over it instead of taking another block.
            self.recv.reset_newest();
            self.pos = 0;
            self.msg_start = 0;
        } else if self.recv.newest_capacity().is_none_or(|cap| self.recv.newest_buf().1 == cap) {
            self.grow(pool);
        }
        self.recv.free_tail()
    }

    /// Makes room when the newest block is full. A message head must stay contiguous, so an
    /// unfinished one moves to the start of a fresh large block (bounded by the header limits,
    /// which together fit in one block); body bytes simply continue in the next block.
    fn grow(&mut self, pool: &mut BlockPool) {
        let in_head = matches!(self.phase, Phase::Idle | Phase::Head | Phase::Encap(_));
        let mut fresh = pool.take(false);
        if in_head && !self.recv.is_empty() {
            let (buf, filled) = self.recv.newest_buf();
            let region = &buf[self.msg_start..filled];
            assert!(region.len() < fresh.len(), "head bounds are validated to fit one block");
            fresh[..region.len()].copy_from_slice(region);
            let len = region.len();
            self.pos -= self.msg_start;
            self.msg_start = 0;
            self.recv.push(fresh, len);
        } else {
            self.recv.push(fresh, 0);
            self.pos = 0;
            self.msg_start = 0;
        }
    }

    /// `n` bytes were read into the buffer last returned by [`Conn::recv_buf`]; processes all
    /// of them (every pipelined transaction they complete).
    pub fn handle_read(&mut self, n: usize, now: Instant, unix_secs: u64) {
        self.handle_received(n, now);
        while self.step(now, unix_secs) {}
    }

    /// `n` bytes were read into the buffer last returned by [`Conn::recv_buf`]; nothing is
    /// processed until [`Conn::step`]. The server uses this pair to measure (and charge) the
    /// work of each transaction on its own, and to yield between transactions.
    pub fn handle_received(&mut self, n: usize, now: Instant) {
        self.recv.filled(n);
        if matches!(self.phase, Phase::Body(_) | Phase::Drain(_)) {
            self.since = now;
        }
    }

    /// Processes buffered input until one transaction ends, `scan_turn_bytes` of body have
    /// been processed, or the input runs out, so that everything one call does belongs to one
    /// transaction and is bounded. Returns whether buffered input is left (call again).
    pub fn step(&mut self, now: Instant, unix_secs: u64) -> bool {
        let finished = self.outcomes.len();
        self.turn_left = self.limits.scan_turn_bytes;
        self.paused = false;
        self.process(now, unix_secs, finished);
        self.check_pins();
        self.paused && self.has_buffered_input()
    }

    /// Whether received bytes wait to be processed.
    fn has_buffered_input(&self) -> bool {
        if self.end_pending.is_some() {
            return true;
        }
        if self.recv.is_empty() {
            return false;
        }
        let filled = self.recv.newest_buf().1;
        match self.phase {
            Phase::Closing => false,
            Phase::Idle | Phase::Head | Phase::Encap(_) => self.msg_start < filled,
            Phase::Body(_) | Phase::Drain(_) => self.pos < filled,
        }
    }

    /// The client closed its side. A transaction in progress cannot complete; an echo that
    /// already started is cut off (no final chunk).
    pub fn handle_eof(&mut self) {
        self.end_pending = None;
        let phase = std::mem::replace(&mut self.phase, Phase::Closing);
        match phase {
            Phase::Idle | Phase::Closing => {}
            Phase::Head => self.record(None, None, 0, true),
            Phase::Encap(req) | Phase::Drain(req) => self.record(Some(req), None, 0, true),
            Phase::Body(b) => {
                let req = b.req;
                self.drop_body(b);
                self.record(Some(req), None, 0, true);
            }
        }
    }

    /// Call when [`Conn::poll_deadline`] has passed.
    pub fn handle_timeout(&mut self, now: Instant, unix_secs: u64) {
        if self.poll_deadline().is_none_or(|d| now < d) {
            return;
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Closing);
        let (req, committed) = match phase {
            Phase::Idle | Phase::Closing => return,
            Phase::Drain(req) => {
                self.record(Some(req), None, 0, true);
                return;
            }
            Phase::Head => (None, false),
            Phase::Encap(req) => (Some(req), false),
            Phase::Body(b) => {
                let committed = matches!(b.echo, Echo::Streaming { .. });
                let req = b.req;
                self.drop_body(b);
                (Some(req), committed)
            }
        };
        if committed {
            self.record(req, None, 0, true);
        } else {
            self.push_scratch(|out, istag| response::bodiless(out, 408, istag, unix_secs, true));
            self.record(req, None, 408, false);
        }
    }

    /// Fills `iov` with the bytes to write next; returns how many slices were filled.
    pub fn poll_transmit<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        self.out.poll(&self.recv, iov)
    }

    /// `n` bytes of what [`Conn::poll_transmit`] offered were written.
    pub fn handle_written(&mut self, n: usize, pool: &mut BlockPool) {
        self.out.written(n, &mut self.recv);
        self.recv.sweep(pool);
        self.check_pins();
    }

    /// Returns every block to the pool; the connection is gone.
    pub fn release(mut self, pool: &mut BlockPool) {
        self.out.clear(&mut self.recv);
        if let Phase::Body(b) = std::mem::replace(&mut self.phase, Phase::Closing) {
            self.drop_body(b);
        }
        self.recv.release_all(pool);
    }

    /// Every pin is owned by the hold-back window or the output queue (checked in debug builds:
    /// a pin owned by nothing would keep a block forever).
    fn check_pins(&self) {
        if cfg!(debug_assertions) {
            let held = match &self.phase {
                Phase::Body(Body { echo: Echo::Pending { held, .. } | Echo::Streaming { held }, .. }) => {
                    held.segments()
                }
                _ => 0,
            };
            assert_eq!(self.recv.pins(), held + self.out.pinned(), "every pinned block has an owner");
        }
    }

    /// Lets go of what a body phase kept.
    fn drop_body(&mut self, b: Body) {
        match b.echo {
            Echo::NotNeeded => {}
            Echo::Pending { hdr, mut held } => {
                held.clear(&mut self.recv);
                self.recycle_hdr(hdr);
            }
            Echo::Streaming { mut held } => held.clear(&mut self.recv),
        }
    }

    fn recycle_hdr(&mut self, mut hdr: Vec<u8>) {
        hdr.clear();
        if hdr.capacity() <= HDR_KEEP_BYTES {
            self.spare_hdr = hdr;
        }
    }

    /// Runs the phases over buffered input; returns once input runs out or a transaction
    /// recorded after the first `finished` outcomes has ended.
    fn process(&mut self, now: Instant, unix_secs: u64, finished: usize) {
        if let Some(ieof) = self.end_pending.take() {
            if matches!(self.phase, Phase::Body(_) | Phase::Drain(_)) {
                self.on_body_end(ieof, now, unix_secs);
            }
        }
        loop {
            match &self.phase {
                Phase::Closing => return,
                Phase::Idle if self.outcomes.len() > finished => {
                    self.paused = true;
                    return;
                }
                Phase::Idle | Phase::Head => {
                    let (buf, filled) = self.recv.newest_buf();
                    let region = &buf[self.msg_start..filled];
                    if region.is_empty() {
                        return;
                    }
                    if matches!(self.phase, Phase::Idle) {
                        self.phase = Phase::Head;
                        self.since = now;
                        self.txn_started = now;
                        self.txn_out_bytes = 0;
                        self.out.take_queued();
                        self.who = Who::default();
                    }
                    let (buf, filled) = self.recv.newest_buf();
                    let region = &buf[self.msg_start..filled];
                    match self.head.parse(region) {
                        Ok(HeadStatus::Partial) => return,
                        Ok(HeadStatus::Complete(len)) => {
                            let name = request::requested_service(&region[..len], &self.head);
                            self.who.service = RequestedService::new(name.unwrap_or_default());
                            self.who.method = request::requested_method(&region[..len], &self.head);
                            match request::interpret(&region[..len], &self.head, &self.limits) {
                                Ok(req) => {
                                    self.head_len = len;
                                    self.phase = Phase::Encap(req);
                                }
                                Err(e) => return self.fail(e, unix_secs),
                            }
                        }
                        Err(e) => return self.fail(e, unix_secs),
                    }
                }
                &Phase::Encap(req) => {
                    let need = self.head_len + req.encapsulated.body_offset as usize;
                    let (buf, filled) = self.recv.newest_buf();
                    if filled - self.msg_start < need {
                        return;
                    }
                    let base = self.msg_start + self.head_len;
                    let sections = [
                        req.encapsulated.req_hdr_range().map(|r| (r, Section::Request)),
                        req.encapsulated.res_hdr_range().map(|r| (r, Section::Response)),
                    ];
                    for ((a, b), kind) in sections.into_iter().flatten() {
                        let section = &buf[base + a as usize..base + b as usize];
                        if let Err(e) = httphead::validate_section(section, kind) {
                            return self.fail(e, unix_secs);
                        }
                    }
                    self.pos = self.msg_start + need;
                    self.start_txn(req, now, unix_secs);
                }
                Phase::Body(_) | Phase::Drain(_) => {
                    let (buf, filled) = self.recv.newest_buf();
                    if self.pos == filled {
                        return;
                    }
                    if self.turn_left == 0 {
                        self.paused = true;
                        return;
                    }
                    let (seq, pos) = (self.recv.newest_seq(), self.pos);
                    let end = filled.min(pos.saturating_add(self.turn_left));
                    let decoded = self.chunks.decode(&buf[pos..end]);
                    if let Ok((n, _)) = decoded {
                        self.turn_left = self.turn_left.saturating_sub(n);
                    }
                    match decoded {
                        Err(e) => return self.fail(e, unix_secs),
                        Ok((n, Chunk::NeedMore)) => {
                            self.pos += n;
                            // The turn ended inside chunk framing, not the input: the rest of
                            // the block is processed in the next step (a read would otherwise
                            // continue in a fresh block and lose it).
                            self.paused = end < filled;
                            return;
                        }
                        Ok((n, Chunk::Data { start, end })) => {
                            self.pos += n;
                            let seg = Seg { seq, start: (pos + start) as u32, end: (pos + end) as u32 };
                            self.on_data(seg, unix_secs);
                        }
                        Ok((n, Chunk::End { ieof })) => {
                            self.pos += n;
                            if matches!(self.phase, Phase::Body(_)) {
                                // Let the server charge this step's scan time first.
                                self.end_pending = Some(ieof);
                                self.paused = true;
                                return;
                            }
                            self.on_body_end(ieof, now, unix_secs);
                        }
                    }
                }
            }
        }
    }

    fn start_txn(&mut self, req: Request, now: Instant, unix_secs: u64) {
        self.body_bytes = 0;
        {
            let head = &self.recv.newest_buf().0[self.msg_start..self.msg_start + self.head_len];
            self.who.identify(head, &req.identity, self.policies.as_deref(), self.peer_ip);
        }
        if req.method == Method::Options {
            let (service, info) = (req.service, self.info);
            self.push_scratch(|out, istag| response::options(out, service, &info, istag, unix_secs));
            self.record(Some(req), Some(Method::Options), 200, false);
            return self.finish_txn(req, now);
        }
        let base = self.msg_start + self.head_len;
        let abs = |r: (u32, u32)| (base + r.0 as usize, base + r.1 as usize);
        let req_hdr = req.encapsulated.req_hdr_range().map(abs);
        let res_hdr = req.encapsulated.res_hdr_range().map(abs);
        let echo_range = if req.method == Method::Reqmod { req_hdr } else { res_hdr };
        let (buf, _) = self.recv.newest_buf();
        let txn = Txn {
            method: req.method,
            service: req.service.name,
            req_hdr: req_hdr.map(|(a, b)| &buf[a..b]),
            res_hdr: res_hdr.map(|(a, b)| &buf[a..b]),
            policy: self.who.policy,
        };
        let early = self.inspector.begin(&txn);
        self.began = true;
        if !req.encapsulated.has_body() {
            let verdict = match early {
                Progress::Done(v) => v,
                Progress::More => self.inspector.finish(),
            };
            match verdict {
                Verdict::Clean if !req.allow_204 => {
                    // Echo the header section straight from its block (pinned until written).
                    let seq = self.recv.newest_seq();
                    let seg = echo_range.map(|(a, b)| Seg { seq, start: a as u32, end: b as u32 });
                    let hdr_len = seg.map_or(0, |s| s.len());
                    self.push_scratch(|out, istag| {
                        response::echo_head(out, req.method, hdr_len, false, istag, unix_secs)
                    });
                    if let Some(seg) = seg.filter(|s| !s.is_empty()) {
                        self.recv.pin(seg);
                        self.out.push_pinned(seg);
                    }
                    self.record(Some(req), Some(req.method), 200, false);
                    self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Clean);
                }
                verdict => {
                    // Nothing to echo: 204 or a block page.
                    let body = Body { req, preview_left: None, clean_early: false, echo: Echo::NotNeeded };
                    let _ = self.answer(body, verdict, false, unix_secs);
                }
            }
            return self.finish_txn(req, now);
        }
        self.chunks.reset();
        self.since = now;
        self.body_started = now;
        let echo = if req.allow_204 {
            Echo::NotNeeded
        } else {
            let mut hdr = std::mem::take(&mut self.spare_hdr);
            if let Some((a, b)) = echo_range {
                hdr.extend_from_slice(&self.recv.newest_buf().0[a..b]);
            }
            Echo::Pending { hdr, held: Holdback::new() }
        };
        let preview_left = req.preview.map(u64::from);
        let body = Body { req, preview_left, clean_early: false, echo };
        match early {
            Progress::Done(v) => self.early_verdict(body, v, unix_secs),
            Progress::More => self.phase = Phase::Body(body),
        }
    }

    /// The inspector concluded before the end of the body. A threat is answered at once (the
    /// rest of the body is drained, or a started echo is cut off); a clean conclusion only
    /// stops further inspection.
    fn early_verdict(&mut self, mut body: Body, v: Verdict, unix_secs: u64) {
        match v {
            Verdict::Infected { .. } => {
                let req = body.req;
                self.phase = match self.answer(body, v, false, unix_secs) {
                    Answered::CutOff => Phase::Closing,
                    Answered::Drain | Answered::Complete => Phase::Drain(req),
                };
            }
            Verdict::Clean => {
                body.clean_early = true;
                self.phase = Phase::Body(body);
            }
        }
    }

    /// Reports time the caller spent processing this connection's last input, so that the
    /// inspector can enforce its per-object time budget.
    pub fn handle_scan_time(&mut self, spent: std::time::Duration, unix_secs: u64) {
        let Phase::Body(b) = &self.phase else { return };
        if b.clean_early {
            return;
        }
        if let Progress::Done(v) = self.inspector.charge(spent) {
            let Phase::Body(body) = std::mem::replace(&mut self.phase, Phase::Closing) else { unreachable!() };
            self.early_verdict(body, v, unix_secs);
        }
    }

    fn on_data(&mut self, seg: Seg, unix_secs: u64) {
        let len = seg.len() as u64;
        let phase = std::mem::replace(&mut self.phase, Phase::Closing);
        let mut body = match phase {
            Phase::Drain(req) => {
                self.body_bytes += len;
                self.phase = Phase::Drain(req);
                return;
            }
            Phase::Body(b) => b,
            _ => unreachable!("data only in a body phase"),
        };
        if let Some(left) = body.preview_left.as_mut() {
            // The whole chunk counts, not just the part that has arrived: otherwise a chunk that
            // overruns the preview would be refused when it arrives in one read but inspected
            // (and perhaps answered early) when its first bytes arrive alone.
            if len + self.chunks.chunk_remaining() > *left {
                self.phase = Phase::Body(body);
                return self.fail(ProtoError::PreviewOverrun, unix_secs);
            }
            *left -= len;
        }
        self.body_bytes += len;
        if !body.clean_early {
            match self.inspector.feed(self.recv.bytes(seg)) {
                Progress::Done(v @ Verdict::Infected { .. }) => return self.early_verdict(body, v, unix_secs),
                Progress::Done(Verdict::Clean) => body.clean_early = true,
                Progress::More => {}
            }
        }
        let in_preview = body.preview_left.is_some();
        let hold_blocks = self.hold_blocks_max();
        let oldest_allowed = (self.recv.newest_seq() + 1).saturating_sub(hold_blocks);
        let commit = match &mut body.echo {
            Echo::NotNeeded => false,
            Echo::Pending { held, .. } => {
                held.push(seg, &mut self.recv);
                // Committing in the preview would be a final answer to the preview.
                !in_preview
                    && (held.bytes() > self.limits.holdback_bytes
                        || held.segments() > self.limits.body_segments_max
                        || held.oldest_seq().is_some_and(|s| s < oldest_allowed))
            }
            Echo::Streaming { held } => {
                held.push(seg, &mut self.recv);
                false
            }
        };
        if commit {
            self.commit(&mut body, unix_secs);
        }
        if let Echo::Streaming { held } = &mut body.echo {
            held.emit_keeping(
                self.limits.holdback_bytes,
                self.limits.body_segments_max,
                oldest_allowed,
                &mut self.recv,
                &mut self.out,
            );
        }
        self.phase = Phase::Body(body);
    }

    /// Blocks the hold-back window may span: all of the connection's share but the newest block.
    fn hold_blocks_max(&self) -> u64 {
        (self.limits.conn_retained_bytes_max / self.limits.recv_block_bytes).saturating_sub(1).max(1) as u64
    }

    fn on_body_end(&mut self, ieof: bool, now: Instant, unix_secs: u64) {
        let phase = std::mem::replace(&mut self.phase, Phase::Closing);
        match phase {
            Phase::Drain(req) => self.finish_txn(req, now),
            Phase::Body(mut body) if body.preview_left.is_some() && !ieof => {
                let early = if body.clean_early { Some(Verdict::Clean) } else { self.inspector.preview_verdict() };
                match early {
                    Some(verdict) => {
                        let req = body.req;
                        let _ = self.answer(body, verdict, true, unix_secs);
                        self.finish_txn(req, now);
                    }
                    None => {
                        self.push_static(b"ICAP/1.0 100 Continue\r\n\r\n");
                        self.chunks.reset();
                        body.preview_left = None;
                        self.since = now;
                        self.phase = Phase::Body(body);
                    }
                }
            }
            Phase::Body(body) => {
                let in_preview = body.preview_left.is_some();
                let verdict = if body.clean_early { Verdict::Clean } else { self.inspector.finish() };
                let req = body.req;
                match self.answer(body, verdict, in_preview, unix_secs) {
                    // A threat at the very end of a streamed echo: the answer was cut off, so
                    // the connection closes (a pipelined request would otherwise be answered
                    // inside the truncated body).
                    Answered::CutOff => self.phase = Phase::Closing,
                    Answered::Complete | Answered::Drain => self.finish_txn(req, now),
                }
            }
            _ => unreachable!("a body end only in a body phase"),
        }
    }

    /// Queues the final answer for `verdict`, consuming the body phase. `in_preview`: the body
    /// ended inside the preview (or the preview is answered), where 204 is allowed whatever
    /// `Allow` said.
    fn answer(&mut self, mut body: Body, verdict: Verdict, in_preview: bool, unix_secs: u64) -> Answered {
        let req = body.req;
        match verdict {
            Verdict::Infected { threat } => {
                if matches!(body.echo, Echo::Streaming { .. }) {
                    // Part of the object already left; cut it off before the held-back tail.
                    self.drop_body(body);
                    self.record(Some(req), Some(req.method), 200, true);
                    self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Infected { threat });
                    return Answered::CutOff;
                }
                self.drop_body(body);
                let template = self.block_page.clone();
                self.push_scratch(|out, istag| response::block(out, &threat, template.as_deref(), istag, unix_secs));
                self.record(Some(req), Some(req.method), 200, false);
                self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Infected { threat });
                Answered::Drain
            }
            Verdict::Clean => {
                let echo = matches!(body.echo, Echo::Pending { .. } | Echo::Streaming { .. });
                if !echo || (in_preview && matches!(body.echo, Echo::Pending { .. })) {
                    self.drop_body(body);
                    self.push_scratch(|out, istag| response::bodiless(out, 204, istag, unix_secs, false));
                    self.record(Some(req), Some(req.method), 204, false);
                } else {
                    if matches!(body.echo, Echo::Pending { .. }) {
                        self.commit(&mut body, unix_secs);
                    }
                    if let Echo::Streaming { held } = &mut body.echo {
                        held.emit_keeping(0, usize::MAX, 0, &mut self.recv, &mut self.out);
                    }
                    self.drop_body(body);
                    self.push_static(b"0\r\n\r\n");
                    self.record(Some(req), Some(req.method), 200, false);
                }
                self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Clean);
                Answered::Complete
            }
        }
    }

    /// Queues the 200 head and the echoed header section; the body follows as chunks.
    fn commit(&mut self, body: &mut Body, unix_secs: u64) {
        let Echo::Pending { hdr, held } = std::mem::replace(&mut body.echo, Echo::NotNeeded) else {
            unreachable!("commit only from a pending echo")
        };
        let method = body.req.method;
        let istag = self.inspector.istag();
        self.out.push_with(|out| {
            response::echo_head(out, method, hdr.len(), true, istag, unix_secs);
            out.extend_from_slice(&hdr);
        });
        self.recycle_hdr(hdr);
        body.echo = Echo::Streaming { held };
    }

    fn finish_txn(&mut self, req: Request, now: Instant) {
        self.began = false;
        self.head.reset();
        self.msg_start = self.pos;
        self.since = now;
        self.phase = if req.close { Phase::Closing } else { Phase::Idle };
    }

    /// Answers a protocol error (unless the answer already started) and closes.
    fn fail(&mut self, e: ProtoError, unix_secs: u64) {
        self.last_error = Some(e);
        let phase = std::mem::replace(&mut self.phase, Phase::Closing);
        let (req, started) = match phase {
            Phase::Idle | Phase::Head | Phase::Closing => (None, false),
            Phase::Encap(req) => (Some(req), false),
            Phase::Drain(req) => (Some(req), true),
            Phase::Body(b) => {
                let started = matches!(b.echo, Echo::Streaming { .. });
                let req = b.req;
                self.drop_body(b);
                (Some(req), started)
            }
        };
        let method = req.map(|r| r.method);
        if started {
            self.record(req, method, 0, true);
        } else {
            let status = e.status();
            self.push_scratch(|out, istag| response::bodiless(out, status, istag, unix_secs, true));
            self.record(req, method, status, false);
        }
    }

    fn record(&mut self, req: Option<Request>, method: Option<Method>, status: u16, aborted: bool) {
        let head_bytes = match req {
            Some(req) => (self.head_len + req.encapsulated.body_offset as usize) as u64,
            None => 0,
        };
        self.txn_out_bytes += self.out.take_queued();
        self.outcomes.push_back(TxnOutcome {
            method,
            service: req.map(|r| r.service.name),
            status,
            verdict: None,
            body_bytes: self.body_bytes,
            head_bytes,
            out_bytes: self.txn_out_bytes,
            started: self.txn_started,
            aborted,
            error: self.last_error,
            limit: if self.began { self.inspector.limit_hit() } else { None },
            found_in: if self.began { self.inspector.found_in().map(Box::from) } else { None },
            who: self.who,
        });
    }

    fn push_scratch(&mut self, write: impl FnOnce(&mut Vec<u8>, &str)) {
        let istag = self.inspector.istag();
        self.out.push_with(|out| write(out, istag));
    }

    fn push_static(&mut self, bytes: &'static [u8]) {
        self.out.push_static(bytes);
    }
}
