//! PE section hashes (`.mdb`, `.msb`) over a streamed object.
//!
//! A section signature says "a PE section whose raw data has this size and this digest is
//! this threat". The PE headers come first in the file, so the section table is read from the
//! object's first bytes ([`super::pe`]); from then on each section whose size some signature
//! has is hashed as its bytes stream past, and looked up at the end of the object. Bytes that
//! went by before the headers could be read are taken from the kept head, so the answer does
//! not depend on how the object was cut.

use super::filetype::HEAD_BYTES;
use super::hash::{HashSet, HashStream};
use super::pe;

struct Hashing {
    end: u64,
    fed_to: u64,
    hash: HashStream,
}

/// Per-connection state; reused across objects.
#[derive(Default)]
pub struct SectionStream {
    head: Vec<u8>,
    size: u64,
    /// `None` while the headers are not read yet; `Some` once read or given up on.
    sections: Option<Vec<Hashing>>,
    next_try: usize,
}

impl SectionStream {
    pub fn new() -> Self {
        SectionStream::default()
    }

    pub fn reset(&mut self) {
        self.head.clear();
        self.size = 0;
        self.sections = None;
        self.next_try = 512;
    }

    pub fn feed(&mut self, set: &HashSet, chunk: &[u8]) {
        if set.is_empty() || chunk.is_empty() {
            return;
        }
        let pos0 = self.size;
        self.size += chunk.len() as u64;
        if self.sections.is_none() {
            let room = HEAD_BYTES.saturating_sub(self.head.len());
            self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
            if self.head.len() >= 2 && !self.head.starts_with(b"MZ") {
                self.sections = Some(Vec::new());
                return;
            }
            if self.head.len() >= self.next_try || self.head.len() == HEAD_BYTES {
                self.try_headers(set);
            }
        }
        let Some(sections) = self.sections.as_mut() else { return };
        for s in sections.iter_mut() {
            let from = s.fed_to.max(pos0);
            let to = s.end.min(self.size);
            if from < to {
                let a = (from - pos0) as usize;
                let b = (to - pos0) as usize;
                s.hash.feed(&chunk[a..b]);
                s.fed_to = to;
            }
        }
    }

    fn try_headers(&mut self, set: &HashSet) {
        self.next_try = self.next_try.saturating_mul(2);
        let info = match pe::parse(&self.head) {
            Some(info) => info,
            None if self.head.len() < HEAD_BYTES => return,
            None => {
                self.sections = Some(Vec::new());
                return;
            }
        };
        let mut out = Vec::with_capacity(info.sections.len());
        for s in &info.sections {
            let needed = set.needed(Some(s.raw_size));
            if s.raw_size == 0 || !needed.any() {
                continue;
            }
            let mut hash = HashStream::new();
            hash.begin(needed);
            let end = s.raw_offset.saturating_add(s.raw_size);
            // What already went by is in the head.
            let head_end = (self.head.len() as u64).min(end);
            let mut fed_to = s.raw_offset;
            if s.raw_offset < head_end {
                hash.feed(&self.head[s.raw_offset as usize..head_end as usize]);
                fed_to = head_end;
            }
            out.push(Hashing { end, fed_to, hash });
        }
        self.sections = Some(out);
    }

    /// Ends the object: the name of the first section signature that matches.
    pub fn finish<'a>(&mut self, set: &'a HashSet) -> Option<&'a str> {
        if set.is_empty() {
            return None;
        }
        if self.sections.is_none() {
            self.next_try = 0;
            self.try_headers(set);
            // Headers read only now: every section byte is either in the head or past it,
            // and those past the head were not kept, so only sections inside the head count.
            if let Some(sections) = self.sections.as_mut() {
                sections.retain(|s| s.end <= s.fed_to);
            }
        }
        let mut found = None;
        for s in self.sections.iter_mut().flatten() {
            let complete = s.fed_to == s.end && s.end <= self.size;
            let name = s.hash.finish(set);
            if complete && found.is_none() {
                found = name;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;
    use crate::signatures::hashsig::{parse_section_db, HashDbKind};
    use md5::{Digest, Md5};
    use std::path::Path;

    #[test]
    fn a_section_hash_matches_however_the_object_is_cut() {
        let code = b"section code that is malicious";
        let pe_bytes = pe::build_test_pe(&[b"clean data", code], 0);
        let md5: String = Md5::digest(code).iter().map(|b| format!("{b:02x}")).collect();
        let (sigs, problems) = parse_section_db(
            &format!("{}:{md5}:Win.Section.Test\n*:{md5}:Any.Size\n", code.len()),
            Path::new("t.mdb"),
            HashDbKind::Hdb,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let set = HashSet::new(sigs);
        let run = |data: &[u8], cuts: &[usize]| {
            let mut s = SectionStream::new();
            s.reset();
            let mut prev = 0;
            for &c in cuts.iter().chain(std::iter::once(&data.len())) {
                s.feed(&set, &data[prev..c]);
                prev = c;
            }
            s.finish(&set).map(str::to_string)
        };
        assert_eq!(run(&pe_bytes, &[]).as_deref(), Some("Win.Section.Test"));
        for_each_split(pe_bytes.len(), |cuts| {
            assert_eq!(run(&pe_bytes, cuts).as_deref(), Some("Win.Section.Test"), "{cuts:?}")
        });
        let mut changed = pe_bytes.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert_eq!(run(&changed, &[]), None);
        assert_eq!(run(code, &[]), None, "not a PE");
        assert_eq!(run(&pe_bytes[..pe_bytes.len() - 1], &[]), None, "a truncated section");
    }
}
