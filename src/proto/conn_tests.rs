//! Whole-connection tests of the state machine: requests fed whole, at every split point and
//! byte by byte must produce the same responses (compared after decoding the chunked bodies,
//! since where an echo's chunk boundaries fall depends on how the input arrived).

use super::blocks::BlockPool;
use super::chunked::{Chunk, ChunkDecoder};
use super::conn::{Conn, State};
use super::response::ServerInfo;
use super::testutil::for_each_split;
use crate::inspect::{InspectorKind, TEST_MARKER};
use crate::limits::Limits;
use std::io::IoSlice;
use std::time::{Duration, Instant};

pub const INFO: ServerInfo = ServerInfo { max_connections: 100, preview_bytes: 1024, options_ttl_secs: 3600 };

/// One decoded response.
#[derive(Debug, PartialEq, Eq)]
pub struct Resp {
    pub head: String,
    pub hdr: Vec<u8>,
    pub body: Option<Vec<u8>>,
    /// False when the chunked body was cut off.
    pub complete: bool,
}

impl Resp {
    pub fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }
}

/// Splits raw server output into responses, decoding chunked bodies.
pub fn decode_responses(mut out: &[u8]) -> Vec<Resp> {
    let mut resps = Vec::new();
    while !out.is_empty() {
        let end = memchr::memmem::find(out, b"\r\n\r\n").expect("response head ends") + 4;
        let head = String::from_utf8(out[..end].to_vec()).unwrap();
        out = &out[end..];
        let encap = head.lines().find_map(|l| l.strip_prefix("Encapsulated: "));
        let mut resp = Resp { head: head.clone(), hdr: Vec::new(), body: None, complete: true };
        if let Some(encap) = encap {
            let entries: Vec<(&str, usize)> = encap
                .split(", ")
                .map(|e| {
                    let (n, o) = e.split_once('=').unwrap();
                    (n, o.parse().unwrap())
                })
                .collect();
            let (last_name, body_off) = *entries.last().unwrap();
            resp.hdr = out[..body_off].to_vec();
            out = &out[body_off..];
            if last_name != "null-body" {
                let mut dec = ChunkDecoder::new(256, 4096);
                let mut body = Vec::new();
                let mut complete = false;
                while !out.is_empty() {
                    let (n, chunk) = dec.decode(out).unwrap();
                    if let Chunk::Data { start, end } = chunk {
                        body.extend_from_slice(&out[start..end]);
                    }
                    out = &out[n..];
                    if let Chunk::End { .. } = chunk {
                        complete = true;
                        break;
                    }
                }
                resp.body = Some(body);
                resp.complete = complete;
            }
        }
        resps.push(resp);
    }
    resps
}

pub struct Run {
    pub resps: Vec<Resp>,
    pub state: State,
}

/// Feeds `input` in the pieces given by `cuts`, writing out everything the connection offers.
pub fn drive(input: &[u8], cuts: &[usize], kind: InspectorKind, limits: Limits) -> Run {
    let now = Instant::now();
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 4, 0);
    let mut conn = Conn::new(limits, INFO, kind.build().expect("a built-in inspector"), now);
    let mut out = Vec::new();
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
        }
    }
    flush(&mut conn, &mut pool, &mut out);
    Run { resps: decode_responses(&out), state: conn.state() }
}

/// Writes out everything the connection offers, as a socket that takes it all would.
pub fn flush(conn: &mut Conn, pool: &mut BlockPool, out: &mut Vec<u8>) {
    while conn.has_output() {
        let mut iov = [IoSlice::new(&[]); 8];
        let n = conn.poll_transmit(&mut iov);
        let mut written = 0;
        for s in &iov[..n] {
            out.extend_from_slice(s);
            written += s.len();
        }
        conn.handle_written(written, pool);
    }
}

/// Runs every split and checks they agree; returns the whole-input run.
fn drive_all_ways(input: &[u8], kind: InspectorKind, limits: Limits) -> Run {
    let whole = drive(input, &[], kind, limits);
    for_each_split(input.len(), |cuts| {
        let run = drive(input, cuts, kind, limits);
        assert_eq!(run.resps, whole.resps, "cuts {cuts:?}");
        assert_eq!(run.state, whole.state, "cuts {cuts:?}");
    });
    whole
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out
}

const REQ_HDR: &str = "GET http://origin.test/file HTTP/1.1\r\nHost: origin.test\r\n\r\n";
const RES_HDR: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n";

/// A RESPMOD request. `preview`: Some(n) sends the first n bytes as preview (with ieof when the
/// body fits) and, if it does not fit, the rest after it (as a client does after 100 Continue).
pub fn respmod(body: &[u8], preview: Option<usize>, allow_204: bool) -> Vec<u8> {
    let mut out = format!(
        "RESPMOD icap://icap.test/respmod ICAP/1.0\r\nHost: icap.test\r\n{}{}Encapsulated: req-hdr=0, res-hdr={}, res-body={}\r\n\r\n{REQ_HDR}{RES_HDR}",
        if allow_204 { "Allow: 204\r\n" } else { "" },
        preview.map(|p| format!("Preview: {p}\r\n")).unwrap_or_default(),
        REQ_HDR.len(),
        REQ_HDR.len() + RES_HDR.len()
    )
    .into_bytes();
    match preview {
        Some(p) if body.len() <= p => {
            out.extend(chunked(body, 4096));
            out.extend_from_slice(b"0; ieof\r\n\r\n");
        }
        Some(p) => {
            out.extend(chunked(&body[..p], 4096));
            out.extend_from_slice(b"0\r\n\r\n");
            out.extend(chunked(&body[p..], 4096));
            out.extend_from_slice(b"0\r\n\r\n");
        }
        None => {
            out.extend(chunked(body, 4096));
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

fn header<'a>(resp: &'a Resp, name: &str) -> Option<&'a str> {
    resp.head.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

#[test]
fn options_answer() {
    let run =
        drive_all_ways(b"OPTIONS icap://h/respmod ICAP/1.0\r\nHost: h\r\n\r\n", InspectorKind::Null, Limits::default());
    assert_eq!(run.resps.len(), 1);
    assert_eq!(run.resps[0].status(), 200);
    assert_eq!(header(&run.resps[0], "Methods"), Some("RESPMOD"));
    assert_eq!(header(&run.resps[0], "ISTag"), Some("\"icapd-null\""));
    assert_eq!(run.state, State::Idle);
}

#[test]
fn preview_with_ieof_answers_204_without_continue() {
    let run = drive_all_ways(&respmod(b"hello world", Some(1024), false), InspectorKind::Test, Limits::default());
    assert_eq!(run.resps.len(), 1);
    assert_eq!(run.resps[0].status(), 204);
}

#[test]
fn preview_then_continue_then_204_or_echo() {
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let run = drive_all_ways(&respmod(&body, Some(100), true), InspectorKind::Test, Limits::default());
    let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
    assert_eq!(statuses, [100, 204]);
    let run = drive_all_ways(&respmod(&body, Some(100), false), InspectorKind::Test, Limits::default());
    let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
    assert_eq!(statuses, [100, 200]);
    assert_eq!(run.resps[1].hdr, RES_HDR.as_bytes());
    assert_eq!(run.resps[1].body.as_deref(), Some(body.as_slice()));
    assert!(run.resps[1].complete);
}

#[test]
fn no_allow_204_echoes_byte_exact() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let run = drive(&respmod(&body, None, false), &[], InspectorKind::Null, Limits::default());
    assert_eq!(run.resps.len(), 1);
    assert_eq!(run.resps[0].status(), 200);
    assert_eq!(run.resps[0].body.as_deref(), Some(body.as_slice()));
    assert!(run.resps[0].complete);
    assert_eq!(header(&run.resps[0], "Encapsulated"), Some(format!("res-hdr=0, res-body={}", RES_HDR.len()).as_str()));
}

#[test]
fn threat_in_preview_blocks_without_continue() {
    let mut body = b"prefix ".to_vec();
    body.extend_from_slice(TEST_MARKER);
    body.resize(3000, b'x');
    // A client sends nothing after the preview until told to continue, so the input ends there.
    let mut input = respmod(&body, Some(1024), true);
    let preview_end = memchr::memmem::find(&input, b"\r\n0\r\n\r\n").unwrap() + 7;
    input.truncate(preview_end);
    let run = drive_all_ways(&input, InspectorKind::Test, Limits::default());
    assert_eq!(run.resps.len(), 1, "{:?}", run.resps);
    let block = &run.resps[0];
    assert_eq!(block.status(), 200);
    assert_eq!(header(block, "X-Infection-Found"), Some("Type=0; Resolution=2; Threat=Icapd.Test.Marker;"));
    assert!(block.hdr.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    assert!(String::from_utf8_lossy(block.body.as_ref().unwrap()).contains("Icapd.Test.Marker"));
    assert_eq!(run.state, State::Idle);
}

#[test]
fn threat_after_continue_blocks() {
    let mut body = vec![b'a'; 5000];
    body[3000..3000 + TEST_MARKER.len()].copy_from_slice(TEST_MARKER);
    for allow in [true, false] {
        let run = drive_all_ways(&respmod(&body, Some(1024), allow), InspectorKind::Test, Limits::default());
        let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
        assert_eq!(statuses, [100, 200]);
        assert!(run.resps[1].hdr.starts_with(b"HTTP/1.1 403"));
        assert_eq!(run.state, State::Idle, "the rest of the body is drained, the connection stays usable");
    }
}

#[test]
fn threat_after_commit_cuts_the_echo_before_the_holdback() {
    let limits = Limits { holdback_bytes: 1000, ..Limits::default() };
    let mut body = vec![b'z'; 20_000];
    let at = body.len() - TEST_MARKER.len();
    body[at..].copy_from_slice(TEST_MARKER);
    let input = respmod(&body, None, false);
    let run = drive(&input, &[], InspectorKind::Test, limits);
    assert_eq!(run.resps.len(), 1);
    assert_eq!(run.resps[0].status(), 200);
    assert!(!run.resps[0].complete, "the echo must not be terminated");
    let sent = run.resps[0].body.as_ref().unwrap().len();
    assert!(sent <= body.len() - 1000, "sent {sent} bytes: the held-back window leaked");
    assert_eq!(run.state, State::Closing);
    for_each_split(input.len(), |cuts| {
        let r = drive(&input, cuts, InspectorKind::Test, limits);
        assert!(!r.resps[0].complete && r.resps[0].body.as_ref().unwrap().len() <= body.len() - 1000);
        assert_eq!(r.state, State::Closing);
    });
}

#[test]
fn pipelined_requests_answer_in_order() {
    let mut input = b"OPTIONS icap://h/reqmod ICAP/1.0\r\n\r\n".to_vec();
    input.extend(respmod(b"abc", Some(10), false));
    let mut infected = b"..".to_vec();
    infected.extend_from_slice(TEST_MARKER);
    input.extend(respmod(&infected, None, true));
    input.extend(respmod(b"tail", None, false));
    let run = drive_all_ways(&input, InspectorKind::Test, Limits::default());
    let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
    assert_eq!(statuses, [200, 204, 200, 200]);
    assert_eq!(header(&run.resps[0], "Methods"), Some("REQMOD"));
    assert!(run.resps[2].hdr.starts_with(b"HTTP/1.1 403"));
    assert_eq!(run.resps[3].body.as_deref(), Some(&b"tail"[..]));
}

#[test]
fn reqmod_null_body_204_or_echo() {
    let head = format!(
        "REQMOD icap://h/reqmod ICAP/1.0\r\nAllow: 204\r\nEncapsulated: req-hdr=0, null-body={}\r\n\r\n{REQ_HDR}",
        REQ_HDR.len()
    );
    let run = drive_all_ways(head.as_bytes(), InspectorKind::Test, Limits::default());
    assert_eq!(run.resps[0].status(), 204);
    let head = head.replace("Allow: 204\r\n", "");
    let run = drive_all_ways(head.as_bytes(), InspectorKind::Test, Limits::default());
    assert_eq!(run.resps[0].status(), 200);
    assert_eq!(header(&run.resps[0], "Encapsulated"), Some(format!("req-hdr=0, null-body={}", REQ_HDR.len()).as_str()));
    assert_eq!(run.resps[0].hdr, REQ_HDR.as_bytes());
}

#[test]
fn errors_answer_once_and_close() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"OPTIONS icap://h/respmod ICAP/1.1\r\n\r\n".to_vec(), 505),
        (b"PURGE icap://h/respmod ICAP/1.0\r\n\r\n".to_vec(), 501),
        (b"OPTIONS icap://h/none ICAP/1.0\r\n\r\n".to_vec(), 404),
        (b"REQMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: req-hdr=0, null-body=5\r\n\r\n".to_vec(), 405),
        (
            b"RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\nabcde0\r\n\r\n".to_vec(),
            400,
        ),
        (respmod(b"abc", None, false).iter().map(|&b| if b == b'3' { b'x' } else { b }).collect(), 400),
        (b"OPTIONS icap://h/respmod ICAP/1.0\nHost: x\n\n".to_vec(), 400),
    ];
    for (input, status) in cases {
        let run = drive_all_ways(&input, InspectorKind::Null, Limits::default());
        assert_eq!(run.resps.len(), 1, "{:?}", String::from_utf8_lossy(&input));
        assert_eq!(run.resps[0].status(), status, "{:?}", String::from_utf8_lossy(&input));
        assert_eq!(header(&run.resps[0], "Connection"), Some("close"));
        assert_eq!(run.state, State::Closing);
    }
}

#[test]
fn preview_overrun_is_refused() {
    // The client announces Preview: 4 but sends 10 bytes before the zero chunk.
    let head = format!(
        "RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: 4\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{RES_HDR}a\r\n0123456789\r\n0\r\n\r\n",
        RES_HDR.len()
    );
    let run = drive_all_ways(head.as_bytes(), InspectorKind::Null, Limits::default());
    assert_eq!(run.resps[0].status(), 400);
}

#[test]
fn preview_overrun_is_refused_even_when_the_threat_arrives_first() {
    // Found by fuzzing: a chunk longer than the preview, with a threat in its first bytes, was
    // refused (400) when it arrived in one read, but answered with a block page when the threat
    // arrived in a read of its own. The chunk's announced size decides, however it arrives.
    let chunk = [TEST_MARKER, b"0123456789".as_slice()].concat();
    let head = format!(
        "RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: 20\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{RES_HDR}{:x}\r\n",
        RES_HDR.len(),
        chunk.len()
    );
    let input = [head.as_bytes(), &chunk, b"\r\n0\r\n\r\n"].concat();
    let run = drive_all_ways(&input, InspectorKind::Test, Limits::default());
    assert_eq!(run.resps.len(), 1);
    assert_eq!(run.resps[0].status(), 400);
    assert_eq!(run.state, State::Closing);
}

#[test]
fn oversized_head_is_431_even_across_blocks() {
    let mut input = b"OPTIONS icap://h/respmod ICAP/1.0\r\n".to_vec();
    while input.len() < crate::limits::ICAP_HEADER_BYTES_MAX + 100 {
        input.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    input.extend_from_slice(b"\r\n");
    let limits = Limits { icap_header_count_max: 10_000, ..Limits::default() };
    let run = drive(&input, &[], InspectorKind::Null, limits);
    assert_eq!(run.resps[0].status(), 431);
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(drive(&input, &every, InspectorKind::Null, limits).resps[0].status(), 431);
}

#[test]
fn large_encapsulated_headers_cross_block_boundaries() {
    // A 40 KB response header read into a small idle block first must be relocated intact.
    let big_hdr = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "b".repeat(40_000));
    let input = format!(
        "RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{big_hdr}3\r\nabc\r\n0\r\n\r\n",
        big_hdr.len()
    );
    let run = drive(input.as_bytes(), &[], InspectorKind::Null, Limits::default());
    assert_eq!(run.resps[0].status(), 200);
    assert_eq!(run.resps[0].hdr, big_hdr.as_bytes());
    assert_eq!(run.resps[0].body.as_deref(), Some(&b"abc"[..]));
    let run = drive(input.as_bytes(), &[10, 4000, 4100, 30_000], InspectorKind::Null, Limits::default());
    assert_eq!(run.resps[0].hdr, big_hdr.as_bytes());
}

#[test]
fn connection_close_is_honoured() {
    let input =
        b"OPTIONS icap://h/respmod ICAP/1.0\r\nConnection: close\r\n\r\nOPTIONS icap://h/respmod ICAP/1.0\r\n\r\n";
    let run = drive_all_ways(input, InspectorKind::Null, Limits::default());
    assert_eq!(run.resps.len(), 1);
    assert_eq!(run.state, State::Closing);
}

#[test]
fn deadlines_follow_the_phase() {
    let limits = Limits::default();
    let t0 = Instant::now();
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 4, 0);
    let mut conn = Conn::new(limits, INFO, InspectorKind::Null.build().expect("a built-in inspector"), t0);
    assert_eq!(conn.poll_deadline(), Some(t0 + limits.idle_keepalive));
    let part = b"OPTIONS icap://h/respmod";
    let t1 = t0 + Duration::from_secs(1);
    let buf = conn.recv_buf(&mut pool);
    buf[..part.len()].copy_from_slice(part);
    conn.handle_read(part.len(), t1, 0);
    assert_eq!(conn.poll_deadline(), Some(t1 + limits.header_read_deadline));
    conn.handle_timeout(t1 + Duration::from_secs(1), 0);
    assert_eq!(conn.state(), State::Head, "not yet due");
    conn.handle_timeout(t1 + limits.header_read_deadline, 0);
    assert_eq!(conn.state(), State::Closing);
    let mut out = Vec::new();
    flush(&mut conn, &mut pool, &mut out);
    assert_eq!(decode_responses(&out)[0].status(), 408);
}

#[test]
fn idle_connections_shrink_to_a_small_block() {
    let limits = Limits::default();
    let now = Instant::now();
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 4, 0);
    let mut conn = Conn::new(limits, INFO, InspectorKind::Null.build().expect("a built-in inspector"), now);
    let body = vec![7u8; 300_000];
    let input = respmod(&body, None, false);
    let mut rest = &input[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let buf = conn.recv_buf(&mut pool);
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        conn.handle_read(n, now, 0);
        flush(&mut conn, &mut pool, &mut out);
    }
    assert_eq!(decode_responses(&out)[0].body.as_deref(), Some(body.as_slice()));
    assert_eq!(conn.recv_buf(&mut pool).len(), limits.idle_block_bytes);
    assert!(pool.free_counts().0 >= 1, "large blocks went back to the pool");
}

/// The request examples of RFC 3507 sections 4.8.3, 4.9.3 and 4.10.3, byte for byte except for
/// the service names (ours instead of the RFC's hypothetical ones). Without `Allow: 204` each
/// must come back as a 200 echo of exactly the encapsulated message.
#[test]
fn rfc_3507_examples() {
    let e1 = "GET / HTTP/1.1\r\nHost: www.origin-server.com\r\nAccept: text/html, text/plain\r\nAccept-Encoding: compress\r\nCookie: ff39fk3jur@4ii0e02i\r\nIf-None-Match: \"xyzzy\", \"r2d2xxxx\"\r\n\r\n";
    let e2 = "POST /origin-resource/form.pl HTTP/1.1\r\nHost: www.origin-server.com\r\nAccept: text/html, text/plain\r\nAccept-Encoding: compress\r\nPragma: no-cache\r\n\r\n";
    let e3 = "GET /naughty-content HTTP/1.1\r\nHost: www.naughty-site.com\r\nAccept: text/html, text/plain\r\nAccept-Encoding: compress\r\n\r\n";
    let e4_req = "GET /origin-resource HTTP/1.1\r\nHost: www.origin-server.com\r\nAccept: text/html, text/plain, image/gif\r\nAccept-Encoding: gzip, compress\r\n\r\n";
    let e4_res = "HTTP/1.1 200 OK\r\nDate: Mon, 10 Jan 2000 09:52:22 GMT\r\nServer: Apache/1.3.6 (Unix)\r\nETag: \"63840-1ab7-378d415b\"\r\nContent-Type: text/html\r\nContent-Length: 51\r\n\r\n";
    let examples: Vec<(String, &str, Option<&[u8]>)> = vec![
        (
            format!("REQMOD icap://icap-server.net/reqmod?arg=87 ICAP/1.0\r\nHost: icap-server.net\r\nEncapsulated: req-hdr=0, null-body=170\r\n\r\n{e1}"),
            e1,
            None,
        ),
        (
            format!("REQMOD icap://icap-server.net/reqmod?arg=87 ICAP/1.0\r\nHost: icap-server.net\r\nEncapsulated: req-hdr=0, req-body=147\r\n\r\n{e2}1e\r\nI am posting this information.\r\n0\r\n\r\n"),
            e2,
            Some(b"I am posting this information."),
        ),
        (
            format!("REQMOD icap://icap-server.net/avscan ICAP/1.0\r\nHost: icap-server.net\r\nEncapsulated: req-hdr=0, null-body=119\r\n\r\n{e3}"),
            e3,
            None,
        ),
        (
            format!("RESPMOD icap://icap.example.org/respmod ICAP/1.0\r\nHost: icap.example.org\r\nEncapsulated: req-hdr=0, res-hdr=137, res-body=296\r\n\r\n{e4_req}{e4_res}33\r\nThis is data that was returned by an origin server.\r\n0\r\n\r\n"),
            e4_res,
            Some(b"This is data that was returned by an origin server."),
        ),
    ];
    let mut all = Vec::new();
    for (input, hdr, body) in &examples {
        let run = drive_all_ways(input.as_bytes(), InspectorKind::Test, Limits::default());
        assert_eq!(run.resps.len(), 1, "{input}");
        let r = &run.resps[0];
        assert_eq!(r.status(), 200);
        assert_eq!(r.hdr, hdr.as_bytes());
        assert_eq!(r.body.as_deref(), *body);
        all.extend_from_slice(input.as_bytes());
    }
    // Example 5 (OPTIONS), then all of them pipelined on one connection.
    all.extend_from_slice(b"OPTIONS icap://icap.server.net/respmod ICAP/1.0\r\nHost: icap.server.net\r\nUser-Agent: BazookaDotCom-ICAP-Client-Library/2.3\r\n\r\n");
    let run = drive(&all, &[], InspectorKind::Test, Limits::default());
    let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200]);
    assert_eq!(header(&run.resps[4], "Methods"), Some("RESPMOD"));
    let every: Vec<usize> = (1..all.len()).collect();
    assert_eq!(drive(&all, &every, InspectorKind::Test, Limits::default()).resps, run.resps);
}

/// Encapsulated HTTP heads that two HTTP parsers could frame differently, or that are not HTTP
/// heads of the kind their section promises, are refused with 400 however the input is split.
#[test]
fn ambiguous_or_malformed_encapsulated_heads_are_400() {
    let res = |hdr: &str| {
        format!(
            "RESPMOD icap://h/respmod ICAP/1.0\r\nAllow: 204\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{hdr}3\r\nabc\r\n0\r\n\r\n",
            hdr.len()
        )
    };
    let req = |hdr: &str| {
        format!(
            "REQMOD icap://h/reqmod ICAP/1.0\r\nAllow: 204\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{hdr}3\r\nabc\r\n0\r\n\r\n",
            hdr.len()
        )
    };
    let cases = [
        res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
        res("HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n"),
        res("HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n"),
        res("HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n"),
        res("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        req("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        req("HTTP/1.1 200 OK\r\n\r\n"),
    ];
    for input in &cases {
        let run = drive_all_ways(input.as_bytes(), InspectorKind::Null, Limits::default());
        let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
        assert_eq!(statuses, [400], "{input}");
        assert_eq!(run.state, State::Closing);
    }
    // The same requests with well-framed heads are answered.
    for input in [
        res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n"),
        req("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ] {
        let run = drive_all_ways(input.as_bytes(), InspectorKind::Null, Limits::default());
        let statuses: Vec<u16> = run.resps.iter().map(Resp::status).collect();
        assert_eq!(statuses, [204], "{input}");
        assert_eq!(run.state, State::Idle);
    }
}

/// Whitespace after a chunk size is only allowed before an extension.
#[test]
fn chunk_size_with_trailing_whitespace_is_400() {
    let head = format!(
        "RESPMOD icap://h/respmod ICAP/1.0\r\nAllow: 204\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{RES_HDR}",
        RES_HDR.len()
    );
    let run =
        drive_all_ways(format!("{head}3 \r\nabc\r\n0\r\n\r\n").as_bytes(), InspectorKind::Null, Limits::default());
    assert_eq!(run.resps.iter().map(Resp::status).collect::<Vec<_>>(), [400]);
    let run =
        drive_all_ways(format!("{head}3 ;x=y\r\nabc\r\n0\r\n\r\n").as_bytes(), InspectorKind::Null, Limits::default());
    assert_eq!(run.resps.iter().map(Resp::status).collect::<Vec<_>>(), [204]);
}

/// A connection may move to another shard only at rest: between transactions, with nothing
/// buffered, nothing to write and nothing to report. Fed byte by byte, a request is never at
/// rest before its answer has left and its outcome was taken; the first byte of a pipelined
/// request ends the rest again.
#[test]
fn at_rest_only_between_transactions_with_nothing_buffered() {
    let limits = Limits::default();
    let now = Instant::now();
    let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 4, 0);
    let mut conn = Conn::new(limits, INFO, InspectorKind::Test.build().unwrap(), now);
    let mut out = Vec::new();
    let _ = conn.recv_buf(&mut pool);
    assert!(conn.at_rest(), "a fresh connection");
    let one = respmod(&pseudo_body(5000), Some(100), false);
    let two = [&one[..], &one[..1]].concat();
    let mut rested_after = Vec::new();
    for (i, &b) in two.iter().enumerate() {
        let buf = conn.recv_buf(&mut pool);
        buf[0] = b;
        conn.handle_read(1, now, 0);
        flush(&mut conn, &mut pool, &mut out);
        while conn.poll_outcome().is_some() {}
        if conn.at_rest() {
            rested_after.push(i + 1);
        }
    }
    // At rest exactly once: right after the first request's last byte was answered.
    assert_eq!(rested_after, [one.len()]);
    let resps = decode_responses(&out);
    assert_eq!(resps.iter().map(Resp::status).collect::<Vec<_>>(), [100, 200]);
}

fn pseudo_body(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i * 31 % 253) as u8).collect()
}
