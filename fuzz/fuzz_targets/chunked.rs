//! The ICAP chunk decoder, driven the way the connection drives it: over a receive buffer
//! that fills up piece by piece, always handed the unconsumed rest of what has arrived.
//!
//! Flags: bit 0 a small chunk-line bound (8 bytes), bit 1 a small trailer bound (16 bytes).
//!
//! Checks: whole, split at the fuzzer's points and byte by byte give the same body bytes, the
//! same end (and `ieof`) or the same error, after consuming the same bytes; every data range
//! lies inside the slice it was reported for, is non-empty, and no input byte is reported
//! twice, so the body is never longer than the input; the decoder never claims to consume more
//! than it was given; after the end it consumes nothing more; and a decoded body, re-encoded in
//! canonical chunks, decodes to itself.
#![no_main]

use icapd::proto::chunked::{Chunk, ChunkDecoder};
use icapd::proto::error::ProtoError;
use icapd_fuzz::{every_byte, piece_ends, Input};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    body: Vec<u8>,
    end: Option<bool>,
    error: Option<ProtoError>,
    consumed: usize,
}

fn run(payload: &[u8], cuts: &[usize], line_max: usize, trailer_max: usize) -> Outcome {
    let mut dec = ChunkDecoder::new(line_max, trailer_max);
    let mut out = Outcome { body: Vec::new(), end: None, error: None, consumed: 0 };
    // Absolute end of the last data range, to check that ranges never go back.
    let mut data_end = 0;
    'pieces: for visible in piece_ends(cuts, payload.len()) {
        while out.consumed < visible {
            let given = &payload[out.consumed..visible];
            match dec.decode(given) {
                Err(e) => {
                    // Where an error is noticed depends on how much of the bad line had
                    // arrived, so only the error itself is compared, not the bytes consumed.
                    out.error = Some(e);
                    out.consumed = 0;
                    break 'pieces;
                }
                Ok((n, chunk)) => {
                    assert!(n <= given.len(), "consumed {n} of {} bytes", given.len());
                    match chunk {
                        Chunk::Data { start, end } => {
                            assert!(start < end && end <= n, "data {start}..{end} of {n} consumed bytes");
                            assert!(out.consumed + start >= data_end, "a byte reported twice");
                            data_end = out.consumed + end;
                            out.body.extend_from_slice(&given[start..end]);
                        }
                        Chunk::NeedMore => assert_eq!(n, given.len(), "NeedMore leaves input unconsumed"),
                        Chunk::End { ieof } => {
                            out.consumed += n;
                            out.end = Some(ieof);
                            let rest = &payload[out.consumed..];
                            assert_eq!(dec.decode(rest), Ok((0, Chunk::End { ieof })), "after the end");
                            break 'pieces;
                        }
                    }
                    out.consumed += n;
                }
            }
        }
    }
    assert!(out.body.len() <= payload.len());
    out
}

fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(7) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let line_max = if input.flags & 1 == 1 { 8 } else { icapd::limits::CHUNK_LINE_BYTES_MAX };
    let trailer_max = if input.flags & 2 == 2 { 16 } else { icapd::limits::TRAILER_BYTES_MAX };
    let payload = input.payload;
    let whole = run(payload, &[], line_max, trailer_max);
    let split = run(payload, &input.cuts(), line_max, trailer_max);
    assert_eq!(split, whole, "split at {:?}", input.cuts());
    let bytes = run(payload, &every_byte(payload.len()), line_max, trailer_max);
    assert_eq!(bytes, whole, "byte by byte");
    if whole.end.is_some() {
        let again = run(&encode(&whole.body), &[], line_max, trailer_max);
        assert_eq!(again.body, whole.body, "re-encoded body");
        assert_eq!(again.end, Some(false));
    }
});
