//! The per-connection state machine: bytes in, responses out, no I/O.
//!
//! The server layer drives a [`Conn`] in a loop: it reads socket bytes into
//! [`Conn::recv_buf`], reports them with [`Conn::handle_read`], writes what
//! [`Conn::poll_transmit`] offers and reports that with [`Conn::handle_written`]. Time only
//! enters as arguments (`now` for deadlines, `unix_secs` for the Date header); when
//! [`Conn::poll_deadline`] passes, the server calls [`Conn::handle_timeout`].
//!
//! One transaction runs at a time, through one named state per protocol phase:
//!
//! ```text
//! Idle -> Head -> EncapHeaders -> (Preview -> [100 Continue]) -> Body -> Idle
//!                                        \-> early answer -> Drain -> Idle
//! any error -> Closing
//! ```
//!
//! Pipelined requests wait in the receive block and are parsed as soon as the previous
//! transaction ends, so answers leave in request order.
//!
//! ## What happens to the body
//!
//! Body bytes are decoded in place and fed to the [`Inspector`] as slices of the receive block.
//! They are retained as segments until the answer is known:
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

use super::blocks::{Block, BlockPool, Seg};
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

/// Protocol phase of a connection.
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

#[derive(Clone, Copy, Debug)]
enum Out {
    Scratch { start: usize, end: usize },
    Static(&'static [u8]),
    Seg(Seg),
}

/// Per-connection state machine.
pub struct Conn {
    limits: Limits,
    info: ServerInfo,
    state: State,
    blocks: VecDeque<Block>,
    next_seq: u64,
    /// Start of the current message (head) in the newest block.
    msg_start: usize,
    /// Parse position in the newest block.
    pos: usize,
    head: HeadParser,
    head_len: usize,
    req: Option<Request>,
    chunks: ChunkDecoder,
    preview_left: u64,
    body_bytes: u64,
    verdict: Option<Verdict>,
    /// The 200 head of a streamed echo has been queued.
    committed: bool,
    /// The echoed header section (req-hdr for REQMOD, res-hdr for RESPMOD).
    hdr_seg: Option<Seg>,
    retained: VecDeque<Seg>,
    retained_bytes: usize,
    out: VecDeque<Out>,
    out_front_done: usize,
    scratch: Vec<u8>,
    inspector: Box<dyn Inspector>,
    /// Start of the idle period or head, or time of the last body activity.
    since: Instant,
    outcomes: VecDeque<TxnOutcome>,
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
            state: State::Idle,
            blocks: VecDeque::with_capacity(8),
            next_seq: 0,
            msg_start: 0,
            pos: 0,
            head_len: 0,
            req: None,
            preview_left: 0,
            body_bytes: 0,
            verdict: None,
            committed: false,
            hdr_seg: None,
            retained: VecDeque::with_capacity(64),
            retained_bytes: 0,
            out: VecDeque::with_capacity(16),
            out_front_done: 0,
            scratch: Vec::with_capacity(1024),
            inspector,
            since: now,
            outcomes: VecDeque::with_capacity(OUTCOMES_RESERVED),
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
        self.state
    }

    /// The error that closed the connection, if one did.
    pub fn last_error(&self) -> Option<ProtoError> {
        self.last_error
    }

    /// Whether the server should read more input.
    pub fn wants_read(&self) -> bool {
        self.state != State::Closing
    }

    /// Whether there are bytes to write.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Between transactions with nothing buffered, nothing owed and nothing to report: the
    /// connection carries no state but its socket, so the server may move it to another shard
    /// (bytes the client already sent are still in the socket, so pipelined order holds).
    pub fn at_rest(&self) -> bool {
        self.state == State::Idle
            && self.out.is_empty()
            && self.retained.is_empty()
            && self.hdr_seg.is_none()
            && self.outcomes.is_empty()
            && self.blocks.back().is_none_or(|b| b.filled == self.pos)
    }

    /// The connection is finished: close the socket.
    pub fn is_done(&self) -> bool {
        self.state == State::Closing && self.out.is_empty()
    }

    /// Outcomes of transactions finished since the last call, oldest first.
    pub fn poll_outcome(&mut self) -> Option<TxnOutcome> {
        self.outcomes.pop_front()
    }

    /// When the current phase times out, if it can.
    pub fn poll_deadline(&self) -> Option<Instant> {
        let span = match self.state {
            State::Idle => self.limits.idle_keepalive,
            State::Head | State::EncapHeaders => self.limits.header_read_deadline,
            State::Preview | State::Body | State::Drain => self.limits.body_inactivity,
            State::Closing => return None,
        };
        Some(self.since + span)
    }

    /// The free space to read socket bytes into. Never empty while [`Conn::wants_read`].
    pub fn recv_buf(&mut self, pool: &mut BlockPool) -> &mut [u8] {
        self.release_unreferenced(pool);
        let nothing_referenced = self.out.is_empty() && self.retained.is_empty() && self.hdr_seg.is_none();
        let idle_empty = self.state == State::Idle && self.blocks.back().is_none_or(|b| b.filled == self.pos);
        if idle_empty && nothing_referenced {
            // Between requests with nothing buffered: wait with one small block.
            let keep_small = self.blocks.len() == 1 && self.blocks[0].buf.len() < pool.large_bytes();
            if !keep_small {
                while let Some(b) = self.blocks.pop_front() {
                    pool.give(b.buf);
                }
                self.push_block(pool.take(true));
            }
            let back = self.blocks.back_mut().expect("a block was just ensured");
            back.filled = 0;
            self.pos = 0;
            self.msg_start = 0;
        } else if self.blocks.back().is_none_or(|b| b.filled == b.buf.len()) {
            self.grow(pool);
        }
        let back = self.blocks.back_mut().expect("recv_buf always leaves a block");
        &mut back.buf[back.filled..]
    }

    /// Makes room when the newest block is full. A message head must stay contiguous, so an
    /// unfinished one moves to the start of a fresh large block (bounded by the header limits,
    /// which together fit in one block); body bytes simply continue in the next block.
    fn grow(&mut self, pool: &mut BlockPool) {
        let in_head = matches!(self.state, State::Idle | State::Head | State::EncapHeaders);
        let mut fresh = pool.take(false);
        match self.blocks.back() {
            Some(back) if in_head => {
                let region = &back.buf[self.msg_start..back.filled];
                assert!(region.len() < fresh.len(), "head bounds are validated to fit one block");
                fresh[..region.len()].copy_from_slice(region);
                let len = region.len();
                self.pos -= self.msg_start;
                self.msg_start = 0;
                self.push_block(fresh);
                self.blocks.back_mut().expect("just pushed").filled = len;
            }
            _ => {
                self.push_block(fresh);
                self.pos = 0;
                self.msg_start = 0;
            }
        }
    }

    fn push_block(&mut self, buf: Box<[u8]>) {
        self.blocks.push_back(Block { seq: self.next_seq, buf, filled: 0 });
        self.next_seq += 1;
    }

    /// `n` bytes were read into the buffer last returned by [`Conn::recv_buf`].
    pub fn handle_read(&mut self, n: usize, now: Instant, unix_secs: u64) {
        let back = self.blocks.back_mut().expect("handle_read follows recv_buf");
        assert!(back.filled + n <= back.buf.len());
        back.filled += n;
        if matches!(self.state, State::Preview | State::Body | State::Drain) {
            self.since = now;
        }
        self.process(now, unix_secs);
    }

    /// The client closed its side. A transaction in progress cannot complete; an echo that
    /// already started is cut off (no final chunk).
    pub fn handle_eof(&mut self) {
        if self.state != State::Idle && self.state != State::Closing {
            self.record(None, 0, true);
        }
        self.retained.clear();
        self.retained_bytes = 0;
        self.state = State::Closing;
    }

    /// Call when [`Conn::poll_deadline`] has passed.
    pub fn handle_timeout(&mut self, now: Instant, unix_secs: u64) {
        if self.poll_deadline().is_none_or(|d| now < d) {
            return;
        }
        match self.state {
            State::Idle | State::Closing => {}
            State::Drain => self.record(None, 0, true),
            State::Head | State::EncapHeaders | State::Preview | State::Body => {
                if self.committed {
                    self.record(None, 0, true);
                } else {
                    self.push_scratch(|out, istag| response::bodiless(out, 408, istag, unix_secs, true));
                    self.record(None, 408, false);
                }
            }
        }
        self.retained.clear();
        self.retained_bytes = 0;
        self.state = State::Closing;
    }

    /// Fills `iov` with the bytes to write next; returns how many slices were filled.
    pub fn poll_transmit<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, out) in self.out.iter().enumerate() {
            if n == iov.len() {
                break;
            }
            let bytes: &[u8] = match *out {
                Out::Scratch { start, end } => &self.scratch[start..end],
                Out::Static(s) => s,
                Out::Seg(seg) => self.seg_bytes(seg),
            };
            let bytes = if i == 0 { &bytes[self.out_front_done..] } else { bytes };
            iov[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// `n` bytes of what [`Conn::poll_transmit`] offered were written.
    pub fn handle_written(&mut self, mut n: usize, pool: &mut BlockPool) {
        while n > 0 {
            let front = *self.out.front().expect("written bytes were offered");
            let len = match front {
                Out::Scratch { start, end } => end - start,
                Out::Static(s) => s.len(),
                Out::Seg(seg) => seg.len(),
            };
            let left = len - self.out_front_done;
            if n >= left {
                n -= left;
                self.out.pop_front();
                self.out_front_done = 0;
            } else {
                self.out_front_done += n;
                n = 0;
            }
        }
        if self.out.is_empty() {
            self.scratch.clear();
        }
        self.release_unreferenced(pool);
    }

    /// Returns every block to the pool; the connection is gone.
    pub fn release(mut self, pool: &mut BlockPool) {
        while let Some(b) = self.blocks.pop_front() {
            pool.give(b.buf);
        }
    }

    fn seg_bytes(&self, seg: Seg) -> &[u8] {
        let first = self.blocks.front().expect("a segment implies a block").seq;
        let block = &self.blocks[(seg.seq - first) as usize];
        debug_assert_eq!(block.seq, seg.seq);
        &block.buf[seg.start as usize..seg.end as usize]
    }

    /// Gives back blocks that nothing refers to any more (all but the newest).
    fn release_unreferenced(&mut self, pool: &mut BlockPool) {
        let first_out = self.out.iter().find_map(|o| if let Out::Seg(s) = o { Some(s.seq) } else { None });
        let min_ref = [first_out, self.retained.front().map(|s| s.seq), self.hdr_seg.map(|s| s.seq)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX);
        while self.blocks.len() > 1 && self.blocks.front().is_some_and(|b| b.seq < min_ref) {
            let b = self.blocks.pop_front().expect("checked");
            pool.give(b.buf);
        }
    }

    fn process(&mut self, now: Instant, unix_secs: u64) {
        loop {
            match self.state {
                State::Closing => return,
                State::Idle | State::Head => {
                    let back = self.blocks.back().expect("reading implies a block");
                    let region = &back.buf[self.msg_start..back.filled];
                    if region.is_empty() {
                        return;
                    }
                    if self.state == State::Idle {
                        self.state = State::Head;
                        self.since = now;
                        self.txn_started = now;
                        self.txn_out_bytes = 0;
                        self.who = Who::default();
                    }
                    match self.head.parse(region) {
                        Ok(HeadStatus::Partial) => return,
                        Ok(HeadStatus::Complete(len)) => {
                            let name = request::requested_service(&region[..len], &self.head);
                            self.who.service = RequestedService::new(name.unwrap_or_default());
                            self.who.method = request::requested_method(&region[..len], &self.head);
                            match request::interpret(&region[..len], &self.head, &self.limits) {
                                Ok(req) => {
                                    self.req = Some(req);
                                    self.head_len = len;
                                    self.state = State::EncapHeaders;
                                }
                                Err(e) => return self.fail(e, unix_secs),
                            }
                        }
                        Err(e) => return self.fail(e, unix_secs),
                    }
                }
                State::EncapHeaders => {
                    let req = self.req.expect("EncapHeaders implies a request");
                    let need = self.head_len + req.encapsulated.body_offset as usize;
                    let back = self.blocks.back().expect("reading implies a block");
                    if back.filled - self.msg_start < need {
                        return;
                    }
                    let base = self.msg_start + self.head_len;
                    let sections = [
                        req.encapsulated.req_hdr_range().map(|r| (r, Section::Request)),
                        req.encapsulated.res_hdr_range().map(|r| (r, Section::Response)),
                    ];
                    for ((a, b), kind) in sections.into_iter().flatten() {
                        let section = &back.buf[base + a as usize..base + b as usize];
                        if let Err(e) = httphead::validate_section(section, kind) {
                            return self.fail(e, unix_secs);
                        }
                    }
                    self.pos = self.msg_start + need;
                    self.start_txn(req, now, unix_secs);
                }
                State::Preview | State::Body | State::Drain => {
                    let back = self.blocks.back().expect("reading implies a block");
                    if self.pos == back.filled {
                        return;
                    }
                    let (seq, pos) = (back.seq, self.pos);
                    match self.chunks.decode(&back.buf[pos..back.filled]) {
                        Err(e) => return self.fail(e, unix_secs),
                        Ok((n, Chunk::NeedMore)) => {
                            self.pos += n;
                            return;
                        }
                        Ok((n, Chunk::Data { start, end })) => {
                            self.pos += n;
                            let seg = Seg { seq, start: (pos + start) as u32, end: (pos + end) as u32 };
                            self.on_data(seg, unix_secs);
                        }
                        Ok((n, Chunk::End { ieof })) => {
                            self.pos += n;
                            self.on_body_end(ieof, now, unix_secs);
                        }
                    }
                }
            }
        }
    }

    fn start_txn(&mut self, req: Request, now: Instant, unix_secs: u64) {
        self.body_bytes = 0;
        self.verdict = None;
        self.committed = false;
        {
            let back = self.blocks.back().expect("a request implies a block");
            let head = &back.buf[self.msg_start..self.msg_start + self.head_len];
            self.who.identify(head, &req.identity, self.policies.as_deref(), self.peer_ip);
        }
        if req.method == Method::Options {
            let (service, info) = (req.service, self.info);
            self.push_scratch(|out, istag| response::options(out, service, &info, istag, unix_secs));
            self.record(Some(Method::Options), 200, false);
            return self.finish_txn(now);
        }
        let back = self.blocks.back().expect("a request implies a block");
        let base = self.msg_start + self.head_len;
        let abs = |r: (u32, u32)| (base as u32 + r.0, base as u32 + r.1);
        let req_hdr = req.encapsulated.req_hdr_range().map(abs);
        let res_hdr = req.encapsulated.res_hdr_range().map(abs);
        let echo = if req.method == Method::Reqmod { req_hdr } else { res_hdr };
        self.hdr_seg = echo.map(|(start, end)| Seg { seq: back.seq, start, end });
        let txn = Txn {
            method: req.method,
            service: req.service.name,
            req_hdr: req_hdr.map(|(a, b)| &back.buf[a as usize..b as usize]),
            res_hdr: res_hdr.map(|(a, b)| &back.buf[a as usize..b as usize]),
            policy: self.who.policy,
        };
        let early = self.inspector.begin(&txn);
        self.began = true;
        if !req.encapsulated.has_body() {
            let verdict = match early {
                Progress::Done(v) => v,
                Progress::More => self.inspector.finish(),
            };
            self.answer(verdict, false, unix_secs);
            return self.finish_txn(now);
        }
        self.chunks.reset();
        self.since = now;
        match req.preview {
            Some(p) => {
                self.preview_left = u64::from(p);
                self.state = State::Preview;
            }
            None => self.state = State::Body,
        }
        if let Progress::Done(v) = early {
            self.early_verdict(v, unix_secs);
        }
    }

    /// The inspector concluded before the end of the body. A threat is answered at once (the
    /// rest of the body is drained, or a started echo is cut off); a clean conclusion only
    /// stops further inspection.
    fn early_verdict(&mut self, v: Verdict, unix_secs: u64) {
        match v {
            Verdict::Infected { .. } => self.answer(v, false, unix_secs),
            Verdict::Clean => self.verdict = Some(Verdict::Clean),
        }
    }

    /// Reports time the caller spent processing this connection's last input, so that the
    /// inspector can enforce its per-object time budget.
    pub fn handle_scan_time(&mut self, spent: std::time::Duration, unix_secs: u64) {
        if !matches!(self.state, State::Preview | State::Body) || self.verdict.is_some() {
            return;
        }
        if let Progress::Done(v) = self.inspector.charge(spent) {
            self.early_verdict(v, unix_secs);
        }
    }

    fn on_data(&mut self, seg: Seg, unix_secs: u64) {
        let len = seg.len() as u64;
        if self.state == State::Preview {
            // The whole chunk counts, not just the part that has arrived: otherwise a chunk that
            // overruns the preview would be refused when it arrives in one read but inspected
            // (and perhaps answered early) when its first bytes arrive alone.
            if len + self.chunks.chunk_remaining() > self.preview_left {
                return self.fail(ProtoError::PreviewOverrun, unix_secs);
            }
            self.preview_left -= len;
        }
        self.body_bytes += len;
        if self.state == State::Drain {
            return;
        }
        if self.verdict.is_none() {
            let first = self.blocks.front().expect("a segment implies a block").seq;
            let block = &self.blocks[(seg.seq - first) as usize];
            if let Progress::Done(v) = self.inspector.feed(&block.buf[seg.start as usize..seg.end as usize]) {
                self.verdict = Some(v);
            }
        }
        if let Some(Verdict::Infected { .. }) = self.verdict {
            let verdict = self.verdict.take().expect("just matched");
            return self.early_verdict(verdict, unix_secs);
        }
        let req = self.req.expect("a body implies a request");
        if req.allow_204 {
            // Neither possible answer (204 or a block page) carries the body.
            return;
        }
        self.retained.push_back(seg);
        self.retained_bytes += seg.len();
        if self.state == State::Preview {
            // Committing now would be a final answer to the preview.
            return;
        }
        if !self.committed {
            if self.retained_bytes <= self.limits.holdback_bytes && self.retained.len() <= self.limits.body_segments_max
            {
                return;
            }
            self.commit(req, unix_secs);
        }
        self.emit_keeping(self.limits.holdback_bytes);
    }

    fn on_body_end(&mut self, ieof: bool, now: Instant, unix_secs: u64) {
        match self.state {
            State::Drain => self.finish_txn(now),
            State::Preview if !ieof => {
                let early = self.verdict.take().or_else(|| self.inspector.preview_verdict());
                match early {
                    Some(verdict) => {
                        self.answer(verdict, true, unix_secs);
                        self.finish_txn(now);
                    }
                    None => {
                        self.push_static(b"ICAP/1.0 100 Continue\r\n\r\n");
                        self.chunks.reset();
                        self.state = State::Body;
                        self.since = now;
                    }
                }
            }
            _ => {
                let in_preview = self.state == State::Preview;
                let verdict = match self.verdict.take() {
                    Some(v) => v,
                    None => self.inspector.finish(),
                };
                self.answer(verdict, in_preview, unix_secs);
                self.finish_txn(now);
            }
        }
    }

    /// Queues the final answer for `verdict`. `in_preview`: the body ended inside the preview
    /// (or the preview is answered), where 204 is allowed whatever `Allow` said.
    fn answer(&mut self, verdict: Verdict, in_preview: bool, unix_secs: u64) {
        let req = self.req.expect("an answer implies a request");
        let has_body = req.encapsulated.has_body();
        match verdict {
            Verdict::Infected { threat } => {
                if self.committed {
                    // Part of the object already left; cut it off before the held-back tail.
                    self.retained.clear();
                    self.retained_bytes = 0;
                    self.record(Some(req.method), 200, true);
                    self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Infected { threat });
                    self.state = State::Closing;
                    return;
                }
                let template = self.block_page.clone();
                self.push_scratch(|out, istag| response::block(out, &threat, template.as_deref(), istag, unix_secs));
                self.record(Some(req.method), 200, false);
                self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Infected { threat });
                self.retained.clear();
                self.retained_bytes = 0;
                if matches!(self.state, State::Preview | State::Body) {
                    self.state = State::Drain;
                }
            }
            Verdict::Clean => {
                if self.committed {
                    self.emit_keeping(0);
                    self.push_static(b"0\r\n\r\n");
                } else if req.allow_204 || in_preview {
                    // Wherever a 206 (use-original-body) would be allowed, so is this 204, which
                    // is shorter; see `Request::allows_206`.
                    self.push_scratch(|out, istag| response::bodiless(out, 204, istag, unix_secs, false));
                    self.retained.clear();
                    self.retained_bytes = 0;
                    self.record(Some(req.method), 204, false);
                    self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Clean);
                    return;
                } else if has_body {
                    self.commit(req, unix_secs);
                    self.emit_keeping(0);
                    self.push_static(b"0\r\n\r\n");
                } else {
                    self.push_echo_head(req, false, unix_secs);
                }
                self.record(Some(req.method), 200, false);
                self.outcomes.back_mut().expect("just recorded").verdict = Some(Verdict::Clean);
            }
        }
    }

    /// Queues the 200 head and the echoed header section; the body will follow as chunks.
    fn commit(&mut self, req: Request, unix_secs: u64) {
        debug_assert!(!self.committed);
        self.push_echo_head(req, true, unix_secs);
        self.committed = true;
    }

    fn push_echo_head(&mut self, req: Request, body: bool, unix_secs: u64) {
        let hdr_len = self.hdr_seg.map_or(0, |s| s.len());
        self.push_scratch(|out, istag| response::echo_head(out, req.method, hdr_len, body, istag, unix_secs));
        if let Some(seg) = self.hdr_seg.take() {
            if !seg.is_empty() {
                self.push_seg(seg);
            }
        }
    }

    /// Emits retained body bytes as one chunk, keeping back the newest `keep` bytes (and
    /// never more than `body_segments_max` segments).
    fn emit_keeping(&mut self, keep: usize) {
        let mut excess = self.retained_bytes.saturating_sub(keep);
        let segs_over = self.retained.len().saturating_sub(self.limits.body_segments_max);
        if excess == 0 && segs_over == 0 {
            return;
        }
        // Whole segments beyond the segment bound go regardless of the byte window.
        let forced: usize = self.retained.iter().take(segs_over).map(|s| s.len()).sum();
        excess = excess.max(forced);
        if excess == 0 {
            return;
        }
        let start = self.scratch.len();
        response::chunk_header(&mut self.scratch, excess);
        self.txn_out_bytes += (self.scratch.len() - start) as u64;
        self.out.push_back(Out::Scratch { start, end: self.scratch.len() });
        let mut left = excess;
        while left > 0 {
            let front = self.retained.front_mut().expect("excess is within retained bytes");
            let take = left.min(front.len());
            let piece = Seg { seq: front.seq, start: front.start, end: front.start + take as u32 };
            front.start += take as u32;
            if front.is_empty() {
                self.retained.pop_front();
            }
            self.push_seg(piece);
            left -= take;
        }
        self.retained_bytes -= excess;
        self.push_static(b"\r\n");
    }

    fn finish_txn(&mut self, now: Instant) {
        let close = self.req.is_some_and(|r| r.close);
        debug_assert!(self.retained.is_empty() || self.state == State::Closing);
        self.retained.clear();
        self.retained_bytes = 0;
        self.hdr_seg = None;
        self.verdict = None;
        self.committed = false;
        self.req = None;
        self.began = false;
        self.head.reset();
        self.msg_start = self.pos;
        self.since = now;
        // A late threat that cut a started echo off has already moved the connection to
        // `Closing`; ending the transaction must not reopen it, or the client would wait for
        // the idle timeout and a pipelined request would be answered inside the cut body.
        self.state = if close || self.state == State::Closing { State::Closing } else { State::Idle };
    }

    /// Answers a protocol error (unless the answer already started) and closes.
    fn fail(&mut self, e: ProtoError, unix_secs: u64) {
        self.last_error = Some(e);
        let method = self.req.map(|r| r.method);
        if self.committed || self.state == State::Drain {
            self.record(method, 0, true);
        } else {
            let status = e.status();
            self.push_scratch(|out, istag| response::bodiless(out, status, istag, unix_secs, true));
            self.record(method, status, false);
        }
        self.retained.clear();
        self.retained_bytes = 0;
        self.state = State::Closing;
    }

    fn record(&mut self, method: Option<Method>, status: u16, aborted: bool) {
        let head_bytes = match self.req {
            Some(req) => (self.head_len + req.encapsulated.body_offset as usize) as u64,
            None => 0,
        };
        self.outcomes.push_back(TxnOutcome {
            method,
            service: self.req.map(|r| r.service.name),
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
        let start = self.scratch.len();
        write(&mut self.scratch, self.inspector.istag());
        self.txn_out_bytes += (self.scratch.len() - start) as u64;
        self.out.push_back(Out::Scratch { start, end: self.scratch.len() });
    }

    fn push_static(&mut self, bytes: &'static [u8]) {
        self.txn_out_bytes += bytes.len() as u64;
        self.out.push_back(Out::Static(bytes));
    }

    fn push_seg(&mut self, seg: Seg) {
        self.txn_out_bytes += seg.len() as u64;
        self.out.push_back(Out::Seg(seg));
    }
}
