//! Container formats that need random access: the whole object is in memory (the caller buffers
//! it up to its own limit), and [`extract`] walks it and hands every member to a [`Sink`].
//!
//! This module is sans-IO and independent of the engine: it takes a byte slice and the limits,
//! and emits members as a start, bounded pieces of data and an end. It does not recurse: a
//! member that is itself a container (an OLE2 file inside an RTF `\objdata`, a PE inside a CAB)
//! is emitted as it is, and the caller types it by its magic and calls back in. Formats that
//! embed objects (OLE `Package` streams, PDF embedded files, RTF objects) emit the embedded
//! object as a member of its own for that reason.
//!
//! Every decoder writes through [`out::Out`], which enforces [`Limits`] as bytes are produced, so
//! a bomb stops at the limit rather than after it, and memory stays bounded by the pieces.

mod cab;
mod chm;
mod deflate;
mod demux;
mod html;
mod nrv;
mod ole2;
mod out;
mod ovba;
mod pdf;
mod pdf_filters;
mod rtf;
mod sevenz;
mod tnef;
mod upx;
pub mod zip_central;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
pub(crate) mod tests_7z;
#[cfg(test)]
pub(crate) mod tests_cab;
#[cfg(test)]
mod tests_chm;
#[cfg(test)]
mod tests_html;
#[cfg(test)]
mod tests_ole2;
#[cfg(test)]
mod tests_pdf;
#[cfg(test)]
mod tests_robust;
#[cfg(test)]
mod tests_rtf;
#[cfg(test)]
mod tests_seeds;
#[cfg(test)]
mod tests_tnef;
#[cfg(test)]
mod tests_upx;
#[cfg(test)]
mod tests_zip_central;

use std::ops::ControlFlow;

pub use out::PIECE_BYTES;
pub use sevenz::DICTIONARY_BYTES_MAX;
pub use zip_central::ZipDone;

/// A format this module extracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// OLE2 compound file (Word, Excel, PowerPoint, MSI): every stream, embedded objects.
    Ole2,
    /// Microsoft Cabinet: stored, MSZIP and LZX folders.
    Cab,
    /// 7-Zip: LZMA/LZMA2 (and the filters the crate knows); AES is reported as encrypted.
    SevenZip,
    /// PDF: every stream through its filters; embedded files.
    Pdf,
    /// RTF: `\objdata` objects and `\bin` runs.
    Rtf,
    /// TNEF (`winmail.dat`): attachments.
    Tnef,
    /// Compiled HTML Help (ITSF): the uncompressed and LZX sections' files.
    Chm,
    /// A UPX-packed PE: the unpacked image.
    Pe,
    /// HTML with `data:` URIs carrying base64 payloads.
    Html,
}

impl Kind {
    /// Every kind, for callers (and the fuzz target) that try them all.
    pub const ALL: [Kind; 9] =
        [Kind::Ole2, Kind::Cab, Kind::SevenZip, Kind::Pdf, Kind::Rtf, Kind::Tnef, Kind::Chm, Kind::Pe, Kind::Html];

    /// A short name for logs and fault names ("OLE2", "CAB", ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ole2 => "OLE2",
            Kind::Cab => "CAB",
            Kind::SevenZip => "7Zip",
            Kind::Pdf => "PDF",
            Kind::Rtf => "RTF",
            Kind::Tnef => "TNEF",
            Kind::Chm => "CHM",
            Kind::Pe => "PE",
            Kind::Html => "HTML",
        }
    }
}

/// Types an object by the magic at its start (`head` is its first bytes, up to 4096). PDF is
/// also recognised with its header a little way in, as readers accept; HTML only where a tag
/// and a `data:` URI with base64 both appear in the head, so ordinary pages pay nothing. A PE is
/// claimed only when it has UPX section names, since only those are unpacked here.
pub fn detect(head: &[u8]) -> Option<Kind> {
    const OLE2: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    if head.starts_with(OLE2) {
        return Some(Kind::Ole2);
    }
    if head.starts_with(b"MSCF\0\0\0\0") {
        return Some(Kind::Cab);
    }
    if head.starts_with(&[b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C]) {
        return Some(Kind::SevenZip);
    }
    if head.starts_with(b"ITSF") {
        return Some(Kind::Chm);
    }
    if head.starts_with(&tnef::SIGNATURE.to_le_bytes()) {
        return Some(Kind::Tnef);
    }
    if head.starts_with(b"{\\rt") {
        return Some(Kind::Rtf);
    }
    if memchr::memmem::find(&head[..head.len().min(1024)], b"%PDF-").is_some() {
        return Some(Kind::Pdf);
    }
    if head.starts_with(b"MZ") && upx::is_upx(head) {
        return Some(Kind::Pe);
    }
    if html::looks_like(head) {
        return Some(Kind::Html);
    }
    None
}

/// The bounds of one extraction. Each is checked while bytes are produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes one member may have (`Heuristics.Limits.Exceeded.MaxFileSize`).
    pub member_bytes_max: u64,
    /// The most members one object may yield (`Heuristics.Limits.Exceeded.MaxFiles`).
    pub members_max: u32,
    /// The most bytes produced in all, as a multiple of the object's own size
    /// (`Heuristics.Limits.Exceeded.MaxCompressionRatio`).
    pub ratio_max: u64,
}

/// Why an extraction stopped short. The names are ClamAV-style, for `policy.over_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The object, or a member of it, is encrypted ("Heuristics.Encrypted.PDF").
    Encrypted(&'static str),
    /// The object is malformed or truncated ("Heuristics.Broken.OLE2").
    Broken(&'static str),
    /// A limit was reached ("Heuristics.Limits.Exceeded.MaxFileSize").
    Limit(&'static str),
}

impl Fault {
    /// The ClamAV-style name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Encrypted(n) | Fault::Broken(n) | Fault::Limit(n) => n,
        }
    }
}

/// The limit names [`Fault::Limit`] carries.
pub const LIMIT_FILE_SIZE: &str = "Heuristics.Limits.Exceeded.MaxFileSize";
pub const LIMIT_FILES: &str = "Heuristics.Limits.Exceeded.MaxFiles";
pub const LIMIT_RATIO: &str = "Heuristics.Limits.Exceeded.MaxCompressionRatio";

/// Where members go. `Break` from any call means "stop now" (a threat was found): extraction
/// ends at once and [`extract`] returns `Ok`.
pub trait Sink {
    fn member_start(&mut self, name: &str) -> ControlFlow<()>;
    fn member_data(&mut self, data: &[u8]) -> ControlFlow<()>;
    fn member_end(&mut self) -> ControlFlow<()>;
}

/// Extracts every member of `data`, read as `kind`, into `sink`, within `limits`.
///
/// A member's data arrives in pieces of at most [`out::PIECE_BYTES`]. Where a fault comes after
/// some members, those members have been emitted; a member cut short by a fault gets no
/// `member_end`.
pub fn extract(kind: Kind, data: &[u8], limits: &Limits, sink: &mut dyn Sink) -> Result<(), Fault> {
    let mut out = out::Out::new(sink, limits, data.len() as u64);
    let r = match kind {
        Kind::Ole2 => ole2::extract(data, &mut out),
        Kind::Cab => cab::extract(data, &mut out),
        Kind::SevenZip => sevenz::extract(data, &mut out),
        Kind::Pdf => pdf::extract(data, &mut out),
        Kind::Rtf => rtf::extract(data, &mut out),
        Kind::Tnef => tnef::extract(data, &mut out),
        Kind::Chm => chm::extract(data, &mut out),
        Kind::Pe => upx::extract(data, &mut out),
        Kind::Html => html::extract(data, &mut out),
    };
    match r {
        Ok(()) | Err(out::Stop::Break) => Ok(()),
        Err(out::Stop::Fault(f)) => Err(f),
    }
}

/// Reads a zip from its central directory into `sink`, within `limits`: `data` is the archive
/// from offset `base` on, `done` (sorted) the entries already read from their local headers,
/// `held_max` the most bytes a legacy decoder may keep (see [`zip_central`]), `lzma_memory_max`
/// the largest LZMA dictionary accepted.
pub fn extract_zip(
    data: &[u8],
    base: u64,
    done: &[ZipDone],
    held_max: u64,
    lzma_memory_max: u64,
    limits: &Limits,
    sink: &mut dyn Sink,
) -> Result<(), Fault> {
    let mut out = out::Out::new(sink, limits, base + data.len() as u64);
    match zip_central::extract(data, base, done, held_max, lzma_memory_max, &mut out) {
        Ok(()) | Err(out::Stop::Break) => Ok(()),
        Err(out::Stop::Fault(f)) => Err(f),
    }
}
