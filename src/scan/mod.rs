//! Scanning: pure given a signature generation. Streams take body slices and return matches or
//! verdicts; nothing here touches a socket, a clock or the executor (scan time is charged by
//! the caller).

pub mod body;
#[cfg(test)]
mod clamdb_tests;
pub mod decode;
pub mod engine;
#[cfg(test)]
mod engine_policy_tests;
#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod exact_tests;
pub mod filetype;
pub mod hash;
pub mod imports;
pub mod ldb;
#[cfg(test)]
mod ldb_exact_tests;
pub mod literal;
pub mod object;
pub mod pe;
pub mod policy;
pub mod reach;
pub mod sections;
pub mod shard_gen;
pub mod spool;
pub mod unpack;
pub mod whole;
pub mod textnorm;
pub mod yara_stream;

use std::time::Duration;

/// Bounds of the scanning engine (see [`crate::limits`] for their defaults and reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimits {
    pub scan_bytes_max: u64,
    pub scan_time_max: Duration,
    pub yara_whole_bytes_max: usize,
    pub yara_overlap_bytes: usize,
    pub yara_block_scanners_max: usize,
    /// See [`crate::limits::YARA_MATCHES_PER_PATTERN_MAX`].
    pub yara_matches_per_pattern_max: usize,
    pub body_partials_max: usize,
    pub body_partial_ends_max: usize,
    /// The preview size the server advertises: how many leading bytes the engine keeps for
    /// preview-time YARA and file-magic checks.
    pub preview_bytes: usize,
    /// `scan_bytes_max` under the `strict` policy.
    pub strict_scan_bytes_max: u64,
    /// Content-Encoding caps.
    pub decode: decode::DecodeLimits,
    /// Container caps (members, depth, extracted and buffered bytes).
    pub unpack: unpack::UnpackLimits,
}

/// Operator choices for the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPolicy {
    pub over_limit: policy::OverLimit,
    pub early_204: policy::Early204,
    /// What an encrypted member (zip, 7z, PDF) makes of its object.
    pub encrypted: unpack::EncryptedPolicy,
}
