//! A strict reader for what the server writes: a transcript of ICAP responses.
//!
//! The conn target checks that every byte the state machine writes belongs to a well-formed
//! ICAP/1.0 response, so this reader is written independently of the server's encoder and
//! refuses anything it does not expect, rather than skipping over it.

use icapd::proto::chunked::{Chunk, ChunkDecoder};

/// One response read back from the transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The ICAP head, status line to blank line.
    pub head: Vec<u8>,
    /// The encapsulated header sections (everything before the body offset).
    pub hdr: Vec<u8>,
    /// The de-chunked body, if the response has one.
    pub body: Option<Vec<u8>>,
    /// False when the transcript ends inside the chunked body (an echo that was cut off).
    pub complete: bool,
    /// The response carries `Connection: close`.
    pub close: bool,
}

/// Statuses the server may send.
const STATUSES: [u16; 11] = [100, 200, 204, 400, 404, 405, 408, 413, 431, 501, 505];

/// Reads every response in `out`. Fails with a description of the first malformed byte.
pub fn read_transcript(mut out: &[u8]) -> Result<Vec<Response>, String> {
    let mut resps = Vec::new();
    while !out.is_empty() {
        if resps.last().is_some_and(|r: &Response| !r.complete) {
            return Err("bytes after a cut-off response".into());
        }
        let end = memchr::memmem::find(out, b"\r\n\r\n").ok_or("response head without its blank line")? + 4;
        let head = &out[..end];
        out = &out[end..];
        let mut lines = head[..end - 4].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = lines.next().ok_or("empty head")?;
        let status = parse_status_line(status_line)?;
        let mut encapsulated: Option<&[u8]> = None;
        let mut close = false;
        let mut names = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err("empty header line".into());
            }
            if line[0] == b'\t' {
                // Continuation lines occur only in X-Violations-Found, as c-icap writes it.
                if names.last() != Some(&&b"X-Violations-Found"[..]) {
                    return Err(format!("folded line after {:?}", names.last().map(|n| String::from_utf8_lossy(n))));
                }
                continue;
            }
            let colon = memchr::memchr(b':', line).ok_or("header line without a colon")?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.is_empty() || !name.iter().all(|&b| icapd::proto::head::is_tchar(b)) {
                return Err(format!("bad header name {:?}", String::from_utf8_lossy(name)));
            }
            if !value.starts_with(b" ") || value.iter().any(|&b| b < 0x20 || b == 0x7f) {
                return Err(format!("bad header value {:?}", String::from_utf8_lossy(value)));
            }
            if names.contains(&name) {
                return Err(format!("duplicate header {:?}", String::from_utf8_lossy(name)));
            }
            names.push(name);
            let value = &value[1..];
            if name == b"Encapsulated" {
                encapsulated = Some(value);
            } else if name == b"Connection" {
                if value != b"close" {
                    return Err("Connection other than close".into());
                }
                close = true;
            }
        }
        if status != 100 && !names.contains(&&b"ISTag"[..]) {
            return Err(format!("{status} without ISTag"));
        }
        let mut resp = Response { status, head: head.to_vec(), hdr: Vec::new(), body: None, complete: true, close };
        match (status, encapsulated) {
            (100, None) => {}
            (100, Some(_)) => return Err("100 Continue with Encapsulated".into()),
            (_, None) => return Err(format!("{status} without Encapsulated")),
            (_, Some(value)) => {
                let (hdr_len, body) = parse_encapsulated(value)?;
                if out.len() < hdr_len {
                    return Err("transcript ends inside the encapsulated headers".into());
                }
                resp.hdr = out[..hdr_len].to_vec();
                if hdr_len > 0 && !resp.hdr.ends_with(b"\r\n\r\n") {
                    return Err("encapsulated header section does not end with a blank line".into());
                }
                out = &out[hdr_len..];
                if body {
                    let (consumed, data, complete) = dechunk(out)?;
                    out = &out[consumed..];
                    resp.body = Some(data);
                    resp.complete = complete;
                }
            }
        }
        if !matches!(status, 100 | 200 | 204) && !resp.close {
            return Err(format!("error status {status} without Connection: close"));
        }
        resps.push(resp);
    }
    Ok(resps)
}

fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let rest = line.strip_prefix(b"ICAP/1.0 ").ok_or("status line does not start with ICAP/1.0")?;
    if rest.len() < 5 || rest[3] != b' ' || !rest[..3].iter().all(u8::is_ascii_digit) {
        return Err(format!("bad status line {:?}", String::from_utf8_lossy(line)));
    }
    let status: u16 = std::str::from_utf8(&rest[..3]).map_err(|e| e.to_string())?.parse().map_err(|_| "status")?;
    if !STATUSES.contains(&status) {
        return Err(format!("unexpected status {status}"));
    }
    if rest[4..].iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err("control byte in the reason phrase".into());
    }
    Ok(status)
}

/// The header sections' length and whether a body follows, from a response's Encapsulated
/// value, which the server writes as `[hdr=0, ]body=N`.
fn parse_encapsulated(value: &[u8]) -> Result<(usize, bool), String> {
    let text = std::str::from_utf8(value).map_err(|_| "Encapsulated is not ASCII")?;
    let entries: Vec<&str> = text.split(", ").collect();
    let offset = |e: &str, names: &[&str]| -> Result<usize, String> {
        let (n, o) = e.split_once('=').ok_or(format!("bad Encapsulated entry {e:?}"))?;
        if !names.contains(&n) || o.is_empty() || !o.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad Encapsulated entry {e:?}"));
        }
        o.parse().map_err(|_| format!("bad Encapsulated offset {o:?}"))
    };
    let bodies = ["req-body", "res-body", "null-body"];
    let (hdr_len, last) = match entries.as_slice() {
        [body] => (offset(body, &bodies)?, *body),
        [hdr, body] => {
            if offset(hdr, &["req-hdr", "res-hdr"])? != 0 {
                return Err("first Encapsulated offset is not 0".into());
            }
            (offset(body, &bodies)?, *body)
        }
        _ => return Err(format!("unexpected Encapsulated {text:?}")),
    };
    if entries.len() == 1 && hdr_len != 0 {
        return Err("body offset without a header section".into());
    }
    Ok((hdr_len, !last.starts_with("null-body")))
}

/// Decodes a chunked body; returns the bytes consumed, the data and whether the zero chunk
/// was reached (a cut-off echo ends without it, and nothing may follow it then).
fn dechunk(mut out: &[u8]) -> Result<(usize, Vec<u8>, bool), String> {
    let total = out.len();
    let mut dec = ChunkDecoder::new(256, 4096);
    let mut data = Vec::new();
    while !out.is_empty() {
        let (n, chunk) = dec.decode(out).map_err(|e| format!("echoed body is not chunked: {e:?}"))?;
        match chunk {
            Chunk::Data { start, end } => data.extend_from_slice(&out[start..end]),
            Chunk::NeedMore => return Ok((total, data, false)),
            Chunk::End { ieof } => {
                if ieof {
                    return Err("ieof in a response".into());
                }
                out = &out[n..];
                return Ok((total - out.len(), data, true));
            }
        }
        out = &out[n..];
    }
    Ok((total, data, false))
}
