//! A threat found at the end of the body, after the echo has started (hash and whole-object
//! YARA rules conclude only there), cuts the echo off and closes the connection: no final
//! chunk, and a request pipelined behind it is not answered inside the truncated body.

use super::{Conn, State};
use crate::inspect::{Inspector, Progress, Txn, Verdict};
use crate::limits::Limits;
use crate::proto::blocks::BlockPool;
use crate::proto::conn_tests::{decode_responses, flush, respmod};
use crate::proto::response::ServerInfo;
use crate::proto::testutil::for_each_split;
use std::time::Instant;

const INFO: ServerInfo = ServerInfo { max_connections: 100, preview_bytes: 1024, options_ttl_secs: 3600 };

/// Finds nothing while the body streams and a threat when it ends.
struct ThreatAtEnd;

impl Inspector for ThreatAtEnd {
    fn begin(&mut self, _: &Txn<'_>) -> Progress {
        Progress::More
    }
    fn feed(&mut self, _: &[u8]) -> Progress {
        Progress::More
    }
    fn finish(&mut self) -> Verdict {
        Verdict::Infected { threat: "Test.AtEnd".into() }
    }
    fn istag(&self) -> &str {
        "t"
    }
}

fn drive(input: &[u8], cuts: &[usize]) -> (Vec<u8>, State, usize) {
    let limits = Limits { holdback_bytes: 1024, ..Limits::default() };
    let now = Instant::now();
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 4, 0);
    let mut conn = Conn::new(limits, INFO, Box::new(ThreatAtEnd), now);
    let mut out = Vec::new();
    let mut outcomes = 0;
    let mut prev = 0;
    'feed: for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = &input[prev..cut];
        prev = cut;
        while !piece.is_empty() {
            if !conn.wants_read() {
                break 'feed;
            }
            let buf = conn.recv_buf(&mut pool);
            let n = buf.len().min(piece.len());
            buf[..n].copy_from_slice(&piece[..n]);
            piece = &piece[n..];
            conn.handle_read(n, now, 0);
            flush(&mut conn, &mut pool, &mut out);
            while let Some(o) = conn.poll_outcome() {
                outcomes += 1;
                assert!(o.aborted, "the only transaction answered is the cut-off one");
            }
        }
    }
    (out, conn.state(), outcomes)
}

#[test]
fn a_late_threat_after_the_echo_started_closes_the_connection() {
    let body: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut input = respmod(&body, None, false);
    let options = b"OPTIONS icap://icap.test/respmod ICAP/1.0\r\nHost: icap.test\r\n\r\n";
    input.extend_from_slice(options);
    for_each_split(input.len(), |cuts| {
        let (out, state, outcomes) = drive(&input, cuts);
        assert_eq!(state, State::Closing, "cuts {cuts:?}");
        assert_eq!(outcomes, 1);
        let resps = decode_responses(&out);
        assert_eq!(resps.len(), 1, "nothing answered after the cut-off echo (cuts {cuts:?})");
        assert_eq!(resps[0].status(), 200);
        assert!(!resps[0].complete, "no final chunk");
        assert!(resps[0].body.as_ref().unwrap().len() < body.len(), "the object never arrives whole");
    });
}
