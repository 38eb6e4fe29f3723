//! The services this server offers and the methods each accepts.
//!
//! `respmod` and `reqmod` are the native names. `avscan`, `srv_clamav` and `virus_scan` are
//! the names c-icap's virus_scan module answers to, so that a Squid configuration written for
//! c-icap keeps working when only the host and port change; they accept both methods.

use super::Method;

/// One service definition.
#[derive(Debug, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub reqmod: bool,
    pub respmod: bool,
}

impl Service {
    pub fn allows(&self, method: Method) -> bool {
        match method {
            Method::Options => true,
            Method::Reqmod => self.reqmod,
            Method::Respmod => self.respmod,
        }
    }

    /// The `Methods:` value advertised in OPTIONS.
    pub fn methods_header(&self) -> &'static str {
        match (self.reqmod, self.respmod) {
            (true, true) => "RESPMOD, REQMOD",
            (true, false) => "REQMOD",
            _ => "RESPMOD",
        }
    }
}

pub static SERVICES: [Service; 5] = [
    Service { name: "respmod", reqmod: false, respmod: true },
    Service { name: "reqmod", reqmod: true, respmod: false },
    Service { name: "avscan", reqmod: true, respmod: true },
    Service { name: "srv_clamav", reqmod: true, respmod: true },
    Service { name: "virus_scan", reqmod: true, respmod: true },
];

/// Finds a service by its exact (case-sensitive, like c-icap) name.
pub fn lookup(name: &[u8]) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name.as_bytes() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert!(lookup(b"respmod").unwrap().allows(Method::Respmod));
        assert!(!lookup(b"respmod").unwrap().allows(Method::Reqmod));
        assert!(!lookup(b"reqmod").unwrap().allows(Method::Respmod));
        for alias in ["avscan", "srv_clamav", "virus_scan"] {
            let s = lookup(alias.as_bytes()).unwrap();
            assert!(s.allows(Method::Reqmod) && s.allows(Method::Respmod));
        }
        assert!(lookup(b"RESPMOD").is_none());
        assert!(lookup(b"").is_none());
    }
}
