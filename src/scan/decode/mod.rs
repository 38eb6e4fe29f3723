//! Content-Encoding, undone on the fly so that the scanners see what the browser will see.
//!
//! A page served with `Content-Encoding: gzip` reaches the proxy compressed, and a signature
//! written for the page's bytes never matches the compressed ones. So before the body matcher,
//! the hash signatures and YARA, the engine runs the body through a [`DecodeChain`]: one
//! streaming decoder per coding (gzip and `x-gzip`, deflate in its zlib and raw forms, br and
//! zstd), in the reverse order of the header's list, each writing into its own fixed output
//! buffer that is allocated the first time a connection meets an encoded object and reused for
//! every object after it. Each decoded piece is pushed on at once (to the next decoder, or to
//! the scanners), so nothing is buffered beyond those buffers and the decoders' own windows.
//! Decoding is only for scanning: the client receives the bytes the origin sent.
//!
//! A compressed body is also a way to make the scanner work without bound, so the chain
//! enforces, per object, a cap on decoded bytes, a cap on the ratio of decoded bytes to
//! received bytes (checked only past a small floor, so a tiny page that compresses well is
//! not judged on its ratio), a cap on the number of stacked codings, and a cap on the zstd
//! window (brotli's window is bounded by its format at 16 MiB, and large-window brotli is not
//! accepted). A stream that is corrupt or ends early is a fault too. Every fault is reported
//! as a [`Fault`] whose threat name the engine hands to the over-limit policy: an object we
//! could not decode is never passed as clean by accident. What was decoded before a fault (up
//! to the cap on decoded bytes) is handed to the scanners first, whatever the decoder and
//! however the body was cut: a signature in the readable part of a broken stream is found, and
//! the verdict does not depend on where the fault fell in a received piece.
//!
//! What the chain does not decode, and why:
//! - `identity` is a no-op and is skipped.
//! - An unknown coding (`compress`, `x-foo`, ...) is left as it is: a browser cannot decode it
//!   either, so scanning its bytes as received is the least surprising choice. Known codings
//!   applied after it (listed to its right) are still undone.
//! - A `206 Partial Content` answer that does not start at byte 0 holds a piece from the middle
//!   of an encoded stream, which no client can decode on its own: it is scanned as received. A
//!   range that starts at 0 is decoded, and may end anywhere (truncation is not a fault there).
//!
//! The ratio is checked whenever a decoder's total output crosses a multiple of its buffer
//! size and at the end, so how the body was cut into pieces only moves the received-byte count
//! it is compared with by a decoder's few bytes of read-ahead.

mod brotli;
mod deflate;
pub(crate) mod gzip;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod zstd;

use std::ops::ControlFlow;

/// A content coding the chain can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// zlib-wrapped (RFC 9110) or, as browsers also accept, raw deflate.
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The coding a `Content-Encoding` token names; `None` for identity and unknown ones.
    fn parse(token: &[u8]) -> Option<Coding> {
        const NAMES: [(&[u8], Coding); 5] = [
            (b"gzip", Coding::Gzip),
            (b"x-gzip", Coding::Gzip),
            (b"deflate", Coding::Deflate),
            (b"br", Coding::Brotli),
            (b"zstd", Coding::Zstd),
        ];
        NAMES.iter().find(|(name, _)| token.eq_ignore_ascii_case(name)).map(|&(_, c)| c)
    }
}

/// Why decoding stopped. Each maps to one threat name ([`Fault::threat`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// More decoded bytes than `decoded_bytes_max`.
    DecodedSize,
    /// Decoded bytes past the floor exceed `decode_ratio_max` times the received bytes.
    Ratio,
    /// More stacked codings than `encodings_max`.
    Encodings,
    /// A zstd frame asks for a window larger than `zstd_window_bytes_max`.
    Window,
    /// Corrupt, truncated, or followed by bytes that belong to no stream.
    Broken,
}

impl Fault {
    /// The threat name reported for this fault (see [`crate::scan::policy`]).
    pub fn threat(self) -> &'static str {
        use crate::scan::policy as p;
        match self {
            Fault::DecodedSize => p::THREAT_DECODED_SIZE,
            Fault::Ratio => p::THREAT_DECODE_RATIO,
            Fault::Encodings => p::THREAT_ENCODINGS,
            Fault::Window => p::THREAT_DECODE_WINDOW,
            Fault::Broken => p::THREAT_BROKEN_ENCODING,
        }
    }
}

/// The chain's bounds (see [`crate::limits`] for the defaults and their reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    pub decoded_bytes_max: u64,
    pub decode_ratio_max: u64,
    pub decode_ratio_floor_bytes: u64,
    pub encodings_max: usize,
    pub zstd_window_bytes_max: usize,
    pub decode_buffer_bytes: usize,
}

/// Reads the codings to undo from an HTTP head, outermost (last applied) first, into `plan`.
///
/// Every `Content-Encoding` field counts, in order, as RFC 9110 lists them. `identity` is
/// skipped; the first unknown coding from the right ends the plan (nothing inside it can be
/// reached). More than `encodings_max` codings, known or not, is [`Fault::Encodings`].
pub fn plan(head: &[u8], encodings_max: usize, plan: &mut Vec<Coding>) -> Result<(), Fault> {
    plan.clear();
    let mut listed = 0usize;
    // Field lines in order; the codings of each line left to right. Walk them all and keep
    // the known codings from the right up to the first unknown one.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        // Whitespace before the colon is invalid HTTP, but a lenient client might still honour
        // the field, so it is recognised here too.
        if !line[..colon].trim_ascii().eq_ignore_ascii_case(b"content-encoding") {
            continue;
        }
        for token in line[colon + 1..].split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.is_empty() || token.eq_ignore_ascii_case(b"identity") {
                continue;
            }
            listed += 1;
            if listed > encodings_max {
                return Err(Fault::Encodings);
            }
            match Coding::parse(token) {
                Some(c) => plan.push(c),
                None => {
                    // Everything applied before (and including) an unknown coding stays as is.
                    plan.clear();
                }
            }
        }
    }
    plan.reverse();
    Ok(())
}

/// How much one decoder call used and made, and the fault it met after making that much.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) consumed: usize,
    pub(crate) produced: usize,
    /// The stream cannot be read past this call; the `produced` bytes before it are valid
    /// output and are scanned.
    pub(crate) fault: Option<Fault>,
}

impl Step {
    pub(crate) fn ok(consumed: usize, produced: usize) -> Step {
        Step { consumed, produced, fault: None }
    }

    pub(crate) fn fault(consumed: usize, produced: usize, fault: Fault) -> Step {
        Step { consumed, produced, fault: Some(fault) }
    }
}

/// One streaming decoder. `decode` uses as much of `input` and fills as much of `out` as it
/// can, and reports a fault together with the output made before it; `finish` says whether
/// the input so far was a complete stream.
enum Decoder {
    Gzip(gzip::GzipDecoder),
    Deflate(deflate::DeflateDecoder),
    Brotli(brotli::BrotliDecoder),
    Zstd(zstd::ZstdDecoder),
}

impl Decoder {
    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        match self {
            Decoder::Gzip(d) => d.decode(input, out),
            Decoder::Deflate(d) => d.decode(input, out),
            Decoder::Brotli(d) => d.decode(input, out),
            Decoder::Zstd(d) => d.decode(input, out),
        }
    }

    /// At the end of the object: decodes input the decoder held back (brotli keeps an
    /// unfinished piece; see [`brotli`]). The others hold none.
    fn finish_input(&mut self, out: &mut [u8]) -> Step {
        match self {
            Decoder::Brotli(d) => d.finish_input(out),
            _ => Step::default(),
        }
    }

    fn is_complete(&self) -> bool {
        match self {
            Decoder::Gzip(d) => d.is_complete(),
            Decoder::Deflate(d) => d.is_complete(),
            Decoder::Brotli(d) => d.is_complete(),
            Decoder::Zstd(d) => d.is_complete(),
        }
    }
}

/// One link of the chain: a decoder and the buffer it writes into.
struct Stage {
    out: Box<[u8]>,
    decoder: Option<Decoder>,
    /// Bytes this stage has taken in and given out for the current object.
    in_total: u64,
    out_total: u64,
}

impl Stage {
    /// Readies the decoder for a new object of `coding`. The flate decoders are reset and kept
    /// (a few tens of KiB); brotli and zstd states are built per object, because their windows
    /// can reach megabytes and an idle keep-alive connection should not hold them.
    fn prepare(&mut self, coding: Coding, limits: &DecodeLimits) {
        self.in_total = 0;
        self.out_total = 0;
        match (coding, &mut self.decoder) {
            (Coding::Gzip, Some(Decoder::Gzip(d))) => d.reset(),
            (Coding::Deflate, Some(Decoder::Deflate(d))) => d.reset(),
            (Coding::Gzip, slot) => *slot = Some(Decoder::Gzip(gzip::GzipDecoder::new())),
            (Coding::Deflate, slot) => *slot = Some(Decoder::Deflate(deflate::DeflateDecoder::new())),
            (Coding::Brotli, slot) => *slot = Some(Decoder::Brotli(brotli::BrotliDecoder::new())),
            (Coding::Zstd, slot) => *slot = Some(Decoder::Zstd(zstd::ZstdDecoder::new(limits.zstd_window_bytes_max))),
        }
    }

    /// Drops a decoder whose state is large (brotli, zstd) once its object is over.
    fn release(&mut self) {
        if matches!(self.decoder, Some(Decoder::Brotli(_) | Decoder::Zstd(_))) {
            self.decoder = None;
        }
    }
}

/// Where decoded bytes go; `Break` stops the chain (the scanners have their verdict).
pub type Sink<'a> = &'a mut dyn FnMut(&[u8]) -> ControlFlow<()>;

/// The decoders for one object, reused for every object on a connection.
pub struct DecodeChain {
    limits: DecodeLimits,
    stages: Vec<Stage>,
    /// Stages in use for the current object (0: the body is scanned as received).
    active: usize,
    /// A partial (206) object may end anywhere.
    partial: bool,
}

impl DecodeChain {
    /// No buffer is allocated until the first encoded object.
    pub fn new(limits: DecodeLimits) -> DecodeChain {
        DecodeChain { limits, stages: Vec::new(), active: 0, partial: false }
    }

    /// Starts an object whose codings, outermost first, are `plan` (empty: not encoded).
    /// `partial`: the body is a leading range of the encoded object and may stop anywhere.
    pub fn begin(&mut self, plan: &[Coding], partial: bool) {
        self.end();
        debug_assert!(plan.len() <= self.limits.encodings_max, "plan() bounds the codings");
        while self.stages.len() < plan.len() {
            let out = vec![0u8; self.limits.decode_buffer_bytes].into_boxed_slice();
            self.stages.push(Stage { out, decoder: None, in_total: 0, out_total: 0 });
        }
        for (stage, &coding) in self.stages.iter_mut().zip(plan) {
            stage.prepare(coding, &self.limits);
        }
        self.active = plan.len();
        self.partial = partial;
    }

    /// Whether the current object is decoded at all.
    pub fn is_active(&self) -> bool {
        self.active > 0
    }

    /// Decodes `input` (the next received bytes) and hands every decoded piece to `sink`.
    /// Work per call is bounded by the caps: at most `decode_ratio_max` times the input past
    /// the floor, and never more than `decoded_bytes_max` in all.
    pub fn feed(&mut self, input: &[u8], sink: Sink<'_>) -> Result<ControlFlow<()>, Fault> {
        let limits = self.limits;
        run_stages(&mut self.stages[..self.active], &limits, None, input, Feed::Input, sink)
    }

    /// The body ended: input a decoder held back is decoded (outermost stage first, its output
    /// flowing through the inner ones to `sink`), then every stage must have seen a complete
    /// stream (or none at all), and the final totals must respect the ratio cap.
    pub fn finish(&mut self, sink: Sink<'_>) -> Result<ControlFlow<()>, Fault> {
        let limits = self.limits;
        let raw = self.stages.first().map_or(0, |s| s.in_total);
        for first in 0..self.active {
            let stages = &mut self.stages[first..self.active];
            let raw = (first > 0).then_some(raw);
            if run_stages(stages, &limits, raw, &[], Feed::Finish, &mut *sink)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        for stage in &self.stages[..self.active] {
            let complete = stage.in_total == 0 || stage.decoder.as_ref().is_some_and(Decoder::is_complete);
            if !complete && !self.partial {
                return Err(Fault::Broken);
            }
            check_ratio(&self.limits, stage.out_total, raw)?;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The object is over (finished or abandoned): release large decoder state.
    pub fn end(&mut self) {
        for stage in &mut self.stages[..self.active] {
            stage.release();
        }
        self.active = 0;
    }

    /// Decoded bytes the last stage has produced for the current object.
    pub fn decoded_bytes(&self) -> u64 {
        self.stages[..self.active].last().map_or(0, |s| s.out_total)
    }

    /// Received bytes the first stage has taken in for the current object.
    pub fn received_bytes(&self) -> u64 {
        self.stages[..self.active].first().map_or(0, |s| s.in_total)
    }
}

fn check_ratio(limits: &DecodeLimits, out_total: u64, raw: u64) -> Result<(), Fault> {
    if out_total > limits.decode_ratio_floor_bytes && out_total / limits.decode_ratio_max.max(1) > raw {
        return Err(Fault::Ratio);
    }
    Ok(())
}

/// What `stages[0]` is given in [`run_stages`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// The next received (or decoded) bytes.
    Input,
    /// The end of the object: only what the decoder held back (`input` is empty).
    Finish,
}

/// Runs `input` through `stages[0]`, pushing each decoded piece through the rest and finally
/// to `sink`. `raw` is the received-byte count of the first stage (None: this is the first).
fn push(
    stages: &mut [Stage],
    limits: &DecodeLimits,
    raw: Option<u64>,
    input: &[u8],
    sink: Sink<'_>,
) -> Result<ControlFlow<()>, Fault> {
    run_stages(stages, limits, raw, input, Feed::Input, sink)
}

fn run_stages(
    stages: &mut [Stage],
    limits: &DecodeLimits,
    raw: Option<u64>,
    mut input: &[u8],
    feed: Feed,
    sink: Sink<'_>,
) -> Result<ControlFlow<()>, Fault> {
    let Some((stage, rest)) = stages.split_first_mut() else { return Ok(sink(input)) };
    let Some(decoder) = stage.decoder.as_mut() else { return Err(Fault::Broken) };
    let granule = stage.out.len() as u64;
    loop {
        // Output pieces end at multiples of the buffer size in the decoded stream, whatever the
        // input pieces were: that is where the ratio is checked.
        let space = (granule - stage.out_total % granule) as usize;
        let step = match feed {
            Feed::Input => decoder.decode(input, &mut stage.out[..space]),
            Feed::Finish => decoder.finish_input(&mut stage.out[..space]),
        };
        input = &input[step.consumed..];
        stage.in_total += step.consumed as u64;
        let raw_now = raw.unwrap_or(stage.in_total);
        // The bytes up to the cap are scanned before the fault that stops the stream: the cap
        // first, then the decoder's own fault, then the ratio (checked on a full buffer).
        let room = limits.decoded_bytes_max.saturating_sub(stage.out_total);
        let (produced, mut fault) = if step.produced as u64 > room {
            (room as usize, Some(Fault::DecodedSize))
        } else {
            (step.produced, step.fault)
        };
        stage.out_total += produced as u64;
        if fault.is_none() && step.produced == space {
            fault = check_ratio(limits, stage.out_total, raw_now).err();
        }
        if produced > 0 && push(rest, limits, Some(raw_now), &stage.out[..produced], &mut *sink)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        if let Some(fault) = fault {
            return Err(fault);
        }
        if step.produced == space {
            continue; // the buffer was full: the decoder may hold more
        }
        if input.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        if step.consumed == 0 && step.produced == 0 {
            // Input the decoder will not take is input we could not scan.
            return Err(Fault::Broken);
        }
    }
}
