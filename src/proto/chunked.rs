//! Decoder for ICAP chunked bodies (RFC 3507 section 4.5, RFC 9112 section 7.1).
//!
//! A byte-driven state machine: it consumes whatever part of the input it can and reports data
//! as ranges of the input it was given, so body bytes are never copied by the decoder. State
//! carries across calls, so any split of the input yields the same data and the same end.
//!
//! Strict: sizes are one or more hex digits (no sign, no `0x`, no whitespace before them, and
//! whitespace after them only before a `;` extension) with checked 64-bit arithmetic; line ends are CRLF; a chunk-size line with its extensions is
//! bounded; `ieof` is only valid on the zero-size chunk; trailers are header lines within a
//! byte bound.

use super::error::ProtoError;

/// What one call to [`ChunkDecoder::decode`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `input[start..end]` is body data.
    Data { start: usize, end: usize },
    /// All input was consumed without finishing; call again with more.
    NeedMore,
    /// The terminating zero chunk and trailers were read; `ieof` tells whether the zero chunk
    /// carried the `ieof` extension. The decoder must be reset before reuse.
    End { ieof: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` counts them.
    Size {
        digits: u32,
    },
    /// After the size and at least one whitespace byte: more whitespace, then `;` (RFC 9112
    /// "BWS" before a chunk extension).
    AfterSize,
    /// Inside extensions; the current extension's text is hashed into `ext` to spot `ieof`.
    Extension,
    /// Saw CR ending the size line; need LF.
    SizeLf,
    /// Inside chunk data with `remaining` bytes to go.
    Data {
        remaining: u64,
    },
    /// After data; need CR then LF.
    DataCr,
    DataLf,
    /// After the zero chunk's size line: trailer lines until an empty one.
    TrailerLineStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Resumable chunked-body decoder.
#[derive(Debug)]
pub struct ChunkDecoder {
    state: State,
    size: u64,
    line_bytes: usize,
    line_bytes_max: usize,
    trailer_bytes: usize,
    trailer_bytes_max: usize,
    /// Bytes of the current extension name matched against "ieof" so far, or usize::MAX once
    /// the current extension cannot be `ieof`.
    ieof_match: usize,
    ieof: bool,
}

const IEOF: &[u8] = b"ieof";

impl ChunkDecoder {
    pub fn new(line_bytes_max: usize, trailer_bytes_max: usize) -> Self {
        ChunkDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line_bytes: 0,
            line_bytes_max,
            trailer_bytes: 0,
            trailer_bytes_max,
            ieof_match: 0,
            ieof: false,
        }
    }

    /// Prepares for a new chunk sequence (a new body, or the rest after 100 Continue).
    pub fn reset(&mut self) {
        *self = ChunkDecoder::new(self.line_bytes_max, self.trailer_bytes_max);
    }

    /// True when no byte of the current chunk sequence has been consumed yet.
    pub fn at_start(&self) -> bool {
        self.state == State::Size { digits: 0 } && self.line_bytes == 0
    }

    /// Data bytes of the current chunk that its size line announced but that have not been
    /// returned yet (0 outside chunk data). After a `Data` result this is how much more of the
    /// same chunk is still to come, so the caller can judge the whole chunk (a preview's
    /// length) from its first piece, whatever the split.
    pub fn chunk_remaining(&self) -> u64 {
        match self.state {
            State::Data { remaining } => remaining,
            _ => 0,
        }
    }

    /// Decodes from `input`; returns how many bytes were consumed and what they produced. Data
    /// is returned as soon as any is available; call again with the unconsumed rest.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Chunk), ProtoError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data { remaining } => {
                    let take = (input.len() - i).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let left = remaining - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { remaining: left } };
                    return Ok((i + take, Chunk::Data { start: i, end: i + take }));
                }
                State::Size { digits } => {
                    self.count_line_byte()?;
                    if let Some(v) = hex_value(b) {
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(v)))
                            .ok_or(ProtoError::ChunkOverflow)?;
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ProtoError::ChunkSize);
                    } else {
                        self.after_size_byte(b)?;
                    }
                }
                State::AfterSize => {
                    // Whitespace after the size is only allowed before an extension: a size
                    // line that ends in whitespace is outside the grammar, and readers that
                    // trim it and readers that refuse it would frame the body differently.
                    self.count_line_byte()?;
                    match b {
                        b';' => {
                            self.state = State::Extension;
                            self.ieof_match = 0;
                        }
                        b' ' | b'\t' => {}
                        _ => return Err(ProtoError::ChunkSize),
                    }
                }
                State::Extension => {
                    self.count_line_byte()?;
                    match b {
                        b'\r' => {
                            self.finish_extension();
                            self.state = State::SizeLf;
                        }
                        b';' => {
                            self.finish_extension();
                            self.ieof_match = 0;
                        }
                        b' ' | b'\t' if self.ieof_match == 0 => {}
                        b' ' | b'\t' if self.ieof_match == IEOF.len() => {}
                        _ if b < 0x20 || b == 0x7f => return Err(ProtoError::ChunkExtension),
                        _ => {
                            self.ieof_match = match self.ieof_match {
                                n if n < IEOF.len() && IEOF[n] == b.to_ascii_lowercase() => n + 1,
                                _ => usize::MAX,
                            };
                        }
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ProtoError::ChunkSize);
                    }
                    self.line_bytes = 0;
                    if self.size == 0 {
                        self.state = State::TrailerLineStart;
                    } else if self.ieof {
                        return Err(ProtoError::IeofOnData);
                    } else {
                        self.state = State::Data { remaining: self.size };
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ProtoError::ChunkDataEnd);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ProtoError::ChunkDataEnd);
                    }
                    self.size = 0;
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerLineStart | State::TrailerLine => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.trailer_bytes_max {
                        return Err(ProtoError::TrailerTooLarge);
                    }
                    let empty = self.state == State::TrailerLineStart;
                    match b {
                        b'\r' => self.state = State::TrailerLf { empty },
                        b'\n' => return Err(ProtoError::BareLf),
                        b' ' | b'\t' if empty => return Err(ProtoError::HeaderFolding),
                        0 => return Err(ProtoError::ControlByte),
                        _ => self.state = State::TrailerLine,
                    }
                }
                State::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(ProtoError::TrailerSyntax);
                    }
                    if empty {
                        self.state = State::Done;
                        return Ok((i + 1, Chunk::End { ieof: self.ieof }));
                    }
                    self.state = State::TrailerLineStart;
                }
                State::Done => return Ok((i, Chunk::End { ieof: self.ieof })),
            }
            i += 1;
        }
        if self.state == State::Done {
            return Ok((i, Chunk::End { ieof: self.ieof }));
        }
        Ok((i, Chunk::NeedMore))
    }

    fn count_line_byte(&mut self) -> Result<(), ProtoError> {
        self.line_bytes += 1;
        if self.line_bytes > self.line_bytes_max {
            return Err(ProtoError::ChunkLineTooLong);
        }
        Ok(())
    }

    fn after_size_byte(&mut self, b: u8) -> Result<(), ProtoError> {
        match b {
            b'\r' => self.state = State::SizeLf,
            b';' => {
                self.state = State::Extension;
                self.ieof_match = 0;
            }
            // Whitespace between size and ';' (RFC 9112 "BWS").
            b' ' | b'\t' => self.state = State::AfterSize,
            _ => return Err(ProtoError::ChunkSize),
        }
        Ok(())
    }

    fn finish_extension(&mut self) {
        if self.ieof_match == IEOF.len() {
            self.ieof = true;
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;

    /// Decodes `input` delivered in pieces; returns the body, the end marker and how many
    /// bytes were consumed in total.
    fn decode_pieces(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Option<bool>, usize), ProtoError> {
        let mut decoder = ChunkDecoder::new(256, 4096);
        let mut body = Vec::new();
        let mut consumed = 0;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(input.len());
        let mut visible_end_idx = 0;
        loop {
            let visible = bounds[visible_end_idx];
            let (n, chunk) = decoder.decode(&input[consumed..visible])?;
            match chunk {
                Chunk::Data { start, end } => body.extend_from_slice(&input[consumed + start..consumed + end]),
                Chunk::End { ieof } => return Ok((body, Some(ieof), consumed + n)),
                Chunk::NeedMore => {
                    if visible_end_idx + 1 == bounds.len() {
                        return Ok((body, None, consumed + n));
                    }
                    visible_end_idx += 1;
                }
            }
            consumed += n;
        }
    }

    fn decode_all_ways(input: &[u8]) -> Result<(Vec<u8>, Option<bool>, usize), ProtoError> {
        let whole = decode_pieces(input, &[]);
        for_each_split(input.len(), |cuts| {
            assert_eq!(decode_pieces(input, cuts), whole, "cuts {cuts:?} of {:?}", String::from_utf8_lossy(input));
        });
        whole
    }

    #[test]
    fn rfc_bodies() {
        // RFC 3507 section 4.9.2.
        let body = b"33\r\nThis is data that was returned by an origin server.\r\n0\r\n\r\n";
        let (data, end, used) = decode_all_ways(body).unwrap();
        assert_eq!(data, b"This is data that was returned by an origin server.");
        assert_eq!(end, Some(false));
        assert_eq!(used, body.len());
        // Preview with ieof (section 4.5).
        let (data, end, _) = decode_all_ways(b"1e\r\nI am posting this information.\r\n0; ieof\r\n\r\n").unwrap();
        assert_eq!(data.len(), 0x1e);
        assert_eq!(end, Some(true));
    }

    #[test]
    fn ieof_and_extensions() {
        for (input, ieof) in [
            (&b"0;ieof\r\n\r\n"[..], true),
            (b"0 ; ieof\r\n\r\n", true),
            (b"0 \t ;ieof\r\n\r\n", true),
            (b"0; IEOF\r\n\r\n", true),
            (b"0; ieof \r\n\r\n", true),
            (b"0; foo=bar; ieof\r\n\r\n", true),
            (b"0; ieofx\r\n\r\n", false),
            (b"0; xieof\r\n\r\n", false),
            (b"0; foo\r\n\r\n", false),
            (b"0\r\nX-Trailer: 1\r\n\r\n", false),
        ] {
            let (data, end, used) = decode_all_ways(input).unwrap();
            assert!(data.is_empty());
            assert_eq!(end, Some(ieof), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(used, input.len());
        }
    }

    #[test]
    fn stops_at_end_leaving_pipelined_bytes() {
        let input = b"3\r\nabc\r\n0\r\n\r\nOPTIONS";
        let (data, end, used) = decode_all_ways(input).unwrap();
        assert_eq!((data.as_slice(), end, used), (&b"abc"[..], Some(false), input.len() - 7));
    }

    #[test]
    fn chunk_remaining_counts_what_the_size_line_announced() {
        let mut d = ChunkDecoder::new(256, 4096);
        assert_eq!(d.chunk_remaining(), 0);
        assert_eq!(d.decode(b"a\r\n"), Ok((3, Chunk::NeedMore)));
        assert_eq!(d.chunk_remaining(), 10);
        assert_eq!(d.decode(b"0123"), Ok((4, Chunk::Data { start: 0, end: 4 })));
        assert_eq!(d.chunk_remaining(), 6);
        assert_eq!(d.decode(b"456789\r\n"), Ok((6, Chunk::Data { start: 0, end: 6 })));
        assert_eq!(d.chunk_remaining(), 0);
    }

    #[test]
    fn incomplete_needs_more() {
        for input in [&b"3\r\nab"[..], b"3\r\nabc\r\n", b"0\r\n", b"0\r\nX: y\r\n", b"a"] {
            assert_eq!(decode_all_ways(input).unwrap().1, None);
        }
    }

    #[test]
    fn malformed_bodies() {
        use ProtoError::*;
        let table: &[(&[u8], ProtoError)] = &[
            (b"+3\r\nabc\r\n0\r\n\r\n", ChunkSize),
            (b"-3\r\nabc\r\n0\r\n\r\n", ChunkSize),
            (b"0x3\r\nabc\r\n0\r\n\r\n", ChunkSize),
            (b" 3\r\nabc\r\n0\r\n\r\n", ChunkSize),
            (b"g\r\n", ChunkSize),
            (b"\r\n", ChunkSize),
            (b"3\nabc\r\n0\r\n\r\n", ChunkSize),
            (b"3 4\r\n", ChunkSize),
            (b"3 \r\nabc\r\n0\r\n\r\n", ChunkSize),
            (b"3\t\r\nabc\r\n0\r\n\r\n", ChunkSize),
            (b"0 \r\n\r\n", ChunkSize),
            (b"3\r\r\nabc\r\n", ChunkSize),
            (b"3\x00\r\nabc\r\n", ChunkSize),
            (b"3;\x00\r\nabc\r\n", ChunkExtension),
            (b"ffffffffffffffff0\r\n", ChunkOverflow),
            (b"3\r\nabc\r\n0\r\nA: b\r\n\r\r\n", TrailerSyntax),
            (b"3\r\nabcd\r\n", ChunkDataEnd),
            (b"3\r\nabc\n0\r\n\r\n", ChunkDataEnd),
            (b"10000000000000000\r\n", ChunkOverflow),
            (b"3; ieof\r\nabc\r\n", IeofOnData),
            (b"0; a\0b\r\n\r\n", ChunkExtension),
            (b"0\r\n\n", BareLf),
            (b"0\r\nA: b\n", BareLf),
            (b"0\r\nA: b\rX\r\n", TrailerSyntax),
            (b"0\r\n a\r\n\r\n", HeaderFolding),
        ];
        for (input, expected) in table {
            assert_eq!(decode_all_ways(input), Err(*expected), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn bounded_lines_and_trailers() {
        let mut long_ext = b"0;".to_vec();
        long_ext.resize(300, b'a');
        assert_eq!(decode_all_ways(&long_ext), Err(ProtoError::ChunkLineTooLong));
        let mut zeros = vec![b'0'; 300];
        zeros.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decode_all_ways(&zeros), Err(ProtoError::ChunkLineTooLong));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..500 {
            trailers.extend_from_slice(b"X-A: bbbbb\r\n");
        }
        assert_eq!(decode_pieces(&trailers, &[]), Err(ProtoError::TrailerTooLarge));
    }

    #[test]
    fn large_sizes_within_u64() {
        let (data, end, used) = decode_pieces(b"ffffffffffffffff\r\nab", &[]).unwrap();
        assert_eq!((data.as_slice(), end, used), (&b"ab"[..], None, 20));
    }
}
