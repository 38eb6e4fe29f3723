//! Validation of the encapsulated HTTP header sections (req-hdr, res-hdr).
//!
//! The server passes these sections back verbatim in a 200 echo and later issues read fields
//! from them, so each must be a well-framed HTTP head: CRLF line ends only, no control bytes
//! other than tab, a non-empty start line, and the section ending exactly at the blank line that
//! the Encapsulated offsets promise. Anything else is a 400: an offset that points into the
//! middle of a header block is the classic way to make two parsers disagree.

use super::error::ProtoError;

/// Checks one header section (`section` is exactly the bytes between two Encapsulated
/// offsets).
pub fn validate_section(section: &[u8]) -> Result<(), ProtoError> {
    if section.len() < 4 || !section.ends_with(b"\r\n\r\n") {
        return Err(ProtoError::HttpHead);
    }
    let body = &section[..section.len() - 2];
    let mut prev = 0u8;
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'\n' if prev != b'\r' => return Err(ProtoError::HttpHead),
            b'\r' if body.get(i + 1) != Some(&b'\n') => return Err(ProtoError::HttpHead),
            b'\r' | b'\n' | b'\t' => {}
            _ if b < 0x20 || b == 0x7f => return Err(ProtoError::HttpHead),
            _ => {}
        }
        prev = b;
    }
    // An empty start line, or a blank line before the end, would split the section in two.
    if body.starts_with(b"\r\n") || memchr::memmem::find(body, b"\r\n\r\n").is_some() {
        return Err(ProtoError::HttpHead);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections() {
        assert_eq!(validate_section(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(validate_section(b"HTTP/1.1 200 OK\r\n\r\n"), Ok(()));
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        ] {
            assert_eq!(validate_section(bad), Err(ProtoError::HttpHead), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
