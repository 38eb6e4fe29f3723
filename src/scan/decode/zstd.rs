//! `zstd` (RFC 8878), decoded by the zstd C library through `zstd-safe`, built without the
//! legacy (pre-1.0) formats that no HTTP client decodes.
//!
//! A zstd frame names the window its decoder must keep, up to gigabytes. RFC 8878 asks HTTP
//! decoders to support 8 MiB and allows them to refuse more; the decoder here refuses frames
//! whose window exceeds `zstd_window_bytes_max` ([`Fault::Window`]), so its memory is bounded
//! whatever the sender asks for. Frames may follow one another (the object is their
//! concatenation); anything that is not a frame is [`Fault::Broken`].

use super::{Fault, Step};
use zstd_safe::zstd_sys::ZSTD_ErrorCode;
use zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer};

pub struct ZstdDecoder {
    ctx: DCtx<'static>,
    /// Whether the last call left a frame unfinished.
    in_frame: bool,
    /// A frame began at some point (an empty input has none).
    any: bool,
}

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
        ZstdDecoder { ctx, in_frame: false, any: false }
    }

    pub fn is_complete(&self) -> bool {
        self.any && !self.in_frame
    }

    /// zstd reports how far it read and wrote even when it fails: that output is returned
    /// with the fault.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let mut inb = InBuffer::around(input);
        let mut outb = OutBuffer::around(out);
        let result = self.ctx.decompress_stream(&mut outb, &mut inb);
        let (consumed, produced) = (inb.pos(), outb.pos());
        let fault = match result {
            // A call that took and gave nothing (the chain asks once more after a full buffer)
            // says what the next frame would need, not that one has begun.
            Ok(hint) if consumed > 0 || produced > 0 => {
                self.in_frame = hint != 0;
                None
            }
            Ok(_) => None,
            Err(code) if zstd_safe::is_error_kind(code, ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge) => {
                Some(Fault::Window)
            }
            Err(_) => Some(Fault::Broken),
        };
        self.any |= consumed > 0;
        Step { consumed, produced, fault }
    }
}
