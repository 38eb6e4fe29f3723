//! The metrics listener's side of HTTP: a resumable parser for the one request a scraper
//! sends, and the encoder for the answer. Sans-IO like the ICAP core.
//!
//! The listener serves two pages, `GET /metrics` (Prometheus text format) and `GET /status`
//! (plain text for people), and closes every connection after one answer: scrapers open a
//! connection per scrape anyway, and a listener that never keeps a connection cannot be held
//! open by an idle client. A request head larger than `scrape_request_bytes_max` is refused
//! with 431, any method but GET and HEAD with 405, any other path with 404.

/// The pages the listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Metrics,
    Status,
}

/// What the bytes received so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scrape {
    /// The head is not complete yet.
    Partial,
    /// A page was asked for; `head_only` for HEAD.
    Page { page: Page, head_only: bool },
    /// Answer with this status and close.
    Reject(u16),
}

/// Finds the end of the request head across reads without rescanning what it has seen.
#[derive(Debug)]
pub struct ScrapeParser {
    /// Bytes already searched for the blank line.
    scanned: usize,
    max: usize,
}

impl ScrapeParser {
    pub fn new(request_bytes_max: usize) -> Self {
        ScrapeParser { scanned: 0, max: request_bytes_max }
    }

    /// `buf` is everything received so far (the caller appends; it never shrinks).
    pub fn parse(&mut self, buf: &[u8]) -> Scrape {
        let from = self.scanned.saturating_sub(3);
        let end = memchr::memmem::find(&buf[from..], b"\r\n\r\n").map(|i| from + i + 4);
        let Some(end) = end else {
            self.scanned = buf.len();
            return if buf.len() >= self.max { Scrape::Reject(431) } else { Scrape::Partial };
        };
        if end > self.max {
            return Scrape::Reject(431);
        }
        let line_end = memchr::memmem::find(buf, b"\r\n").expect("the head ends in CRLF CRLF");
        route(&buf[..line_end])
    }
}

fn route(line: &[u8]) -> Scrape {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Scrape::Reject(400);
    };
    if !version.starts_with(b"HTTP/1.") {
        return Scrape::Reject(400);
    }
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Scrape::Reject(405),
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    let page = match path {
        b"/metrics" => Page::Metrics,
        b"/status" | b"/" => Page::Status,
        _ => return Scrape::Reject(404),
    };
    Scrape::Page { page, head_only }
}

/// The content type of each page.
pub fn content_type(page: Page) -> &'static str {
    match page {
        Page::Metrics => "text/plain; version=0.0.4; charset=utf-8",
        Page::Status => "text/plain; charset=utf-8",
    }
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn response(status: u16, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;

    /// Feeds `input` in the pieces `cuts` gives, as a socket would, and returns the first
    /// non-partial answer (or Partial at the end).
    fn feed(input: &[u8], cuts: &[usize], max: usize) -> Scrape {
        let mut p = ScrapeParser::new(max);
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let r = p.parse(&input[..cut]);
            if r != Scrape::Partial {
                return r;
            }
            prev = cut;
        }
        let _ = prev;
        Scrape::Partial
    }

    #[test]
    fn table_at_every_split() {
        let cases: [(&[u8], Scrape); 9] = [
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Scrape::Page { page: Page::Metrics, head_only: false }),
            (b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", Scrape::Page { page: Page::Metrics, head_only: false }),
            (b"HEAD /status HTTP/1.1\r\n\r\n", Scrape::Page { page: Page::Status, head_only: true }),
            (b"GET / HTTP/1.1\r\n\r\n", Scrape::Page { page: Page::Status, head_only: false }),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Scrape::Reject(405)),
            (b"GET /secret HTTP/1.1\r\n\r\n", Scrape::Reject(404)),
            (b"GET /metrics\r\n\r\n", Scrape::Reject(400)),
            (b"GET /metrics SPDY/3\r\n\r\n", Scrape::Reject(400)),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", Scrape::Partial),
        ];
        for (input, want) in cases {
            for_each_split(input.len(), |cuts| {
                assert_eq!(feed(input, cuts, 1024), want, "{:?} cuts {cuts:?}", String::from_utf8_lossy(input));
            });
        }
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 200));
        assert_eq!(feed(&big, &[], 64), Scrape::Reject(431), "no end in sight");
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(feed(&big, &[], 64), Scrape::Reject(431), "ends past the bound");
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(response(200, "text/plain", b"hello", false)).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.contains("Content-Length: 5\r\n") && r.ends_with("\r\n\r\nhello")
        );
        let r = String::from_utf8(response(200, "text/plain", b"hello", true)).unwrap();
        assert!(r.ends_with("\r\n\r\n") && r.contains("Content-Length: 5\r\n"));
    }
}
