//! Reading ICAP responses from a byte stream, without touching the socket.
//!
//! The load generator feeds whatever a `read` returned; the reader consumes what belongs to the
//! current response and says when one is complete. Only the ICAP head is copied (it is small
//! and bounded); encapsulated headers are skipped except for the first bytes of the HTTP status
//! line, and the body is only counted, so a 10 MB echo costs one pass of the chunk decoder.
//! Input may arrive in any pieces, down to one byte at a time, with the same result and without
//! rescanning what was already seen.
//!
//! What the reader reports is exactly what the verdict check needs: the ICAP status, the
//! encapsulated HTTP status, whether `X-Infection-Found` was sent, and how the body ended.

use icapd::proto::chunked::{Chunk, ChunkDecoder};

/// Longest ICAP response head accepted (servers send a few hundred bytes).
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Longest chunk-size line and trailer section accepted in a response body.
const CHUNK_LINE_BYTES_MAX: usize = 1024;
const TRAILER_BYTES_MAX: usize = 64 * 1024;
/// Bytes of the encapsulated head kept to read the HTTP status ("HTTP/1.1 403").
const STATUS_LINE_BYTES: usize = 16;

/// How the encapsulated body of a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// The response has no body (`null-body`, or no Encapsulated header: 100, 204, errors).
    None,
    /// The last chunk arrived after this many body bytes.
    Complete(u64),
    /// The connection ended inside the body after this many bytes: a server stopping an echo
    /// whose object turned out infected after the echo had started.
    Cut(u64),
}

/// One complete ICAP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Status of the encapsulated HTTP response (`res-hdr`), if there is one.
    pub http_status: Option<u16>,
    pub infection_found: bool,
    /// The server sent `Connection: close`.
    pub close: bool,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    HeadTooLong,
    BadStatusLine,
    BadEncapsulated,
    BadChunk(String),
    /// The connection ended inside a head.
    Truncated,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::HeadTooLong => write!(f, "ICAP response head over {HEAD_BYTES_MAX} bytes"),
            ReadError::BadStatusLine => write!(f, "bad ICAP status line"),
            ReadError::BadEncapsulated => write!(f, "bad Encapsulated header"),
            ReadError::BadChunk(e) => write!(f, "bad chunked body: {e}"),
            ReadError::Truncated => write!(f, "connection closed inside a response head"),
        }
    }
}

enum State {
    /// Collecting the ICAP head in `head`.
    Head,
    /// Skipping `left` bytes of encapsulated headers, keeping the first bytes in `status_line`.
    EncapHeads {
        left: usize,
        body: bool,
    },
    Body {
        bytes: u64,
    },
}

pub struct ResponseReader {
    state: State,
    head: Vec<u8>,
    status_line: Vec<u8>,
    decoder: ChunkDecoder,
    /// The response being read, filled in as its parts arrive.
    current: Response,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        ResponseReader {
            state: State::Head,
            head: Vec::with_capacity(4096),
            status_line: Vec::with_capacity(STATUS_LINE_BYTES),
            decoder: ChunkDecoder::new(CHUNK_LINE_BYTES_MAX, TRAILER_BYTES_MAX),
            current: Self::blank(),
        }
    }

    fn blank() -> Response {
        Response { status: 0, http_status: None, infection_found: false, close: false, body: Body::None }
    }

    /// Forgets any partial response (after a reconnect).
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.head.clear();
        self.status_line.clear();
        self.current = Self::blank();
    }

    /// True when no byte of a response has been seen since the last complete one.
    #[cfg(test)]
    pub fn idle(&self) -> bool {
        matches!(self.state, State::Head) && self.head.is_empty()
    }

    /// Consumes bytes of `input`; returns how many, and the response when one is complete.
    /// Bytes after a complete response are left for the next call.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Response>), ReadError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Head => {
                    let Some(n) = self.take_head(rest)? else { return Ok((input.len(), None)) };
                    used += n;
                    let (encap_heads, body) = self.parse_head()?;
                    self.head.clear();
                    if encap_heads == 0 && !body {
                        return Ok((used, Some(self.complete())));
                    }
                    self.status_line.clear();
                    self.state = State::EncapHeads { left: encap_heads, body };
                }
                State::EncapHeads { left, body } => {
                    let n = left.min(rest.len());
                    let keep = n.min(STATUS_LINE_BYTES - self.status_line.len());
                    self.status_line.extend_from_slice(&rest[..keep]);
                    used += n;
                    if n < left {
                        self.state = State::EncapHeads { left: left - n, body };
                        return Ok((used, None));
                    }
                    self.current.http_status = http_status(&self.status_line);
                    if !body {
                        return Ok((used, Some(self.complete())));
                    }
                    self.decoder.reset();
                    self.state = State::Body { bytes: 0 };
                }
                State::Body { bytes } => {
                    if rest.is_empty() {
                        return Ok((used, None));
                    }
                    let (n, ev) = self.decoder.decode(rest).map_err(|e| ReadError::BadChunk(format!("{e:?}")))?;
                    used += n;
                    match ev {
                        Chunk::Data { start, end } => self.state = State::Body { bytes: bytes + (end - start) as u64 },
                        Chunk::NeedMore => return Ok((used, None)),
                        Chunk::End { .. } => {
                            self.current.body = Body::Complete(bytes);
                            return Ok((used, Some(self.complete())));
                        }
                    }
                }
            }
        }
    }

    /// The connection ended. Inside a body this completes the response as [`Body::Cut`]; between
    /// responses it is nothing; anywhere else it is an error.
    pub fn eof(&mut self) -> Result<Option<Response>, ReadError> {
        match self.state {
            State::Head if self.head.is_empty() => Ok(None),
            State::Body { bytes } => {
                self.current.body = Body::Cut(bytes);
                Ok(Some(self.complete()))
            }
            _ => {
                self.reset();
                Err(ReadError::Truncated)
            }
        }
    }

    fn complete(&mut self) -> Response {
        self.state = State::Head;
        std::mem::replace(&mut self.current, Self::blank())
    }

    /// Appends head bytes from `input`; returns how many were used once the blank line is in.
    /// Only the last three bytes already held are searched again, so byte-at-a-time input costs
    /// linear time.
    fn take_head(&mut self, input: &[u8]) -> Result<Option<usize>, ReadError> {
        let held = self.head.len();
        let from = held.saturating_sub(3);
        // The terminator may straddle what is held and the new input: look at that seam first.
        let seam_take = input.len().min(3);
        let mut seam = [0u8; 6];
        let seam_held = held - from;
        seam[..seam_held].copy_from_slice(&self.head[from..]);
        seam[seam_held..seam_held + seam_take].copy_from_slice(&input[..seam_take]);
        let end = match memchr::memmem::find(&seam[..seam_held + seam_take], b"\r\n\r\n") {
            Some(i) => Some(i + 4 - seam_held),
            None => memchr::memmem::find(input, b"\r\n\r\n").map(|i| i + 4),
        };
        let take = end.unwrap_or(input.len());
        if held + take > HEAD_BYTES_MAX {
            return Err(ReadError::HeadTooLong);
        }
        self.head.extend_from_slice(&input[..take]);
        Ok(end)
    }

    /// Reads the status and the headers that matter; returns the length of the encapsulated
    /// heads and whether a chunked body follows them.
    fn parse_head(&mut self) -> Result<(usize, bool), ReadError> {
        let text = std::str::from_utf8(&self.head).map_err(|_| ReadError::BadStatusLine)?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .strip_prefix("ICAP/1.0 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(ReadError::BadStatusLine)?;
        self.current.status = status;
        let mut encap = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("encapsulated") {
                encap = Some(parse_encapsulated(value)?);
            } else if name.eq_ignore_ascii_case("x-infection-found") {
                self.current.infection_found = true;
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                self.current.close = true;
            }
        }
        Ok(encap.unwrap_or((0, false)))
    }
}

/// `res-hdr=0, res-body=135` -> (135, true); `null-body=N` -> (N, false).
fn parse_encapsulated(value: &str) -> Result<(usize, bool), ReadError> {
    let mut last = None;
    for part in value.split(',') {
        let (name, offset) = part.trim().split_once('=').ok_or(ReadError::BadEncapsulated)?;
        let offset: usize = offset.parse().map_err(|_| ReadError::BadEncapsulated)?;
        if last.is_some_and(|(_, prev)| offset < prev) {
            return Err(ReadError::BadEncapsulated);
        }
        last = Some((name, offset));
    }
    let (name, offset) = last.ok_or(ReadError::BadEncapsulated)?;
    match name {
        "null-body" => Ok((offset, false)),
        "res-body" | "req-body" | "opt-body" => Ok((offset, true)),
        _ => Err(ReadError::BadEncapsulated),
    }
}

/// "HTTP/1.1 403 ..." -> 403.
fn http_status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use icapd::proto::testutil::for_each_split;

    /// Feeds `input` in the pieces `cuts` gives; returns every response and the error, if any,
    /// then what the end of the stream produced.
    fn read_all(input: &[u8], cuts: &[usize]) -> (Vec<Response>, Option<ReadError>) {
        let mut reader = ResponseReader::new();
        let mut out = Vec::new();
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let mut piece = &input[prev..cut];
            prev = cut;
            loop {
                match reader.feed(piece) {
                    Ok((n, resp)) => {
                        piece = &piece[n..];
                        match resp {
                            Some(r) => out.push(r),
                            None => {
                                assert!(piece.is_empty(), "an incomplete response must take all input");
                                break;
                            }
                        }
                    }
                    Err(e) => return (out, Some(e)),
                }
                if piece.is_empty() {
                    break;
                }
            }
        }
        match reader.eof() {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => return (out, Some(e)),
        }
        (out, None)
    }

    fn agree_at_every_split(input: &[u8]) -> (Vec<Response>, Option<ReadError>) {
        let whole = read_all(input, &[]);
        for_each_split(input.len(), |cuts| assert_eq!(read_all(input, cuts), whole, "cuts {cuts:?}"));
        whole
    }

    const RES_HDR: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";

    fn echo(body: &str, last: &str) -> String {
        format!(
            "ICAP/1.0 200 OK\r\nISTag: \"x\"\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{RES_HDR}{:x}\r\n{body}\r\n{last}",
            RES_HDR.len(),
            body.len()
        )
    }

    fn response(status: u16, http_status: Option<u16>, body: Body) -> Response {
        Response { status, http_status, infection_found: false, close: false, body }
    }

    #[test]
    fn continue_then_echo_then_204_on_one_stream() {
        let input = format!("ICAP/1.0 100 Continue\r\n\r\n{}ICAP/1.0 204 No Content\r\nISTag: \"x\"\r\nEncapsulated: null-body=0\r\n\r\n", echo("hello", "0\r\n\r\n"));
        let (got, err) = agree_at_every_split(input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(
            got,
            vec![
                response(100, None, Body::None),
                response(200, Some(200), Body::Complete(5)),
                response(204, None, Body::None)
            ]
        );
    }

    #[test]
    fn block_page_with_infection_header() {
        let page = "HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\n";
        let input = format!(
            "ICAP/1.0 200 OK\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Eicar;\r\nconnection: Close\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{page}3\r\nno!\r\n0\r\n\r\n",
            page.len()
        );
        let (got, err) = agree_at_every_split(input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(
            got,
            vec![Response { infection_found: true, close: true, ..response(200, Some(403), Body::Complete(3)) }]
        );
    }

    #[test]
    fn null_body_after_headers_and_reqmod_echo() {
        let req = "POST http://x/ HTTP/1.1\r\nHost: x\r\n\r\n";
        let input = format!(
            "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, null-body={}\r\n\r\n{RES_HDR}ICAP/1.0 200 OK\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{req}2\r\nab\r\n0\r\n\r\n",
            RES_HDR.len(),
            req.len()
        );
        let (got, err) = agree_at_every_split(input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(got, vec![response(200, Some(200), Body::None), response(200, None, Body::Complete(2))]);
    }

    #[test]
    fn a_cut_echo_is_reported_as_cut() {
        let input = echo("hello", "");
        let (got, err) = agree_at_every_split(input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(got, vec![response(200, Some(200), Body::Cut(5))]);
        // Cut inside the chunk: only the bytes that arrived count.
        let input = &input.as_bytes()[..input.len() - 4];
        assert_eq!(read_all(input, &[]).0, vec![response(200, Some(200), Body::Cut(3))]);
    }

    #[test]
    fn eof_inside_a_head_is_an_error_and_between_responses_is_not() {
        assert_eq!(read_all(b"ICAP/1.0 204 No", &[]), (vec![], Some(ReadError::Truncated)));
        assert_eq!(read_all(b"", &[]), (vec![], None));
        let input = format!("ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\nHTTP/1.1", RES_HDR.len());
        assert_eq!(read_all(input.as_bytes(), &[]).1, Some(ReadError::Truncated));
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\n\r\n",
            "ICAP/1.0 2x4 No\r\n\r\n",
            "ICAP/1.0 200 OK\r\nEncapsulated: res-body=10, res-hdr=0\r\n\r\n",
            "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=zero\r\n\r\n",
            "ICAP/1.0 200 OK\r\nEncapsulated: res-body=0\r\n\r\nzz\r\n",
        ] {
            let (got, err) = agree_at_every_split(bad.as_bytes());
            assert!(got.is_empty() && err.is_some(), "{bad:?}: {got:?} {err:?}");
        }
    }

    #[test]
    fn an_endless_head_is_refused() {
        let mut reader = ResponseReader::new();
        let mut line = b"ICAP/1.0 200 OK\r\n".to_vec();
        line.resize(HEAD_BYTES_MAX + 1, b'a');
        assert_eq!(reader.feed(&line), Err(ReadError::HeadTooLong));
    }

    #[test]
    fn byte_at_a_time_heads_are_linear() {
        // A 60 KB head fed one byte at a time: with rescanning this would take ~1.8e9 steps.
        let mut head = b"ICAP/1.0 204 No Content\r\n".to_vec();
        while head.len() < 60_000 {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut reader = ResponseReader::new();
        let mut got = None;
        for b in head.chunks(1) {
            let (n, r) = reader.feed(b).unwrap();
            assert_eq!(n, 1);
            got = got.or(r);
        }
        assert_eq!(got, Some(response(204, None, Body::None)));
        assert!(reader.idle());
    }
}
