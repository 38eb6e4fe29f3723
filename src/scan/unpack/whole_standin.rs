//! A stand-in for `crate::scan::whole`, the library for formats that need random access
//! (OLE2, CAB, 7z, PDF, RTF, TNEF, CHM, UPX, HTML), written on another branch. It has the same
//! names and signatures, so that the container layer builds and its buffering path is tested
//! before that library is merged; once it is, `unpack/mod.rs` points `whole` at it and this
//! file goes. The only format it opens is HTML with base64 `data:` URIs, enough to drive the
//! buffered path end to end.

use std::ops::ControlFlow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ole2,
    Cab,
    SevenZip,
    Pdf,
    Rtf,
    Tnef,
    Chm,
    Pe,
    Html,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub member_bytes_max: u64,
    pub members_max: u32,
    pub ratio_max: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Encrypted(&'static str),
    Broken(&'static str),
    Limit(&'static str),
}

pub trait Sink {
    fn member_start(&mut self, name: &str) -> ControlFlow<()>;
    fn member_data(&mut self, data: &[u8]) -> ControlFlow<()>;
    fn member_end(&mut self) -> ControlFlow<()>;
}

/// `head` is the first up to 4096 bytes of an object.
pub fn detect(head: &[u8]) -> Option<Kind> {
    let start = head.trim_ascii_start();
    let html = [&b"<!doctype html"[..], b"<html", b"<a ", b"<img ", b"<body", b"<head"];
    let lower = |s: &[u8], p: &[u8]| s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p);
    (html.iter().any(|p| lower(start, p)) && memchr::memmem::find(head, b"data:").is_some()).then_some(Kind::Html)
}

pub fn extract(kind: Kind, data: &[u8], limits: &Limits, sink: &mut dyn Sink) -> Result<(), Fault> {
    match kind {
        Kind::Html => html_data_uris(data, limits, sink),
        _ => Ok(()),
    }
}

/// Every `data:...;base64,` URI's payload is a member.
fn html_data_uris(data: &[u8], limits: &Limits, sink: &mut dyn Sink) -> Result<(), Fault> {
    let mut members = 0;
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&data[at..], b"data:") {
        let start = at + i + 5;
        let Some(comma) = memchr::memchr(b',', &data[start..]).map(|c| start + c) else { break };
        at = comma + 1;
        if !data[start..comma].ends_with(b";base64") {
            continue;
        }
        let end = data[at..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || b"+/=\r\n ".contains(b)))
            .map_or(data.len(), |e| at + e);
        members += 1;
        if members > limits.members_max {
            return Err(Fault::Limit("Heuristics.Limits.Exceeded.MaxFiles"));
        }
        let mut b64 = super::mime::Base64::default();
        let mut out = Vec::with_capacity((end - at) / 4 * 3 + 3);
        b64.decode(&data[at..end], &mut out);
        if sink.member_start("data-uri").is_break() || sink.member_data(&out).is_break() || sink.member_end().is_break()
        {
            return Ok(());
        }
        at = end;
    }
    Ok(())
}
