//! Conditional HTTP(S) downloads with ureq (rustls for https://), bounded in size and time.
//!
//! The bundle is asked for with `If-None-Match` and `If-Modified-Since` from the state of the
//! last update that was installed, so a timer that runs every hour costs the publisher a 304
//! and nothing else. A body is read whole into memory (it is bounded by
//! `update_bundle_bytes_max`) because nothing is written before its signature verifies.

use std::io::Read;
use std::time::Duration;

/// What the server answered.
pub enum Fetched {
    /// 304: the installed bundle is current.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

pub struct Client {
    agent: ureq::Agent,
    max: u64,
}

impl Client {
    pub fn new(deadline: Duration, max: u64) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(deadline)
            .timeout_read(deadline)
            .timeout_write(deadline)
            .user_agent(concat!("icapd-update/", env!("CARGO_PKG_VERSION")))
            .build();
        Client { agent, max }
    }

    /// GETs `url`; `etag` and `last_modified` (from the installed bundle) make it conditional.
    pub fn get(&self, url: &str, etag: Option<&str>, last_modified: Option<&str>) -> Result<Fetched, String> {
        let mut req = self.agent.get(url);
        if let Some(tag) = etag {
            req = req.set("If-None-Match", tag);
        }
        if let Some(date) = last_modified {
            req = req.set("If-Modified-Since", date);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => return Err(format!("{url}: HTTP {code} {}", r.status_text())),
            Err(ureq::Error::Transport(t)) => return Err(format!("{url}: {t}")),
        };
        if resp.status() == 304 {
            return Ok(Fetched::NotModified);
        }
        if resp.status() != 200 {
            return Err(format!("{url}: unexpected HTTP {} {}", resp.status(), resp.status_text()));
        }
        let declared = match resp.header("Content-Length") {
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| format!("{url}: bad Content-Length {v:?}"))?),
            None => None,
        };
        if declared.is_some_and(|n| n > self.max) {
            return Err(format!(
                "{url}: {} bytes is more than update_bundle_bytes_max ({})",
                declared.unwrap_or(0),
                self.max
            ));
        }
        let etag = resp.header("ETag").map(str::to_string);
        let last_modified = resp.header("Last-Modified").map(str::to_string);
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(self.max) as usize);
        resp.into_reader()
            .take(self.max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{url}: download cut short after {} bytes: {e}", bytes.len()))?;
        if bytes.len() as u64 > self.max {
            return Err(format!("{url}: more than update_bundle_bytes_max ({}) bytes", self.max));
        }
        if let Some(n) = declared {
            if bytes.len() as u64 != n {
                return Err(format!("{url}: download cut short: {} of {n} bytes", bytes.len()));
            }
        }
        Ok(Fetched::Body { bytes, etag, last_modified })
    }
}
