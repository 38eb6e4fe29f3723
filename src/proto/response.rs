//! Encoders for every response the server sends. Each appends to the connection's output
//! scratch buffer (reused, so nothing is allocated per response once it has grown).

use super::date::http_date;
use super::error::reason;
use super::service::Service;
use super::Method;
use std::io::Write;

/// Server-wide facts that go into responses.
#[derive(Clone, Copy, Debug)]
pub struct ServerInfo {
    /// Advertised in OPTIONS: shards x connections per shard.
    pub max_connections: usize,
    pub preview_bytes: usize,
    pub options_ttl_secs: u64,
}

fn status_line(out: &mut Vec<u8>, status: u16) {
    let _ = write!(out, "ICAP/1.0 {} {}\r\n", status, reason(status));
}

fn common(out: &mut Vec<u8>, istag: &str, unix_secs: u64) {
    out.extend_from_slice(b"ISTag: \"");
    out.extend_from_slice(istag.as_bytes());
    out.extend_from_slice(b"\"\r\nDate: ");
    out.extend_from_slice(&http_date(unix_secs));
    out.extend_from_slice(b"\r\nServer: icapd/");
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The OPTIONS answer for `service`. `Allow: 204, 206` offers both extensions, so Squid
/// (`icap_206_enable`, on by default) and c-icap clients add `Allow: 206` to their requests.
pub fn options(out: &mut Vec<u8>, service: &Service, info: &ServerInfo, istag: &str, unix_secs: u64) {
    status_line(out, 200);
    common(out, istag, unix_secs);
    let _ = write!(
        out,
        "Methods: {}\r\nService: icapd {} {}\r\nMax-Connections: {}\r\nOptions-TTL: {}\r\nPreview: {}\r\nTransfer-Preview: *\r\nAllow: 204, 206\r\nEncapsulated: null-body=0\r\n\r\n",
        service.methods_header(),
        env!("CARGO_PKG_VERSION"),
        service.name,
        info.max_connections,
        info.options_ttl_secs,
        info.preview_bytes,
    );
}

/// `100 Continue` after a preview.
pub fn continue_100(out: &mut Vec<u8>) {
    out.extend_from_slice(b"ICAP/1.0 100 Continue\r\n\r\n");
}

/// A response without a body: 204, errors, 503. `close` adds `Connection: close`.
pub fn bodiless(out: &mut Vec<u8>, status: u16, istag: &str, unix_secs: u64, close: bool) {
    status_line(out, status);
    common(out, istag, unix_secs);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"Encapsulated: null-body=0\r\n\r\n");
}

/// The head of a 200 that echoes the original message: the encapsulated header section
/// (`hdr_len` bytes, may be 0) and, if `body`, a chunked body follow.
pub fn echo_head(out: &mut Vec<u8>, method: Method, hdr_len: usize, body: bool, istag: &str, unix_secs: u64) {
    status_line(out, 200);
    common(out, istag, unix_secs);
    let (hdr, body_name) = match method {
        Method::Reqmod => ("req-hdr", if body { "req-body" } else { "null-body" }),
        _ => ("res-hdr", if body { "res-body" } else { "null-body" }),
    };
    if hdr_len > 0 {
        let _ = write!(out, "Encapsulated: {hdr}=0, {body_name}={hdr_len}\r\n\r\n");
    } else {
        let _ = write!(out, "Encapsulated: {body_name}=0\r\n\r\n");
    }
}

/// A chunk-size line for `len` bytes of echoed data.
pub fn chunk_header(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// The end of an echoed chunked body: the CRLF after the last data chunk (when `after_data`)
/// and the zero chunk.
pub fn chunk_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// The block page used unless the operator supplies a template (`block_page` in the config).
/// `{{THREAT}}` is replaced by the threat name (reduced to printable ASCII without markup).
pub const DEFAULT_BLOCK_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Blocked</title></head><body>\n<h1>Access blocked</h1>\n<p>The content you requested was blocked because it contains <b>{{THREAT}}</b>.</p>\n<p>icapd</p>\n</body></html>\n";

/// Removes anything from a threat name that could break a header or the page.
fn clean_name(threat: &str) -> impl Iterator<Item = char> + '_ {
    threat
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ';' && *c != '<' && *c != '>' && *c != '&' && *c != '"')
        .take(128)
}

/// A block answer: ICAP 200 carrying an HTTP 403 page, with the c-icap compatible infection
/// headers Squid operators already log. Used for RESPMOD and for REQMOD (where the HTTP
/// response replaces the upload, so it never reaches the origin).
pub fn block(out: &mut Vec<u8>, threat: &str, template: Option<&str>, istag: &str, unix_secs: u64) {
    let name: String = clean_name(threat).collect();
    let page = template.unwrap_or(DEFAULT_BLOCK_PAGE).replace("{{THREAT}}", &name);
    let http_head = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Virus-ID: {name}\r\nConnection: close\r\n\r\n",
        page.len()
    );
    status_line(out, 200);
    common(out, istag, unix_secs);
    let _ = write!(
        out,
        "X-Infection-Found: Type=0; Resolution=2; Threat={name};\r\nX-Violations-Found: 1\r\n\t-\r\n\t{name}\r\n\t0\r\n\t0\r\nX-Virus-ID: {name}\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n",
        http_head.len()
    );
    out.extend_from_slice(http_head.as_bytes());
    chunk_header(out, page.len());
    out.extend_from_slice(page.as_bytes());
    out.extend_from_slice(b"\r\n");
    chunk_end(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::service::lookup;

    #[test]
    fn options_has_required_headers() {
        let mut out = Vec::new();
        let info = ServerInfo { max_connections: 8192, preview_bytes: 1024, options_ttl_secs: 3600 };
        options(&mut out, lookup(b"avscan").unwrap(), &info, "icapd-null", 0);
        let text = String::from_utf8(out).unwrap();
        for needle in [
            "ICAP/1.0 200 OK\r\n",
            "Methods: RESPMOD, REQMOD\r\n",
            "ISTag: \"icapd-null\"\r\n",
            "Max-Connections: 8192\r\n",
            "Options-TTL: 3600\r\n",
            "Preview: 1024\r\n",
            "Transfer-Preview: *\r\n",
            "Allow: 204, 206\r\n",
            "Encapsulated: null-body=0\r\n",
            "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in {text}");
        }
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn block_page_is_well_framed_and_sanitised() {
        let mut out = Vec::new();
        block(&mut out, "Evil<script>;\r\nX: y", None, "t", 0);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("X-Infection-Found: Type=0; Resolution=2; Threat=EvilscriptX:y;\r\n"));
        let head_end = text.find("\r\n\r\n").unwrap() + 4;
        let encap = text.lines().find(|l| l.starts_with("Encapsulated:")).unwrap();
        let body_off: usize = encap.rsplit('=').next().unwrap().parse().unwrap();
        let http = &text[head_end..head_end + body_off];
        assert!(http.starts_with("HTTP/1.1 403 Forbidden\r\n") && http.ends_with("\r\n\r\n"));
        assert!(text.ends_with("\r\n0\r\n\r\n"));
    }
}
