//! zip read from its central directory, by the `zip` crate: the reader the streamed one
//! (`scan/unpack/formats/zip.rs`) hands over to when it cannot finish an archive from its local
//! headers: a method it does not decode (implode, shrink, reduce), a local header whose sizes
//! disagree with the data, or sizes that only the central directory knows.
//!
//! The level holds the archive from the start of the record the stream failed in, so the bytes
//! before `base` are not here: [`Held`] reads them as zeros, and an entry that lies there
//! (which the stream did not read in full) is broken rather than skipped. Entries the
//! stream read in full ([`ZipDone`]: same local-header offset, CRC-32 and compressed size) are
//! not scanned again. Encrypted entries are `Heuristics.Encrypted.Zip` and methods this build
//! leaves out `Heuristics.Unsupported.Zip.Method`, as in the streamed reader; both leave the
//! other entries to be read, and decide the object at the end if nothing is found.
//!
//! LZMA (14) and zstd (93) entries, which this build of the crate does not decode, are read
//! raw and decoded by the same decoders the streamed reader uses ([`Codec`]), so both readers
//! accept the same methods. PPMd (98), which the streamed reader hands over, is read raw too
//! and decoded by `ppmd-rust` once its header's model size is within `lzma_memory_max` (the
//! bound on one decoder's model or dictionary); the rest are unsupported.
//!
//! The legacy decoders (implode, shrink, reduce) keep what they have decoded of an entry, so an
//! entry with such a method may produce at most `held_max` bytes (the caller's buffering room),
//! past which it is `Heuristics.Limits.Exceeded.MaxBufferSize`.

use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};

use zip::read::{ArchiveOffset, Config};
use zip::{CompressionMethod, ZipArchive};

use super::out::{broken, Out, Stop, PIECE_BYTES, R};
use super::Fault;
use crate::scan::unpack::formats::codec::Codec;

const BROKEN: &str = "Heuristics.Broken.Zip";
const UNSUPPORTED: &str = "Heuristics.Unsupported.Zip.Method";
const ENCRYPTED: &str = "Heuristics.Encrypted.Zip";
const LIMIT_BUFFER: &str = "Heuristics.Limits.Exceeded.MaxBufferSize";

/// An entry the streamed reader read in full and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ZipDone {
    /// Offset of its local header in the archive.
    pub offset: u64,
    pub crc: u32,
    /// Its compressed size (what the central directory says for it).
    pub csize: u64,
}

/// The archive's bytes from `base` on, read as the whole archive: bytes before `base` read as
/// zeros. The crate looks for the end record in the last 64 KiB, which may reach before the
/// base; a local header there reads as no header at all, so its entry is broken.
struct Held<'a> {
    base: u64,
    bytes: &'a [u8],
    pos: u64,
}

impl Read for Held<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let end = self.base + self.bytes.len() as u64;
        let n = usize::try_from(end.saturating_sub(self.pos)).unwrap_or(usize::MAX).min(buf.len());
        let zeros = usize::try_from(self.base.saturating_sub(self.pos)).unwrap_or(usize::MAX).min(n);
        buf[..zeros].fill(0);
        if n > zeros {
            // Past the zeros the read starts at or after `base` (and before the end, since
            // n > 0): a read wholly before the base, or at or past the end, copies nothing.
            let from = usize::try_from(self.pos + zeros as u64 - self.base).unwrap_or(usize::MAX);
            buf[zeros..n].copy_from_slice(&self.bytes[from..from + (n - zeros)]);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Held<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let end = self.base + self.bytes.len() as u64;
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// How an entry's data is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    /// By the crate; `true` when its decoder keeps what it decoded (the legacy ones).
    Crate(bool),
    /// Raw, through our LZMA1 decoder (zip's 9-byte header first).
    Lzma,
    /// Raw, through our zstd decoder.
    Zstd,
    /// Raw, through `ppmd-rust` (its 2-byte header first).
    Ppmd,
}

/// How this build reads `method`; `None`: it does not.
fn method(m: CompressionMethod) -> Option<Method> {
    match m {
        CompressionMethod::Stored | CompressionMethod::Deflated | CompressionMethod::Deflate64 => {
            Some(Method::Crate(false))
        }
        CompressionMethod::Bzip2 => Some(Method::Crate(false)),
        CompressionMethod::Shrink | CompressionMethod::Reduce(_) | CompressionMethod::Implode => {
            Some(Method::Crate(true))
        }
        m if m == CompressionMethod::LZMA => Some(Method::Lzma),
        m if m == CompressionMethod::ZSTD => Some(Method::Zstd),
        m if m == CompressionMethod::PPMD => Some(Method::Ppmd),
        _ => None,
    }
}

/// Reads every entry of the archive held in `bytes` (its bytes from `base` on) that is not in
/// `done` (sorted by offset) into `out`.
/// `lzma_memory_max` bounds an LZMA entry's dictionary, as in the streamed reader.
pub fn extract(bytes: &[u8], base: u64, done: &[ZipDone], held_max: u64, lzma_memory_max: u64, out: &mut Out) -> R {
    // The crate is not ours: a panic in it is a broken archive, not a dead shard.
    match catch_unwind(AssertUnwindSafe(|| read(bytes, base, done, held_max, lzma_memory_max, out))) {
        Ok(r) => r,
        Err(_) => Err(broken(BROKEN)),
    }
}

fn read(bytes: &[u8], base: u64, done: &[ZipDone], held_max: u64, lzma_memory_max: u64, out: &mut Out) -> R {
    let held = Held { base, bytes, pos: base };
    let config = Config { archive_offset: ArchiveOffset::Known(0) };
    let mut archive = ZipArchive::with_config(config, held).map_err(|_| broken(BROKEN))?;
    // Entries of the same name are one entry to the crate: the others would go unread.
    let mut fault = archive.has_duplicate_names().then_some(Fault::Broken(BROKEN));
    let mut buf = vec![0u8; PIECE_BYTES];
    for i in 0..archive.len() {
        let entry = archive.by_index_data(i).map_err(|_| broken(BROKEN))?;
        if entry.is_dir() && entry.compressed_size() == 0 {
            continue;
        }
        let this = ZipDone { offset: entry.header_start(), crc: entry.crc32(), csize: entry.compressed_size() };
        if done.binary_search(&this).is_ok() {
            continue;
        }
        if entry.encrypted() {
            fault.get_or_insert(Fault::Encrypted(ENCRYPTED));
            continue;
        }
        let Some(how) = method(entry.compression()) else {
            fault.get_or_insert(Fault::Broken(UNSUPPORTED));
            continue;
        };
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let want = (entry.crc32(), entry.size());
        drop(entry);
        let keeps = match how {
            Method::Crate(keeps) => keeps,
            Method::Lzma | Method::Zstd | Method::Ppmd => {
                let mut raw = archive.by_index_raw(i).map_err(|_| broken(BROKEN))?;
                let decoded = if how == Method::Ppmd {
                    decode_ppmd(&mut raw, want, lzma_memory_max, &name, &mut buf, out)
                } else {
                    decode_raw(&mut raw, how, want, lzma_memory_max, &name, &mut buf, out)
                };
                match decoded {
                    // A method the decoder refuses (LZMA properties, a dictionary over the
                    // bound) leaves the other entries to be read, as in the streamed reader.
                    Err(Stop::Fault(Fault::Broken(UNSUPPORTED))) => {
                        fault.get_or_insert(Fault::Broken(UNSUPPORTED));
                        continue;
                    }
                    r => r?,
                }
                continue;
            }
        };
        let mut file = archive.by_index(i).map_err(|_| broken(BROKEN))?;
        out.start(&name)?;
        let mut made = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|_| broken(BROKEN))?;
            if n == 0 {
                break;
            }
            made += n as u64;
            if keeps && made > held_max {
                return Err(Stop::Fault(Fault::Limit(LIMIT_BUFFER)));
            }
            out.data(&buf[..n])?;
        }
        out.end()?;
    }
    fault.map_or(Ok(()), |f| Err(Stop::Fault(f)))
}

/// Decodes one LZMA or zstd entry's raw data (`raw`, its compressed bytes) into `out` as
/// member `name`. Corrupt or truncated data, or data after the stream's end, is broken;
/// properties the LZMA decoder refuses are [`UNSUPPORTED`], before the member starts.
/// `want` is the CRC-32 and size the central directory gives for the decoded data.
fn decode_raw(
    raw: &mut impl Read,
    how: Method,
    want: (u32, u64),
    lzma_memory_max: u64,
    name: &str,
    buf: &mut [u8],
    out: &mut Out,
) -> R {
    let mut codec = if how == Method::Lzma {
        // Version (2 bytes), the properties' length (2, always 5), the LZMA1 properties.
        let mut head = [0u8; 9];
        raw.read_exact(&mut head).map_err(|_| broken(BROKEN))?;
        if u16::from_le_bytes([head[2], head[3]]) != 5 {
            return Err(broken(BROKEN));
        }
        Codec::lzma1(&head[4..9], lzma_memory_max).ok_or(Stop::Fault(Fault::Broken(UNSUPPORTED)))?
    } else {
        Codec::zstd()
    };
    out.start(name)?;
    let mut input = vec![0u8; PIECE_BYTES];
    let mut ended = false;
    let (mut crc, mut made) = (crc32fast::Hasher::new(), 0u64);
    loop {
        let n = raw.read(&mut input).map_err(|_| broken(BROKEN))?;
        if n == 0 {
            break;
        }
        let mut rest = &input[..n];
        while !rest.is_empty() || !ended {
            if ended {
                // Bytes after the end of the stream belong to no member.
                return Err(broken(BROKEN));
            }
            let step = codec.decode(rest, buf);
            rest = &rest[step.consumed..];
            if step.produced > 0 {
                crc.update(&buf[..step.produced]);
                made += step.produced as u64;
                out.data(&buf[..step.produced])?;
            }
            if step.failed {
                return Err(broken(BROKEN));
            }
            ended = step.ended;
            if step.consumed == 0 && step.produced == 0 {
                // Input the decoder will not take is data we could not read.
                if !rest.is_empty() {
                    return Err(broken(BROKEN));
                }
                break;
            }
        }
    }
    // Raw LZMA without an end marker ends with its compressed size; zstd must end itself.
    if !ended && how != Method::Lzma {
        return Err(broken(BROKEN));
    }
    if crc.finalize() != want.0 || made != want.1 {
        return Err(broken(BROKEN));
    }
    out.end()
}

/// Decodes one PPMd (variant I, revision 1) entry's raw data into `out` as member `name`: a
/// 16-bit header (order - 1 in bits 0-3, the model's size in MiB - 1 in bits 4-11, the restore
/// method in bits 12-15), then the range-coded data, which has no end of its own: exactly the
/// size the central directory gives is decoded, and its CRC-32 checked. A model over
/// `memory_max`, an order or restore method PPMd does not define, is [`UNSUPPORTED`] before
/// the member starts (and before the model is allocated).
fn decode_ppmd(raw: &mut impl Read, want: (u32, u64), memory_max: u64, name: &str, buf: &mut [u8], out: &mut Out) -> R {
    let mut head = [0u8; 2];
    raw.read_exact(&mut head).map_err(|_| broken(BROKEN))?;
    let v = u16::from_le_bytes(head);
    let order = u32::from(v & 0xF) + 1;
    let memory = (u32::from((v >> 4) & 0xFF) + 1) << 20;
    let restore = v >> 12;
    let unsupported = Stop::Fault(Fault::Broken(UNSUPPORTED));
    if order < ppmd_rust::PPMD8_MIN_ORDER || u64::from(memory) > memory_max || restore > 1 {
        return Err(unsupported);
    }
    let mut decoder = ppmd_rust::Ppmd8Decoder::new(raw, order, memory, ppmd_rust::RestoreMethod::from(restore))
        .map_err(|_| broken(BROKEN))?;
    out.start(name)?;
    let (mut crc, mut left) = (crc32fast::Hasher::new(), want.1);
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = decoder.read(&mut buf[..n]).map_err(|_| broken(BROKEN))?;
        if got == 0 {
            // The data ended (or held an end mark) before the size was reached.
            return Err(broken(BROKEN));
        }
        crc.update(&buf[..got]);
        left -= got as u64;
        out.data(&buf[..got])?;
    }
    if crc.finalize() != want.0 {
        return Err(broken(BROKEN));
    }
    out.end()
}

#[cfg(test)]
mod held_tests {
    use super::Held;
    use std::io::{Read, Seek, SeekFrom};

    /// Reads wholly inside the zeros before the base, across the base, and at or past the end
    /// (the unpack fuzz target found a read before the base that indexed far past the bytes).
    #[test]
    fn reads_before_the_base_across_it_and_past_the_end() {
        let mut h = Held { base: 100, bytes: b"abcdef", pos: 0 };
        let mut buf = [9u8; 8];
        h.seek(SeekFrom::Start(10)).unwrap();
        assert_eq!(h.read(&mut buf[..4]).unwrap(), 4);
        assert_eq!(buf[..4], [0; 4]);
        h.seek(SeekFrom::Start(98)).unwrap();
        assert_eq!(h.read(&mut buf).unwrap(), 8);
        assert_eq!(&buf, b"\0\0abcdef");
        assert_eq!(h.read(&mut buf).unwrap(), 0);
        h.seek(SeekFrom::Start(500)).unwrap();
        assert_eq!(h.read(&mut buf).unwrap(), 0);
        h.seek(SeekFrom::End(-2)).unwrap();
        assert_eq!(h.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"ef");
    }
}
