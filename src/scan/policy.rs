//! What the scanning engine does at its limits and where it may answer early.
//!
//! Every common scanner passes an object it could not finish scanning (too big, too slow) as
//! clean, and attackers use that. Here the over-limit action is explicit and blocks by default;
//! `pass` must be chosen on purpose. A clean preview without `ieof` is answered 204 only when
//! an operator has listed what may be (content types, file magic, size): never merely because
//! the first bytes looked clean.

/// What to do with an object that exceeds a scan limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    Block,
    Pass,
}

/// Threat names reported for limit verdicts (ClamAV's names, so log parsers already know them).
pub const THREAT_SIZE: &str = "Heuristics.Limits.Exceeded.MaxScanSize";
pub const THREAT_TIME: &str = "Heuristics.Limits.Exceeded.MaxScanTime";
/// The shard's memory budget ([`crate::budget`]) could not pay for a buffer the object needs
/// (its whole-object copy, its decoders): the object is not scanned fully, so it is a limit.
pub const THREAT_MEMORY: &str = "Heuristics.Limits.Exceeded.MemoryBudget";
/// Too many partial multi-segment `.ndb` matches (or ends for their bounded gaps) in one object
/// (see [`crate::scan::body`]).
pub const THREAT_PARTIALS: &str = "Heuristics.Limits.Exceeded.MaxPartialMatches";
/// Every YARA block scanner of the shard was lent to other objects for as long as this object
/// fitted in its whole-object copy, so the streaming YARA rules could not see it all.
pub const THREAT_YARA_SCANNERS: &str = "Heuristics.Limits.Exceeded.MaxYaraScanners";
/// A YARA pattern reached `yara_matches_per_pattern_max` in a rule whose condition counts its
/// matches or tests their offsets, so that rule's outcome is not known.
pub const THREAT_YARA_MATCHES: &str = "Heuristics.Limits.Exceeded.MaxYaraMatches";
/// The object could not be kept whole for the whole-object YARA rules (modules, `filesize`,
/// unbounded strings): past `yara_whole_bytes_max` with the spool off, or the spool failed.
pub const THREAT_YARA_WHOLE: &str = "Heuristics.Limits.Exceeded.MaxYaraWholeSize";
/// Content-Encoding limits (see [`crate::scan::decode`]). They share the `Limits.Exceeded`
/// prefix, which is how the metrics and the access log count limit events.
pub const THREAT_DECODED_SIZE: &str = "Heuristics.Limits.Exceeded.MaxDecodedSize";
pub const THREAT_DECODE_RATIO: &str = "Heuristics.Limits.Exceeded.MaxDecodeRatio";
pub const THREAT_ENCODINGS: &str = "Heuristics.Limits.Exceeded.MaxEncodings";
pub const THREAT_DECODE_WINDOW: &str = "Heuristics.Limits.Exceeded.MaxDecodeWindow";
/// A body that claims a coding we decode but is corrupt, truncated or followed by stray bytes.
/// It is not a limit, but it is treated like one: an object we could not read is not clean.
pub const THREAT_BROKEN_ENCODING: &str = "Heuristics.Broken.ContentEncoding";

/// File types an operator can allow for early 204, by their leading bytes.
pub const MAGICS: [(&str, &[u8]); 8] = [
    ("png", b"\x89PNG\r\n\x1a\n"),
    ("jpeg", b"\xff\xd8\xff"),
    ("gif", b"GIF8"),
    ("webp", b"RIFF"),
    ("mp4", b"\x00\x00\x00"),
    ("webm", b"\x1a\x45\xdf\xa3"),
    ("mp3", b"ID3"),
    ("ogg", b"OggS"),
];

/// The early-204 allow-list for previews that end without `ieof`. Empty means off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Early204 {
    /// Content-Type prefixes (lowercase), e.g. `image/`.
    pub content_types: Vec<String>,
    /// Names from [`MAGICS`]; when non-empty the preview must also start with one of them.
    pub magic: Vec<String>,
    /// When set, only objects whose Content-Length is known and at most this.
    pub size_max_bytes: Option<u64>,
}

impl Early204 {
    pub fn enabled(&self) -> bool {
        !self.content_types.is_empty()
    }

    /// Whether a clean preview of this object may be answered 204.
    pub fn allows(&self, content_type: &[u8], content_length: Option<u64>, preview: &[u8]) -> bool {
        if !self.enabled() {
            return false;
        }
        let ct = content_type.to_ascii_lowercase();
        if !self.content_types.iter().any(|p| ct.starts_with(p.as_bytes())) {
            return false;
        }
        if !self.magic.is_empty()
            && !self.magic.iter().any(|m| MAGICS.iter().any(|(name, bytes)| name == m && preview.starts_with(bytes)))
        {
            return false;
        }
        match self.size_max_bytes {
            Some(max) => content_length.is_some_and(|l| l <= max),
            None => true,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for m in &self.magic {
            if !MAGICS.iter().any(|(name, _)| name == m) {
                let known: Vec<&str> = MAGICS.iter().map(|(n, _)| *n).collect();
                return Err(format!("unknown magic '{m}' (known: {})", known.join(", ")));
            }
        }
        if !self.magic.is_empty() && self.content_types.is_empty() {
            return Err("early_204.magic needs early_204.content_types".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_204_needs_every_listed_condition() {
        let off = Early204::default();
        assert!(!off.allows(b"image/png", Some(10), b"\x89PNG\r\n\x1a\n"));
        let p =
            Early204 { content_types: vec!["image/".into()], magic: vec!["png".into()], size_max_bytes: Some(1000) };
        assert!(p.validate().is_ok());
        assert!(p.allows(b"Image/PNG", Some(10), b"\x89PNG\r\n\x1a\nrest"));
        assert!(!p.allows(b"application/octet-stream", Some(10), b"\x89PNG\r\n\x1a\n"));
        assert!(!p.allows(b"image/png", Some(10), b"MZ\x90\x00"), "a PE file labelled image/png");
        assert!(!p.allows(b"image/png", None, b"\x89PNG\r\n\x1a\n"), "unknown size");
        assert!(!p.allows(b"image/png", Some(5000), b"\x89PNG\r\n\x1a\n"));
        assert!(Early204 { magic: vec!["exe".into()], ..p }.validate().is_err());
    }
}
