//! The bytes a benchmark sends: a deterministic synthetic body, and EICAR planted into it.
//!
//! `icap-bench` and `icapd-scan-bench` both include this file, so the end-to-end figure and the
//! in-process figure are taken on exactly the same bytes. The synthetic body is a multiplicative
//! hash of the byte index: high-entropy, the same on every run, and (like random bytes) it cannot
//! contain a 16-byte signature by chance.

/// The EICAR anti-virus test string (68 ASCII bytes). Every scanner detects it; it harms nothing.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// `len` deterministic high-entropy bytes.
pub fn synthetic(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8).collect()
}

/// Where EICAR goes in an infected object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EicarAt {
    /// In the middle of the body: past the preview for large objects, so the server must find
    /// it while the body streams, not in the first bytes.
    Middle,
    /// At this byte offset (clamped so that the whole string fits).
    Offset(usize),
}

/// A copy of `body` with EICAR written over the bytes at `at`. A body shorter than EICAR becomes
/// EICAR itself, so that every infected object really carries the whole string.
pub fn with_eicar(body: &[u8], at: EicarAt) -> Vec<u8> {
    if body.len() < EICAR.len() {
        return EICAR.to_vec();
    }
    let room = body.len() - EICAR.len();
    let offset = match at {
        EicarAt::Middle => room / 2,
        EicarAt::Offset(n) => n.min(room),
    };
    let mut out = body.to_vec();
    out[offset..offset + EICAR.len()].copy_from_slice(EICAR);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_is_deterministic_and_free_of_eicar() {
        let a = synthetic(1 << 16);
        assert_eq!(a, synthetic(1 << 16));
        assert!(memchr::memmem::find(&a, EICAR).is_none());
        // High entropy: every byte value occurs.
        let mut seen = [false; 256];
        a.iter().for_each(|&b| seen[b as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn eicar_is_planted_whole() {
        let body = synthetic(1000);
        let mid = with_eicar(&body, EicarAt::Middle);
        assert_eq!(mid.len(), 1000);
        assert_eq!(memchr::memmem::find(&mid, EICAR), Some((1000 - EICAR.len()) / 2));
        let end = with_eicar(&body, EicarAt::Offset(5000));
        assert_eq!(memchr::memmem::find(&end, EICAR), Some(1000 - EICAR.len()));
        assert_eq!(with_eicar(&body[..10], EicarAt::Middle), EICAR);
    }
}
