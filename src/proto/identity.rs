//! Who is asking: the identity headers a proxy adds to the ICAP head, sans-IO and bounded.
//!
//! Squid sends the end user's address in `X-Client-IP` (`adaptation_send_client_ip on`) and
//! the user name in `X-Client-Username` (`adaptation_send_username on`; the header name is
//! `icap_client_username_header`), base64-encoded when `icap_client_username_encode on`.
//! Other ICAP clients use `X-Authenticated-User` (base64 in the ICAP extensions draft) and
//! `X-Authenticated-Groups`, a comma-separated list of group names, plain or base64.
//!
//! These headers come from the network and are untrusted. Parsing them never fails a
//! request: a missing, duplicated, malformed or oversized value simply counts as absent, and
//! the transaction runs under the default policy. While the head is parsed only the byte
//! ranges of the values are noted ([`IdentityHeaders`]); when the transaction starts they are
//! resolved into an [`Identity`] whose user name lives in a fixed-size buffer, so nothing here
//! allocates.
//!
//! A value is taken as base64 when it is well-formed padded base64 of the standard alphabet
//! and decodes to printable UTF-8; otherwise it is taken as written, if that is printable.
//! A plain name that happens to be valid base64 (`abcd`) decodes to bytes that are not
//! printable and so stays plain.

use super::head::slice;
use crate::access::{Asker, PolicyKind, PolicyTable};
use crate::limits::{IDENTITY_VALUE_BYTES_MAX, REQUESTED_SERVICE_LOG_BYTES};
use base64::Engine as _;
use std::net::IpAddr;

/// Byte ranges of the identity headers in the ICAP head (the first of each name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub client_ip: Option<(u32, u32)>,
    pub client_username: Option<(u32, u32)>,
    pub authenticated_user: Option<(u32, u32)>,
    pub authenticated_groups: Option<(u32, u32)>,
}

impl IdentityHeaders {
    /// Notes header `name` with its value at `value` if it is an identity header; the first
    /// occurrence wins. Returns whether it was one.
    pub fn note(&mut self, name: &[u8], value: (u32, u32)) -> bool {
        let slot = if name.eq_ignore_ascii_case(b"X-Client-IP") {
            &mut self.client_ip
        } else if name.eq_ignore_ascii_case(b"X-Client-Username") {
            &mut self.client_username
        } else if name.eq_ignore_ascii_case(b"X-Authenticated-User") {
            &mut self.authenticated_user
        } else if name.eq_ignore_ascii_case(b"X-Authenticated-Groups") {
            &mut self.authenticated_groups
        } else {
            return false;
        };
        slot.get_or_insert(value);
        true
    }

    /// Resolves the noted values against the head they point into.
    pub fn resolve(&self, head: &[u8]) -> Identity {
        let mut id =
            Identity { client_ip: self.client_ip.and_then(|r| parse_ip(slice(head, r))), ..Identity::default() };
        // X-Authenticated-User first: it is the authenticated name where both are sent.
        for range in [self.authenticated_user, self.client_username].into_iter().flatten() {
            if let Some(len) = decode_value(slice(head, range), &mut id.user) {
                id.user_len = len as u16;
                break;
            }
        }
        id
    }

    /// Calls `f` with each group name of `X-Authenticated-Groups` until it returns true;
    /// returns whether it did. The value is decoded into a buffer on the stack.
    pub fn any_group(&self, head: &[u8], f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        let Some(range) = self.authenticated_groups else { return false };
        let mut buf = [0u8; IDENTITY_VALUE_BYTES_MAX];
        let Some(len) = decode_value(slice(head, range), &mut buf) else { return false };
        buf[..len].split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|g| !g.is_empty()).any(f)
    }
}

/// The resolved identity of one transaction: the end user's address and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub client_ip: Option<IpAddr>,
    user: [u8; IDENTITY_VALUE_BYTES_MAX],
    user_len: u16,
}

impl Default for Identity {
    fn default() -> Self {
        Identity { client_ip: None, user: [0; IDENTITY_VALUE_BYTES_MAX], user_len: 0 }
    }
}

impl Identity {
    /// The user name (decoded, printable UTF-8), if one was sent.
    pub fn user(&self) -> Option<&str> {
        let bytes = &self.user[..usize::from(self.user_len)];
        (!bytes.is_empty()).then(|| std::str::from_utf8(bytes).expect("decode_value keeps only UTF-8"))
    }
}

fn parse_ip(value: &[u8]) -> Option<IpAddr> {
    // Longest textual IPv6 address with an IPv4 tail is 45 bytes; refuse anything longer
    // before parsing. Brackets are tolerated, as some clients write `[2001:db8::1]`.
    if value.len() > 47 {
        return None;
    }
    let v = value.strip_prefix(b"[").and_then(|v| v.strip_suffix(b"]")).unwrap_or(value);
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Decodes an identity value into `out`: base64 when it is base64 of printable text, else the
/// value itself when it is printable. `None` when neither (or when it does not fit).
fn decode_value(value: &[u8], out: &mut [u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > crate::limits::ICAP_HEADER_BYTES_MAX {
        return None;
    }
    if value.len() % 4 == 0 {
        if let Ok(n) = base64::engine::general_purpose::STANDARD.decode_slice(value, out) {
            if n > 0 && printable(&out[..n]) {
                return Some(n);
            }
        }
    }
    if value.len() <= out.len() && printable(value) {
        out[..value.len()].copy_from_slice(value);
        return Some(value.len());
    }
    None
}

/// UTF-8 without control characters.
fn printable(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(char::is_control))
}

/// The service name a request asked for, kept for the logs even when it is not one of ours
/// (so a typo in the proxy's configuration shows): at most `REQUESTED_SERVICE_LOG_BYTES`,
/// with anything but visible ASCII other than `"` and `\` replaced by `_`, so the value is
/// safe in both the text and the JSON log as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestedService {
    bytes: [u8; REQUESTED_SERVICE_LOG_BYTES],
    len: u8,
}

const _: () = assert!(REQUESTED_SERVICE_LOG_BYTES <= u8::MAX as usize);

impl Default for RequestedService {
    fn default() -> Self {
        RequestedService { bytes: [0; REQUESTED_SERVICE_LOG_BYTES], len: 0 }
    }
}

impl RequestedService {
    pub fn new(name: &[u8]) -> Self {
        let mut s = RequestedService::default();
        let n = name.len().min(REQUESTED_SERVICE_LOG_BYTES);
        for (dst, &b) in s.bytes.iter_mut().zip(&name[..n]) {
            *dst = if b.is_ascii_graphic() && b != b'"' && b != b'\\' { b } else { b'_' };
        }
        s.len = n as u8;
        s
    }

    /// The sanitised name; `None` when the request named none (or was never parsed that far).
    pub fn as_str(&self) -> Option<&str> {
        let bytes = &self.bytes[..usize::from(self.len)];
        (!bytes.is_empty()).then(|| std::str::from_utf8(bytes).expect("only ASCII is kept"))
    }
}

/// What the logs and metrics say about who asked, carried in every transaction outcome: the
/// service the request named, the resolved identity and the policy it ran under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Who {
    /// The method the request line named, even when the request was refused before it was
    /// interpreted (the outcome's own `method` stays unset then, as the metrics count it).
    pub method: Option<super::Method>,
    pub service: RequestedService,
    pub identity: Identity,
    pub policy: PolicyKind,
}

impl Who {
    /// Resolves the identity of a request whose head is `head`, and its policy: networks are
    /// matched against `X-Client-IP`, or the connecting address `peer` when the client sent
    /// none (a client that talks ICAP itself, not through a proxy).
    pub fn identify(
        &mut self,
        head: &[u8],
        noted: &IdentityHeaders,
        table: Option<&PolicyTable>,
        peer: Option<IpAddr>,
    ) {
        self.identity = noted.resolve(head);
        self.policy = match table {
            Some(t) if !t.is_empty() => {
                let asker =
                    Asker { ip: self.identity.client_ip.or(peer), user: self.identity.user().map(str::as_bytes) };
                t.evaluate(asker, |f| noted.any_group(head, f))
            }
            _ => PolicyKind::Default,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::proto::head::{HeadParser, HeadStatus};
    use crate::proto::testutil::for_each_split;

    /// Parses `headers` (lines after the request line) and resolves the identity.
    fn identity_of(headers: &str) -> (Identity, Vec<String>) {
        let head = format!("RESPMOD icap://h/respmod ICAP/1.0\r\n{headers}\r\n");
        let limits = Limits::default();
        let mut parser = HeadParser::new(&limits);
        assert!(matches!(parser.parse(head.as_bytes()), Ok(HeadStatus::Complete(_))), "{head}");
        let mut noted = IdentityHeaders::default();
        for h in parser.headers() {
            noted.note(slice(head.as_bytes(), h.name), h.value);
        }
        let mut groups = Vec::new();
        noted.any_group(head.as_bytes(), &mut |g| {
            groups.push(String::from_utf8(g.to_vec()).unwrap());
            false
        });
        (noted.resolve(head.as_bytes()), groups)
    }

    #[test]
    fn squid_style_headers() {
        let (id, groups) = identity_of("X-Client-IP: 10.1.2.3\r\nX-Client-Username: YWxpY2U=\r\n");
        assert_eq!(id.client_ip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(id.user(), Some("alice"), "base64, as icap_client_username_encode on sends it");
        assert!(groups.is_empty());
        let (id, _) = identity_of("x-client-ip: 2001:db8::7\r\nx-client-username: bob\r\n");
        assert_eq!(id.client_ip, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(id.user(), Some("bob"), "plain, the default");
        let (id, _) = identity_of("X-Client-IP: [::1]\r\n");
        assert_eq!(id.client_ip, Some("::1".parse().unwrap()));
    }

    #[test]
    fn authenticated_user_wins_and_groups_are_listed() {
        // base64("WinNT://EXAMPLE/carol"), base64("staff, cdn")
        let (id, groups) = identity_of(
            "X-Client-Username: dave\r\nX-Authenticated-User: V2luTlQ6Ly9FWEFNUExFL2Nhcm9s\r\nX-Authenticated-Groups: c3RhZmYsIGNkbg==\r\n",
        );
        assert_eq!(id.user(), Some("WinNT://EXAMPLE/carol"));
        assert_eq!(groups, ["staff", "cdn"]);
        let (_, groups) = identity_of("X-Authenticated-Groups: admins,, web ,\r\n");
        assert_eq!(groups, ["admins", "web"]);
    }

    #[test]
    fn malformed_values_count_as_absent() {
        let table = [
            "X-Client-IP: 10.1.2\r\n",
            "X-Client-IP: 10.1.2.3.4\r\n",
            "X-Client-IP: localhost\r\n",
            "X-Client-IP: 2001:db8::g\r\n",
            "X-Client-IP: \r\n",
            "X-Client-Username: \r\n",
            "X-Authenticated-User: //79/A==\r\n",
        ];
        for headers in table {
            let (id, _) = identity_of(headers);
            let plain_ok = headers.contains("//79");
            assert_eq!(id.client_ip, None, "{headers:?}");
            if plain_ok {
                // Not text once decoded, but printable as written: a plain name.
                assert_eq!(id.user(), Some("//79/A=="), "{headers:?}");
            } else {
                assert_eq!(id.user(), None, "{headers:?}");
            }
        }
        // Broken base64 is taken as a plain name when printable.
        assert_eq!(identity_of("X-Client-Username: YWxpY2U\r\n").0.user(), Some("YWxpY2U"));
        assert_eq!(identity_of("X-Client-Username: abcd\r\n").0.user(), Some("abcd"), "decodes to non-text");
        // Control bytes (the head parser refuses most of them anyway) are never a name.
        let mut out = [0u8; 16];
        assert_eq!(decode_value(b"a\x7fb", &mut out), None);
        assert_eq!(decode_value(b"AQI=", &mut out), Some(4), "base64 of control bytes stays the plain text");
    }

    #[test]
    fn huge_values_are_ignored_not_truncated() {
        let long = "u".repeat(IDENTITY_VALUE_BYTES_MAX + 1);
        let (id, _) = identity_of(&format!("X-Client-Username: {long}\r\nX-Client-IP: {}\r\n", "1".repeat(4000)));
        assert_eq!((id.client_ip, id.user()), (None, None));
        let fits = "u".repeat(IDENTITY_VALUE_BYTES_MAX);
        assert_eq!(identity_of(&format!("X-Client-Username: {fits}\r\n")).0.user(), Some(fits.as_str()));
        // Base64 that would decode past the buffer is not decoded.
        let b64 = base64::engine::general_purpose::STANDARD.encode("g".repeat(IDENTITY_VALUE_BYTES_MAX + 3));
        let (id, groups) = identity_of(&format!("X-Authenticated-User: {b64}\r\nX-Authenticated-Groups: {b64}\r\n"));
        assert_eq!(id.user(), None);
        assert!(groups.is_empty());
    }

    #[test]
    fn first_of_duplicates_wins() {
        let (id, _) = identity_of("X-Client-IP: 10.0.0.1\r\nX-Client-IP: 10.0.0.2\r\n");
        assert_eq!(id.client_ip, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn same_identity_at_every_split() {
        let head = b"REQMOD icap://h/reqmod ICAP/1.0\r\nX-Client-IP: 192.0.2.1\r\nX-Client-Username: YWxpY2U=\r\nEncapsulated: req-hdr=0, null-body=1\r\n\r\n";
        let limits = Limits::default();
        for_each_split(head.len(), |cuts| {
            let mut parser = HeadParser::new(&limits);
            let mut done = false;
            for &end in cuts.iter().chain(std::iter::once(&head.len())) {
                if let Ok(HeadStatus::Complete(_)) = parser.parse(&head[..end]) {
                    done = true;
                    break;
                }
            }
            assert!(done);
            let mut noted = IdentityHeaders::default();
            for h in parser.headers() {
                noted.note(slice(head, h.name), h.value);
            }
            let id = noted.resolve(head);
            assert_eq!((id.client_ip, id.user()), (Some("192.0.2.1".parse().unwrap()), Some("alice")));
        });
    }

    #[test]
    fn requested_service_is_bounded_and_sanitised() {
        assert_eq!(RequestedService::new(b"avscn").as_str(), Some("avscn"));
        assert_eq!(RequestedService::new(b"").as_str(), None);
        assert_eq!(RequestedService::new(b"a b\"c\\d\x01").as_str(), Some("a_b_c_d_"));
        let long = RequestedService::new(&[b'x'; 1000]);
        assert_eq!(long.as_str().unwrap().len(), REQUESTED_SERVICE_LOG_BYTES);
        assert_eq!(RequestedService::new("é".as_bytes()).as_str(), Some("__"));
    }
}
