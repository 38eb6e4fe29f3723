//! The `Encapsulated` header: which HTTP sections follow the ICAP head, and where.
//!
//! RFC 3507 section 4.4.1 defines the value as a comma-separated list of `name=offset` with
//! offsets measured from the start of the encapsulated part. We accept exactly the grammar the
//! RFC gives per method and nothing else, because a lenient reading of this header is how
//! request smuggling and attacker-sized allocations happened in other ICAP servers:
//!
//! * names are `req-hdr`, `res-hdr`, `req-body`, `res-body`, `null-body`, `opt-body`, each
//!   at most once, in that order (headers before the one body entry, which comes last);
//! * offsets are plain decimal, checked for overflow, strictly increasing, the first is 0;
//! * the header sections together are bounded by `http_header_bytes_max` (413 beyond);
//! * REQMOD: `[req-hdr] (req-body | null-body)`; RESPMOD: `[req-hdr] [res-hdr]
//!   (res-body | null-body)`; OPTIONS: `null-body` only (we define no OPTIONS body).

use super::error::ProtoError;
use super::Method;

/// What kind of body follows the encapsulated headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Req,
    Res,
    Opt,
    Null,
}

/// A validated Encapsulated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encapsulated {
    pub req_hdr: Option<u32>,
    pub res_hdr: Option<u32>,
    pub body: BodyKind,
    /// Offset of the body entry = total length of the encapsulated header sections.
    pub body_offset: u32,
}

impl Encapsulated {
    /// The `null-body=0` value used when a request carries no Encapsulated header (OPTIONS).
    pub const NONE: Encapsulated = Encapsulated { req_hdr: None, res_hdr: None, body: BodyKind::Null, body_offset: 0 };

    /// True when a chunked body follows the headers.
    pub fn has_body(&self) -> bool {
        self.body != BodyKind::Null
    }

    /// Byte range of the req-hdr section within the encapsulated part.
    pub fn req_hdr_range(&self) -> Option<(u32, u32)> {
        self.req_hdr.map(|start| (start, self.res_hdr.unwrap_or(self.body_offset)))
    }

    /// Byte range of the res-hdr section within the encapsulated part.
    pub fn res_hdr_range(&self) -> Option<(u32, u32)> {
        self.res_hdr.map(|start| (start, self.body_offset))
    }
}

const NAMES: [&[u8]; 6] = [b"req-hdr", b"res-hdr", b"req-body", b"res-body", b"null-body", b"opt-body"];

/// Parses and validates the header value for `method`.
pub fn parse(value: &[u8], method: Method, http_header_bytes_max: usize) -> Result<Encapsulated, ProtoError> {
    let mut req_hdr = None;
    let mut res_hdr = None;
    let mut body: Option<(BodyKind, u32)> = None;
    // Index in NAMES of the last entry: names must appear in table order.
    let mut last_rank: Option<usize> = None;
    let mut last_offset: Option<u64> = None;
    for (i, raw) in value.split(|&b| b == b',').enumerate() {
        // Optional whitespace after each comma only, as every client writes it.
        let item = if i == 0 { raw } else { trim_leading_ows(raw) };
        let eq = item.iter().position(|&b| b == b'=').ok_or(ProtoError::EncapsulatedSyntax)?;
        let (name, digits) = (&item[..eq], &item[eq + 1..]);
        let rank = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).ok_or(ProtoError::EncapsulatedSyntax)?;
        let offset = parse_decimal(digits).ok_or(ProtoError::EncapsulatedSyntax)?;
        if body.is_some() {
            // Nothing may follow the body entry.
            return Err(ProtoError::EncapsulatedOrder);
        }
        match last_offset {
            None if offset != 0 => return Err(ProtoError::EncapsulatedOrder),
            Some(prev) if offset <= prev => return Err(ProtoError::EncapsulatedOrder),
            _ => {}
        }
        if last_rank.is_some_and(|r| rank <= r) {
            return Err(ProtoError::EncapsulatedOrder);
        }
        if offset > http_header_bytes_max as u64 {
            return Err(ProtoError::HttpHeadTooLarge);
        }
        let offset32 = offset as u32;
        match rank {
            0 => req_hdr = Some(offset32),
            1 => res_hdr = Some(offset32),
            2 => body = Some((BodyKind::Req, offset32)),
            3 => body = Some((BodyKind::Res, offset32)),
            4 => body = Some((BodyKind::Null, offset32)),
            _ => body = Some((BodyKind::Opt, offset32)),
        }
        last_rank = Some(rank);
        last_offset = Some(offset);
    }
    let (body, body_offset) = body.ok_or(ProtoError::EncapsulatedMethod)?;
    let allowed = match method {
        Method::Reqmod => res_hdr.is_none() && matches!(body, BodyKind::Req | BodyKind::Null),
        Method::Respmod => matches!(body, BodyKind::Res | BodyKind::Null),
        Method::Options => req_hdr.is_none() && res_hdr.is_none() && body == BodyKind::Null,
    };
    if !allowed {
        return Err(ProtoError::EncapsulatedMethod);
    }
    Ok(Encapsulated { req_hdr, res_hdr, body, body_offset })
}

fn trim_leading_ows(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// Plain decimal: one or more ASCII digits, no sign, no whitespace, checked arithmetic.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    const MAX: usize = 64 * 1024;

    #[test]
    fn valid_lists() {
        let e = parse(b"req-hdr=0, res-hdr=137, res-body=296", Method::Respmod, MAX).unwrap();
        assert_eq!(e, Encapsulated { req_hdr: Some(0), res_hdr: Some(137), body: BodyKind::Res, body_offset: 296 });
        assert_eq!(e.req_hdr_range(), Some((0, 137)));
        assert_eq!(e.res_hdr_range(), Some((137, 296)));
        let e = parse(b"req-hdr=0, null-body=170", Method::Reqmod, MAX).unwrap();
        assert_eq!(e.req_hdr_range(), Some((0, 170)));
        assert!(!e.has_body());
        assert!(parse(b"req-hdr=0,req-body=10", Method::Reqmod, MAX).is_ok());
        assert!(parse(b"res-hdr=0, res-body=10", Method::Respmod, MAX).is_ok());
        assert!(parse(b"res-body=0", Method::Respmod, MAX).is_ok());
        assert!(parse(b"req-body=0", Method::Reqmod, MAX).is_ok());
        assert!(parse(b"null-body=0", Method::Options, MAX).is_ok());
        assert!(parse(b"REQ-HDR=0, NULL-BODY=5", Method::Reqmod, MAX).is_ok());
    }

    #[test]
    fn invalid_lists() {
        use ProtoError::*;
        let table: &[(&[u8], Method, ProtoError)] = &[
            (b"", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=-1, req-body=5", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=+0, req-body=5", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=0x0, req-body=5", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr= 0, req-body=5", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=0 , req-body=5", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=0, req-body=99999999999999999999", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=0, foo-body=5", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=0,, req-body=5", Method::Reqmod, EncapsulatedSyntax),
            (b"req-hdr=5, req-body=10", Method::Reqmod, EncapsulatedOrder),
            (b"req-hdr=0, req-body=0", Method::Reqmod, EncapsulatedOrder),
            (b"req-hdr=0, res-hdr=50, res-body=40", Method::Respmod, EncapsulatedOrder),
            (b"res-hdr=0, req-hdr=50, res-body=90", Method::Respmod, EncapsulatedOrder),
            (b"req-hdr=0, req-hdr=5, req-body=9", Method::Reqmod, EncapsulatedOrder),
            (b"req-body=0, req-hdr=5", Method::Reqmod, EncapsulatedOrder),
            (b"req-hdr=0, req-body=5, null-body=9", Method::Reqmod, EncapsulatedOrder),
            (b"req-hdr=0", Method::Reqmod, EncapsulatedMethod),
            (b"req-hdr=0, res-hdr=5, res-body=9", Method::Reqmod, EncapsulatedMethod),
            (b"req-hdr=0, res-body=9", Method::Reqmod, EncapsulatedMethod),
            (b"req-hdr=0, req-body=9", Method::Respmod, EncapsulatedMethod),
            (b"opt-body=0", Method::Respmod, EncapsulatedMethod),
            (b"opt-body=0", Method::Options, EncapsulatedMethod),
            (b"req-hdr=0, null-body=70000", Method::Reqmod, HttpHeadTooLarge),
        ];
        for (value, method, expected) in table {
            assert_eq!(parse(value, *method, MAX), Err(*expected), "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn decimal_is_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), None); // 20 digits: refused before overflow
        assert_eq!(parse_decimal(b"9999999999999999999"), Some(9_999_999_999_999_999_999));
        assert_eq!(parse_decimal(b"1 "), None);
        assert_eq!(parse_decimal(b""), None);
    }
}
