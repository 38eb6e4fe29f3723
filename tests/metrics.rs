//! Observability against the real binary: after a known sequence of transactions the
//! Prometheus page shows exactly those counts, the status page describes the process, and
//! the access log holds one parseable line per transaction, in both formats, surviving a
//! logrotate-style move with SIGUSR1.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const MARKER: &[u8] = icapd::inspect::TEST_MARKER;

/// Waits until `path` holds at least `n` lines; returns them.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{} has {} lines, want {n}", path.display(), lines.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts icapd with the bundled signatures, one shard, a metrics listener and an access log
/// at `log_path` in `format`; returns the server and the metrics port.
fn engine_server(log_path: &Path, format: &str, config: &str) -> (Server, u16) {
    let _ = std::fs::remove_file(log_path);
    let metrics_port = free_port();
    let signatures = concat!(env!("CARGO_MANIFEST_DIR"), "/signatures");
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let args = ["--shards", "1", "--signatures", signatures, "--metrics", &metrics_addr];
    let log = ["--access-log", log_path.to_str().unwrap(), "--access-log-format", format];
    let server = Server::start(&[&args[..], &log[..]].concat(), Some(config));
    (server, metrics_port)
}

fn clean_preview(body: &[u8]) -> Vec<u8> {
    let mut req = respmod_head("respmod", Some(1024), true);
    req.extend(chunked(body, 1024));
    req.extend_from_slice(b"0; ieof\r\n\r\n");
    req
}

fn reqmod_no204(body: &[u8]) -> Vec<u8> {
    let req_hdr = "POST http://origin.test/upload HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    let mut req = format!(
        "REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: 127.0.0.1\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{req_hdr}",
        req_hdr.len()
    )
    .into_bytes();
    req.extend(chunked(body, 4096));
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

/// The known sequence: 2 OPTIONS, 3 clean previews (204), 1 marker (block page), 1 REQMOD
/// echo (200), 1 malformed request (400), 1 unknown service (404). Returns connections used.
fn known_sequence(server: &Server) -> usize {
    for _ in 0..2 {
        let mut s = server.connect();
        s.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut BufReader::new(s)).unwrap().status, 200);
    }
    let s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for i in 0..3 {
        (&s).write_all(&clean_preview(&pseudo_random(700 + i, i as u64))).unwrap();
        assert_eq!(read_response(&mut reader).unwrap().status, 204);
    }
    let mut body = pseudo_random(600, 9);
    body[100..100 + MARKER.len()].copy_from_slice(MARKER);
    (&s).write_all(&clean_preview(&body)).unwrap();
    let r = read_response(&mut reader).unwrap();
    assert_eq!((r.status, r.header("X-Virus-ID")), (200, Some("Icapd.Test.Marker")));
    let body = pseudo_random(5000, 3);
    let r = exchange(&s, reqmod_no204(&body)).unwrap();
    assert_eq!((r.status, r.body.as_deref()), (200, Some(&body[..])));
    let mut s = server.connect();
    s.write_all(b"RESPMOD icap://127.0.0.1/respmod ICAP/1.0\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut BufReader::new(s)).unwrap().status, 400);
    let mut s = server.connect();
    s.write_all(b"OPTIONS icap://127.0.0.1/nosuch ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut BufReader::new(s)).unwrap().status, 404);
    5
}

#[test]
fn metrics_count_exactly_what_happened_and_the_json_log_has_every_line() {
    let metrics_port = free_port();
    let log_path = std::env::temp_dir().join(format!("icapd-metrics-test-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log_path);
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(
        &[
            "--shards",
            "2",
            "--inspector",
            "test",
            "--metrics",
            &metrics_addr,
            "--access-log",
            log_path.to_str().unwrap(),
            "--access-log-format",
            "json",
        ],
        None,
    );
    let connections = known_sequence(&server);

    // Transactions are counted when answered, so the page is exact as soon as we have read
    // every answer; the access log reaches the file within a control tick.
    let (status, page) = http_get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&page);
    for (series, want) in [
        ("icapd_requests_total{method=\"OPTIONS\",service=\"respmod\",status=\"200\"}", 2.0),
        ("icapd_requests_total{method=\"RESPMOD\",service=\"respmod\",status=\"204\"}", 3.0),
        ("icapd_requests_total{method=\"RESPMOD\",service=\"respmod\",status=\"200\"}", 1.0),
        ("icapd_requests_total{method=\"REQMOD\",service=\"reqmod\",status=\"200\"}", 1.0),
        ("icapd_requests_total{method=\"-\",service=\"-\",status=\"400\"}", 1.0),
        ("icapd_requests_total{method=\"-\",service=\"-\",status=\"404\"}", 1.0),
        ("icapd_transactions_total{action=\"passed\"}", 6.0),
        ("icapd_transactions_total{action=\"blocked\"}", 1.0),
        ("icapd_transactions_total{action=\"partiallyblocked\"}", 0.0),
        ("icapd_transactions_total{action=\"error\"}", 2.0),
        ("icapd_threats_total{threat=\"Icapd.Test.Marker\"}", 1.0),
        ("icapd_protocol_errors_total{error=\"BareLf\",status=\"400\"}", 1.0),
        ("icapd_protocol_errors_total{error=\"UnknownService\",status=\"404\"}", 1.0),
        ("icapd_request_duration_seconds_count", 9.0),
        ("icapd_request_duration_seconds_bucket{le=\"+Inf\"}", 9.0),
        ("icapd_scan_duration_seconds_count", 9.0),
        ("icapd_connections_accepted_total", connections as f64),
        ("icapd_connections_refused_total", 0.0),
        ("icapd_shards", 2.0),
        ("icapd_shards_answering", 2.0),
        ("icapd_access_log_dropped_lines_total", 0.0),
    ] {
        assert_eq!(metric(&m, series), want, "{series}\n{page}");
    }
    // Body bytes: three previews (700, 701, 702), the 600-byte marker object up to the end of
    // its preview chunk, and the 5000-byte upload.
    assert_eq!(metric(&m, "icapd_received_bytes_total{part=\"body\"}"), (700 + 701 + 702 + 600 + 5000) as f64);
    assert!(metric(&m, "icapd_sent_bytes_total") > 5000.0);
    let active: f64 = (0..2).map(|s| metric(&m, &format!("icapd_active_connections{{shard=\"{s}\"}}"))).sum();
    assert!(active <= 1.0, "at most the keep-alive connection is still open: {active}");

    let (status, page) = http_get(metrics_port, "/status");
    assert_eq!(status, 200);
    assert!(page.contains("inspector:  test") && page.contains("ISTag:      \"icapd-test-1\""), "{page}");
    assert!(page.contains("shards:     2 on CPUs"), "{page}");
    assert_eq!(http_get(metrics_port, "/nope").0, 404);

    let lines = wait_lines(&log_path, 9);
    assert_eq!(lines.len(), 9, "{lines:#?}");
    let mut seen: Vec<(String, u64, String, Option<String>)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
            assert_eq!(v["local"].as_str().unwrap(), format!("127.0.0.1:{}", server.port), "{l}");
            assert!(v["time"].as_str().unwrap().ends_with('Z') && v["time_us"].as_u64().is_some(), "{l}");
            (
                v["method"].as_str().unwrap_or("-").to_string(),
                v["status"].as_u64().unwrap(),
                v["action"].as_str().unwrap().to_string(),
                v["threat"].as_str().map(str::to_string),
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, u64, String, Option<String>)> = vec![
        ("-".into(), 400, "error".into(), None),
        // An unknown service: the request line named the method, so the log does too.
        ("OPTIONS".into(), 404, "error".into(), None),
        ("OPTIONS".into(), 200, "passed".into(), None),
        ("OPTIONS".into(), 200, "passed".into(), None),
        ("REQMOD".into(), 200, "passed".into(), None),
        ("RESPMOD".into(), 200, "blocked".into(), Some("Icapd.Test.Marker".into())),
        ("RESPMOD".into(), 204, "passed".into(), None),
        ("RESPMOD".into(), 204, "passed".into(), None),
        ("RESPMOD".into(), 204, "passed".into(), None),
    ];
    want.sort();
    assert_eq!(seen, want);

    // logrotate: move the file away, SIGUSR1, and new lines go to a new file at the old path.
    let rotated = log_path.with_extension("log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    server.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while std::fs::read_to_string(&log_path).map_or(true, |t| t.is_empty()) {
        assert!(Instant::now() < deadline, "no new log file after SIGUSR1");
        let mut s = server.connect();
        s.write_all(b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut BufReader::new(s)).unwrap().status, 200);
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let old = std::fs::read_to_string(&rotated).unwrap().lines().count();
    let new = wait_lines(&log_path, 1).len();
    assert!(new >= 1 && old >= 9);
    // Every transaction is in exactly one of the two files.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let old = std::fs::read_to_string(&rotated).unwrap().lines().count();
        let new = std::fs::read_to_string(&log_path).unwrap().lines().count();
        if old + new == 9 + sent {
            break;
        }
        assert!(Instant::now() < deadline, "{old} + {new} lines for {} transactions", 9 + sent);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&rotated);
}

#[test]
fn text_log_is_c_icap_shaped_and_limits_and_reloads_are_counted() {
    let log_path = std::env::temp_dir().join(format!("icapd-metrics-text-{}.log", std::process::id()));
    let (server, metrics_port) =
        engine_server(&log_path, "icap", "reload_poll_ms = 0\n[limits]\nscan_bytes_max = 4096\n");
    // One clean object, one EICAR, one over the scan limit (blocked by default policy).
    let eicar = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples/eicar.com")).unwrap();
    let s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for (body, want) in [(b"clean".to_vec(), None), (eicar, Some("Eicar")), (pseudo_random(10_000, 1), Some("MaxScan"))]
    {
        (&s).write_all(&respmod(&body, true)).unwrap();
        let r = read_response(&mut reader).unwrap();
        match want {
            None => assert_eq!(r.status, 204),
            Some(name) => {
                assert_eq!(r.status, 200);
                assert!(r.header("X-Virus-ID").unwrap().contains(name), "{:?}", r.head);
            }
        }
    }
    let lines = wait_lines(&log_path, 3);
    for line in &lines {
        // %tl (two fields), %la %a %im %iu %is, virus, action, bytes in, bytes out, time, busy
        // time, limit, X-Client-IP, user, policy, member path.
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 18, "{line}");
        let (total, busy): (u64, u64) = (fields[11].parse().unwrap(), fields[12].parse().unwrap());
        assert!(busy <= total, "busy time is part of the total: {line}");
        assert_eq!(&fields[14..], ["-", "-", "default", "-"], "{line}");
        assert!(fields[0].contains('/') && fields[1] == "+0000,", "{line}");
        assert_eq!((fields[2], fields[3], fields[4]), ("127.0.0.1", "127.0.0.1", "RESPMOD"), "{line}");
        assert_eq!(fields[5], format!("icap://127.0.0.1:{}/respmod", server.port), "{line}");
        assert!(fields[9..13].iter().all(|f| f.parse::<u64>().is_ok()), "{line}");
    }
    assert!(lines[0].contains(" 204 - passed "), "{}", lines[0]);
    assert!(lines[1].contains(" 200 Eicar") && lines[1].contains(" blocked "), "{}", lines[1]);
    assert!(lines[2].contains(" 200 Heuristics.Limits.Exceeded.MaxScanSize blocked "), "{}", lines[2]);
    assert!(lines[2].ends_with(" MaxScanSize - - default -") && lines[1].ends_with(" - - - default -"), "{lines:?}");

    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    assert_eq!(metric(&m, "icapd_limit_events_total{limit=\"MaxScanSize\"}"), 1.0);
    assert_eq!(metric(&m, "icapd_transactions_total{action=\"blocked\"}"), 2.0);
    assert_eq!(metric(&m, "icapd_signature_generation"), 0.0);
    assert!(metric(&m, "icapd_signatures{kind=\"body\"}") >= 1.0);
    assert!(metric(&m, "icapd_signature_load_seconds") > 0.0);
    assert_eq!(metric(&m, "icapd_signature_reloads_total{result=\"ok\"}"), 0.0);

    server.signal(libc::SIGHUP);
    server.wait_for_line("signatures: generation 1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
        if m.get("icapd_shard_signature_generation{shard=\"0\"}") == Some(&1.0) {
            assert_eq!(metric(&m, "icapd_signature_generation"), 1.0);
            assert_eq!(metric(&m, "icapd_signature_reloads_total{result=\"ok\"}"), 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "the shard never reported generation 1");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log_path);
}

#[test]
fn a_bad_metrics_address_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_icapd"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--inspector", "null", "--metrics", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen for metrics"), "{:?}", out);
}

#[test]
fn an_object_passed_over_a_limit_is_still_counted_and_logged() {
    let log_path = std::env::temp_dir().join(format!("icapd-metrics-pass-{}.log", std::process::id()));
    let (server, metrics_port) =
        engine_server(&log_path, "json", "[limits]\nscan_bytes_max = 4096\n[policy]\nover_limit = \"pass\"\n");
    let s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    (&s).write_all(&respmod(&pseudo_random(10_000, 2), true)).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 204, "passed by policy");
    (&s).write_all(&respmod(b"small and clean", true)).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 204);
    let lines = wait_lines(&log_path, 2);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!((first["action"].as_str(), first["limit"].as_str()), (Some("passed"), Some("MaxScanSize")), "{first}");
    assert_eq!((second["action"].as_str(), second["limit"].as_str()), (Some("passed"), None), "{second}");
    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    assert_eq!(metric(&m, "icapd_limit_events_total{limit=\"MaxScanSize\"}"), 1.0);
    assert_eq!(metric(&m, "icapd_transactions_total{action=\"passed\"}"), 2.0);
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log_path);
}

#[test]
fn an_access_log_that_cannot_be_opened_is_a_configuration_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_icapd"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--inspector", "null"])
        .args(["--access-log", "/nonexistent-dir/icapd/access.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open access log") && err.lines().count() == 1, "{err}");
}
