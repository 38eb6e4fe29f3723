//! Compressed files (`.gz`, `.bz2`, `.zst`): one member, their decompressed content.
//!
//! gzip reuses the Content-Encoding framing (members one after another are one content, as
//! `gunzip` writes them); bzip2 streams may follow one another too (`pbzip2` writes them so);
//! zstd frames likewise. A stream that ends early, or bytes after it that start no new stream,
//! make the container broken (what was decoded has been scanned all the same).

use super::codec::{pump, Codec};
use crate::scan::unpack::{Emit, Event, Fault, Feed};
use std::ops::ControlFlow;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Bzip2,
    Zstd,
    Xz,
    Lzma,
}

pub struct Compressed {
    format: Format,
    codec: Codec,
    out: Box<[u8]>,
    name: String,
    started: bool,
    /// bzip2: the last stream ended; the next byte must start another. `.lzma`: it ended.
    between: bool,
    broken: &'static str,
}

impl Compressed {
    /// `None` when the decoder cannot be set up (liblzma refused its memory limit).
    pub fn new(format: Format, parent: &str, out_bytes: usize, lzma_memory_max: u64) -> Option<Compressed> {
        let (codec, broken, suffixes, fallback): (_, _, &[(&str, &str)], _) = match format {
            Format::Xz => {
                (Codec::xz(lzma_memory_max)?, "Heuristics.Broken.XZ", &[(".txz", ".tar"), (".xz", "")], "[xz]")
            }
            Format::Lzma => (
                Codec::lzma_alone(lzma_memory_max)?,
                "Heuristics.Broken.LZMA",
                &[(".tlz", ".tar"), (".lzma", "")],
                "[lzma]",
            ),
            Format::Gzip => {
                (Codec::gzip(), "Heuristics.Broken.Gzip", &[(".tgz", ".tar"), (".gz", ""), (".z", "")], "[gzip]")
            }
            Format::Bzip2 => (Codec::bzip2(), "Heuristics.Broken.Bzip2", &[(".tbz2", ".tar"), (".bz2", "")], "[bzip2]"),
            Format::Zstd => (Codec::zstd(), "Heuristics.Broken.Zstd", &[(".tzst", ".tar"), (".zst", "")], "[zstd]"),
        };
        // The content's name is the file's without its suffix, as the tools write it.
        let lower = parent.to_ascii_lowercase();
        let name = suffixes
            .iter()
            .find(|(s, _)| lower.ends_with(s) && lower.len() > s.len())
            .map(|(s, repl)| format!("{}{repl}", &parent[..parent.len() - s.len()]))
            .unwrap_or_else(|| fallback.to_string());
        Some(Compressed {
            format,
            codec,
            out: vec![0; out_bytes].into_boxed_slice(),
            name,
            started: false,
            between: false,
            broken,
        })
    }
}

impl Feed for Compressed {
    fn feed(&mut self, mut input: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        if !self.started {
            self.started = true;
            if emit(Event::Start(&self.name)).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        while !input.is_empty() {
            if self.between {
                // bzip2: a new stream must follow; `.lzma`: nothing may.
                if self.format == Format::Lzma || input[0] != b'B' {
                    return Err(Fault::Broken(self.broken));
                }
                self.codec = Codec::bzip2();
                self.between = false;
            }
            let mut stop = false;
            let result = pump(&mut self.codec, &mut self.out, input, &mut |piece| {
                stop = emit(Event::Data(piece)).is_break();
                stop
            })
            .map_err(|()| Fault::Broken(self.broken))?;
            let Some((used, ended)) = result else { return Ok(ControlFlow::Break(())) };
            input = &input[used..];
            // gzip and zstd decoders take the next member or frame themselves.
            if ended && matches!(self.format, Format::Bzip2 | Format::Lzma) {
                self.between = true;
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&mut self, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, Fault> {
        let complete = match self.format {
            Format::Bzip2 | Format::Lzma => self.between,
            Format::Xz => {
                let mut stop = false;
                let done = self
                    .codec
                    .lzma_finish(&mut self.out, &mut |piece| {
                        stop = emit(Event::Data(piece)).is_break();
                        stop
                    })
                    .map_err(|()| Fault::Broken(self.broken))?;
                if stop {
                    return Ok(ControlFlow::Break(()));
                }
                done
            }
            _ => self.codec.is_complete(),
        };
        if !complete {
            return Err(Fault::Broken(self.broken));
        }
        Ok(emit(Event::End))
    }
}
