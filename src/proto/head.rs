//! Incremental parser for the ICAP request head: request line, header lines, blank line.
//!
//! The parser is fed the head bytes received so far, always starting at the head's first
//! byte, and resumes exactly where it stopped: each byte is examined once however the head is
//! split across reads, so a client sending one byte at a time costs linear work. Header
//! positions are recorded as offsets from the head's start in caller-reusable slots, so the
//! head can be moved to another buffer between calls and nothing is allocated per request.
//!
//! Strict by default, after RFC 3507 section 4.3 and RFC 9112: CRLF line ends only (a bare LF
//! is an error, not a line end), no obsolete line folding, no control bytes in values, header
//! names must be tokens, and the whole head is bounded in bytes and in line count.

use super::error::ProtoError;
use crate::limits::Limits;
use memchr::memchr;

/// Outcome of one call to [`HeadParser::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadStatus {
    /// More bytes are needed; call again with the same bytes plus more.
    Partial,
    /// The head is complete and is this many bytes long (including the blank line).
    Complete(usize),
}

/// Byte range of one header line, relative to the head's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderSlot {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

/// Byte ranges of the request line's three parts, relative to the head's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestLine {
    pub method: (u32, u32),
    pub uri: (u32, u32),
    pub version: (u32, u32),
}

/// Resumable head parser; one per connection, reset between requests.
#[derive(Debug)]
pub struct HeadParser {
    bytes_max: usize,
    count_max: usize,
    /// Start of the line being parsed.
    line_start: usize,
    /// Bytes already searched for the end of the current line.
    scanned: usize,
    request_line: Option<RequestLine>,
    headers: Vec<HeaderSlot>,
}

impl HeadParser {
    pub fn new(limits: &Limits) -> Self {
        HeadParser {
            bytes_max: limits.icap_header_bytes_max,
            count_max: limits.icap_header_count_max,
            line_start: 0,
            scanned: 0,
            request_line: None,
            headers: Vec::with_capacity(limits.icap_header_count_max),
        }
    }

    /// Forgets the previous head; keeps the slot storage.
    pub fn reset(&mut self) {
        self.line_start = 0;
        self.scanned = 0;
        self.request_line = None;
        self.headers.clear();
    }

    /// True once any byte of a head has been examined (used to tell an idle connection from
    /// one in the middle of a head when a deadline fires).
    pub fn started(&self) -> bool {
        self.scanned > 0
    }

    /// Parses `buf`, which holds the head's bytes from its first byte on (and possibly bytes
    /// that follow it). Returns `Partial` until the blank line that ends the head is seen.
    pub fn parse(&mut self, buf: &[u8]) -> Result<HeadStatus, ProtoError> {
        loop {
            let window_end = buf.len().min(self.bytes_max);
            debug_assert!(self.scanned >= self.line_start);
            let found = if self.scanned < window_end {
                memchr(b'\n', &buf[self.scanned..window_end]).map(|i| self.scanned + i)
            } else {
                None
            };
            let Some(lf) = found else {
                self.scanned = self.scanned.max(window_end);
                if buf.len() >= self.bytes_max {
                    return Err(ProtoError::HeadTooLarge);
                }
                return Ok(HeadStatus::Partial);
            };
            if lf == self.line_start || buf[lf - 1] != b'\r' {
                return Err(ProtoError::BareLf);
            }
            let (start, end) = (self.line_start, lf - 1);
            self.line_start = lf + 1;
            self.scanned = lf + 1;
            if self.request_line.is_none() {
                self.request_line = Some(parse_request_line(buf, start, end)?);
                continue;
            }
            if start == end {
                return Ok(HeadStatus::Complete(lf + 1));
            }
            if self.headers.len() == self.count_max {
                return Err(ProtoError::TooManyHeaders);
            }
            let slot = parse_header_line(buf, start, end)?;
            self.headers.push(slot);
        }
    }

    /// The request line of a complete head.
    pub fn request_line(&self) -> Option<RequestLine> {
        self.request_line
    }

    /// The header slots of a complete head, in order of appearance.
    pub fn headers(&self) -> &[HeaderSlot] {
        &self.headers
    }
}

fn parse_request_line(buf: &[u8], start: usize, end: usize) -> Result<RequestLine, ProtoError> {
    let line = &buf[start..end];
    if line.iter().any(|&b| is_ctl(b)) {
        return Err(ProtoError::ControlByte);
    }
    let sp1 = memchr(b' ', line).ok_or(ProtoError::RequestLine)?;
    let rest = &line[sp1 + 1..];
    let sp2 = memchr(b' ', rest).ok_or(ProtoError::RequestLine)? + sp1 + 1;
    let method = &line[..sp1];
    let uri = &line[sp1 + 1..sp2];
    let version = &line[sp2 + 1..];
    if method.is_empty() || uri.is_empty() || version.is_empty() || version.contains(&b' ') {
        return Err(ProtoError::RequestLine);
    }
    if !method.iter().all(|&b| is_tchar(b)) {
        return Err(ProtoError::RequestLine);
    }
    let base = start as u32;
    let range = |a: usize, b: usize| (base + a as u32, base + b as u32);
    Ok(RequestLine { method: range(0, sp1), uri: range(sp1 + 1, sp2), version: range(sp2 + 1, line.len()) })
}

fn parse_header_line(buf: &[u8], start: usize, end: usize) -> Result<HeaderSlot, ProtoError> {
    let line = &buf[start..end];
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(ProtoError::HeaderFolding);
    }
    let colon = memchr(b':', line).ok_or(ProtoError::HeaderSyntax)?;
    if colon == 0 || !line[..colon].iter().all(|&b| is_tchar(b)) {
        return Err(ProtoError::HeaderSyntax);
    }
    let value = &line[colon + 1..];
    if value.iter().any(|&b| is_ctl(b) && b != b'\t') {
        return Err(ProtoError::ControlByte);
    }
    let lead = value.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    let trail = value[lead..].iter().rev().take_while(|&&b| b == b' ' || b == b'\t').count();
    let v_start = start + colon + 1 + lead;
    let v_end = end - trail;
    Ok(HeaderSlot { name: (start as u32, (start + colon) as u32), value: (v_start as u32, v_end as u32) })
}

/// RFC 9110 token character.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Slice of `buf` for a recorded range.
pub fn slice(buf: &[u8], range: (u32, u32)) -> &[u8] {
    &buf[range.0 as usize..range.1 as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;

    type Parsed = Result<(HeadStatus, Vec<(Vec<u8>, Vec<u8>)>), ProtoError>;

    /// Feeds `input` in the given pieces, growing the visible prefix like a receive buffer.
    fn run(input: &[u8], cuts: &[usize]) -> Parsed {
        let mut parser = HeadParser::new(&Limits::default());
        let mut status = HeadStatus::Partial;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            status = parser.parse(&input[..cut])?;
            if status != HeadStatus::Partial {
                break;
            }
        }
        let headers =
            parser.headers().iter().map(|h| (slice(input, h.name).to_vec(), slice(input, h.value).to_vec())).collect();
        Ok((status, headers))
    }

    fn parse_all_ways(input: &[u8]) -> Parsed {
        let whole = run(input, &[]);
        for_each_split(input.len(), |cuts| {
            assert_eq!(run(input, cuts), whole, "cuts {cuts:?} of {:?}", String::from_utf8_lossy(input));
        });
        whole
    }

    #[test]
    fn rfc_examples_parse() {
        // RFC 3507 section 4.8.2 (REQMOD) and 4.9.2 (RESPMOD) heads.
        let reqmod = b"REQMOD icap://icap-server.net/server?arg=87 ICAP/1.0\r\nHost: icap-server.net\r\nEncapsulated: req-hdr=0, null-body=170\r\n\r\nGET / HTTP/1.1\r\n";
        let (status, headers) = parse_all_ways(reqmod).unwrap();
        assert_eq!(status, HeadStatus::Complete(reqmod.len() - 16));
        assert_eq!(headers[1], (b"Encapsulated".to_vec(), b"req-hdr=0, null-body=170".to_vec()));
        let options = b"OPTIONS icap://icap.server.net/sample-service ICAP/1.0\r\nHost: icap.server.net\r\nUser-Agent: BazookaDotCom-ICAP-Client-Library/2.3\r\n\r\n";
        let (status, headers) = parse_all_ways(options).unwrap();
        assert_eq!(status, HeadStatus::Complete(options.len()));
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn values_are_trimmed() {
        let head = b"OPTIONS icap://h/s ICAP/1.0\r\nA: \t x y \t\r\nB:\r\n\r\n";
        let (_, headers) = parse_all_ways(head).unwrap();
        assert_eq!(headers[0].1, b"x y");
        assert_eq!(headers[1].1, b"");
    }

    #[test]
    fn malformed_heads() {
        let table: &[(&[u8], ProtoError)] = &[
            (b"OPTIONS icap://h/s ICAP/1.0\n\n", ProtoError::BareLf),
            (b"OPTIONS icap://h/s ICAP/1.0\r\nA: b\n\r\n", ProtoError::BareLf),
            (b"\r\nOPTIONS icap://h/s ICAP/1.0\r\n\r\n", ProtoError::RequestLine),
            (b"OPTIONS  icap://h/s ICAP/1.0\r\n\r\n", ProtoError::RequestLine),
            (b"OPTIONS icap://h/s ICAP/1.0 x\r\n\r\n", ProtoError::RequestLine),
            (b"OPTIONS\r\n\r\n", ProtoError::RequestLine),
            (b"OPT(ONS icap://h/s ICAP/1.0\r\n\r\n", ProtoError::RequestLine),
            (b"OPTIONS icap://h/\0s ICAP/1.0\r\n\r\n", ProtoError::ControlByte),
            (b"OPTIONS icap://h/s ICAP/1.0\r\nA: b\r\n c\r\n\r\n", ProtoError::HeaderFolding),
            (b"OPTIONS icap://h/s ICAP/1.0\r\nA b\r\n\r\n", ProtoError::HeaderSyntax),
            (b"OPTIONS icap://h/s ICAP/1.0\r\n: b\r\n\r\n", ProtoError::HeaderSyntax),
            (b"OPTIONS icap://h/s ICAP/1.0\r\nA b: c\r\n\r\n", ProtoError::HeaderSyntax),
            (b"OPTIONS icap://h/s ICAP/1.0\r\nA: b\0c\r\n\r\n", ProtoError::ControlByte),
            (b"OPTIONS icap://h/s ICAP/1.0\r\nA: b\rc\r\n\r\n", ProtoError::ControlByte),
        ];
        for (input, expected) in table {
            assert_eq!(parse_all_ways(input), Err(*expected), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn partial_until_blank_line() {
        let head = b"OPTIONS icap://h/s ICAP/1.0\r\nA: b\r\n";
        assert_eq!(parse_all_ways(head).unwrap().0, HeadStatus::Partial);
    }

    #[test]
    fn head_size_and_count_bounds() {
        let mut big = b"OPTIONS icap://h/s ICAP/1.0\r\nX: ".to_vec();
        big.resize(ICAP_MAX + 10, b'a');
        assert_eq!(run(&big, &[]), Err(ProtoError::HeadTooLarge));
        // Exactly at the bound without a line end is still too large.
        assert_eq!(run(&big[..ICAP_MAX], &[]), Err(ProtoError::HeadTooLarge));
        let mut many = b"OPTIONS icap://h/s ICAP/1.0\r\n".to_vec();
        for _ in 0..=crate::limits::ICAP_HEADER_COUNT_MAX {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(run(&many, &[]), Err(ProtoError::TooManyHeaders));
    }

    const ICAP_MAX: usize = crate::limits::ICAP_HEADER_BYTES_MAX;

    #[test]
    fn byte_at_a_time_is_linear() {
        // Each call may only look at the newly added byte: count memchr work by position.
        let mut head = b"OPTIONS icap://h/s ICAP/1.0\r\nX: ".to_vec();
        head.resize(ICAP_MAX - 10, b'a');
        let mut parser = HeadParser::new(&Limits::default());
        for end in 1..head.len() {
            assert_eq!(parser.parse(&head[..end]), Ok(HeadStatus::Partial));
            assert_eq!(parser.scanned, end);
        }
    }
}
