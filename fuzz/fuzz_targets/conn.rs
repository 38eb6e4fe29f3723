//! The whole connection state machine, driven the way `src/server/conn_task.rs` drives it but
//! without a socket: flush everything pending (in write sizes the fuzzer picks), then read the
//! next piece into `recv_buf`, `handle_read`, repeat; optionally the client closes at the end.
//!
//! Flags: bit 0 uses the test inspector (flags `ICAPD-TEST-THREAT`) instead of the null one;
//! bit 1 tight limits (small receive blocks, so bodies and pipelined heads cross blocks, and
//! small header bounds); bit 2 ends with the client closing its side; bit 3 a streaming echo
//! (a small hold-back window and segment bound, so the 200 head and body leave before the
//! body ends).
//!
//! Checks:
//! * how the output is written never matters: whole input with unlimited writes and with the
//!   fuzzer's write sizes give the same bytes;
//! * without a streaming echo, how the input is split never matters either: whole, split at
//!   the fuzzer's points and byte by byte give byte-identical transcripts, the same final
//!   state, error and transaction outcomes;
//! * in every run, every byte written belongs to a well-formed ICAP response (see
//!   `icapd_fuzz::icap`); the final answers match the recorded outcomes one for one and in
//!   order; a response with `Connection: close` is the last one and the connection ends
//!   closing; an error status is always such a response;
//! * with the test inspector, no echo that reaches its final chunk carries the marker: a
//!   threat is never delivered whole, however the input was split.
#![no_main]

use icapd::inspect::{Inspector, NullInspector, TestInspector, TEST_MARKER};
use icapd::limits::Limits;
use icapd::proto::blocks::BlockPool;
use icapd::proto::conn::{Conn, State, TxnOutcome};
use icapd::proto::error::ProtoError;
use icapd::proto::response::ServerInfo;
use icapd_fuzz::icap::read_transcript;
use icapd_fuzz::{every_byte, piece_ends, Input};
use libfuzzer_sys::fuzz_target;
use std::io::IoSlice;
use std::time::Instant;

const INFO: ServerInfo = ServerInfo { max_connections: 100, preview_bytes: 1024, options_ttl_secs: 3600 };

#[derive(Clone, Debug, PartialEq, Eq)]
struct Transcript {
    out: Vec<u8>,
    state: State,
    error: Option<ProtoError>,
    outcomes: Vec<TxnOutcome>,
}

struct Setup {
    test_inspector: bool,
    limits: Limits,
    eof: bool,
    now: Instant,
}

impl Setup {
    fn inspector(&self) -> Box<dyn Inspector> {
        if self.test_inspector {
            Box::new(TestInspector::new())
        } else {
            Box::new(NullInspector)
        }
    }
}

/// Writes what the connection offers until it has nothing left, each write at most the next
/// of `sizes` (unlimited when `sizes` is `None`).
fn flush(
    conn: &mut Conn,
    pool: &mut BlockPool,
    out: &mut Vec<u8>,
    sizes: &mut Option<&mut dyn Iterator<Item = usize>>,
) {
    while conn.has_output() {
        let mut iov = [IoSlice::new(&[]); 8];
        let n = conn.poll_transmit(&mut iov);
        assert!(n > 0, "output pending but nothing offered");
        let offered: usize = iov[..n].iter().map(|s| s.len()).sum();
        let limit = sizes.as_mut().and_then(|s| s.next()).unwrap_or(usize::MAX);
        let mut left = offered.min(limit);
        let written = left;
        for s in &iov[..n] {
            let take = left.min(s.len());
            out.extend_from_slice(&s[..take]);
            left -= take;
        }
        assert!(written > 0, "the connection offered only empty slices");
        conn.handle_written(written, pool);
    }
}

fn drive(
    setup: &Setup,
    payload: &[u8],
    cuts: &[usize],
    mut sizes: Option<&mut dyn Iterator<Item = usize>>,
) -> Transcript {
    let limits = setup.limits;
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 4, 0);
    let mut conn = Conn::new(limits, INFO, setup.inspector(), setup.now);
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    let mut fed = 0;
    'pieces: for end in piece_ends(cuts, payload.len()) {
        while fed < end {
            flush(&mut conn, &mut pool, &mut out, &mut sizes);
            if conn.is_done() || !conn.wants_read() {
                break 'pieces;
            }
            let buf = conn.recv_buf(&mut pool);
            assert!(!buf.is_empty(), "recv_buf is never empty while the connection reads");
            let n = buf.len().min(end - fed);
            buf[..n].copy_from_slice(&payload[fed..fed + n]);
            fed += n;
            conn.handle_read(n, setup.now, 0);
            outcomes.extend(std::iter::from_fn(|| conn.poll_outcome()));
        }
    }
    flush(&mut conn, &mut pool, &mut out, &mut sizes);
    if setup.eof && conn.wants_read() {
        conn.handle_eof();
        flush(&mut conn, &mut pool, &mut out, &mut sizes);
        assert!(conn.is_done(), "after EOF and a flush the connection is done");
    }
    outcomes.extend(std::iter::from_fn(|| conn.poll_outcome()));
    let (state, error) = (conn.state(), conn.last_error());
    conn.release(&mut pool);
    Transcript { out, state, error, outcomes }
}

/// What must not depend on how the input arrived. An outcome's `body_bytes` counts the body
/// received up to the answer, and an early answer comes as soon as the read that completes the
/// threat, so that one counter legitimately depends on the split.
fn comparable(mut t: Transcript) -> Transcript {
    t.outcomes.iter_mut().for_each(|o| o.body_bytes = 0);
    t
}

/// The checks every run must pass, however it was split.
fn check(setup: &Setup, t: &Transcript, payload: &[u8], what: &str) {
    for o in &t.outcomes {
        assert!(o.body_bytes <= payload.len() as u64, "{what}: more body than input");
    }
    let resps = match read_transcript(&t.out) {
        Ok(r) => r,
        Err(e) => panic!("{what}: malformed output: {e}\n{:?}", String::from_utf8_lossy(&t.out)),
    };
    // Every complete final answer is one transaction that was answered; an answer that is not
    // complete is the last response, and it is either an echo still streaming (the input ended
    // inside the body) or one that was cut off (by a threat, an error or the client leaving)
    // and recorded as aborted.
    let finals: Vec<u16> = resps.iter().filter(|r| r.status != 100 && r.complete).map(|r| r.status).collect();
    let answered: Vec<u16> = t.outcomes.iter().filter(|o| !o.aborted).map(|o| o.status).collect();
    assert_eq!(finals, answered, "{what}: responses vs outcomes {:?}", t.outcomes);
    if resps.last().is_some_and(|r| !r.complete) {
        let streaming = t.state == State::Body;
        let aborted = t.outcomes.last().is_some_and(|o| o.aborted);
        assert!(streaming || aborted, "{what}: a cut-off answer not recorded as aborted");
    }
    for (i, r) in resps.iter().enumerate() {
        if r.close {
            assert_eq!(i + 1, resps.len(), "{what}: a response follows Connection: close");
            assert_eq!(t.state, State::Closing, "{what}: close announced but connection open");
        }
        if setup.test_inspector && r.complete {
            if let Some(body) = &r.body {
                assert!(memchr::memmem::find(body, TEST_MARKER).is_none(), "{what}: threat delivered whole");
            }
        }
    }
    if let Some(e) = t.error {
        assert_eq!(t.state, State::Closing, "{what}: an error closes");
        if !t.outcomes.last().is_some_and(|o| o.aborted) {
            assert_eq!(resps.last().map(|r| r.status), Some(e.status()), "{what}: the error is answered");
        }
    }
}

fn tight(limits: Limits) -> Limits {
    Limits {
        recv_block_bytes: 2048,
        idle_block_bytes: 64,
        icap_header_bytes_max: 512,
        icap_header_count_max: 8,
        http_header_bytes_max: 1024,
        preview_bytes_max: 64,
        chunk_line_bytes_max: 16,
        trailer_bytes_max: 64,
        ..limits
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let mut limits = Limits::default();
    if input.flags & 2 != 0 {
        limits = tight(limits);
    }
    let streaming = input.flags & 8 != 0;
    if streaming {
        limits.holdback_bytes = 16;
        limits.body_segments_max = 4;
    }
    assert_eq!(limits.validate(), Ok(()));
    let setup = Setup { test_inspector: input.flags & 1 != 0, limits, eof: input.flags & 4 != 0, now: Instant::now() };
    let payload = input.payload;
    let cuts = input.cuts();

    let whole = drive(&setup, payload, &[], None);
    check(&setup, &whole, payload, "whole");
    let mut sizes = input.sizes();
    let whole_small_writes = drive(&setup, payload, &[], Some(&mut sizes));
    assert_eq!(whole_small_writes, whole, "write sizes changed the output");

    let mut sizes = input.sizes();
    let split = drive(&setup, payload, &cuts, Some(&mut sizes));
    check(&setup, &split, payload, "split");
    let bytes = drive(&setup, payload, &every_byte(payload.len()), None);
    check(&setup, &bytes, payload, "byte by byte");
    if !streaming {
        assert_eq!(comparable(split), comparable(whole.clone()), "split at {cuts:?}");
        assert_eq!(comparable(bytes), comparable(whole), "byte by byte");
    }
});
