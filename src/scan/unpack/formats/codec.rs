//! The compression methods members are stored with, behind one resumable call: some input in,
//! as much output as fits, and whether the compressed stream ended. Used by the compressed-file
//! feeders (`.gz`, `.bz2`, `.zst`) and by zip entries.

use crate::scan::decode::{gzip::GzipDecoder, zstd::ZstdDecoder};
use flate2::{Decompress, FlushDecompress, Status};

/// The zstd window accepted in files and zip entries (as for Content-Encoding: 8 MiB).
const ZSTD_WINDOW_BYTES_MAX: usize = crate::limits::ZSTD_WINDOW_BYTES_MAX;

pub enum Codec {
    /// Raw deflate (zip method 8).
    Inflate(Box<Decompress>),
    /// Deflate64 (zip method 9).
    Inflate64(Box<deflate64::InflaterManaged>),
    Bzip2(Box<bzip2::Decompress>),
    Zstd(Box<ZstdDecoder>),
    /// gzip members, one after another (a `.gz` file).
    Gzip(Box<GzipDecoder>),
    /// liblzma: `.xz` streams (concatenated), `.lzma` files, and raw LZMA1 (zip method 14).
    Lzma(Box<liblzma::stream::Stream>),
}

/// One call's result.
pub struct Step {
    pub consumed: usize,
    pub produced: usize,
    /// The compressed stream ended; bytes after it are not its.
    pub ended: bool,
    /// The data is corrupt here; what was produced before it is still given out (so that how
    /// the input was cut cannot change what gets scanned).
    pub failed: bool,
}

impl Codec {
    pub fn inflate() -> Codec {
        Codec::Inflate(Box::new(Decompress::new(false)))
    }
    pub fn inflate64() -> Codec {
        Codec::Inflate64(Box::new(deflate64::InflaterManaged::new()))
    }
    pub fn bzip2() -> Codec {
        Codec::Bzip2(Box::new(bzip2::Decompress::new(false)))
    }
    pub fn zstd() -> Codec {
        Codec::Zstd(Box::new(ZstdDecoder::new(ZSTD_WINDOW_BYTES_MAX)))
    }
    pub fn gzip() -> Codec {
        Codec::Gzip(Box::new(GzipDecoder::new()))
    }
    /// An `.xz` decoder whose memory is bounded by `memory_max` (a stream asking for more is
    /// corrupt as far as we are concerned: [`Codec::decode`] fails).
    pub fn xz(memory_max: u64) -> Option<Codec> {
        let s = liblzma::stream::Stream::new_stream_decoder(memory_max, liblzma::stream::CONCATENATED).ok()?;
        Some(Codec::Lzma(Box::new(s)))
    }
    /// A `.lzma` (LZMA_Alone) decoder.
    pub fn lzma_alone(memory_max: u64) -> Option<Codec> {
        Some(Codec::Lzma(Box::new(liblzma::stream::Stream::new_lzma_decoder(memory_max).ok()?)))
    }
    /// Raw LZMA1 with the 5 property bytes zip stores before the data; `None` for properties
    /// liblzma refuses (or a dictionary over `memory_max`).
    pub fn lzma1(props: &[u8], memory_max: u64) -> Option<Codec> {
        let dict = u32::from_le_bytes(props.get(1..5)?.try_into().ok()?);
        if u64::from(dict) > memory_max {
            return None;
        }
        let mut filters = liblzma::stream::Filters::new();
        filters.lzma1_properties(props).ok()?;
        Some(Codec::Lzma(Box::new(liblzma::stream::Stream::new_raw_decoder(&filters).ok()?)))
    }

    /// Decodes from `input` into `out`; corrupt data sets [`Step::failed`].
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        match self {
            Codec::Inflate(d) => {
                let (i, o) = (d.total_in(), d.total_out());
                let status = d.decompress(input, out, FlushDecompress::None);
                Step {
                    consumed: (d.total_in() - i) as usize,
                    produced: (d.total_out() - o) as usize,
                    ended: matches!(status, Ok(Status::StreamEnd)),
                    failed: status.is_err(),
                }
            }
            Codec::Inflate64(d) => {
                let r = d.inflate(input, out);
                Step {
                    consumed: r.bytes_consumed,
                    produced: r.bytes_written,
                    ended: d.finished(),
                    failed: r.data_error,
                }
            }
            Codec::Bzip2(d) => {
                let (i, o) = (d.total_in(), d.total_out());
                let status = d.decompress(input, out);
                Step {
                    consumed: (d.total_in() - i) as usize,
                    produced: (d.total_out() - o) as usize,
                    ended: matches!(status, Ok(bzip2::Status::StreamEnd)),
                    failed: status.is_err(),
                }
            }
            // The decoders return the output made before a fault with it.
            Codec::Zstd(d) => {
                let s = d.decode(input, out);
                let failed = s.fault.is_some();
                Step {
                    consumed: s.consumed,
                    produced: s.produced,
                    ended: !failed && s.consumed > 0 && d.is_complete(),
                    failed,
                }
            }
            Codec::Gzip(d) => {
                let s = d.decode(input, out);
                Step { consumed: s.consumed, produced: s.produced, ended: false, failed: s.fault.is_some() }
            }
            Codec::Lzma(d) => {
                let (i, o) = (d.total_in(), d.total_out());
                let status = d.process(input, out, liblzma::stream::Action::Run);
                Step {
                    consumed: (d.total_in() - i) as usize,
                    produced: (d.total_out() - o) as usize,
                    ended: matches!(status, Ok(liblzma::stream::Status::StreamEnd)),
                    failed: status.is_err(),
                }
            }
        }
    }

    /// liblzma's end of input: with concatenated `.xz` streams the decoder only knows the
    /// input was complete when told it has ended. Output left over goes to `emit`.
    pub fn lzma_finish(&mut self, out: &mut [u8], emit: &mut dyn FnMut(&[u8]) -> bool) -> Result<bool, ()> {
        let Codec::Lzma(d) = self else { return Ok(false) };
        loop {
            let o = d.total_out();
            let status = d.process(&[], out, liblzma::stream::Action::Finish).map_err(|_| ())?;
            let produced = (d.total_out() - o) as usize;
            if produced > 0 && emit(&out[..produced]) {
                return Ok(true);
            }
            if status == liblzma::stream::Status::StreamEnd {
                return Ok(true);
            }
            if produced == 0 {
                return Ok(false);
            }
        }
    }

    /// Whether the input so far was a complete stream (for the formats that may continue).
    pub fn is_complete(&self) -> bool {
        match self {
            Codec::Gzip(d) => d.is_complete(),
            Codec::Zstd(d) => d.is_complete(),
            _ => false,
        }
    }
}

/// Runs `input` through `codec`, emitting each decoded piece with `emit`; returns the input
/// used (less than all once the stream ends) and whether it ended. `emit` returning `true`
/// stops the call early (`None`).
pub fn pump(
    codec: &mut Codec,
    out: &mut [u8],
    mut input: &[u8],
    emit: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<Option<(usize, bool)>, ()> {
    let total = input.len();
    loop {
        let step = codec.decode(input, out);
        input = &input[step.consumed..];
        if step.produced > 0 && emit(&out[..step.produced]) {
            return Ok(None);
        }
        if step.failed {
            return Err(());
        }
        if step.ended {
            return Ok(Some((total - input.len(), true)));
        }
        if step.produced == out.len() {
            continue;
        }
        if input.is_empty() {
            return Ok(Some((total, false)));
        }
        if step.consumed == 0 && step.produced == 0 {
            return Err(());
        }
    }
}
