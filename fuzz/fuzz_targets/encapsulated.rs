//! The Encapsulated header parser, against a reference reading of RFC 3507 section 4.4.1.
//!
//! Flags: bits 0-1 pick the method (OPTIONS, REQMOD, RESPMOD), bit 2 a small header-section
//! bound. The payload is the header value.
//!
//! Checks: the parser accepts exactly what an independent reference accepts and returns the
//! same sections; an accepted value satisfies the invariants the connection relies on (first
//! offset 0, strictly increasing, within the bound, sections allowed for the method); and the
//! canonical spelling of an accepted value parses back to the same result. The value is parsed
//! whole because the head parser hands it over whole; the head target covers splitting.
#![no_main]

use icapd::proto::encapsulated::{parse, BodyKind, Encapsulated};
use icapd::proto::Method;
use icapd_fuzz::Input;
use libfuzzer_sys::fuzz_target;

/// The reference: split into entries, read each, then check the grammar per method.
fn reference(value: &[u8], method: Method, max: usize) -> Option<Encapsulated> {
    let mut entries: Vec<(usize, u64)> = Vec::new();
    let text = std::str::from_utf8(value).ok()?;
    for (i, item) in text.split(',').enumerate() {
        let item = if i == 0 { item } else { item.trim_start_matches([' ', '\t']) };
        let (name, number) = item.split_once('=')?;
        let rank = ["req-hdr", "res-hdr", "req-body", "res-body", "null-body", "opt-body"]
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))?;
        if number.is_empty() || number.len() > 19 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        entries.push((rank, number.parse().ok()?));
    }
    let (&(body_rank, body_offset), headers) = entries.split_last()?;
    if body_rank < 2 || headers.iter().any(|&(r, _)| r >= 2) {
        return None;
    }
    if entries[0].1 != 0 || entries.windows(2).any(|w| w[0].0 >= w[1].0 || w[0].1 >= w[1].1) {
        return None;
    }
    if entries.iter().any(|&(_, o)| o > max as u64) {
        return None;
    }
    let find = |rank| headers.iter().find(|&&(r, _)| r == rank).map(|&(_, o)| o as u32);
    let (req_hdr, res_hdr) = (find(0), find(1));
    let body = [BodyKind::Req, BodyKind::Res, BodyKind::Null, BodyKind::Opt][body_rank - 2];
    let ok = match method {
        Method::Options => req_hdr.is_none() && res_hdr.is_none() && body == BodyKind::Null,
        Method::Reqmod => res_hdr.is_none() && matches!(body, BodyKind::Req | BodyKind::Null),
        Method::Respmod => matches!(body, BodyKind::Res | BodyKind::Null),
    };
    ok.then_some(Encapsulated { req_hdr, res_hdr, body, body_offset: body_offset as u32 })
}

fn canonical(e: &Encapsulated) -> String {
    let mut parts = Vec::new();
    if let Some(o) = e.req_hdr {
        parts.push(format!("req-hdr={o}"));
    }
    if let Some(o) = e.res_hdr {
        parts.push(format!("res-hdr={o}"));
    }
    let body = match e.body {
        BodyKind::Req => "req-body",
        BodyKind::Res => "res-body",
        BodyKind::Null => "null-body",
        BodyKind::Opt => "opt-body",
    };
    parts.push(format!("{body}={}", e.body_offset));
    parts.join(", ")
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let method = [Method::Options, Method::Reqmod, Method::Respmod, Method::Respmod][(input.flags & 3) as usize];
    let max = if input.flags & 4 == 4 { 300 } else { icapd::limits::HTTP_HEADER_BYTES_MAX };
    let value = input.payload;
    let got = parse(value, method, max);
    let want = reference(value, method, max);
    assert_eq!(got.ok(), want, "value {:?}", String::from_utf8_lossy(value));
    if let Ok(e) = got {
        let offsets: Vec<u32> = [e.req_hdr, e.res_hdr, Some(e.body_offset)].into_iter().flatten().collect();
        assert_eq!(offsets[0], 0, "the first section starts the encapsulated part");
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert!(e.body_offset as usize <= max);
        assert_eq!(parse(canonical(&e).as_bytes(), method, max), Ok(e), "canonical form {}", canonical(&e));
    }
});
