//! Helpers shared by the icapd fuzz targets.
//!
//! Every target reads its input the same way, so that one seed generator (`fuzz/make-seeds`)
//! can write inputs for all of them and a crash file can be read by eye:
//!
//! ```text
//! byte 0        flags (each target gives the bits its own meaning)
//! byte 1        n: how many split bytes follow (taken modulo 33)
//! bytes 2..2+n  split bytes: the gaps between split points, each gap = byte + 1
//! rest          the payload
//! ```
//!
//! The gaps repeat until they cover the whole payload, so one split byte `0x00` means "byte by
//! byte" and no split bytes at all means "whole". Targets compare the result for the whole
//! payload, for the fuzzer's split points and for byte-by-byte input: chunking must never
//! change the answer.

pub mod icap;

/// A ustar archive whose only entry is `data`, named `name` (at most 100 bytes): the header
/// fields a reader needs (name, size, checksum, magic), the data padded to a block, and the
/// two empty blocks that end an archive.
pub fn ustar(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 512];
    t[..name.len()].copy_from_slice(name);
    t[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    t[257..263].copy_from_slice(b"ustar\0");
    // The checksum is taken with its own field as spaces.
    t[148..156].fill(b' ');
    let sum: u32 = t.iter().map(|&b| u32::from(b)).sum();
    t[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    t.extend_from_slice(data);
    t.resize(t.len().div_ceil(512) * 512 + 1024, 0);
    t
}

/// Most split bytes read from an input.
pub const SPLIT_BYTES_MAX: usize = 32;

/// A fuzz input taken apart (see the crate docs for the layout).
#[derive(Debug)]
pub struct Input<'a> {
    pub flags: u8,
    /// The raw split bytes; [`Input::cuts`] turns them into positions.
    pub gaps: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `data` into flags, split bytes and payload; `None` when it is too short to hold
    /// the two leading bytes.
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&flags, rest) = data.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let n = (n as usize % (SPLIT_BYTES_MAX + 1)).min(rest.len());
        let (gaps, payload) = rest.split_at(n);
        Some(Input { flags, gaps, payload })
    }

    /// The fuzzer's split points inside the payload: strictly increasing, each in
    /// `1..payload.len()`.
    pub fn cuts(&self) -> Vec<usize> {
        cuts_of(self.gaps, self.payload.len())
    }

    /// A sequence of sizes (each at least 1) from the split bytes, for write sizes and the
    /// like; empty when there are no split bytes.
    pub fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.gaps.iter().rev().map(|&g| g as usize + 1).cycle()
    }
}

/// Split points for a payload of `len` bytes from the gap bytes `gaps` (cycled).
pub fn cuts_of(gaps: &[u8], len: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    if gaps.is_empty() {
        return cuts;
    }
    let mut at = 0;
    for &g in gaps.iter().cycle() {
        at += g as usize + 1;
        if at >= len {
            break;
        }
        cuts.push(at);
    }
    cuts
}

/// A cut between every pair of bytes.
pub fn every_byte(len: usize) -> Vec<usize> {
    (1..len).collect()
}

/// `cuts` followed by the payload's end: the ends of the pieces in order.
pub fn piece_ends(cuts: &[usize], len: usize) -> impl Iterator<Item = usize> + '_ {
    cuts.iter().copied().chain(std::iter::once(len))
}
