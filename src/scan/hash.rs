//! Hash-signature matching: the compiled [`HashSet`] and the per-connection [`HashStream`].
//!
//! A hash signature says "an object of exactly this size with exactly this digest is this
//! threat". Checking one needs the digest of the whole object, so the work splits in two:
//!
//! * [`HashSet`] is built once from the loaded signatures, never changes, and is shared by
//!   every shard (it is `Send + Sync` and has no interior mutability). For each algorithm it
//!   keeps the signatures sorted by digest, which makes a lookup a binary search with no
//!   hashing of its own and keeps memory at one flat vector per algorithm, however large the
//!   database.
//! * [`HashStream`] lives in each connection and is reused for every object it scans. Bodies
//!   arrive in chunks, so the digests are computed incrementally as the chunks pass. The
//!   digest states sit inline in the struct, so feeding a chunk never allocates.
//!
//! Hashing costs CPU time for every byte of every body, while most signature sets cover only
//! some algorithms and a few sizes. [`HashSet::needed`] therefore answers, before the body
//! arrives, which digests could possibly produce a match for an object of the announced size;
//! the server computes only those, and none at all when no signature has that size.
//!
//! The size given to [`HashSet::needed`] must be one the body is known to have (for example a
//! length the protocol layer enforces). A size hint taken on trust from a sender could be
//! used to skip hashing on a body that really has a signature's size; when the size is not
//! certain, pass `None`.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::signatures::hashsig::{HashAlgo, HashSignature};

/// Which digests are worth computing for an object. A small `Copy` value passed from
/// [`HashSet::needed`] to [`HashStream::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needed {
    pub md5: bool,
    pub sha1: bool,
    pub sha256: bool,
}

impl Needed {
    /// No digest at all: hashing can be skipped.
    pub const NONE: Needed = Needed { md5: false, sha1: false, sha256: false };
    /// Every digest.
    pub const ALL: Needed = Needed { md5: true, sha1: true, sha256: true };

    /// Whether any digest is needed.
    pub fn any(self) -> bool {
        self.md5 || self.sha1 || self.sha256
    }

    /// Whether the digest for `algo` is needed.
    pub fn contains(self, algo: HashAlgo) -> bool {
        match algo {
            HashAlgo::Md5 => self.md5,
            HashAlgo::Sha1 => self.sha1,
            HashAlgo::Sha256 => self.sha256,
        }
    }
}

/// One stored signature of an algorithm whose digests are `N` bytes long.
#[derive(Debug)]
struct Entry<const N: usize> {
    digest: [u8; N],
    /// `None` matches any size.
    size: Option<u64>,
    name: Box<str>,
}

/// The signatures of one algorithm.
#[derive(Debug)]
struct Table<const N: usize> {
    /// Sorted by digest, then size (`None` first); at most one entry per (digest, size).
    entries: Vec<Entry<N>>,
    /// The distinct exact sizes in `entries`, sorted, so [`Table::could_match`] is a binary
    /// search instead of a scan.
    sizes: Vec<u64>,
    /// Whether some entry matches any size.
    any_size: bool,
}

impl<const N: usize> Table<N> {
    fn build(mut entries: Vec<Entry<N>>) -> Table<N> {
        // A stable sort keeps load order among equal keys, so de-duplication keeps the first
        // signature loaded for a (digest, size), which makes the reported name predictable.
        entries.sort_by_key(|e| (e.digest, e.size));
        entries.dedup_by(|later, first| later.digest == first.digest && later.size == first.size);
        entries.shrink_to_fit();
        let mut sizes: Vec<u64> = entries.iter().filter_map(|e| e.size).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let any_size = entries.iter().any(|e| e.size.is_none());
        Table { entries, sizes, any_size }
    }

    /// The largest object any entry can match: `None` when an entry matches any size.
    fn size_max(&self) -> Option<u64> {
        if self.any_size {
            None
        } else {
            Some(self.sizes.last().copied().unwrap_or(0))
        }
    }

    fn could_match(&self, size: Option<u64>) -> bool {
        match size {
            _ if self.entries.is_empty() => false,
            None => true,
            Some(size) => self.any_size || self.sizes.binary_search(&size).is_ok(),
        }
    }

    /// The name of the signature for `digest` and `size`, preferring one with that exact size
    /// over one that matches any size.
    fn lookup(&self, digest: &[u8], size: u64) -> Option<&str> {
        let digest: &[u8; N] = digest.try_into().ok()?;
        let start = self.entries.partition_point(|e| e.digest < *digest);
        let mut any_size = None;
        for entry in self.entries[start..].iter().take_while(|e| e.digest == *digest) {
            match entry.size {
                Some(s) if s == size => return Some(&entry.name),
                None => any_size = Some(&*entry.name),
                Some(_) => {}
            }
        }
        any_size
    }
}

/// The compiled hash signatures. Immutable once built, `Send + Sync`, and shared by all
/// shards.
#[derive(Debug)]
pub struct HashSet {
    md5: Table<16>,
    sha1: Table<20>,
    sha256: Table<32>,
}

impl HashSet {
    /// Compiles `sigs`.
    ///
    /// Signatures with the same algorithm, digest and size are stored once, under the name of
    /// the first one. A signature whose digest length does not fit its algorithm cannot come
    /// from the parser and could never match; it is dropped rather than stored.
    pub fn new(sigs: Vec<HashSignature>) -> HashSet {
        let mut md5 = Vec::new();
        let mut sha1 = Vec::new();
        let mut sha256 = Vec::new();
        for sig in sigs {
            let name = sig.name.into_boxed_str();
            let size = sig.size;
            match sig.algo {
                HashAlgo::Md5 => push_entry(&mut md5, &sig.digest, size, name),
                HashAlgo::Sha1 => push_entry(&mut sha1, &sig.digest, size, name),
                HashAlgo::Sha256 => push_entry(&mut sha256, &sig.digest, size, name),
            }
        }
        HashSet { md5: Table::build(md5), sha1: Table::build(sha1), sha256: Table::build(sha256) }
    }

    /// Whether there are no signatures at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of distinct signatures stored (after de-duplication).
    pub fn len(&self) -> usize {
        self.md5.entries.len() + self.sha1.entries.len() + self.sha256.entries.len()
    }

    /// Which digests are worth computing for an object of `size_hint` bytes (`None` when the
    /// size is not known in advance): an algorithm is needed only if one of its signatures
    /// has that size or matches any size. All false means hashing can be skipped entirely.
    ///
    /// Pass a size only when the body is certain to have it; see the module documentation.
    pub fn needed(&self, size_hint: Option<u64>) -> Needed {
        Needed {
            md5: self.md5.could_match(size_hint),
            sha1: self.sha1.could_match(size_hint),
            sha256: self.sha256.could_match(size_hint),
        }
    }

    /// The largest object size any signature can match, or `None` when some signature matches
    /// any size. Past this many bytes hashing can stop: no digest can match any more. This is
    /// how the engine skips hashing big objects without trusting a Content-Length header.
    pub fn size_max(&self) -> Option<u64> {
        [self.md5.size_max(), self.sha1.size_max(), self.sha256.size_max()]
            .into_iter()
            .try_fold(0u64, |acc, m| m.map(|m| acc.max(m)))
    }

    /// The threat name of the signature with this algorithm, digest and object size, if any.
    /// A digest of the wrong length for `algo` matches nothing.
    pub fn lookup(&self, algo: HashAlgo, digest: &[u8], size: u64) -> Option<&str> {
        match algo {
            HashAlgo::Md5 => self.md5.lookup(digest, size),
            HashAlgo::Sha1 => self.sha1.lookup(digest, size),
            HashAlgo::Sha256 => self.sha256.lookup(digest, size),
        }
    }
}

fn push_entry<const N: usize>(entries: &mut Vec<Entry<N>>, digest: &[u8], size: Option<u64>, name: Box<str>) {
    if let Ok(digest) = <[u8; N]>::try_from(digest) {
        entries.push(Entry { digest, size, name });
    }
}

/// The streaming digests of one connection, reused for every object it scans.
///
/// Call [`begin`](HashStream::begin) before each object, [`feed`](HashStream::feed) with its
/// bytes in order, and [`finish`](HashStream::finish) at the end. Only the digests named at
/// `begin` are computed. The digest states are stored inline and reset in place, so neither
/// starting an object nor feeding a chunk allocates.
#[derive(Clone, Default)]
pub struct HashStream {
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    needed: Needed,
    size: u64,
}

impl HashStream {
    pub fn new() -> Self {
        HashStream::default()
    }

    /// Starts a new object, discarding anything fed since the last `finish` (an object whose
    /// scan was abandoned half-way leaves no trace in the next one).
    pub fn begin(&mut self, needed: Needed) {
        Digest::reset(&mut self.md5);
        Digest::reset(&mut self.sha1);
        Digest::reset(&mut self.sha256);
        self.needed = needed;
        self.size = 0;
    }

    /// Adds the next bytes of the object: updates the needed digests and counts the size.
    pub fn feed(&mut self, data: &[u8]) {
        if self.needed.md5 {
            self.md5.update(data);
        }
        if self.needed.sha1 {
            self.sha1.update(data);
        }
        if self.needed.sha256 {
            self.sha256.update(data);
        }
        self.size = self.size.saturating_add(data.len() as u64);
    }

    /// The number of bytes fed since `begin`.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digests being computed for the current object.
    pub fn needed(&self) -> Needed {
        self.needed
    }

    /// Ends the object and returns the threat name if one of the computed digests, with the
    /// object's size, matches a signature in `set` (MD5 is checked first, then SHA-1, then
    /// SHA-256). The stream is left idle: until the next `begin`, `feed` computes nothing.
    pub fn finish<'a>(&mut self, set: &'a HashSet) -> Option<&'a str> {
        let needed = std::mem::replace(&mut self.needed, Needed::NONE);
        let size = std::mem::take(&mut self.size);
        let mut found = None;
        // Every computed digest is finalised, even after a match, so that each state is reset
        // for the next object.
        if needed.md5 {
            let digest = self.md5.finalize_reset();
            found = found.or_else(|| set.lookup(HashAlgo::Md5, &digest, size));
        }
        if needed.sha1 {
            let digest = self.sha1.finalize_reset();
            found = found.or_else(|| set.lookup(HashAlgo::Sha1, &digest, size));
        }
        if needed.sha256 {
            let digest = self.sha256.finalize_reset();
            found = found.or_else(|| set.lookup(HashAlgo::Sha256, &digest, size));
        }
        found
    }
}

impl std::fmt::Debug for HashStream {
    /// The digest states are opaque; show what is being computed and how far along it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashStream").field("needed", &self.needed).field("size", &self.size).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signatures::hashsig::{parse_hash_db, HashDbKind};
    use std::path::Path;

    const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
    const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn set_from(hsb: &str) -> HashSet {
        let (sigs, problems) = parse_hash_db(hsb, Path::new("t.hsb"), HashDbKind::Hsb);
        assert_eq!(problems, vec![]);
        HashSet::new(sigs)
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    /// Runs `body` through a stream in the pieces that `cuts` delimit.
    fn scan<'a>(
        set: &'a HashSet,
        stream: &mut HashStream,
        needed: Needed,
        body: &[u8],
        cuts: &[usize],
    ) -> Option<&'a str> {
        stream.begin(needed);
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            stream.feed(&body[prev..cut]);
            prev = cut;
        }
        stream.finish(set)
    }

    /// Every way of cutting the body that matters: whole, at every single split point
    /// (including empty pieces at both ends), and byte by byte.
    fn all_cuts(len: usize) -> Vec<Vec<usize>> {
        let mut cuts = vec![vec![]];
        cuts.extend((0..=len).map(|c| vec![c]));
        cuts.push((1..len).collect());
        cuts
    }

    #[test]
    fn eicar_digests_are_what_the_crates_compute() {
        assert_eq!(Md5::digest(EICAR).to_vec(), unhex(EICAR_MD5));
        assert_eq!(Sha1::digest(EICAR).to_vec(), unhex(EICAR_SHA1));
        assert_eq!(Sha256::digest(EICAR).to_vec(), unhex(EICAR_SHA256));
    }

    #[test]
    fn each_algorithm_matches_at_every_chunking() {
        for (hex, name) in [(EICAR_MD5, "Eicar.Md5"), (EICAR_SHA1, "Eicar.Sha1"), (EICAR_SHA256, "Eicar.Sha256")] {
            let set = set_from(&format!("{hex}:68:{name}\n"));
            assert_eq!(set.len(), 1);
            let needed = set.needed(Some(68));
            assert!(needed.any());
            let mut stream = HashStream::new();
            for cuts in all_cuts(EICAR.len()) {
                assert_eq!(scan(&set, &mut stream, needed, EICAR, &cuts), Some(name), "{name} cuts {cuts:?}");
            }
            // Not knowing the size in advance must give the same answer.
            assert_eq!(scan(&set, &mut stream, set.needed(None), EICAR, &[]), Some(name));
        }
    }

    #[test]
    fn size_must_match_unless_wildcard() {
        let sized = set_from(&format!("{EICAR_SHA256}:67:Eicar.WrongSize\n"));
        let mut stream = HashStream::new();
        assert_eq!(scan(&sized, &mut stream, Needed::ALL, EICAR, &[]), None);
        assert_eq!(sized.lookup(HashAlgo::Sha256, &unhex(EICAR_SHA256), 68), None);
        assert_eq!(sized.lookup(HashAlgo::Sha256, &unhex(EICAR_SHA256), 67), Some("Eicar.WrongSize"));

        let any = set_from(&format!("{EICAR_SHA1}:*:Eicar.AnySize:73\n"));
        assert_eq!(scan(&any, &mut stream, any.needed(Some(68)), EICAR, &[]), Some("Eicar.AnySize"));
        for size in [0, 1, 68, u64::MAX] {
            assert_eq!(any.lookup(HashAlgo::Sha1, &unhex(EICAR_SHA1), size), Some("Eicar.AnySize"));
        }
    }

    #[test]
    fn needed_follows_sizes_and_algorithms() {
        let empty = HashSet::new(vec![]);
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert_eq!(empty.needed(None), Needed::NONE);
        assert_eq!(empty.needed(Some(68)), Needed::NONE);

        let set =
            set_from(&format!("{EICAR_MD5}:68:A\n{EICAR_MD5}:100:B\n{EICAR_SHA1}:500:C\n{EICAR_SHA256}:*:D:73\n"));
        assert_eq!(set.len(), 4);
        assert_eq!(set.needed(None), Needed::ALL);
        assert_eq!(set.needed(Some(68)), Needed { md5: true, sha1: false, sha256: true });
        assert_eq!(set.needed(Some(100)), Needed { md5: true, sha1: false, sha256: true });
        assert_eq!(set.needed(Some(500)), Needed { md5: false, sha1: true, sha256: true });
        assert_eq!(set.needed(Some(7)), Needed { md5: false, sha1: false, sha256: true });

        let md5_only = set_from(&format!("{EICAR_MD5}:68:A\n"));
        assert_eq!(md5_only.needed(Some(69)), Needed::NONE);
        assert!(!md5_only.needed(Some(69)).any());
        assert_eq!(md5_only.needed(Some(68)), Needed { md5: true, sha1: false, sha256: false });
    }

    #[test]
    fn only_needed_digests_are_computed() {
        let set = set_from(&format!("{EICAR_SHA256}:68:Eicar\n"));
        let mut stream = HashStream::new();
        let md5_only = Needed { md5: true, sha1: false, sha256: false };
        assert_eq!(scan(&set, &mut stream, md5_only, EICAR, &[]), None);
        assert_eq!(scan(&set, &mut stream, Needed::NONE, EICAR, &[]), None);
        assert_eq!(scan(&set, &mut stream, Needed::ALL, EICAR, &[]), Some("Eicar"));
    }

    #[test]
    fn stream_is_reusable_and_resets() {
        let set = set_from(&format!("{EICAR_MD5}:68:Eicar\n"));
        let mut stream = HashStream::new();
        // A clean object, then EICAR, then EICAR again after an abandoned object.
        assert_eq!(scan(&set, &mut stream, Needed::ALL, b"hello", &[2]), None);
        assert_eq!(scan(&set, &mut stream, Needed::ALL, EICAR, &[10]), Some("Eicar"));
        stream.begin(Needed::ALL);
        stream.feed(b"abandoned half-way");
        assert_eq!(stream.size(), 18);
        assert_eq!(scan(&set, &mut stream, Needed::ALL, EICAR, &[30]), Some("Eicar"));
        // After finish the stream is idle: feeding computes nothing and finishing finds nothing.
        assert_eq!(stream.needed(), Needed::NONE);
        assert_eq!(stream.size(), 0);
        stream.feed(EICAR);
        assert_eq!(stream.finish(&set), None);
        // finish without begin is harmless.
        assert_eq!(HashStream::new().finish(&set), None);
    }

    #[test]
    fn exact_size_wins_over_wildcard_and_first_duplicate_wins() {
        let set = set_from(&format!(
            "{EICAR_MD5}:*:Any\n{EICAR_MD5}:68:Exact\n{EICAR_MD5}:68:Duplicate\n{EICAR_MD5}:*:AnyAgain\n"
        ));
        assert_eq!(set.len(), 2);
        let digest = unhex(EICAR_MD5);
        assert_eq!(set.lookup(HashAlgo::Md5, &digest, 68), Some("Exact"));
        assert_eq!(set.lookup(HashAlgo::Md5, &digest, 69), Some("Any"));
    }

    #[test]
    fn lookups_with_wrong_algorithm_or_length_miss() {
        let set = set_from(&format!("{EICAR_MD5}:68:Eicar\n"));
        let digest = unhex(EICAR_MD5);
        assert_eq!(set.lookup(HashAlgo::Md5, &digest, 68), Some("Eicar"));
        assert_eq!(set.lookup(HashAlgo::Sha1, &digest, 68), None);
        assert_eq!(set.lookup(HashAlgo::Md5, &digest[..15], 68), None);
        assert_eq!(set.lookup(HashAlgo::Md5, &[], 68), None);
        let mut other = digest.clone();
        other[15] ^= 1;
        assert_eq!(set.lookup(HashAlgo::Md5, &other, 68), None);
    }

    #[test]
    fn many_signatures_are_all_found() {
        // Neighbouring digests in the sorted table must not shadow each other.
        let sigs: Vec<HashSignature> = (0..500u32)
            .map(|i| HashSignature {
                algo: HashAlgo::Sha1,
                digest: Sha1::digest(i.to_le_bytes()).to_vec(),
                size: if i % 3 == 0 { None } else { Some(4) },
                name: format!("Sig-{i}"),
            })
            .collect();
        let set = HashSet::new(sigs);
        assert_eq!(set.len(), 500);
        let mut stream = HashStream::new();
        for i in (0..500u32).rev() {
            let name = format!("Sig-{i}");
            assert_eq!(scan(&set, &mut stream, set.needed(Some(4)), &i.to_le_bytes(), &[1]), Some(name.as_str()));
        }
    }

    #[test]
    fn malformed_signatures_are_dropped() {
        let sigs = vec![
            HashSignature { algo: HashAlgo::Md5, digest: vec![0; 20], size: Some(1), name: "WrongLen".into() },
            HashSignature { algo: HashAlgo::Sha256, digest: vec![], size: None, name: "Empty".into() },
        ];
        let set = HashSet::new(sigs);
        assert!(set.is_empty());
        assert_eq!(set.needed(None), Needed::NONE);
    }

    #[test]
    fn needed_helpers() {
        assert!(!Needed::NONE.any());
        assert!(Needed::ALL.any());
        let n = Needed { md5: false, sha1: true, sha256: false };
        assert!(n.any());
        assert_eq!(HashAlgo::ALL.map(|a| n.contains(a)), [false, true, false]);
    }

    #[test]
    fn set_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HashSet>();
        fn assert_send<T: Send>() {}
        assert_send::<HashStream>();
    }
}
