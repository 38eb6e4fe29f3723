//! The catalogue of malformed and hostile requests, against the real binary over loopback.
//!
//! Each entry is one connection: the bytes a client sends, whether it then half-closes, and
//! the exact answer. After every entry a fresh connection must still be served (a clean RESPMOD
//! answered 204, then an OPTIONS answered 200), so no entry may wedge or crash a shard.
//!
//! The entries come from the ways ICAP and HTTP parsers have been attacked before: c-icap
//! CVE-2013-7401 (a request line without a space or `?`), Squid CVE-2023-46846 (lenient chunk
//! sizes and bare LF), CVE-2024-25111 (unbounded chunk extensions), CVE-2024-25617 (oversized
//! headers), hyper CVE-2021-32714/32715 (chunk-size overflow, `+` in Content-Length), and
//! go-icap's attacker-sized allocation from an Encapsulated offset. Every error answer closes
//! the connection, because once framing is in doubt nothing later on it can be trusted; the
//! few entries that are accepted are there to show that strict does not mean broken.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// What the server must do with one entry.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// These answers in order, then the server closes (an error answer says so with
    /// `Connection: close`).
    Closes(&'static [u16]),
    /// This answer, and the connection stays usable (an OPTIONS on it is answered 200).
    Kept(u16),
    /// No answer at all: the server closes (the client ended the request half way).
    Silent,
}

use Expect::{Closes, Kept, Silent};

/// One catalogue entry.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// Half-close after sending (end of input); otherwise the client keeps the connection
    /// open and silent, so a deadline decides.
    eof: bool,
    expect: Expect,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case { name, bytes: bytes.into(), eof: false, expect }
}

fn case_eof(name: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case { name, bytes: bytes.into(), eof: true, expect }
}

const OPTIONS: &str = "OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

/// An ICAP head of `method` on `service` with extra header lines, as bytes.
fn head(method: &str, service: &str, extra: &str) -> String {
    format!("{method} icap://127.0.0.1/{service} ICAP/1.0\r\nHost: 127.0.0.1\r\n{extra}\r\n")
}

/// A RESPMOD with `Allow: 204` whose body part is exactly `chunks` (raw chunked bytes).
fn respmod_raw(chunks: &[u8]) -> Vec<u8> {
    [&respmod_head("respmod", None, true)[..], chunks].concat()
}

/// A RESPMOD with the given `Encapsulated` value followed by `rest` verbatim.
fn respmod_encap(encap: &str, rest: &str) -> Vec<u8> {
    format!("{}{rest}", head("RESPMOD", "respmod", &format!("Allow: 204\r\nEncapsulated: {encap}\r\n"))).into_bytes()
}

/// A RESPMOD carrying `res_hdr` as its HTTP response head and a three-byte body.
fn respmod_with_res_hdr(res_hdr: &str) -> Vec<u8> {
    respmod_encap(&format!("res-hdr=0, res-body={}", res_hdr.len()), &format!("{res_hdr}3\r\nabc\r\n0\r\n\r\n"))
}

/// A REQMOD carrying `req_hdr` as its HTTP request head and a three-byte body.
fn reqmod_with_req_hdr(req_hdr: &str) -> Vec<u8> {
    let encap = format!("Allow: 204\r\nEncapsulated: req-hdr=0, req-body={}\r\n", req_hdr.len());
    format!("{}{req_hdr}3\r\nabc\r\n0\r\n\r\n", head("REQMOD", "reqmod", &encap)).into_bytes()
}

/// A RESPMOD announcing `preview` bytes of preview, followed by `chunks`.
fn respmod_preview(preview: &str, chunks: &str) -> Vec<u8> {
    let extra = format!("Allow: 204\r\nPreview: {preview}\r\nEncapsulated: res-hdr=0, res-body={}\r\n", RES_HDR.len());
    format!("{}{RES_HDR}{chunks}", head("RESPMOD", "respmod", &extra)).into_bytes()
}

fn catalogue() -> Vec<Case> {
    let res_len = RES_HDR.len();
    let req_len = REQ_HDR.len();
    let both = REQ_HDR.len() + RES_HDR.len();
    let tls_hello: Vec<u8> =
        [&[0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03][..], &[0x5a; 200]].concat();
    vec![
        // --- Request line -------------------------------------------------------------------
        case("garbage request line", "HELLO\r\n\r\n", Closes(&[400])),
        case("HTTP request to the ICAP port", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", Closes(&[400])),
        case("TLS ClientHello (no line end): waits, then the head deadline", tls_hello, Closes(&[408])),
        case("20 KiB without a line end", vec![b'A'; 20_000], Closes(&[431])),
        case(
            "URI without space or '?' (c-icap CVE-2013-7401)",
            "RESPMOD icap://127.0.0.1/respmod\r\n\r\n",
            Closes(&[400]),
        ),
        case("URI run into the version", "OPTIONS icap://127.0.0.1/respmodICAP/1.0\r\n\r\n", Closes(&[400])),
        case("URI of 20 KiB", format!("OPTIONS icap://h/{} ICAP/1.0\r\n\r\n", "a".repeat(20_000)), Closes(&[431])),
        case("two spaces after the method", "OPTIONS  icap://h/respmod ICAP/1.0\r\n\r\n", Closes(&[400])),
        case("tab as separator", "OPTIONS\ticap://h/respmod ICAP/1.0\r\n\r\n", Closes(&[400])),
        case("extra word after the version", "OPTIONS icap://h/respmod ICAP/1.0 x\r\n\r\n", Closes(&[400])),
        case("empty line before the request line", format!("\r\n{OPTIONS}"), Closes(&[400])),
        case("lowercase method", "options icap://h/respmod ICAP/1.0\r\n\r\n", Closes(&[501])),
        case("unknown method", "PROPFIND icap://h/respmod ICAP/1.0\r\n\r\n", Closes(&[501])),
        case("method with a non-token byte", "OPT(ONS icap://h/respmod ICAP/1.0\r\n\r\n", Closes(&[400])),
        case("ICAP/1.1", "OPTIONS icap://h/respmod ICAP/1.1\r\n\r\n", Closes(&[505])),
        case("ICAP/2.0", "OPTIONS icap://h/respmod ICAP/2.0\r\n\r\n", Closes(&[505])),
        case("lowercase icap/1.0", "OPTIONS icap://h/respmod icap/1.0\r\n\r\n", Closes(&[400])),
        case("HTTP/1.1 as the version", "OPTIONS icap://h/respmod HTTP/1.1\r\n\r\n", Closes(&[400])),
        case("ICAP/10.0", "OPTIONS icap://h/respmod ICAP/10.0\r\n\r\n", Closes(&[400])),
        case("http:// scheme", "OPTIONS http://h/respmod ICAP/1.0\r\n\r\n", Closes(&[400])),
        case("no authority", "OPTIONS icap:///respmod ICAP/1.0\r\n\r\n", Closes(&[400])),
        case("unknown service", "OPTIONS icap://h/nothing-here ICAP/1.0\r\n\r\n", Closes(&[404])),
        case(
            "REQMOD on the respmod service",
            format!(
                "{}{REQ_HDR}",
                head("REQMOD", "respmod", &format!("Encapsulated: req-hdr=0, null-body={req_len}\r\n"))
            ),
            Closes(&[405]),
        ),
        // --- Line ends and bytes ------------------------------------------------------------
        case("bare LF everywhere", "OPTIONS icap://h/respmod ICAP/1.0\nHost: h\n\n", Closes(&[400])),
        case("bare LF in one header", "OPTIONS icap://h/respmod ICAP/1.0\r\nHost: h\n\r\n", Closes(&[400])),
        case("CR inside the request line", "OPTIONS icap://h/respmod\r ICAP/1.0\r\n\r\n", Closes(&[400])),
        case("NUL in the request line", "OPTIONS icap://h/res\0pmod ICAP/1.0\r\n\r\n", Closes(&[400])),
        case("NUL in a header value", head("OPTIONS", "respmod", "X-A: b\0c\r\n"), Closes(&[400])),
        case("NUL in a header name", head("OPTIONS", "respmod", "X-\0A: b\r\n"), Closes(&[400])),
        case("obsolete header folding", head("OPTIONS", "respmod", "X-A: b\r\n c\r\n"), Closes(&[400])),
        case("header without a colon", head("OPTIONS", "respmod", "X-A b\r\n"), Closes(&[400])),
        case("space before the colon", head("OPTIONS", "respmod", "X-A : b\r\n"), Closes(&[400])),
        case("non-token header name", head("OPTIONS", "respmod", "X-A(b): c\r\n"), Closes(&[400])),
        case(
            "one header of 20 KiB",
            head("OPTIONS", "respmod", &format!("X-Long: {}\r\n", "a".repeat(20_000))),
            Closes(&[431]),
        ),
        case("100 header lines", head("OPTIONS", "respmod", &"X-A: b\r\n".repeat(100)), Closes(&[431])),
        case("incomplete head, then silence", "OPTIONS icap://h/respmod ICAP/1.0\r\nHost:", Closes(&[408])),
        case_eof("incomplete head, then end of input", "OPTIONS icap://h/respmod ICAP/1.0\r\nHo", Silent),
        // --- Encapsulated -------------------------------------------------------------------
        case("RESPMOD without Encapsulated", head("RESPMOD", "respmod", ""), Closes(&[400])),
        case(
            "Encapsulated twice",
            head("RESPMOD", "respmod", "Encapsulated: null-body=0\r\nEncapsulated: null-body=0\r\n"),
            Closes(&[400]),
        ),
        case("empty Encapsulated", head("RESPMOD", "respmod", "Encapsulated:\r\n"), Closes(&[400])),
        case("non-numeric offset", respmod_encap("res-hdr=abc, res-body=60", ""), Closes(&[400])),
        case("hex offset", respmod_encap("res-hdr=0x0, res-body=60", ""), Closes(&[400])),
        case("'+' prefixed offset", respmod_encap("res-hdr=+0, res-body=60", ""), Closes(&[400])),
        case("negative offset", respmod_encap("res-hdr=0, res-body=-60", ""), Closes(&[400])),
        case("spaces around '='", respmod_encap("res-hdr = 0, res-body = 60", ""), Closes(&[400])),
        case(
            "offset overflowing 64 bits",
            respmod_encap("res-hdr=0, res-body=99999999999999999999", ""),
            Closes(&[400]),
        ),
        case("first offset not 0", respmod_encap(&format!("res-hdr=5, res-body={res_len}"), RES_HDR), Closes(&[400])),
        case(
            "decreasing offsets",
            respmod_encap(&format!("req-hdr=0, res-hdr={both}, res-body={req_len}"), ""),
            Closes(&[400]),
        ),
        case("equal offsets", respmod_encap("res-hdr=0, res-body=0", ""), Closes(&[400])),
        case(
            "offset past the header limit (go-icap allocation)",
            respmod_encap("res-hdr=0, res-body=900000", ""),
            Closes(&[413]),
        ),
        case(
            "offset into the middle of the HTTP head",
            respmod_encap(&format!("res-hdr=0, res-body={}", res_len - 10), &format!("{RES_HDR}0\r\n\r\n")),
            Closes(&[400]),
        ),
        case(
            "offset past the HTTP head, into the body",
            respmod_encap(&format!("res-hdr=0, res-body={}", res_len + 5), &format!("{RES_HDR}3\r\nabc\r\n0\r\n\r\n")),
            Closes(&[400]),
        ),
        case("unknown section name", respmod_encap("res-hdr=0, foo-body=60", ""), Closes(&[400])),
        case("no body entry", respmod_encap("res-hdr=0", ""), Closes(&[400])),
        case("entry after the body entry", respmod_encap("res-hdr=0, res-body=60, null-body=70", ""), Closes(&[400])),
        case("req-body in RESPMOD", respmod_encap("req-hdr=0, req-body=60", ""), Closes(&[400])),
        case(
            "res-hdr in REQMOD",
            head("REQMOD", "reqmod", &format!("Encapsulated: req-hdr=0, res-hdr={req_len}, null-body={both}\r\n")),
            Closes(&[400]),
        ),
        case(
            "req-hdr in OPTIONS",
            head("OPTIONS", "respmod", "Encapsulated: req-hdr=0, null-body=10\r\n"),
            Closes(&[400]),
        ),
        case("opt-body in OPTIONS", head("OPTIONS", "respmod", "Encapsulated: opt-body=0\r\n"), Closes(&[400])),
        // --- Encapsulated HTTP heads: framing that two parsers could read differently -------
        case(
            "Content-Length and Transfer-Encoding (smuggling)",
            respmod_with_res_hdr("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Closes(&[400]),
        ),
        case(
            "two different Content-Length values",
            respmod_with_res_hdr("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\n"),
            Closes(&[400]),
        ),
        case(
            "Content-Length list with different values",
            respmod_with_res_hdr("HTTP/1.1 200 OK\r\nContent-Length: 3, 30\r\n\r\n"),
            Closes(&[400]),
        ),
        case(
            "'+' prefixed Content-Length (hyper CVE-2021-32715)",
            respmod_with_res_hdr("HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n"),
            Closes(&[400]),
        ),
        case(
            "REQMOD upload with Content-Length and chunked",
            reqmod_with_req_hdr(
                "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            ),
            Closes(&[400]),
        ),
        case(
            "folded line in the HTTP head",
            respmod_with_res_hdr("HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n"),
            Closes(&[400]),
        ),
        case("NUL in the HTTP head", respmod_with_res_hdr("HTTP/1.1 200 OK\r\nX-A: b\0\r\n\r\n"), Closes(&[400])),
        case("bare LF in the HTTP head", respmod_with_res_hdr("HTTP/1.1 200 OK\nX-A: b\r\n\r\n"), Closes(&[400])),
        case("request line in res-hdr", respmod_with_res_hdr("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Closes(&[400])),
        case("HTTP/0.9 request in req-hdr", reqmod_with_req_hdr("GET /\r\n\r\n"), Closes(&[400])),
        // --- Chunked body -------------------------------------------------------------------
        case("chunk size with '+'", respmod_raw(b"+3\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("chunk size with '-'", respmod_raw(b"-3\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("chunk size with 0x", respmod_raw(b"0x3\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("whitespace before the chunk size", respmod_raw(b" 3\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("whitespace after the chunk size", respmod_raw(b"3 \r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("non-hex chunk size", respmod_raw(b"3g\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("empty chunk-size line", respmod_raw(b"\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("chunk size overflowing 64 bits", respmod_raw(b"10000000000000000\r\nabc\r\n"), Closes(&[400])),
        case("bare LF after the chunk size", respmod_raw(b"3\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("chunk longer than its size", respmod_raw(b"3\r\nabcdef\r\n0\r\n\r\n"), Closes(&[400])),
        case(
            "chunk extension of 300 bytes",
            respmod_raw(format!("3;{}\r\nabc\r\n0\r\n\r\n", "x".repeat(300)).as_bytes()),
            Closes(&[400]),
        ),
        case(
            "1000 empty chunk extensions",
            respmod_raw(format!("0{}\r\n\r\n", ";".repeat(1000)).as_bytes()),
            Closes(&[400]),
        ),
        case("control byte in a chunk extension", respmod_raw(b"3;a\x01b\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case("ieof on a chunk with data", respmod_raw(b"3; ieof\r\nabc\r\n0\r\n\r\n"), Closes(&[400])),
        case(
            "trailers of 5 KiB",
            respmod_raw(format!("3\r\nabc\r\n0\r\n{}\r\n", "X-T: aaaaaaaaaa\r\n".repeat(320)).as_bytes()),
            Closes(&[400]),
        ),
        case("bare LF in a trailer", respmod_raw(b"3\r\nabc\r\n0\r\nX-T: a\n\r\n"), Closes(&[400])),
        case("missing final chunk, then silence", respmod_raw(b"3\r\nabc\r\n"), Closes(&[408])),
        case_eof("missing final chunk, then end of input", respmod_raw(b"3\r\nabc\r\n"), Silent),
        case_eof("2^64-1 byte chunk announced, then end of input", respmod_raw(b"ffffffffffffffff\r\nabc"), Silent),
        // --- Preview ------------------------------------------------------------------------
        case("preview longer than declared", respmod_preview("4", "a\r\n0123456789\r\n0\r\n\r\n"), Closes(&[400])),
        case("Preview larger than advertised", respmod_preview("4096", "0\r\n\r\n"), Closes(&[400])),
        case("Preview of 20 digits", respmod_preview("99999999999999999999", "0\r\n\r\n"), Closes(&[400])),
        case("negative Preview", respmod_preview("-1", "0\r\n\r\n"), Closes(&[400])),
        case("'+' prefixed Preview", respmod_preview("+4", "0\r\n\r\n"), Closes(&[400])),
        case(
            "Preview twice",
            format!(
                "{}{RES_HDR}0\r\n\r\n",
                head(
                    "RESPMOD",
                    "respmod",
                    &format!("Preview: 4\r\nPreview: 4\r\nEncapsulated: res-hdr=0, res-body={res_len}\r\n")
                )
            ),
            Closes(&[400]),
        ),
        case(
            "data after ieof",
            respmod_preview("10", "3\r\nabc\r\n0; ieof\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            Closes(&[204, 400]),
        ),
        // --- Pipelining and leftovers ----------------------------------------------------------
        case("garbage after a complete request", format!("{OPTIONS}garbage\r\n\r\n"), Closes(&[200, 400])),
        case("partial garbage after a complete request", format!("{OPTIONS}xyz"), Closes(&[200, 408])),
        case(
            "body after a null-body REQMOD",
            format!(
                "{}{REQ_HDR}5\r\nhello\r\n0\r\n\r\n",
                head("REQMOD", "reqmod", &format!("Allow: 204\r\nEncapsulated: req-hdr=0, null-body={req_len}\r\n"))
            ),
            Closes(&[204, 400]),
        ),
        case(
            "request after Connection: close",
            format!("{}{OPTIONS}", head("OPTIONS", "respmod", "Connection: close\r\n")),
            Closes(&[200]),
        ),
        // --- Accepted on purpose ------------------------------------------------------------
        case(
            "Preview on OPTIONS (no body to frame: ignored)",
            head("OPTIONS", "respmod", "Preview: 10\r\n"),
            Kept(200),
        ),
        case("chunk size with leading zeros", respmod_raw(b"0000000003\r\nabc\r\n0\r\n\r\n"), Kept(204)),
        case("chunk extensions and a trailer", respmod_raw(b"3 ; a=b;c\r\nabc\r\n0; x\r\nX-T: 1\r\n\r\n"), Kept(204)),
        case(
            "repeated identical Content-Length",
            respmod_with_res_hdr("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n"),
            Kept(204),
        ),
    ]
}

/// Runs one entry on a fresh connection; returns a description of what went wrong, if anything.
fn run_case(server: &Server, c: &Case) -> Result<(), String> {
    let mut s = server.connect();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // The server may close before reading everything (a 431 after 16 KiB): writes may fail.
    let _ = s.write_all(&c.bytes);
    if c.eof {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut got = Vec::new();
    let expected: Vec<u16> = match c.expect {
        Closes(statuses) => statuses.to_vec(),
        Kept(status) => vec![status],
        Silent => Vec::new(),
    };
    let mut last = None;
    for _ in &expected {
        match read_response(&mut reader) {
            Ok(r) => {
                got.push(r.status);
                last = Some(r);
            }
            Err(e) => return Err(format!("answers {got:?}, then {e:?}")),
        }
    }
    if got != expected {
        return Err(format!("answers {got:?}"));
    }
    match c.expect {
        Closes(_) => {
            // Error answers say that they close; a 200 to a request that asked for the close
            // (Connection: close) need not.
            let last = last.expect("Closes lists at least one answer");
            if last.status >= 400 && last.header("Connection") != Some("close") {
                return Err(format!("the {} answer lacks Connection: close", last.status));
            }
            match read_response(&mut reader) {
                Err(ReadError::Closed) => Ok(()),
                other => Err(format!("connection not closed after the answers: {other:?}")),
            }
        }
        Silent => match read_response(&mut reader) {
            Err(ReadError::Closed) => Ok(()),
            other => Err(format!("expected a close without an answer, got {other:?}")),
        },
        Kept(_) => {
            s.write_all(OPTIONS.as_bytes()).map_err(|e| e.to_string())?;
            match read_response(&mut reader) {
                Ok(r) if r.status == 200 => Ok(()),
                other => Err(format!("connection not usable afterwards: {other:?}")),
            }
        }
    }
}

#[test]
fn hostile_catalogue_gets_exact_answers_and_the_server_keeps_serving() {
    // Short deadlines so the entries that end in silence are decided quickly.
    let server = Server::start(
        &["--shards", "2", "--inspector", "test"],
        Some("[limits]\nheader_read_deadline_ms = 1000\nbody_inactivity_ms = 1000\n"),
    );
    let cases = catalogue();
    assert!(cases.len() >= 40, "the catalogue has {} entries", cases.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for c in &cases {
        let at = Instant::now();
        let outcome = run_case(&server, c);
        let took = at.elapsed();
        println!(
            "{:<58} {:<16} {:>6} ms {}",
            c.name,
            format!("{:?}", c.expect),
            took.as_millis(),
            match &outcome {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("FAILED: {e}"),
            }
        );
        if let Err(e) = outcome {
            failures.push(format!("{}: {e}", c.name));
        }
        if let Err(e) = check_serves(&server) {
            failures.push(format!("after {}: the next connection was not served: {e}", c.name));
        }
    }
    println!("{} entries in {:.1} s", cases.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // Nothing above may have killed a shard: the process is still running.
    assert_eq!(server.stop().code(), Some(0), "clean exit after the catalogue");
}
