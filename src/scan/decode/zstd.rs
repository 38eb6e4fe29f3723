//! `zstd` (RFC 8878), decoded by the zstd C library through `zstd-safe`, built without the
//! legacy (pre-1.0) formats that no HTTP client decodes.
//!
//! A zstd frame names the window its decoder must keep, up to gigabytes. RFC 8878 asks HTTP
//! decoders to support 8 MiB and allows them to refuse more; the decoder here refuses frames
//! whose window exceeds `zstd_window_bytes_max` ([`Fault::Window`]), so its memory is bounded
//! whatever the sender asks for. Frames may follow one another (the object is their
//! concatenation); anything that is not a frame is [`Fault::Broken`].
//!
//! zstd's streaming call reports how far it read and wrote only when it succeeds: a call that
//! hands out one block and then meets a corrupt next block returns the error alone, and the
//! bytes it already wrote are lost to the caller. How many blocks one call gets through
//! depends on how much input it was given, so the readable part of a broken stream would
//! depend on how the body was cut. The decoder therefore gives zstd one unit at a time, sized
//! by zstd's own hint of what it needs next, and stops short of the next block's header; and
//! it drains what zstd still holds (a call with no input, which decodes nothing and cannot
//! fail) before giving it more. A call that fails has then written nothing, and every byte
//! decoded before the corrupt spot is handed out, however the body was cut.

use super::{Fault, Step};
use zstd_safe::zstd_sys::ZSTD_ErrorCode;
use zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

pub struct ZstdDecoder {
    ctx: DCtx<'static>,
    /// Whether the last call left a frame unfinished.
    in_frame: bool,
    /// A frame began at some point (an empty input has none).
    any: bool,
    /// zstd's hint from its last call that made progress: the input that completes the unit it
    /// is reading plus, when that is a block, the next block's header (0: unknown, or a frame
    /// just ended).
    hint: usize,
    /// The last call filled the output: zstd may hold decoded bytes still to hand out.
    holding: bool,
}

/// The size of a zstd block header, which zstd's hint counts on top of a block.
const BLOCK_HEADER_BYTES: usize = 3;

/// The largest window log whose window fits in `bytes` (zstd's minimum is 2^10).
pub fn window_log(bytes: usize) -> u32 {
    (usize::BITS - 1 - bytes.max(1 << 10).leading_zeros()).min(31)
}

impl ZstdDecoder {
    pub fn new(window_bytes_max: usize) -> ZstdDecoder {
        let mut ctx = DCtx::create();
        // The only failure is a value out of zstd's range, which `Limits::validate` rules out;
        // were it to happen, zstd's own default (128 MiB) would stay, so fall back to refusing
        // every frame rather than allowing larger windows.
        if ctx.set_parameter(DParameter::WindowLogMax(window_log(window_bytes_max))).is_err() {
            let _ = ctx.set_parameter(DParameter::WindowLogMax(10));
        }
        ZstdDecoder { ctx, in_frame: false, any: false, hint: 0, holding: false }
    }

    pub fn is_complete(&self) -> bool {
        self.any && !self.in_frame
    }

    /// Decodes as much of `input` into `out` as fits, one zstd unit per call (see the module
    /// comment); a fault comes with every byte decoded before it.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let (mut consumed, mut produced) = (0, 0);
        while produced < out.len() {
            let feeding = !self.holding;
            if feeding && consumed == input.len() {
                break;
            }
            let piece = if feeding { self.piece(input.len() - consumed) } else { 0 };
            let mut inb = InBuffer::around(&input[consumed..consumed + piece]);
            let mut outb = OutBuffer::around(&mut out[produced..]);
            let result = self.ctx.decompress_stream(&mut outb, &mut inb);
            let (took, made) = (inb.pos(), outb.pos());
            consumed += took;
            produced += made;
            self.any |= took > 0;
            match result {
                Ok(hint) if took > 0 || made > 0 => {
                    self.hint = hint;
                    self.in_frame = hint != 0;
                }
                // A call that took and gave nothing says what the next frame would need, not
                // that one has begun.
                Ok(_) => {}
                Err(code) => {
                    let fault =
                        if zstd_safe::is_error_kind(code, ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge) {
                            Fault::Window
                        } else {
                            Fault::Broken
                        };
                    return Step { consumed, produced, fault: Some(fault) };
                }
            }
            self.holding = produced == out.len();
            // A drain that found nothing leaves `holding` cleared, so the input goes next; a
            // piece zstd would not take is the chain's to judge.
            if feeding && took == 0 && made == 0 {
                break;
            }
        }
        Step::ok(consumed, produced)
    }

    /// How much of the `available` input to give zstd next: what completes the unit it is
    /// reading, short of the next block's header (one byte when it has not said).
    fn piece(&self, available: usize) -> usize {
        let want = match self.hint {
            0 => 1,
            h if h > BLOCK_HEADER_BYTES => h - BLOCK_HEADER_BYTES,
            h => h,
        };
        want.min(available)
    }
}
