//! The `/metrics` page in the Prometheus text exposition format (version 0.0.4).
//!
//! Counters are the sums over every shard that answered the scrape; per-shard state
//! (connections, the generation in use) keeps a `shard` label. Label values that come from
//! outside the code (threat names from signature files) are escaped, and their number is
//! bounded before they get here (see [`super::metrics`]).

use super::histogram::{Histogram, BOUNDS_US};
use super::metrics::{ShardMetrics, ACTIONS};
use super::snapshot::{ProcessInfo, ShardSnapshot};
use std::fmt::Write;

/// Renders the page. `labels_max` is the bound the merged counters keep.
pub fn render(p: &ProcessInfo, shards: &[ShardSnapshot], labels_max: usize) -> String {
    let mut total = ShardMetrics::new(labels_max);
    for s in shards {
        total.merge(&s.metrics);
    }
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;

    header(o, "icapd_build_info", "gauge", "Always 1; the version is a label.");
    let _ = writeln!(o, "icapd_build_info{{version=\"{}\"}} 1", p.version);
    single(
        o,
        "icapd_start_time_seconds",
        "gauge",
        "When the process started, in seconds since the epoch.",
        p.started_unix,
    );
    single(o, "icapd_uptime_seconds", "gauge", "Seconds since the process started.", p.uptime_secs);
    single(o, "icapd_shards", "gauge", "Shards configured (one pinned thread each).", p.cpus.len());
    single(o, "icapd_shards_answering", "gauge", "Shards that answered this scrape in time.", shards.len());
    header(o, "icapd_shard_cpu", "gauge", "The CPU each shard is pinned to.");
    for (shard, cpu) in p.cpus.iter().enumerate() {
        let _ = writeln!(o, "icapd_shard_cpu{{shard=\"{shard}\"}} {cpu}");
    }
    // One series per shard for each of these: (name, type, help, value).
    type PerShard = (&'static str, &'static str, &'static str, fn(&ShardSnapshot) -> f64);
    const PER_SHARD: &[PerShard] = &[
        ("icapd_active_connections", "gauge", "Open ICAP connections per shard, busy or idle.", |s| s.active as f64),
        ("icapd_shard_transactions_total", "counter", "Transactions finished per shard.", |s| {
            s.metrics.transactions() as f64
        }),
        (
            "icapd_shard_busy_seconds_total",
            "counter",
            "Processing time per shard (parsing, decoding, scanning); its rate is the shard's busy fraction.",
            |s| s.metrics.busy.sum_us as f64 / 1e6,
        ),
        (
            "icapd_shard_connections_handed_off_total",
            "counter",
            "Connections a shard accepted and handed to a shard with fewer connections.",
            |s| s.metrics.connections_handed_off as f64,
        ),
        ("icapd_shard_connections_received_total", "counter", "Connections a shard was handed by another shard.", |s| {
            s.metrics.connections_received as f64
        }),
        (
            "icapd_shard_busy_fraction",
            "gauge",
            "A shard's busy fraction over its last balance window (smoothed), which move decisions use.",
            |s| f64::from(s.metrics.busy_permille) / 1000.0,
        ),
        (
            "icapd_shard_connections_moved_out_total",
            "counter",
            "Keep-alive connections a shard moved to a less busy shard at a transaction boundary.",
            |s| s.metrics.connections_moved_out as f64,
        ),
        (
            "icapd_shard_connections_moved_in_total",
            "counter",
            "Keep-alive connections moved to a shard by another shard.",
            |s| s.metrics.connections_moved_in as f64,
        ),
    ];
    for (name, kind, help, value) in PER_SHARD {
        header(o, name, kind, help);
        for s in shards {
            let _ = writeln!(o, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
        }
    }

    header(o, "icapd_requests_total", "counter", "ICAP transactions by method, service and answer status.");
    for (method, service, status, n) in total.request_series() {
        let _ =
            writeln!(o, "icapd_requests_total{{method=\"{method}\",service=\"{service}\",status=\"{status}\"}} {n}");
    }
    header(
        o,
        "icapd_transactions_total",
        "counter",
        "Transactions by outcome: passed (204 or echo), blocked (block page), partiallyblocked (echo cut off), error.",
    );
    for (action, n) in ACTIONS.iter().zip(total.actions.iter()) {
        let _ = writeln!(o, "icapd_transactions_total{{action=\"{}\"}} {n}", action.name());
    }
    header(o, "icapd_received_bytes_total", "counter", "Bytes received: ICAP and HTTP heads, and de-chunked bodies.");
    let _ = writeln!(o, "icapd_received_bytes_total{{part=\"head\"}} {}", total.head_bytes_in);
    let _ = writeln!(o, "icapd_received_bytes_total{{part=\"body\"}} {}", total.body_bytes_in);
    single(o, "icapd_sent_bytes_total", "counter", "Bytes sent back to clients.", total.bytes_out);
    header(o, "icapd_threats_total", "counter", "Blocked objects by threat name (bounded; the rest under \"other\").");
    for (name, n) in &total.threats {
        let _ = writeln!(o, "icapd_threats_total{{threat=\"{}\"}} {n}", escape(name));
    }
    header(
        o,
        "icapd_threats_in_members_total",
        "counter",
        "Blocked objects whose threat was inside a container, by member path (bounded; the rest under \"other\").",
    );
    for (path, n) in &total.found_in {
        let _ = writeln!(o, "icapd_threats_in_members_total{{path=\"{}\"}} {n}", escape(path));
    }
    header(
        o,
        "icapd_limit_events_total",
        "counter",
        "Objects a scan or decode limit decided (blocked or passed per policy.over_limit), by limit.",
    );
    for (name, n) in &total.limits {
        let _ = writeln!(o, "icapd_limit_events_total{{limit=\"{}\"}} {n}", escape(name));
    }
    header(o, "icapd_protocol_errors_total", "counter", "Requests refused as malformed, by the error found.");
    for (error, n) in &total.errors {
        let _ = writeln!(o, "icapd_protocol_errors_total{{error=\"{error:?}\",status=\"{}\"}} {n}", error.status());
    }
    histogram(
        o,
        "icapd_request_duration_seconds",
        "From the first byte of a request head to its answer.",
        &total.latency,
    );
    histogram(
        o,
        "icapd_scan_duration_seconds",
        "Processing time per transaction (parsing, decoding and scanning), excluding waits for the network.",
        &total.busy,
    );
    single(o, "icapd_connections_accepted_total", "counter", "Connections accepted.", total.connections_accepted);
    single(
        o,
        "icapd_connections_refused_total",
        "counter",
        "Connections answered 503 at the per-shard cap.",
        total.connections_refused,
    );
    single(
        o,
        "icapd_connections_denied_total",
        "counter",
        "Connections closed at accept because their address is not in allow_clients.",
        total.connections_denied,
    );
    header(
        o,
        "icapd_transactions_by_policy_total",
        "counter",
        "Transactions by the policy the policy table chose (skip: not scanned).",
    );
    for (policy, n) in crate::access::POLICIES.iter().zip(total.by_policy.iter()) {
        let _ = writeln!(o, "icapd_transactions_by_policy_total{{policy=\"{}\"}} {n}", policy.name());
    }
    single(o, "icapd_tls_handshakes_total", "counter", "TLS handshakes completed.", total.tls_handshakes);
    histogram(
        o,
        "icapd_tls_handshake_duration_seconds",
        "From accepting a TLS connection to its handshake being complete (the client's pace included).",
        &total.tls_handshake,
    );
    header(
        o,
        "icapd_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed: timeout (past tls_handshake_ms), protocol (refused by TLS: no common parameters, bad client certificate, not TLS), closed (the peer left).",
    );
    for (reason, n) in super::metrics::TLS_FAILURES.iter().zip(total.tls_handshake_failures.iter()) {
        let _ = writeln!(o, "icapd_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}");
    }
    single(
        o,
        "icapd_connections_evicted_total",
        "counter",
        "Idle keep-alive connections closed at the cap to make room.",
        total.connections_evicted,
    );
    single(
        o,
        "icapd_connection_panics_total",
        "counter",
        "Connection tasks that panicked (each closed only itself).",
        total.connection_panics,
    );
    single(
        o,
        "icapd_access_log_dropped_lines_total",
        "counter",
        "Access-log lines dropped because the writer fell behind.",
        total.log_lines_dropped,
    );
    single(o, "icapd_access_log_write_errors_total", "counter", "Access-log writes that failed.", p.log_write_errors);
    total.memory.write_prometheus(o);

    if let Some(sig) = &p.signatures {
        header(o, "icapd_signature_generation", "gauge", "Sequence number of the signature set loaded last.");
        let _ = writeln!(o, "icapd_signature_generation {}", sig.generation);
        header(o, "icapd_signature_load_seconds", "gauge", "How long the last signature set took to load and compile.");
        let _ = writeln!(o, "icapd_signature_load_seconds {:.6}", sig.summary.load_time.as_secs_f64());
        header(o, "icapd_signature_loaded_timestamp_seconds", "gauge", "When the last signature set was loaded.");
        let _ = writeln!(o, "icapd_signature_loaded_timestamp_seconds {}", sig.loaded_unix);
        header(o, "icapd_signatures", "gauge", "Signatures in the loaded set, by kind.");
        let s = &sig.summary;
        for (kind, n) in [
            ("body", s.body),
            ("hash", s.hashes),
            ("yara_stream", s.yara_stream),
            ("yara_whole", s.yara_whole),
            ("url", s.urls),
            ("logical", s.logical),
            ("allowlist", s.allow),
            ("pe_section_hash", s.sections),
            ("pe_import_hash", s.imports),
        ] {
            let _ = writeln!(o, "icapd_signatures{{kind=\"{kind}\"}} {n}");
        }
        header(o, "icapd_signature_skipped_lines", "gauge", "Signature lines skipped as unsupported or malformed.");
        let _ = writeln!(o, "icapd_signature_skipped_lines {}", s.skipped_lines);
        // clamdb (issue 16): what each database format contributed.
        header(
            o,
            "icapd_signature_format_lines",
            "gauge",
            "Signature lines per file format (files, for packed databases and formats not loaded), by result.",
        );
        for f in &s.formats {
            for (result, n) in [("loaded", f.loaded), ("skipped", f.skipped), ("disabled", f.disabled)] {
                let _ = writeln!(o, "icapd_signature_format_lines{{format=\"{}\",result=\"{result}\"}} {n}", f.format);
            }
        }
        header(o, "icapd_signature_reloads_total", "counter", "Signature reloads by result.");
        let _ = writeln!(o, "icapd_signature_reloads_total{{result=\"ok\"}} {}", p.reloads_ok);
        let _ = writeln!(o, "icapd_signature_reloads_total{{result=\"failed\"}} {}", p.reloads_failed);
        header(o, "icapd_shard_signature_generation", "gauge", "The signature generation each shard answers with.");
        for s in shards {
            if let Some(g) = s.generation {
                let _ = writeln!(o, "icapd_shard_signature_generation{{shard=\"{}\"}} {g}", s.shard);
            }
        }
    }
    out
}

/// A metric with one unlabelled series.
fn single(o: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(o, name, kind, help);
    let _ = writeln!(o, "{name} {value}");
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn histogram(o: &mut String, name: &str, help: &str, h: &Histogram) {
    header(o, name, "histogram", help);
    for (bound_us, cumulative) in h.cumulative() {
        let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {cumulative}", seconds(bound_us));
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum {:.6}", h.sum_us as f64 / 1e6);
    let _ = writeln!(o, "{name}_count {}", h.count);
    debug_assert_eq!(BOUNDS_US.len() + 1, h.buckets.len());
}

/// A bucket bound in seconds, written without float noise (`0.00005`, `2.5`, `10`).
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = us % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_and_escaping() {
        assert_eq!(seconds(50), "0.00005");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(10_000_000), "10");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn page_is_well_formed() {
        let p = ProcessInfo {
            version: "0.1.0",
            listen: "127.0.0.1:1344".parse().unwrap(),
            inspector: "test",
            started_unix: 1,
            uptime_secs: 2,
            cpus: vec![0, 1],
            signatures: None,
            reloads_ok: 0,
            reloads_failed: 0,
            log_write_errors: 0,
        };
        let mut m = ShardMetrics::new(8);
        m.latency.record(std::time::Duration::from_micros(70));
        let shard = ShardSnapshot { shard: 0, cpu: 0, active: 3, generation: None, istag: "x".into(), metrics: m };
        let page = render(&p, &[shard], 8);
        for line in page.lines() {
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP icapd_") || line.starts_with("# TYPE icapd_"), "{line}");
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            assert!(series.starts_with("icapd_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(page.contains("icapd_active_connections{shard=\"0\"} 3\n"));
        assert!(page.contains("icapd_request_duration_seconds_bucket{le=\"0.00005\"} 0\n"));
        assert!(page.contains("icapd_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(page.contains("icapd_request_duration_seconds_count 1\n"));
        assert!(page.contains("icapd_shards_answering 1\n"));
    }
}
