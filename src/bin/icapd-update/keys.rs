//! ed25519 keys and detached signatures, as small hex text files.
//!
//! A key file holds 64 hex digits (the 32-byte secret seed, or the 32-byte public key) and a
//! signature file 128 (the 64-byte signature), each on one line: easy to paste into a
//! configuration management tool and to compare by eye, with no ASN.1 or PEM parser needed.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::io::Read;
use std::path::Path;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes exactly `N` bytes of hex (surrounding whitespace allowed).
fn unhex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let text = text.trim();
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} is not {} hex digits", 2 * N));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| format!("{what}: bad hex"))?;
    }
    Ok(out)
}

fn read_text(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

pub fn read_public(path: &Path) -> Result<VerifyingKey, String> {
    let what = format!("public key {}", path.display());
    VerifyingKey::from_bytes(&unhex::<32>(&read_text(path, "public key")?, &what)?)
        .map_err(|_| format!("{what} is not a valid ed25519 key"))
}

pub fn read_secret(path: &Path) -> Result<SigningKey, String> {
    let what = format!("secret key {}", path.display());
    Ok(SigningKey::from_bytes(&unhex::<32>(&read_text(path, "secret key")?, &what)?))
}

pub fn parse_signature(text: &[u8]) -> Result<Signature, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the signature is not text".to_string())?;
    Ok(Signature::from_bytes(&unhex::<64>(text, "the signature")?))
}

pub fn sign(key: &SigningKey, data: &[u8]) -> String {
    hex(&key.sign(data).to_bytes())
}

/// Verifies with the strict rules (no malleable or small-order forms).
pub fn verify(key: &VerifyingKey, data: &[u8], sig: &Signature) -> bool {
    key.verify_strict(data, sig).is_ok()
}

/// A new secret seed from the kernel's random source.
pub fn generate() -> Result<SigningKey, String> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `PREFIX.key` (mode 0600, refusing to overwrite) and `PREFIX.pub`.
pub fn write_pair(prefix: &str, key: &SigningKey) -> Result<(String, String), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let secret = format!("{prefix}.key");
    let public = format!("{prefix}.pub");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .map_err(|e| format!("cannot create {secret}: {e}"))?;
    writeln!(f, "{}", hex(&key.to_bytes())).map_err(|e| format!("{secret}: {e}"))?;
    std::fs::write(&public, format!("{}\n", hex(key.verifying_key().as_bytes())))
        .map_err(|e| format!("cannot write {public}: {e}"))?;
    Ok((secret, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_over_the_bytes_signed_and_with_the_right_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let sig = parse_signature(sign(&key, b"bundle").as_bytes()).unwrap();
        assert!(verify(&key.verifying_key(), b"bundle", &sig));
        assert!(!verify(&key.verifying_key(), b"bundlE", &sig));
        assert!(!verify(&other.verifying_key(), b"bundle", &sig));
        assert!(parse_signature(b"abc").is_err());
        assert_eq!(unhex::<2>(" 0aFf\n", "x").unwrap(), [0x0a, 0xff]);
    }
}
