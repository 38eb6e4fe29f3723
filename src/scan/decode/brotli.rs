//! `br` (RFC 7932), decoded by the pure-Rust `brotli-decompressor`.
//!
//! The decoder is built in strict mode: large-window brotli (windows up to 1 GiB, an extension
//! that is not part of the HTTP coding) is refused as a corrupt stream, so the window, and
//! with it the decoder's memory, stays within the format's 16 MiB. Bytes after the end of the
//! stream are [`Fault::Broken`].
//!
//! How far a brotli decoder gets before it notices a corrupt spot, and what it has handed out
//! by then, depends on where its input pieces ended (it decodes speculatively when input is
//! plentiful, and pushes out what it decoded whenever it runs out). So that the readable part
//! of a broken stream does not depend on how the body was cut, the decoder here is only ever
//! given whole pieces of [`PIECE_BYTES`] that start at multiples of it in the compressed
//! stream: an unfinished piece at the end of a received chunk is held (copied into a small
//! buffer) until the rest arrives or the object ends ([`BrotliDecoder::finish_input`]). With
//! the same pieces and the same output space (the chain cuts output at fixed positions too),
//! the decoder does the same work whatever the chunking. At a failure, the bytes still in its
//! ring buffer are copied out (over as many calls as the caller's buffer needs) before the
//! fault is reported, so that everything decoded before the corrupt spot is scanned.

use super::{Fault, Step};
use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, SliceWrapper, StandardAlloc};

type State = BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>;

/// The compressed bytes the decoder is given at a time (the last piece of a stream may be
/// shorter). Small enough that holding one unfinished piece costs little and delays decoding
/// little; large enough that the decoder's per-call cost does not show.
pub const PIECE_BYTES: usize = 4096;

pub struct BrotliDecoder {
    state: Box<State>,
    done: bool,
    /// After a failure: the decoded bytes still to hand out, as positions in the decoded
    /// stream (`from..to`), read from the ring buffer; then the fault.
    failed: Option<(u64, u64)>,
    /// Compressed bytes taken but not yet decoded: the start of an unfinished piece, or the
    /// rest of a piece the decoder stopped in because the output was full.
    held: Vec<u8>,
    /// Compressed bytes the decoder has used so far (where `held` starts in the stream).
    fed: u64,
    /// The last call stopped because the output was full: the decoder holds decoded bytes.
    wants_output: bool,
}

impl BrotliDecoder {
    pub fn new() -> BrotliDecoder {
        let state = State::new_strict(StandardAlloc::default(), StandardAlloc::default(), StandardAlloc::default());
        BrotliDecoder {
            state: Box::new(state),
            done: false,
            failed: None,
            held: Vec::with_capacity(PIECE_BYTES),
            fed: 0,
            wants_output: false,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Takes as much of `input` as belongs to whole pieces (or to the piece being held) and
    /// decodes at most one piece into `out`. Output written before a corrupt spot or trailing
    /// bytes is returned with the fault.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        if let Some(pending) = self.failed {
            return self.flush_failed(pending, 0, out, 0);
        }
        if self.done {
            return if input.is_empty() && self.held.is_empty() {
                Step::default()
            } else {
                Step::fault(0, 0, Fault::Broken)
            };
        }
        self.drained_then(out, |d, out| d.decode_pieces(input, out))
    }

    /// Runs `then` on `out`, after asking the decoder for the output it holds if it stopped for
    /// output space (with no input, whatever input there is now, so that its calls are the
    /// same however the body was cut); `then` gets the space left, if any.
    fn drained_then(&mut self, out: &mut [u8], then: impl FnOnce(&mut Self, &mut [u8]) -> Step) -> Step {
        if !self.wants_output {
            return then(self, out);
        }
        let (_, first) = self.run(&[], out);
        if first.produced == out.len() || first.fault.is_some() || self.done || self.wants_output {
            return first;
        }
        let rest = then(self, &mut out[first.produced..]);
        Step { produced: first.produced + rest.produced, ..rest }
    }

    /// [`BrotliDecoder::decode`] once the decoder holds no output: whole pieces only.
    fn decode_pieces(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let piece_end = (self.fed / PIECE_BYTES as u64 + 1) * PIECE_BYTES as u64;
        if !self.held.is_empty() {
            let missing = (piece_end - self.fed) as usize - self.held.len();
            let taken = missing.min(input.len());
            self.held.extend_from_slice(&input[..taken]);
            if taken < missing {
                return Step::ok(taken, 0);
            }
            let step = self.decode_held(taken, out);
            if step.produced > 0 || step.fault.is_some() || !self.held.is_empty() || self.done {
                return step;
            }
            // The held piece went in without output: go on with the input, so that a call
            // with input left always takes or gives something.
            let next = self.decode_pieces(&input[taken..], out);
            return Step { consumed: taken + next.consumed, ..next };
        }
        let need = (piece_end - self.fed) as usize;
        if input.len() < need {
            self.held.extend_from_slice(input);
            return Step::ok(input.len(), 0);
        }
        let (used, step) = self.run(&input[..need], out);
        Step { consumed: used, ..step }
    }

    /// The object ended: decodes the piece held, if any (the last of the stream may be short).
    /// Called until it leaves output space unused.
    pub fn finish_input(&mut self, out: &mut [u8]) -> Step {
        if self.failed.is_some() || self.done || self.held.is_empty() {
            return self.decode(&[], out);
        }
        self.drained_then(out, |d, out| d.decode_held(0, out))
    }

    /// Decodes from the held bytes; `taken` input bytes were moved into them by this call.
    fn decode_held(&mut self, taken: usize, out: &mut [u8]) -> Step {
        let held = std::mem::take(&mut self.held);
        let (used, step) = self.run(&held, out);
        self.held = held;
        self.held.drain(..used);
        Step { consumed: taken, ..step }
    }

    /// One call of the decoder on `input`: how much of it the decoder used, and the step (its
    /// `consumed` is for the caller to set).
    fn run(&mut self, input: &[u8], out: &mut [u8]) -> (usize, Step) {
        let (mut avail_in, mut in_off) = (input.len(), 0);
        let (mut avail_out, mut out_off, mut total) = (out.len(), 0, 0);
        let result = BrotliDecompressStream(
            &mut avail_in,
            &mut in_off,
            input,
            &mut avail_out,
            &mut out_off,
            out,
            &mut total,
            &mut self.state,
        );
        self.fed += in_off as u64;
        self.wants_output = matches!(result, BrotliResult::NeedsMoreOutput);
        let step = match result {
            BrotliResult::ResultSuccess => {
                self.done = true;
                if in_off < input.len() {
                    Step::fault(0, out_off, Fault::Broken)
                } else {
                    Step::ok(0, out_off)
                }
            }
            BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => Step::ok(0, out_off),
            BrotliResult::ResultFailure => {
                let pending = self.unwritten();
                self.flush_failed(pending, 0, out, out_off)
            }
        };
        (in_off, step)
    }

    /// The decoded bytes the ring buffer holds that were not handed out yet, as positions in
    /// the decoded stream (the decoder's own count of what it wrote and what it handed out).
    /// Empty when the state does not describe a ring buffer (a failure before the first
    /// meta-block allocated one).
    fn unwritten(&self) -> (u64, u64) {
        let s = &*self.state;
        let (size, len) = (s.ringbuffer_size, s.ringbuffer.slice().len());
        if size <= 0 || s.pos < 0 || len < size as usize {
            return (s.partial_pos_out, s.partial_pos_out);
        }
        // `pos` may run past the ring's end into the slack after it, before the decoder wraps.
        let written = s.rb_roundtrips * size as u64 + s.pos as u64;
        (s.partial_pos_out, written.max(s.partial_pos_out))
    }

    /// Copies decoded bytes `from..to` out of the ring buffer after the `produced` bytes
    /// already in `out`; reports the fault once all of them are out.
    fn flush_failed(&mut self, (from, to): (u64, u64), consumed: usize, out: &mut [u8], produced: usize) -> Step {
        let s = &*self.state;
        let ring = s.ringbuffer.slice();
        let size = s.ringbuffer_size.max(1) as u64;
        let mut at = from;
        let mut written = produced;
        while at < to && written < out.len() {
            // Positions past the current round are in the slack after the ring's end (the
            // decoder copies them to its start when it wraps); earlier ones are in the ring.
            let round_start = s.rb_roundtrips * size;
            let index = if at >= round_start { (at - round_start) as usize } else { (at % size) as usize };
            let end_index = if at >= round_start { (to - round_start) as usize } else { size as usize };
            let Some(avail) = ring.get(index..end_index.min(ring.len())) else { break };
            if avail.is_empty() {
                break;
            }
            let n = avail.len().min(out.len() - written);
            out[written..written + n].copy_from_slice(&avail[..n]);
            written += n;
            at += n as u64;
        }
        if at < to && written == out.len() {
            self.failed = Some((at, to));
            Step::ok(consumed, written)
        } else {
            self.failed = Some((to, to));
            Step::fault(consumed, written, Fault::Broken)
        }
    }
}
