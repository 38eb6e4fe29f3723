//! The ICAP head parser and `request::interpret`.
//!
//! Flags: bit 0 selects tight head limits (small byte and line bounds, so the limit paths are
//! reached by short inputs).
//!
//! Checks: the parser gives the same outcome (status, request line, header slots, interpreted
//! request or error) whole, at the fuzzer's split points and byte by byte; a complete head is
//! well-formed by construction (CRLF only, ends with a blank line, within its bounds, names are
//! tokens, values free of control bytes and trimmed); parsing only the complete head, without
//! what follows it, gives the same answer; an interpreted request is consistent with the
//! limits it was checked against; and the identity headers and the requested service name
//! resolve to bounded, printable values.
#![no_main]

use icapd::limits::Limits;
use icapd::proto::error::ProtoError;
use icapd::proto::head::{is_tchar, slice, HeadParser, HeadStatus, HeaderSlot, RequestLine};
use icapd::proto::request::{self, Request};
use icapd::proto::Method;
use icapd_fuzz::{every_byte, piece_ends, Input};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: Result<HeadStatus, ProtoError>,
    line: Option<RequestLine>,
    headers: Vec<HeaderSlot>,
    request: Option<Result<Request, ProtoError>>,
}

/// Feeds growing prefixes of `payload`, ending at each cut, like a receive buffer filling up.
fn run(payload: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    let mut parser = HeadParser::new(limits);
    let mut status = Ok(HeadStatus::Partial);
    for end in piece_ends(cuts, payload.len()) {
        status = parser.parse(&payload[..end]);
        if status != Ok(HeadStatus::Partial) {
            break;
        }
    }
    let request = match status {
        Ok(HeadStatus::Complete(len)) => Some(request::interpret(&payload[..len], &parser, limits)),
        _ => None,
    };
    Outcome { status, line: parser.request_line(), headers: parser.headers().to_vec(), request }
}

fn tight() -> Limits {
    Limits {
        icap_header_bytes_max: 96,
        icap_header_count_max: 3,
        http_header_bytes_max: 200,
        preview_bytes_max: 10,
        ..Limits::default()
    }
}

fn check_complete(payload: &[u8], len: usize, out: &Outcome, limits: &Limits) {
    assert!(len <= payload.len() && len <= limits.icap_header_bytes_max, "head length {len}");
    let head = &payload[..len];
    assert!(head.ends_with(b"\r\n\r\n"), "a complete head ends with a blank line");
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF at {i} in a complete head");
        }
    }
    let line = out.line.expect("a complete head has a request line");
    for part in [line.method, line.uri, line.version] {
        let bytes = slice(head, part);
        assert!(!bytes.is_empty() && !bytes.contains(&b' ') && !bytes.iter().any(|&b| b < 0x20 || b == 0x7f));
    }
    assert!(slice(head, line.method).iter().all(|&b| is_tchar(b)));
    assert!(out.headers.len() <= limits.icap_header_count_max);
    let mut prev_end = line.version.1;
    for h in &out.headers {
        assert!(h.name.0 > prev_end, "header slots are in order and do not overlap");
        let name = slice(head, h.name);
        let value = slice(head, h.value);
        assert!(!name.is_empty() && name.iter().all(|&b| is_tchar(b)));
        assert!(h.value.0 > h.name.1 && head[h.name.1 as usize] == b':');
        assert!(!value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f));
        assert!(!value.starts_with(b" ") && !value.starts_with(b"\t"));
        assert!(!value.ends_with(b" ") && !value.ends_with(b"\t"));
        prev_end = h.value.1;
    }
    // What follows the head does not matter to the head.
    let alone = run(head, &[], limits);
    assert_eq!(&alone, out, "the head parsed alone");
    if let Some(Ok(req)) = out.request {
        let method = slice(head, line.method);
        assert_eq!(method, req.method.as_str().as_bytes());
        assert_eq!(slice(head, line.version), b"ICAP/1.0");
        assert!(req.service.allows(req.method));
        if let Some(p) = req.preview {
            assert!(p as usize <= limits.preview_bytes_max);
            assert!(req.encapsulated.has_body(), "a preview needs a body");
        }
        let e = req.encapsulated;
        assert!(e.body_offset as usize <= limits.http_header_bytes_max);
        for (a, b) in [e.req_hdr_range(), e.res_hdr_range()].into_iter().flatten() {
            assert!(a < b && b <= e.body_offset, "section {a}..{b} within {}", e.body_offset);
        }
        if req.method == Method::Options {
            assert!(!e.has_body() && e.req_hdr.is_none() && e.res_hdr.is_none());
        }
        // Identity headers never fail a request, and what they resolve to is bounded,
        // printable, and (for groups) free of separators.
        let id = req.identity.resolve(head);
        if let Some(user) = id.user() {
            assert!(user.len() <= icapd::limits::IDENTITY_VALUE_BYTES_MAX && !user.chars().any(char::is_control));
        }
        req.identity.any_group(head, &mut |g| {
            assert!(!g.is_empty() && g.len() <= icapd::limits::IDENTITY_VALUE_BYTES_MAX && !g.contains(&b','));
            false
        });
    }
    // The service name kept for the log is bounded and safe in both log formats.
    if let Some(name) = request::requested_service(head, &parser_of(head, limits)) {
        let kept = icapd::proto::identity::RequestedService::new(name);
        let text = kept.as_str().unwrap_or("");
        assert!(text.len() <= icapd::limits::REQUESTED_SERVICE_LOG_BYTES);
        assert!(text.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
    }
}

/// A parser that has seen the complete head `head`.
fn parser_of(head: &[u8], limits: &Limits) -> HeadParser {
    let mut parser = HeadParser::new(limits);
    assert!(matches!(parser.parse(head), Ok(HeadStatus::Complete(_))));
    parser
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let limits = if input.flags & 1 == 1 { tight() } else { Limits::default() };
    assert!(limits.validate().is_ok());
    let payload = input.payload;
    let whole = run(payload, &[], &limits);
    let split = run(payload, &input.cuts(), &limits);
    assert_eq!(split, whole, "split at {:?}", input.cuts());
    let bytes = run(payload, &every_byte(payload.len()), &limits);
    assert_eq!(bytes, whole, "byte by byte");
    match whole.status {
        Ok(HeadStatus::Complete(len)) => check_complete(payload, len, &whole, &limits),
        Ok(HeadStatus::Partial) => {
            assert!(payload.len() < limits.icap_header_bytes_max, "a partial head is within its bound");
            assert!(!payload.windows(4).any(|w| w == b"\r\n\r\n"), "a blank line ends the head");
        }
        Err(ProtoError::HeadTooLarge) => assert!(payload.len() >= limits.icap_header_bytes_max),
        Err(_) => {}
    }
});
