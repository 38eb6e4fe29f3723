//! Validation of the encapsulated HTTP header sections (req-hdr, res-hdr).
//!
//! The server passes these sections back verbatim in a 200 echo, the proxy re-frames the HTTP
//! message from them, and the scanner reads fields from them, so each must be a well-framed
//! HTTP head that every later reader parses the same way:
//!
//! * CRLF line ends only, no control bytes other than tab, a non-empty start line, and the
//!   section ending exactly at the blank line that the Encapsulated offsets promise (an offset
//!   that points into the middle of a header block is the classic way to make two parsers
//!   disagree);
//! * a start line of the right kind: `method SP target SP HTTP/d.d` in req-hdr, and
//!   `HTTP/d.d SP 3DIGIT [SP reason]` in res-hdr;
//! * header lines of the form `token ":" value`, with no whitespace before the colon and no
//!   obsolete line folding (RFC 9112 section 5 requires rejecting both);
//! * unambiguous framing: every `Content-Length` is plain decimal and all of them agree (a
//!   list of identical values counts as one, RFC 9112 section 6.3), and `Content-Length` never
//!   appears together with `Transfer-Encoding`. A head that two HTTP parsers could frame
//!   differently is a request-smuggling vector, so it is refused rather than repaired.
//!
//! Every failure is a 400. Framing failures get their own error ([`ProtoError::HttpFraming`])
//! so that logs tell a smuggling attempt from a merely garbled head.

use super::encapsulated::parse_decimal;
use super::error::ProtoError;
use super::head::is_tchar;
use memchr::memchr;

/// Which HTTP message a header section starts: it decides the start-line grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// req-hdr: an HTTP request head.
    Request,
    /// res-hdr: an HTTP response head.
    Response,
}

/// Checks one header section (`section` is exactly the bytes between two Encapsulated
/// offsets) of the given kind.
pub fn validate_section(section: &[u8], kind: Section) -> Result<(), ProtoError> {
    if section.len() < 4 || !section.ends_with(b"\r\n\r\n") {
        return Err(ProtoError::HttpHead);
    }
    let body = &section[..section.len() - 2];
    let mut prev = 0u8;
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'\n' if prev != b'\r' => return Err(ProtoError::HttpHead),
            b'\r' if body.get(i + 1) != Some(&b'\n') => return Err(ProtoError::HttpHead),
            b'\r' | b'\n' | b'\t' => {}
            _ if b < 0x20 || b == 0x7f => return Err(ProtoError::HttpHead),
            _ => {}
        }
        prev = b;
    }
    // An empty start line, or a blank line before the end, would split the section in two.
    if body.starts_with(b"\r\n") || memchr::memmem::find(body, b"\r\n\r\n").is_some() {
        return Err(ProtoError::HttpHead);
    }
    // `body` now ends in CRLF and holds no other bare CR or LF: split it into lines.
    let mut lines = body[..body.len() - 2].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next().ok_or(ProtoError::HttpHead)?;
    let start_ok = match kind {
        Section::Request => request_line_ok(start),
        Section::Response => status_line_ok(start),
    };
    if !start_ok {
        return Err(ProtoError::HttpHead);
    }
    let mut framing = Framing::default();
    for line in lines {
        let (name, value) = header_line(line)?;
        framing.add(name, value)?;
    }
    framing.check()
}

/// What the header lines say about body framing.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
}

impl Framing {
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), ProtoError> {
        if name.eq_ignore_ascii_case(b"Transfer-Encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"Content-Length") {
            for item in value.split(|&b| b == b',') {
                let n = parse_decimal(item.trim_ascii()).ok_or(ProtoError::HttpFraming)?;
                match self.content_length {
                    Some(seen) if seen != n => return Err(ProtoError::HttpFraming),
                    _ => self.content_length = Some(n),
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ProtoError> {
        if self.transfer_encoding && self.content_length.is_some() {
            return Err(ProtoError::HttpFraming);
        }
        Ok(())
    }
}

/// `HTTP/d.d`.
fn is_http_version(v: &[u8]) -> bool {
    v.len() == 8 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit()
}

/// `method SP target SP HTTP/d.d`, method a token, target free of spaces.
fn request_line_ok(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty() && method.iter().all(|&b| is_tchar(b)) && !target.is_empty() && is_http_version(version)
}

/// `HTTP/d.d SP 3DIGIT [SP reason]` (the reason phrase may be empty or absent).
fn status_line_ok(line: &[u8]) -> bool {
    if line.len() < 12 || !is_http_version(&line[..8]) || line[8] != b' ' {
        return false;
    }
    let code = &line[9..12];
    code.iter().all(u8::is_ascii_digit) && (line.len() == 12 || line[12] == b' ')
}

/// Splits `name: value`; the value is trimmed of surrounding whitespace.
fn header_line(line: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(ProtoError::HttpHead); // obsolete line folding
    }
    let colon = memchr(b':', line).ok_or(ProtoError::HttpHead)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ProtoError::HttpHead);
    }
    Ok((name, line[colon + 1..].trim_ascii()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Section::{Request, Response};

    #[test]
    fn sections() {
        assert_eq!(validate_section(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Request), Ok(()));
        assert_eq!(validate_section(b"HTTP/1.1 200 OK\r\n\r\n", Response), Ok(()));
        assert_eq!(validate_section(b"HTTP/1.0 404\r\nX:\r\n\r\n", Response), Ok(()));
        assert_eq!(validate_section(b"HTTP/1.1 200 \r\n\r\n", Response), Ok(()));
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        ] {
            assert_eq!(validate_section(bad, Request), Err(ProtoError::HttpHead), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn start_lines_and_header_lines() {
        let table: &[(&[u8], Section)] = &[
            (b"HTTP/1.1 200 OK\r\n\r\n", Request),
            (b"GET / HTTP/1.1\r\n\r\n", Response),
            (b"GET /\r\n\r\n", Request),
            (b"GET  / HTTP/1.1\r\n\r\n", Request),
            (b"GET / HTTP/1.1 x\r\n\r\n", Request),
            (b"G(T / HTTP/1.1\r\n\r\n", Request),
            (b"GET / HTTP/11\r\n\r\n", Request),
            (b"HTTP/1.1 2000 OK\r\n\r\n", Response),
            (b"HTTP/1.1 20x OK\r\n\r\n", Response),
            (b"HTTP/1.1 200\tOK\r\n\r\n", Response),
            (b"ICAP/1.0 200 OK\r\n\r\n", Response),
            (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", Request),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Request),
            (b"GET / HTTP/1.1\r\n: a\r\n\r\n", Request),
            (b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", Request),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", Request),
        ];
        for (section, kind) in table {
            assert_eq!(
                validate_section(section, *kind),
                Err(ProtoError::HttpHead),
                "{kind:?} {:?}",
                String::from_utf8_lossy(section)
            );
        }
    }

    #[test]
    fn framing_must_be_unambiguous() {
        let ok: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:  0 \r\n\r\n",
        ];
        for section in ok {
            assert_eq!(validate_section(section, Response), Ok(()), "{:?}", String::from_utf8_lossy(section));
        }
        let bad: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ];
        for section in bad {
            assert_eq!(
                validate_section(section, Response),
                Err(ProtoError::HttpFraming),
                "{:?}",
                String::from_utf8_lossy(section)
            );
        }
        let post = b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(validate_section(post, Request), Err(ProtoError::HttpFraming));
    }
}
