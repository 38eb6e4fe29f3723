//! The retained-bytes bound: whatever the client sends and however the input is split, a
//! connection never holds more than `conn_retained_bytes_max` in receive blocks, and it gives
//! every block back when the transaction is over.

use super::{Conn, State};
use crate::inspect::{InspectorKind, TEST_MARKER};
use crate::limits::Limits;
use crate::proto::blocks::BlockPool;
use crate::proto::conn_tests::{decode_responses, flush, respmod, Resp};
use crate::proto::response::ServerInfo;
use crate::proto::testutil::for_each_split;
use std::time::Instant;

const INFO: ServerInfo = ServerInfo { max_connections: 100, preview_bytes: 1024, options_ttl_secs: 3600 };

/// Small blocks so that short inputs cross many of them.
fn limits() -> Limits {
    Limits {
        recv_block_bytes: 8192,
        idle_block_bytes: 1024,
        icap_header_bytes_max: 2048,
        http_header_bytes_max: 4096,
        holdback_bytes: 4096,
        body_segments_max: 64,
        conn_retained_bytes_max: 3 * 8192,
        ..Limits::default()
    }
}

/// How the peer treats our answers.
#[derive(Clone, Copy)]
enum Reader {
    /// Takes every answer byte as soon as it is offered.
    Eager,
    /// Reads nothing until the connection refuses to read more (then everything).
    Stalled,
}

struct Run {
    resps: Vec<Resp>,
    state: State,
    peak: usize,
    /// Receive-block bytes held once everything was written.
    after: usize,
}

fn drive(input: &[u8], cuts: &[usize], limits: Limits, reader: Reader) -> Run {
    let now = Instant::now();
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 64, 0);
    let mut conn = Conn::new(limits, INFO, InspectorKind::Test.build().expect("built in"), now);
    let mut out = Vec::new();
    let mut peak = 0;
    let mut prev = 0;
    'feed: for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = &input[prev..cut];
        prev = cut;
        while !piece.is_empty() {
            if !conn.wants_read() {
                if conn.has_output() {
                    flush(&mut conn, &mut pool, &mut out);
                    continue;
                }
                break 'feed;
            }
            let buf = conn.recv_buf(&mut pool);
            let n = buf.len().min(piece.len());
            buf[..n].copy_from_slice(&piece[..n]);
            piece = &piece[n..];
            conn.handle_read(n, now, 0);
            peak = peak.max(conn.held_bytes());
            assert!(
                conn.held_bytes() <= limits.conn_retained_bytes_max,
                "held {} > {} (cuts {cuts:?})",
                conn.held_bytes(),
                limits.conn_retained_bytes_max
            );
            if matches!(reader, Reader::Eager) {
                flush(&mut conn, &mut pool, &mut out);
            }
        }
    }
    flush(&mut conn, &mut pool, &mut out);
    let after = if conn.state() == State::Idle {
        // The next read shrinks an idle connection to its small block.
        conn.recv_buf(&mut pool);
        conn.held_bytes()
    } else {
        conn.held_bytes()
    };
    Run { resps: decode_responses(&out), state: conn.state(), peak, after }
}

/// Runs `input` whole, at (sampled) single splits and byte by byte, with both readers; every run
/// must stay within the bound and give the same answers.
fn check_bounded(input: &[u8]) -> Run {
    check_bounded_with(input, limits())
}

fn check_bounded_with(input: &[u8], limits: Limits) -> Run {
    let whole = drive(input, &[], limits, Reader::Eager);
    for reader in [Reader::Eager, Reader::Stalled] {
        for_each_split(input.len(), |cuts| {
            let run = drive(input, cuts, limits, reader);
            assert_eq!(run.resps, whole.resps, "cuts {cuts:?}");
            assert_eq!(run.state, whole.state);
            assert!(run.after <= limits.idle_block_bytes, "idle connection holds {} bytes", run.after);
        });
    }
    whole
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A RESPMOD body sent as chunks of `chunk` bytes with a long chunk extension on each, so its
/// data is spread thinly over many blocks.
fn spread(body: &[u8], chunk: usize, allow_204: bool) -> Vec<u8> {
    let head = respmod(b"", None, allow_204);
    let mut out = head[..head.len() - 5].to_vec(); // without the zero chunk
    let ext = ";x=".to_string() + &"y".repeat(200);
    for piece in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}{ext}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn allow_204_holds_one_block_whatever_the_body_length() {
    let run = check_bounded(&respmod(&body(60_000), None, true));
    assert_eq!(run.resps[0].status(), 204);
    assert!(run.peak <= 2 * 8192, "peak {}", run.peak);
}

#[test]
fn an_early_answer_drains_in_one_block() {
    let mut b = TEST_MARKER.to_vec();
    b.extend(body(60_000));
    for allow_204 in [true, false] {
        let run = check_bounded(&respmod(&b, None, allow_204));
        assert_eq!(run.resps[0].status(), 200);
        assert!(run.resps[0].head.contains("X-Infection-Found"));
        assert!(run.peak <= 2 * 8192, "peak {}", run.peak);
    }
}

#[test]
fn an_echo_stays_within_the_bound_and_is_byte_exact() {
    let b = body(60_000);
    let run = check_bounded(&respmod(&b, Some(100), false));
    assert_eq!(run.resps.last().unwrap().body.as_deref(), Some(b.as_slice()));
}

#[test]
fn a_thinly_spread_hold_back_window_is_echoed_early_instead_of_pinning_blocks() {
    let b = body(3_000);
    let run = check_bounded(&spread(&b, 1, false));
    assert_eq!(run.resps[0].body.as_deref(), Some(b.as_slice()));
    let run = check_bounded(&spread(&b, 1, true));
    assert_eq!(run.resps[0].status(), 204);
}

#[test]
fn pipelined_big_requests_stay_within_the_bound() {
    let b = body(30_000);
    let mut input = respmod(&b, None, true);
    input.extend(respmod(&b, None, false));
    let mut infected = TEST_MARKER.to_vec();
    infected.extend(&b);
    input.extend(respmod(&infected, None, false));
    input.extend(respmod(&b, None, true));
    let run = check_bounded(&input);
    let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
    assert_eq!(statuses, [204, 200, 200, 204]);
    assert_eq!(run.resps[1].body.as_deref(), Some(b.as_slice()));
}

#[test]
fn a_turn_that_ends_inside_chunk_framing_loses_no_byte() {
    // Turns of a few bytes end inside chunk-size lines and extensions over and over; the
    // bytes after each turn's end must still be processed before the next read. Whole, at
    // sampled single cuts and byte by byte (every split point would take minutes here).
    let b = body(1_200);
    for turn in [1, 7, 203] {
        let limits = Limits { scan_turn_bytes: turn, ..limits() };
        for input in [spread(&b, 50, false), respmod(&b, None, false)] {
            let every: Vec<usize> = (1..input.len()).collect();
            let singles = (1..input.len()).step_by(997).map(|c| vec![c]);
            for cuts in std::iter::once(vec![]).chain(singles).chain(std::iter::once(every)) {
                for reader in [Reader::Eager, Reader::Stalled] {
                    let run = drive(&input, &cuts, limits, reader);
                    assert_eq!(run.resps.len(), 1, "turn {turn} cuts {}", cuts.len());
                    assert_eq!(run.resps[0].body.as_deref(), Some(b.as_slice()), "turn {turn} cuts {}", cuts.len());
                }
            }
        }
    }
}
