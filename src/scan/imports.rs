//! PE import-table hashes (`.imp`): `hash:size:Name`, where the hash is taken over ClamAV's
//! import string (`kernel32.exitprocess,user32.messageboxa,...`, see
//! [`super::pe::PeInfo::import_string`]) and the size is that string's length.
//!
//! The import table and the names it points to may lie anywhere in the file, so a PE object
//! is kept (only while a `.imp` database is loaded, and at most `yara_whole_bytes_max` bytes)
//! and read at the end. When the table lies beyond what was kept, the object goes through the
//! over-limit policy as [`THREAT_IMPORTS`] rather than passing unchecked.
//!
//! What ClamAV does that icapd does not: it names some ordinal imports of `oleaut32`,
//! `ws2_32` and `wsock32` by their function names; here every ordinal is `ordN`, so a
//! signature over such imports misses (it cannot misfire).

use super::hash::{HashSet, HashStream};
use super::pe::{self, ImportError};

/// The limit reported when the import table lies past the kept bytes.
pub const THREAT_IMPORTS: &str = "Heuristics.Limits.Exceeded.ImportTable";

/// Per-connection state; reused across objects.
#[derive(Default)]
pub struct ImportStream {
    kept: Vec<u8>,
    size: u64,
    active: bool,
    max: usize,
    hash: HashStream,
}

impl ImportStream {
    /// A stream keeping at most `max` bytes of each PE object.
    pub fn new(max: usize) -> Self {
        ImportStream { max, ..ImportStream::default() }
    }

    pub fn reset(&mut self, set: &HashSet) {
        self.kept.clear();
        if self.kept.capacity() > 256 * 1024 {
            self.kept = Vec::new();
        }
        self.size = 0;
        self.active = !set.is_empty();
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.active {
            return;
        }
        self.size += chunk.len() as u64;
        let room = self.max.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
        if self.kept.len() >= 2 && !self.kept.starts_with(b"MZ") {
            self.active = false;
            self.kept.clear();
        }
    }

    /// Ends the object: the name of a matching import hash, or the limit that kept the table
    /// from being read.
    pub fn finish<'a>(&mut self, set: &'a HashSet) -> Result<Option<&'a str>, &'static str> {
        if !std::mem::take(&mut self.active) {
            return Ok(None);
        }
        let Some(info) = pe::parse(&self.kept) else { return Ok(None) };
        let complete = self.size == self.kept.len() as u64;
        let text = match info.import_string(&self.kept, complete) {
            Ok(text) if !text.is_empty() => text,
            Ok(_) | Err(ImportError::Invalid) => return Ok(None),
            Err(ImportError::Beyond) => return Err(THREAT_IMPORTS),
        };
        let needed = set.needed(Some(text.len() as u64));
        if !needed.any() {
            return Ok(None);
        }
        self.hash.begin(needed);
        self.hash.feed(text.as_bytes());
        Ok(self.hash.finish(set))
    }
}
