//! `br` (RFC 7932), decoded by the pure-Rust `brotli-decompressor`.
//!
//! The decoder is built in strict mode: large-window brotli (windows up to 1 GiB, an extension
//! that is not part of the HTTP coding) is refused as a corrupt stream, so the window, and
//! with it the decoder's memory, stays within the format's 16 MiB. Bytes after the end of the
//! stream are [`Fault::Broken`].

use super::{Fault, Step};
use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};

type State = BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>;

pub struct BrotliDecoder {
    state: Box<State>,
    done: bool,
}

impl BrotliDecoder {
    pub fn new() -> BrotliDecoder {
        let state = State::new_strict(StandardAlloc::default(), StandardAlloc::default(), StandardAlloc::default());
        BrotliDecoder { state: Box::new(state), done: false }
    }

    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Output written before a corrupt spot or trailing bytes is returned with the fault.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
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
            BrotliResult::ResultFailure => return Step::fault(in_off, out_off, Fault::Broken),
        }
        Step::ok(in_off, out_off)
    }
}
