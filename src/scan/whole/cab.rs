//! Microsoft Cabinet files: the header, folder and file tables are read here (written from the
//! published CAB format description); folders are decoded block by block: stored, MSZIP (each
//! block a deflate stream whose window carries over from the block before) with flate2, and LZX
//! with the `lzxd` crate. Quantum has no well-kept Rust decoder: its files are reported as
//! `Heuristics.Broken.CAB.Quantum` rather than passed unscanned.
//!
//! A folder is one compressed stream holding several files at offsets; files are emitted in
//! offset order while the folder decodes. Files that overlap (a crafted cabinet can point many
//! files at the same bytes) are emitted in further passes over the folder; every byte decoded
//! counts against the ratio limit ([`Out::work`]), so that stays bounded.

use std::panic::{catch_unwind, AssertUnwindSafe};

use flate2::{Decompress, FlushDecompress, Status};

use super::demux::{passes, Demux, Span};
use super::out::{broken, le16, le32, Out, R};

const BROKEN: &str = "Heuristics.Broken.CAB";
const QUANTUM: &str = "Heuristics.Broken.CAB.Quantum";
/// The most bytes one CFDATA block decodes to.
const BLOCK_BYTES: usize = 32 * 1024;
const WINDOW_BYTES: usize = 32 * 1024;

struct Folder {
    data_at: usize,
    blocks: u16,
    ctype: u16,
}

struct File {
    size: u32,
    offset: u32,
    folder: u16,
    name: String,
}

pub fn extract(data: &[u8], out: &mut Out) -> R {
    match catch_unwind(AssertUnwindSafe(|| walk(data, out))) {
        Ok(r) => r,
        Err(_) => Err(broken(BROKEN)),
    }
}

fn zstr(data: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = data.get(at..)?;
    let n = memchr::memchr(0, &rest[..rest.len().min(1024)])?;
    Some((&rest[..n], at + n + 1))
}

struct Table {
    folders: Vec<Folder>,
    files: Vec<File>,
    data_reserve: usize,
}

fn table(data: &[u8]) -> Option<Table> {
    if !data.starts_with(b"MSCF") {
        return None;
    }
    let files_at = le32(data, 16)? as usize;
    let n_folders = le16(data, 26)?;
    let n_files = le16(data, 28)?;
    let flags = le16(data, 30)?;
    let mut at = 36usize;
    let (mut folder_reserve, mut data_reserve) = (0usize, 0usize);
    if flags & 0x0004 != 0 {
        let header_reserve = le16(data, 36)? as usize;
        folder_reserve = *data.get(38)? as usize;
        data_reserve = *data.get(39)? as usize;
        at = 40 + header_reserve;
    }
    // Names of the previous and next cabinets of a set.
    for bit in [0x0001u16, 0x0002] {
        if flags & bit != 0 {
            at = zstr(data, at)?.1;
            at = zstr(data, at)?.1;
        }
    }
    let mut folders = Vec::with_capacity(n_folders as usize);
    for _ in 0..n_folders {
        folders.push(Folder {
            data_at: le32(data, at)? as usize,
            blocks: le16(data, at + 4)?,
            ctype: le16(data, at + 6)?,
        });
        at += 8 + folder_reserve;
    }
    let mut files = Vec::with_capacity(n_files as usize);
    let mut at = files_at;
    for _ in 0..n_files {
        let size = le32(data, at)?;
        let offset = le32(data, at + 4)?;
        let folder = le16(data, at + 8)?;
        let attribs = le16(data, at + 14)?;
        let (raw, next) = zstr(data, at + 16)?;
        at = next;
        // Attribute 0x80: the name is UTF-8; otherwise it is in the system code page, read as
        // Latin-1 here.
        let name: String = if attribs & 0x80 != 0 {
            String::from_utf8_lossy(raw).into_owned()
        } else {
            raw.iter().map(|&b| b as char).collect()
        };
        files.push(File { size, offset, folder, name: name.replace('\\', "/") });
    }
    Some(Table { folders, files, data_reserve })
}

fn walk(data: &[u8], out: &mut Out) -> R {
    let t = table(data).ok_or_else(|| broken(BROKEN))?;
    let mut fault = None;
    for (fi, folder) in t.folders.iter().enumerate() {
        // Files continued from or into another cabinet of a set (0xFFFD..0xFFFF) are in the
        // first or last folder, and are incomplete here.
        let pending: Vec<&File> = t
            .files
            .iter()
            .filter(|f| match f.folder {
                0xFFFD | 0xFFFF => fi == 0,
                0xFFFE => fi + 1 == t.folders.len(),
                n => n as usize == fi,
            })
            .collect();
        if pending.iter().any(|f| f.folder >= 0xFFFD) {
            fault = Some(BROKEN);
        }
        let spans: Vec<Span> = pending
            .iter()
            .map(|f| Span { name: f.name.clone(), offset: f.offset as u64, size: f.size as u64 })
            .collect();
        for pass in passes(spans) {
            match decode_folder(data, folder, t.data_reserve, &pass, out) {
                Ok(()) => {}
                Err(super::out::Stop::Fault(super::Fault::Broken(name))) => {
                    fault = Some(name);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    if t.files.iter().any(|f| f.folder < 0xFFFD && f.folder as usize >= t.folders.len()) {
        fault = Some(BROKEN);
    }
    match fault {
        Some(name) => Err(broken(name)),
        None => Ok(()),
    }
}

enum Decoder {
    Stored,
    MsZip { d: Decompress, window: Vec<u8>, scratch: Vec<u8> },
    Lzx(Box<lzxd::Lzxd>),
}

impl Decoder {
    fn new(ctype: u16) -> Result<Decoder, &'static str> {
        Ok(match ctype & 0x000F {
            0 => Decoder::Stored,
            1 => Decoder::MsZip { d: Decompress::new(false), window: Vec::new(), scratch: vec![0; WINDOW_BYTES] },
            3 => {
                use lzxd::WindowSize as W;
                let w = match (ctype >> 8) & 0x1F {
                    15 => W::KB32,
                    16 => W::KB64,
                    17 => W::KB128,
                    18 => W::KB256,
                    19 => W::KB512,
                    20 => W::MB1,
                    21 => W::MB2,
                    _ => return Err(BROKEN),
                };
                Decoder::Lzx(Box::new(lzxd::Lzxd::new(w)))
            }
            2 => return Err(QUANTUM),
            _ => return Err(BROKEN),
        })
    }

    /// Decodes one CFDATA block into `buf` (cleared first), which must come out `size` long.
    fn block(&mut self, input: &[u8], size: usize, buf: &mut Vec<u8>) -> Result<(), ()> {
        buf.clear();
        match self {
            Decoder::Stored => {
                if input.len() != size {
                    return Err(());
                }
                buf.extend_from_slice(input);
            }
            Decoder::Lzx(l) => buf.extend_from_slice(l.decompress_next(input, size).map_err(|_| ())?),
            Decoder::MsZip { d, window, scratch } => {
                let body = input.strip_prefix(b"CK").ok_or(())?;
                d.reset(false);
                if !window.is_empty() {
                    // The window of the block before is primed as a stored block.
                    let mut prime = vec![0u8];
                    let n = window.len() as u16;
                    prime.extend_from_slice(&n.to_le_bytes());
                    prime.extend_from_slice(&(!n).to_le_bytes());
                    prime.extend_from_slice(window);
                    d.decompress(&prime, scratch, FlushDecompress::Sync).map_err(|_| ())?;
                    if d.total_out() != window.len() as u64 {
                        return Err(());
                    }
                }
                let before = d.total_out();
                buf.resize(size, 0);
                let status = d.decompress(body, buf, FlushDecompress::Finish).map_err(|_| ())?;
                if d.total_out() - before != size as u64 || status != Status::StreamEnd {
                    return Err(());
                }
                let keep = (window.len() + size).saturating_sub(WINDOW_BYTES).min(window.len());
                window.drain(..keep);
                let from = size.saturating_sub(WINDOW_BYTES);
                window.extend_from_slice(&buf[from..]);
            }
        }
        Ok(())
    }
}

/// Decodes `folder` far enough for the files of `pass` and emits them as their bytes come out.
fn decode_folder(data: &[u8], folder: &Folder, reserve: usize, pass: &[Span], out: &mut Out) -> R {
    let mut dec = Decoder::new(folder.ctype).map_err(broken)?;
    let mut buf = Vec::with_capacity(BLOCK_BYTES);
    let mut at = folder.data_at;
    let mut demux = Demux::new(pass);
    for _ in 0..folder.blocks {
        if demux.done() {
            break;
        }
        let (Some(packed), Some(size)) = (le16(data, at + 4), le16(data, at + 6)) else { break };
        let start = at + 8 + reserve;
        let Some(input) = data.get(start..start + packed as usize) else { break };
        at = start + packed as usize;
        if size as usize > BLOCK_BYTES || dec.block(input, size as usize, &mut buf).is_err() {
            break;
        }
        out.work(buf.len() as u64)?;
        demux.feed(&buf, out)?;
    }
    demux.finish(BROKEN, out)
}
