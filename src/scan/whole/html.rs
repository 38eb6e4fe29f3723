//! HTML `data:` URIs: each one with a `;base64,` payload (or a percent-encoded one) is decoded
//! into a member, since browsers turn them into downloads and scripts without another request.
//! The scan is a substring search for `data:`, so pages without one cost a single pass.
//!
//! Decoding is as forgiving as browsers: ASCII white space inside the payload is skipped,
//! `%3D` padding is accepted, URL-safe `-` and `_` count as `+` and `/`. A payload runs to the
//! first byte that cannot be part of it (a quote, `)`, `<`, `>`). A payload cut off by the end
//! of the file, or base64 that ends mid-byte, is `Heuristics.Broken.HTML` after it is emitted.

use memchr::memmem;

use super::out::{broken, Out, PIECE_BYTES, R};

const BROKEN: &str = "Heuristics.Broken.HTML";
/// The longest media type and parameters looked at between `data:` and the comma.
const HEADER_BYTES_MAX: usize = 256;

/// True for a head that looks like HTML (a tag among the usual first ones) or carries a
/// `data:` URI at all.
pub fn looks_like(head: &[u8]) -> bool {
    let head = &head[..head.len().min(4096)];
    let lower: Vec<u8> = head.iter().map(|b| b.to_ascii_lowercase()).collect();
    let start = lower.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(lower.len());
    let t = lower[start..].strip_prefix(b"\xef\xbb\xbf").unwrap_or(&lower[start..]);
    const TAGS: [&[u8]; 10] =
        [b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<a ", b"<img", b"<iframe", b"<svg", b"<meta"];
    TAGS.iter().any(|tag| t.starts_with(tag))
        || (t.starts_with(b"<") && memmem::find(t, b"data:").is_some() && memmem::find(t, b"base64").is_some())
}

fn b64(b: u8) -> Option<u8> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

fn ends_payload(b: u8) -> bool {
    matches!(b, b'"' | b'\'' | b')' | b'<' | b'>' | b'`')
}

pub fn extract(data: &[u8], out: &mut Out) -> R {
    let lower = memmem::Finder::new(b"data:");
    let upper = memmem::Finder::new(b"DATA:");
    let mut n = 0u32;
    let mut at = 0usize;
    let mut fault = false;
    // The scheme in lower or upper case (mixed case is left to the page scan). Each pattern's
    // next position is kept and only searched again once passed, so the scan stays linear.
    let mut next = [None::<usize>; 2];
    let mut searched = [0usize; 2];
    loop {
        for (i, f) in [&lower, &upper].into_iter().enumerate() {
            if next[i].is_none_or(|p| p < at) && searched[i] <= at {
                next[i] = f.find(&data[at..]).map(|p| p + at);
                searched[i] = next[i].map_or(data.len() + 1, |p| p + 1);
            }
        }
        let Some(p) = next.iter().flatten().copied().filter(|&p| p >= at).min() else { break };
        let header_at = p + 5;
        at = header_at;
        let window = &data[header_at..(header_at + HEADER_BYTES_MAX).min(data.len())];
        let Some(comma) = window.iter().position(|&b| b == b',' || ends_payload(b)) else { continue };
        if window[comma] != b',' {
            continue;
        }
        let header = &window[..comma];
        let is_b64 = header.to_ascii_lowercase().ends_with(b";base64");
        let body_at = header_at + comma + 1;
        let len = data[body_at..].iter().position(|&b| ends_payload(b));
        let body = &data[body_at..body_at + len.unwrap_or(data.len() - body_at)];
        if !is_b64 && !body.contains(&b'%') {
            // Plain text: already in the page the caller scans.
            at = body_at + body.len();
            continue;
        }
        n += 1;
        out.start(&format!("data{n}"))?;
        let ok = if is_b64 { base64(body, out)? } else { percent(body, out)? };
        out.end()?;
        fault |= !ok || len.is_none();
        at = body_at + body.len();
    }
    if fault {
        return Err(broken(BROKEN));
    }
    Ok(())
}

/// Decodes base64 into the member, in pieces. Returns whether it ended on a byte boundary.
fn base64(body: &[u8], out: &mut Out) -> R<bool> {
    let mut buf = Vec::with_capacity(PIECE_BYTES);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut i = 0usize;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b == b'=' || b.is_ascii_whitespace() {
            continue;
        }
        if b == b'%' {
            // %3D is '=', %2B '+', %2F '/'; other escapes end nothing and are skipped.
            let esc = body.get(i..i + 2).map(|e| e.to_ascii_uppercase());
            i += 2;
            match esc.as_deref() {
                Some(b"2B") => acc = acc << 6 | 62,
                Some(b"2F") => acc = acc << 6 | 63,
                _ => continue,
            }
        } else {
            let Some(v) = b64(b) else { return Ok(false) };
            acc = acc << 6 | v as u32;
        }
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            buf.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
            if buf.len() == PIECE_BYTES {
                out.data(&buf)?;
                buf.clear();
            }
        }
    }
    out.data(&buf)?;
    Ok(bits < 6)
}

/// Decodes percent escapes into the member. Returns whether every escape was complete.
fn percent(body: &[u8], out: &mut Out) -> R<bool> {
    let mut buf = Vec::with_capacity(PIECE_BYTES);
    let mut i = 0usize;
    let mut ok = true;
    while i < body.len() {
        let b = body[i];
        i += 1;
        let byte = if b == b'%' {
            let hex = body
                .get(i..i + 2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    i += 2;
                    v
                }
                None => {
                    ok = false;
                    b
                }
            }
        } else {
            b
        };
        buf.push(byte);
        if buf.len() == PIECE_BYTES {
            out.data(&buf)?;
            buf.clear();
        }
    }
    out.data(&buf)?;
    Ok(ok)
}
