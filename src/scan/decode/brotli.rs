//! `br` (RFC 7932), decoded by the pure-Rust `brotli-decompressor`.
//!
//! The decoder is built in strict mode: large-window brotli (windows up to 1 GiB, an extension
//! that is not part of the HTTP coding) is refused as a corrupt stream, so the window, and
//! with it the decoder's memory, stays within the format's 16 MiB. Bytes after the end of the
//! stream are [`Fault::Broken`].
//!
//! The decoder writes into its ring buffer and copies out to the caller whenever it runs out
//! of input, so a stream received in small pieces has handed out everything decoded so far
//! when it meets a corrupt spot, while the same stream in one piece would still hold up to a
//! window of decoded bytes in the ring buffer at that moment. So that the scanners see the
//! same readable part however the body was cut, the bytes still unwritten at a failure are
//! copied out of the ring buffer (over as many calls as the caller's buffer needs) before the
//! fault is reported.

use super::{Fault, Step};
use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, SliceWrapper, StandardAlloc};

type State = BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>;

pub struct BrotliDecoder {
    state: Box<State>,
    done: bool,
    /// After a failure: the decoded bytes still to hand out, as positions in the decoded
    /// stream (`from..to`), read from the ring buffer; then the fault.
    failed: Option<(u64, u64)>,
}

impl BrotliDecoder {
    pub fn new() -> BrotliDecoder {
        let state = State::new_strict(StandardAlloc::default(), StandardAlloc::default(), StandardAlloc::default());
        BrotliDecoder { state: Box::new(state), done: false, failed: None }
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Output written before a corrupt spot or trailing bytes is returned with the fault.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        if let Some(pending) = self.failed {
            return self.flush_failed(pending, 0, out, 0);
        }
        if self.done {
            return if input.is_empty() { Step::default() } else { Step::fault(0, 0, Fault::Broken) };
        }
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
        match result {
            BrotliResult::ResultSuccess => {
                self.done = true;
                if in_off < input.len() {
                    return Step::fault(in_off, out_off, Fault::Broken);
                }
            }
            BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {}
            BrotliResult::ResultFailure => {
                let pending = self.unwritten();
                return self.flush_failed(pending, in_off, out, out_off);
            }
        }
        Step::ok(in_off, out_off)
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
