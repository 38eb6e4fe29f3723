//! The access log: one line per transaction, in c-icap's text format or as JSON lines.
//!
//! A shard appends lines to its own buffer ([`AccessLog`]) and hands the buffer to the log
//! writer thread when it is full or at the next control tick, so a busy shard makes one
//! hand-over per many transactions and never blocks on a slow disk or a full journald pipe.
//!
//! ## The text format
//!
//! The first six fields are c-icap's default access-log format (`%tl, %la %a %im %iu %is`),
//! the next two are what c-icap's virus_scan module adds (`%{virus_scan:virus}Sa
//! %{virus_scan:action}Sa`), so parsers written for c-icap keep working; icapd then appends
//! the bytes received, the bytes sent, the total time in microseconds (first byte of the head
//! to the answer, waits on the client included), the busy time in microseconds (parsing,
//! decoding and scanning only), the scan limit that decided the object (so that an object
//! passed over a limit under `over_limit = pass` is still visible), the end user's address
//! from `X-Client-IP` (c-icap's `%a` stays the connecting proxy), the user from
//! `X-Authenticated-User` or `X-Client-Username` (decoded from base64 when Squid encodes it),
//! the policy the transaction ran under, and the member path of a threat found inside a
//! container (`archive.zip/dir/file.exe`):
//!
//! ```text
//! 01/Dec/2026:19:13:41 +0000, 127.0.0.1 10.0.0.7 RESPMOD icap://127.0.0.1:1344/respmod 200 Eicar-Test-Signature blocked 1460 988 412 37 - 192.0.2.10 alice default -
//! ```
//!
//! The URL field names the service the request asked for even when it is not one of ours
//! (answered 404), so a typo in the proxy's configuration shows in the log.
//!
//! Times are UTC (the server carries no time-zone database; journald and log shippers add
//! their own local timestamps). A field that does not apply is `-`.
//!
//! ## JSON lines
//!
//! One object per line with the same facts, named, plus the shard, the de-chunked body bytes
//! and the protocol error when there was one:
//!
//! ```text
//! {"time":"2026-12-01T19:13:41.123Z","client":"10.0.0.7:40122","local":"127.0.0.1:1344","shard":0,"method":"RESPMOD","service":"respmod","status":200,"action":"blocked","threat":"Eicar-Test-Signature","limit":null,"found_in":null,"bytes_in":1460,"body_bytes":1024,"bytes_out":988,"time_us":412,"busy_us":37,"error":null,"x_client_ip":"192.0.2.10","user":"alice","policy":"default"}
//! ```

use super::record::TxnRecord;
use crate::proto::date::civil_from_days;
use std::io::Write;
use std::net::SocketAddr;

/// Which line format the access log writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// c-icap's default text format plus virus_scan's fields (see the module docs).
    Icap,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "icap" => Some(LogFormat::Icap),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// A shard's buffer of formatted lines.
pub struct AccessLog {
    format: LogFormat,
    buf: Vec<u8>,
    flush_bytes: usize,
}

/// Room kept beyond the flush threshold, so that the line that crosses it rarely reallocates.
const LINE_ROOM_BYTES: usize = 1024;

impl AccessLog {
    pub fn new(format: LogFormat, flush_bytes: usize) -> Self {
        AccessLog { format, buf: Vec::with_capacity(flush_bytes + LINE_ROOM_BYTES), flush_bytes }
    }

    /// Appends the line for one transaction.
    pub fn write(&mut self, rec: &TxnRecord<'_>) {
        match self.format {
            LogFormat::Icap => write_icap(&mut self.buf, rec),
            LogFormat::Json => write_json(&mut self.buf, rec),
        }
    }

    /// Whether the buffer has reached the size at which it should be handed over.
    pub fn wants_flush(&self) -> bool {
        self.buf.len() >= self.flush_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the buffered lines, leaving a fresh buffer (or `spare`, an emptied one handed
    /// back by the writer) in their place.
    pub fn take(&mut self, spare: Option<Vec<u8>>) -> Vec<u8> {
        let fresh = match spare {
            Some(mut v) => {
                v.clear();
                v
            }
            None => Vec::with_capacity(self.flush_bytes + LINE_ROOM_BYTES),
        };
        std::mem::replace(&mut self.buf, fresh)
    }
}

/// Writes an address's IP, or `-`, without an intermediate string.
fn write_ip(out: &mut Vec<u8>, addr: Option<SocketAddr>) {
    match addr {
        Some(a) => {
            let _ = write!(out, "{}", a.ip());
        }
        None => out.push(b'-'),
    }
}

fn write_icap(out: &mut Vec<u8>, rec: &TxnRecord<'_>) {
    let o = rec.outcome;
    write_clf_time(out, rec.unix_millis / 1000);
    out.extend_from_slice(b", ");
    write_ip(out, rec.local);
    out.push(b' ');
    write_ip(out, rec.client);
    let _ = write!(out, " {} ", rec.method_name());
    match (rec.service(), rec.local) {
        (Some(service), Some(local)) => {
            let _ = write!(out, "icap://{local}/{service}");
        }
        (Some(service), None) => {
            let _ = write!(out, "icap://-/{service}");
        }
        (None, _) => out.push(b'-'),
    }
    let _ = write!(out, " {} ", o.status);
    match rec.threat() {
        Some(t) => write_token(out, t),
        None => out.push(b'-'),
    }
    let _ = write!(
        out,
        " {} {} {} {} {} ",
        rec.action().name(),
        rec.bytes_in(),
        o.out_bytes,
        u64::try_from(rec.latency.as_micros()).unwrap_or(u64::MAX),
        u64::try_from(rec.busy.as_micros()).unwrap_or(u64::MAX),
    );
    match rec.limit() {
        Some(l) => write_token(out, l),
        None => out.push(b'-'),
    }
    out.push(b' ');
    match o.who.identity.client_ip {
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.push(b'-'),
    }
    out.push(b' ');
    match o.who.identity.user() {
        Some(u) => write_token(out, u),
        None => out.push(b'-'),
    }
    let _ = write!(out, " {} ", o.who.policy.name());
    match o.found_in.as_deref() {
        Some(path) => write_token(out, path),
        None => out.push(b'-'),
    }
    out.push(b'\n');
}

/// Writes a value that must stay one whitespace-free field of the text format.
fn write_token(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(if b.is_ascii_graphic() { b } else { b'_' });
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `01/Dec/2026:19:13:41 +0000`: the Common Log Format time c-icap's `%tl` writes, in UTC.
fn write_clf_time(out: &mut Vec<u8>, unix_secs: u64) {
    let (y, mo, d, h, mi, s) = civil(unix_secs);
    let _ = write!(out, "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000", MONTHS[(mo - 1) as usize]);
}

fn civil(unix_secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

fn write_json(out: &mut Vec<u8>, rec: &TxnRecord<'_>) {
    let o = rec.outcome;
    let (y, mo, d, h, mi, s) = civil(rec.unix_millis / 1000);
    let _ = write!(out, "{{\"time\":\"{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z\"", rec.unix_millis % 1000);
    out.extend_from_slice(b",\"client\":");
    json_addr(out, rec.client);
    out.extend_from_slice(b",\"local\":");
    json_addr(out, rec.local);
    let _ = write!(out, ",\"shard\":{},\"method\":", rec.shard);
    json_opt(out, o.method.or(o.who.method).map(|m| m.as_str()));
    out.extend_from_slice(b",\"service\":");
    json_opt(out, rec.service());
    let _ = write!(out, ",\"status\":{},\"action\":\"{}\",\"threat\":", o.status, rec.action().name());
    json_opt(out, rec.threat());
    out.extend_from_slice(b",\"limit\":");
    json_opt(out, rec.limit());
    out.extend_from_slice(b",\"found_in\":");
    json_opt(out, o.found_in.as_deref());
    let _ = write!(
        out,
        ",\"bytes_in\":{},\"body_bytes\":{},\"bytes_out\":{},\"time_us\":{},\"busy_us\":{},\"error\":",
        rec.bytes_in(),
        o.body_bytes,
        o.out_bytes,
        u64::try_from(rec.latency.as_micros()).unwrap_or(u64::MAX),
        u64::try_from(rec.busy.as_micros()).unwrap_or(u64::MAX),
    );
    json_opt(out, o.error.map(|e| format!("{e:?}")).as_deref());
    out.extend_from_slice(b",\"x_client_ip\":");
    match o.who.identity.client_ip {
        Some(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"user\":");
    json_opt(out, o.who.identity.user());
    let _ = write!(out, ",\"policy\":\"{}\"", o.who.policy.name());
    out.extend_from_slice(b"}\n");
}

/// An address as a JSON string (addresses need no escaping), or null.
fn json_addr(out: &mut Vec<u8>, addr: Option<SocketAddr>) {
    match addr {
        Some(a) => {
            let _ = write!(out, "\"{a}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string literal; threat names come from signature files and may hold anything.
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Verdict;
    use crate::proto::conn::TxnOutcome;
    use crate::proto::error::ProtoError;
    use crate::proto::Method;
    use std::time::{Duration, Instant};

    fn outcome(status: u16, threat: Option<&str>, error: Option<ProtoError>) -> TxnOutcome {
        TxnOutcome {
            method: Some(Method::Respmod),
            service: Some("respmod"),
            status,
            verdict: threat.map(|t| Verdict::Infected { threat: t.into() }),
            body_bytes: 1024,
            head_bytes: 436,
            out_bytes: 988,
            started: Instant::now(),
            aborted: false,
            error,
            limit: None,
            found_in: None,
            who: Default::default(),
        }
    }

    fn line(format: LogFormat, o: &TxnOutcome) -> String {
        let rec = TxnRecord {
            outcome: o,
            client: Some("10.0.0.7:40122".parse().unwrap()),
            local: Some("127.0.0.1:1344".parse().unwrap()),
            shard: 1,
            latency: Duration::from_micros(412),
            busy: Duration::from_micros(37),
            // 2026-12-01 19:13:41.123 UTC
            unix_millis: 1_796_152_421_123,
        };
        let mut log = AccessLog::new(format, 16);
        assert!(log.is_empty());
        log.write(&rec);
        assert!(log.wants_flush());
        String::from_utf8(log.take(None)).unwrap()
    }

    #[test]
    fn icap_text_line() {
        let got = line(LogFormat::Icap, &outcome(200, Some("Eicar Test"), None));
        assert_eq!(
            got,
            "01/Dec/2026:19:13:41 +0000, 127.0.0.1 10.0.0.7 RESPMOD icap://127.0.0.1:1344/respmod 200 Eicar_Test blocked 1460 988 412 37 - - - default -\n"
        );
        let got = line(LogFormat::Icap, &outcome(204, None, None));
        assert!(got.contains(" 204 - passed 1460 "), "{got}");
    }

    /// A transaction with an identity, a policy, and a service that is not ours.
    fn identified(headers: &str, service: &[u8]) -> TxnOutcome {
        use crate::proto::head::{slice, HeadParser, HeadStatus};
        use crate::proto::identity::{IdentityHeaders, RequestedService};
        let head = format!("RESPMOD icap://h/x ICAP/1.0\r\n{headers}\r\n");
        let limits = crate::limits::Limits::default();
        let mut parser = HeadParser::new(&limits);
        assert!(matches!(parser.parse(head.as_bytes()), Ok(HeadStatus::Complete(_))));
        let mut noted = IdentityHeaders::default();
        for h in parser.headers() {
            noted.note(slice(head.as_bytes(), h.name), h.value);
        }
        let mut o = outcome(404, None, Some(ProtoError::UnknownService));
        o.service = None;
        o.who.service = RequestedService::new(service);
        o.who.identity = noted.resolve(head.as_bytes());
        o.who.policy = crate::access::PolicyKind::Skip;
        o
    }

    #[test]
    fn unknown_service_identity_and_policy_are_logged() {
        let o = identified("X-Client-IP: 2001:db8::5\r\nX-Client-Username: Y2Fyb2wgeA==\r\n", b"avscn");
        let text = line(LogFormat::Icap, &o);
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        assert_eq!(fields.len(), 18, "{text}");
        assert_eq!(fields[5], "icap://127.0.0.1:1344/avscn", "{text}");
        assert_eq!((fields[11], fields[12]), ("412", "37"), "total time, then busy time: {text}");
        assert_eq!(&fields[13..], ["-", "2001:db8::5", "carol_x", "skip", "-"], "{text}");
        let json: String = line(LogFormat::Json, &o);
        assert!(json.contains("\"service\":\"avscn\""), "{json}");
        assert!(
            json.ends_with(",\"x_client_ip\":\"2001:db8::5\",\"user\":\"carol x\",\"policy\":\"skip\"}\n"),
            "{json}"
        );
        // A name with quotes and spaces stays one field and valid JSON.
        let o = identified("X-Client-Username: a\"b\\c\r\n", b"we ird\"");
        let text = line(LogFormat::Icap, &o);
        assert!(text.contains("/we_ird_ 404 ") && text.contains(" a\"b\\c skip"), "{text}");
        assert!(line(LogFormat::Json, &o).contains("\"user\":\"a\\\"b\\\\c\""));
    }

    #[test]
    fn json_line() {
        let got = line(LogFormat::Json, &outcome(200, Some("Heuristics.Limits.Exceeded.MaxScanSize"), None));
        assert_eq!(
            got,
            "{\"time\":\"2026-12-01T19:13:41.123Z\",\"client\":\"10.0.0.7:40122\",\"local\":\"127.0.0.1:1344\",\"shard\":1,\"method\":\"RESPMOD\",\"service\":\"respmod\",\"status\":200,\"action\":\"blocked\",\"threat\":\"Heuristics.Limits.Exceeded.MaxScanSize\",\"limit\":\"MaxScanSize\",\"found_in\":null,\"bytes_in\":1460,\"body_bytes\":1024,\"bytes_out\":988,\"time_us\":412,\"busy_us\":37,\"error\":null,\"x_client_ip\":null,\"user\":null,\"policy\":\"default\"}\n"
        );
        let got = line(LogFormat::Json, &outcome(400, None, Some(ProtoError::BareLf)));
        assert!(got.contains("\"action\":\"error\"") && got.contains("\"error\":\"BareLf\""), "{got}");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
