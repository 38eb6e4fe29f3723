//! Turns a complete, syntactically valid head into a typed [`Request`]: method, service,
//! Encapsulated sections, Preview, Allow and Connection. The checks happen in the order that
//! gives each malformed request its most specific status: version (505), method (501), URI
//! (400), service (404), method for the service (405), then the headers (400/413).

use super::encapsulated::{self, Encapsulated};
use super::error::ProtoError;
use super::head::{slice, HeadParser};
use super::identity::IdentityHeaders;
use super::service::{self, Service};
use super::Method;
use crate::limits::Limits;

/// A parsed ICAP request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub service: &'static Service,
    pub encapsulated: Encapsulated,
    /// The Preview header's value, if any.
    pub preview: Option<u32>,
    /// The client accepts 204 outside a preview (`Allow: 204`).
    pub allow_204: bool,
    /// The client accepts 206 Partial Content (`Allow: 206`): in answer to a preview, and with
    /// `allow_204` also after it (see [`Request::allows_206`]).
    pub allow_206: bool,
    /// The client asked to close after this transaction (`Connection: close`).
    pub close: bool,
    /// Where the identity headers (`X-Client-IP`, user, groups) are in the head.
    pub identity: IdentityHeaders,
}

/// Interprets the head held in `head` (the bytes the parser saw) after `parser` reported it
/// complete.
pub fn interpret(head: &[u8], parser: &HeadParser, limits: &Limits) -> Result<Request, ProtoError> {
    let line = parser.request_line().ok_or(ProtoError::RequestLine)?;
    let version = slice(head, line.version);
    if version != b"ICAP/1.0" {
        return Err(if is_icap_version(version) { ProtoError::Version } else { ProtoError::RequestLine });
    }
    let method = method_of(slice(head, line.method)).ok_or(ProtoError::UnknownMethod)?;
    let name = service_name(slice(head, line.uri))?;
    let service = service::lookup(name).ok_or(ProtoError::UnknownService)?;
    if !service.allows(method) {
        return Err(ProtoError::MethodNotAllowed);
    }

    let mut encap: Option<Encapsulated> = None;
    let mut preview: Option<u32> = None;
    let mut allow_204 = false;
    let mut allow_206 = false;
    let mut close = false;
    let mut identity = IdentityHeaders::default();
    for h in parser.headers() {
        let name = slice(head, h.name);
        let value = slice(head, h.value);
        if name.eq_ignore_ascii_case(b"Encapsulated") {
            if encap.is_some() {
                return Err(ProtoError::DuplicateHeader);
            }
            encap = Some(encapsulated::parse(value, method, limits.http_header_bytes_max)?);
        } else if name.eq_ignore_ascii_case(b"Preview") {
            if preview.is_some() {
                return Err(ProtoError::DuplicateHeader);
            }
            let n = encapsulated::parse_decimal(value).ok_or(ProtoError::PreviewSyntax)?;
            if n > limits.preview_bytes_max as u64 {
                return Err(ProtoError::PreviewTooLarge);
            }
            preview = Some(n as u32);
        } else if name.eq_ignore_ascii_case(b"Allow") {
            allow_204 |= list_contains(value, b"204");
            allow_206 |= list_contains(value, b"206");
        } else if name.eq_ignore_ascii_case(b"Connection") {
            close |= list_contains(value, b"close");
        } else {
            identity.note(name, h.value);
        }
    }
    let encapsulated = match (encap, method) {
        (Some(e), _) => e,
        (None, Method::Options) => Encapsulated::NONE,
        (None, _) => return Err(ProtoError::EncapsulatedMissing),
    };
    // A preview only makes sense when there is a body to preview.
    if preview.is_some() && !encapsulated.has_body() {
        preview = None;
    }
    Ok(Request { method, service, encapsulated, preview, allow_204, allow_206, close, identity })
}

impl Request {
    /// Whether a 206 may answer this request at this point, as the ICAP Partial Content
    /// extension negotiates it and Squid and c-icap implement it: `Allow: 206` permits 206 in
    /// answer to a preview; after the preview (or without one) the client must also have kept
    /// the whole body, which it says with `Allow: 204, 206`. Squid sends `Allow: 206` alone for
    /// bodies it cannot back up (unknown or over 64 KB) and rejects a 206 after the preview then.
    ///
    /// For a verdict that leaves the message unchanged, a 204 is allowed wherever a 206 is, and
    /// is shorter (no HTTP header section, no body), so icapd answers a clean object with 204
    /// there and never needs 206: it would only pay off for an answer that changes the HTTP
    /// headers but keeps the body.
    pub fn allows_206(&self, answering_preview: bool) -> bool {
        self.allow_206 && (answering_preview || self.allow_204)
    }
}

fn method_of(name: &[u8]) -> Option<Method> {
    match name {
        b"OPTIONS" => Some(Method::Options),
        b"REQMOD" => Some(Method::Reqmod),
        b"RESPMOD" => Some(Method::Respmod),
        _ => None,
    }
}

/// The method the request line of a complete head names, if it is one of the three (for the
/// access log of a request refused before it was interpreted, such as an unknown service).
pub fn requested_method(head: &[u8], parser: &HeadParser) -> Option<Method> {
    method_of(slice(head, parser.request_line()?.method))
}

/// The service name the request line of a complete head asks for, whether or not it is one
/// of ours (for the access log: a typo in a proxy's configuration must show there).
pub fn requested_service<'a>(head: &'a [u8], parser: &HeadParser) -> Option<&'a [u8]> {
    service_name(slice(head, parser.request_line()?.uri)).ok()
}

fn is_icap_version(v: &[u8]) -> bool {
    v.len() == 8 && v.starts_with(b"ICAP/") && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit()
}

/// Extracts the service name from `icap://authority/service[?query]`. Squid names an ICAP-over-
/// TLS service `icaps://...` in its requests too, so that scheme is accepted as well.
fn service_name(uri: &[u8]) -> Result<&[u8], ProtoError> {
    let scheme = [&b"icap://"[..], b"icaps://"]
        .into_iter()
        .find(|s| uri.len() >= s.len() && uri[..s.len()].eq_ignore_ascii_case(s))
        .ok_or(ProtoError::Uri)?;
    let rest = &uri[scheme.len()..];
    let slash = rest.iter().position(|&b| b == b'/').ok_or(ProtoError::Uri)?;
    if slash == 0 {
        return Err(ProtoError::Uri);
    }
    let path = &rest[slash + 1..];
    let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
    Ok(&path[..end])
}

/// True when the comma-separated list `value` contains `item` (case-insensitive).
fn list_contains(value: &[u8], item: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|v| v.trim_ascii().eq_ignore_ascii_case(item))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::head::HeadStatus;

    fn interpret_str(head: &str) -> Result<Request, ProtoError> {
        let limits = Limits::default();
        let mut parser = HeadParser::new(&limits);
        assert!(matches!(parser.parse(head.as_bytes()), Ok(HeadStatus::Complete(_))), "{head}");
        interpret(head.as_bytes(), &parser, &limits)
    }

    #[test]
    fn typical_requests() {
        let r = interpret_str("RESPMOD icap://127.0.0.1:1344/avscan?x=1 ICAP/1.0\r\nHost: a\r\nAllow: 204, trailers\r\nPreview: 1024\r\nEncapsulated: req-hdr=0, res-hdr=10, res-body=20\r\n\r\n").unwrap();
        assert_eq!(r.method, Method::Respmod);
        assert_eq!(r.service.name, "avscan");
        assert_eq!(r.preview, Some(1024));
        assert!(r.allow_204 && !r.allow_206 && !r.close);
        let r = interpret_str("RESPMOD icap://h/respmod ICAP/1.0\r\nAllow: 206\r\nAllow: trailers\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\n").unwrap();
        assert!(r.allow_206 && !r.allow_204);
        assert!(r.allows_206(true) && !r.allows_206(false), "Allow: 206 alone is for the preview only");
        let r = interpret_str(
            "RESPMOD icap://h/respmod ICAP/1.0\r\nAllow: 204, 206\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\n",
        )
        .unwrap();
        assert!(r.allow_204 && r.allows_206(true) && r.allows_206(false));
        let r = interpret_str(
            "RESPMOD icap://h/respmod ICAP/1.0\r\nAllow: 2060, 20\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\n",
        )
        .unwrap();
        assert!(!r.allow_204 && !r.allow_206 && !r.allows_206(true));
        let r = interpret_str("OPTIONS icap://h/reqmod ICAP/1.0\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(r.encapsulated, Encapsulated::NONE);
        assert!(r.close);
        let r = interpret_str(
            "REQMOD icap://h/reqmod ICAP/1.0\r\nPreview: 0\r\nEncapsulated: req-hdr=0, null-body=5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.preview, None, "no body, so no preview");
        let r = interpret_str("OPTIONS ICAPS://127.0.0.1:11344/respmod ICAP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.service.name, "respmod", "Squid's icaps:// service URIs");
    }

    #[test]
    fn requested_service_names_unknown_services_too() {
        let limits = Limits::default();
        for (head, want) in [
            ("OPTIONS icap://h/avscn ICAP/1.0\r\n\r\n", Some(&b"avscn"[..])),
            ("OPTIONS icap://h:1344/respmod?x=1 ICAP/1.0\r\n\r\n", Some(b"respmod")),
            ("OPTIONS icap://h ICAP/1.0\r\n\r\n", None),
        ] {
            let mut parser = HeadParser::new(&limits);
            assert!(matches!(parser.parse(head.as_bytes()), Ok(HeadStatus::Complete(_))));
            assert_eq!(requested_service(head.as_bytes(), &parser), want, "{head}");
            assert_eq!(requested_method(head.as_bytes(), &parser), Some(Method::Options));
        }
    }

    #[test]
    fn identity_headers_are_noted() {
        let head = "RESPMOD icap://h/respmod ICAP/1.0\r\nX-Client-IP: 10.0.0.9\r\nEncapsulated: res-hdr=0, null-body=5\r\n\r\n";
        let r = interpret_str(head).unwrap();
        assert_eq!(r.identity.resolve(head.as_bytes()).client_ip, Some("10.0.0.9".parse().unwrap()));
        // A malformed identity header never fails the request.
        let head = "RESPMOD icap://h/respmod ICAP/1.0\r\nX-Client-IP: nonsense\r\nX-Client-Username: \r\nEncapsulated: res-hdr=0, null-body=5\r\n\r\n";
        let r = interpret_str(head).unwrap();
        assert_eq!(r.identity.resolve(head.as_bytes()), Default::default());
    }

    #[test]
    fn statuses_for_bad_requests() {
        use ProtoError::*;
        let table = [
            ("OPTIONS icap://h/respmod ICAP/1.1\r\n\r\n", Version),
            ("OPTIONS icap://h/respmod ICAP/2.0\r\n\r\n", Version),
            ("OPTIONS icap://h/respmod HTTP/1.1\r\n\r\n", RequestLine),
            ("GET icap://h/respmod ICAP/1.0\r\n\r\n", UnknownMethod),
            ("options icap://h/respmod ICAP/1.0\r\n\r\n", UnknownMethod),
            ("OPTIONS http://h/respmod ICAP/1.0\r\n\r\n", Uri),
            ("OPTIONS icap://h ICAP/1.0\r\n\r\n", Uri),
            ("OPTIONS icap:///respmod ICAP/1.0\r\n\r\n", Uri),
            ("OPTIONS icapss://h/respmod ICAP/1.0\r\n\r\n", Uri),
            ("OPTIONS icaps:/h/respmod ICAP/1.0\r\n\r\n", Uri),
            ("OPTIONS icap://h/nope ICAP/1.0\r\n\r\n", UnknownService),
            ("OPTIONS icap://h/ ICAP/1.0\r\n\r\n", UnknownService),
            ("REQMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: req-hdr=0, null-body=5\r\n\r\n", MethodNotAllowed),
            ("RESPMOD icap://h/reqmod ICAP/1.0\r\nEncapsulated: res-hdr=0, null-body=5\r\n\r\n", MethodNotAllowed),
            ("RESPMOD icap://h/respmod ICAP/1.0\r\n\r\n", EncapsulatedMissing),
            ("RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-hdr=0, null-body=5\r\nEncapsulated: res-hdr=0, null-body=5\r\n\r\n", DuplicateHeader),
            ("RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: x\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\n", PreviewSyntax),
            ("RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: -1\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\n", PreviewSyntax),
            ("RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: 4096\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\n", PreviewTooLarge),
            ("RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: 1\r\nPreview: 1\r\nEncapsulated: res-hdr=0, res-body=5\r\n\r\n", DuplicateHeader),
        ];
        for (head, expected) in table {
            assert_eq!(interpret_str(head), Err(expected), "{head}");
        }
    }
}
