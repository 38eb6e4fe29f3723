//! Who is asking, against the real binary: the client allow-list closes connections from
//! addresses outside it before any work; the policy table maps the identity Squid sends
//! (`X-Client-IP`, `X-Client-Username` plain or base64) to `skip`, `default` or `strict`, and
//! each policy visibly changes the answer; the access log and the metrics say which policy
//! ran, who asked, and which service a request named even when it is not ours.

mod common;

use common::*;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const EICAR: &[u8] = include_bytes!("samples/eicar.com");

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines: Vec<String> =
            std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{} has {} lines, want {n}", path.display(), lines.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// icapd with the bundled signatures, one shard, metrics, and a JSON access log at `log`.
fn engine_server(log: &Path, format: &str, config: &str) -> (Server, u16) {
    let _ = std::fs::remove_file(log);
    let metrics_port = free_port();
    let signatures = concat!(env!("CARGO_MANIFEST_DIR"), "/signatures");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let args = ["--shards", "1", "--signatures", signatures, "--metrics", &metrics, "--access-log"];
    let server =
        Server::start(&[&args[..], &[log.to_str().unwrap(), "--access-log-format", format]].concat(), Some(config));
    (server, metrics_port)
}

/// A RESPMOD head with `identity` header lines, `Allow: 204`, and an optional preview.
fn head_with(identity: &str, preview: Option<usize>) -> Vec<u8> {
    let plain = String::from_utf8(respmod_head("respmod", preview, true)).unwrap();
    plain.replacen("Host: 127.0.0.1\r\n", &format!("Host: 127.0.0.1\r\n{identity}"), 1).into_bytes()
}

/// A whole RESPMOD (no preview, `Allow: 204`) of `body` with `identity` header lines.
fn respmod_as(identity: &str, body: &[u8]) -> Vec<u8> {
    let mut req = head_with(identity, None);
    req.extend(chunked(body, 4096));
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

const TABLE: &str = r#"
[[policy.rules]]
users = ["skipper"]
networks = ["192.0.2.0/24"]
groups = ["cdn"]
policy = "skip"
[[policy.rules]]
users = ["tight"]
networks = ["2001:db8::/32"]
policy = "strict"
[policy.early_204]
content_types = ["application/"]
"#;

#[test]
fn the_same_eicar_is_blocked_under_default_and_passed_and_logged_under_skip() {
    let log = std::env::temp_dir().join(format!("icapd-policy-skip-{}.log", std::process::id()));
    let (server, metrics_port) = engine_server(&log, "json", TABLE);
    let s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    // base64("skipper"), as Squid sends it with icap_client_username_encode on.
    let cases = [
        ("", 200, "default"),
        ("X-Client-Username: c2tpcHBlcg==\r\n", 204, "skip"),
        ("X-Client-IP: 192.0.2.44\r\n", 204, "skip"),
        ("X-Client-IP: 198.51.100.1\r\nX-Client-Username: skipperX\r\n", 200, "default"),
        // Malformed identity never fails the request: it is the default policy.
        ("X-Client-IP: 192.0.2.999\r\nX-Client-Username: \r\n", 200, "default"),
        ("X-Client-IP: 2001:db8::9\r\n", 200, "strict"),
        // base64("staff, cdn"): one of the groups is in the skip rule.
        ("X-Authenticated-Groups: c3RhZmYsIGNkbg==\r\n", 204, "skip"),
        ("X-Authenticated-Groups: staff, cdnX\r\n", 200, "default"),
    ];
    for (identity, want, _) in cases {
        (&s).write_all(&respmod_as(identity, EICAR)).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.status, want, "{identity:?}: {}", r.head);
        if want == 200 {
            assert_eq!(r.header("X-Virus-ID"), Some("Eicar-Test-Signature"), "{identity:?}");
        }
    }
    let lines = wait_lines(&log, cases.len());
    for (line, (identity, want, policy)) in lines.iter().zip(cases) {
        let v = json(line);
        assert_eq!(v["policy"].as_str(), Some(policy), "{identity:?}: {line}");
        assert_eq!(v["status"].as_u64(), Some(u64::from(want)), "{line}");
        let action = if want == 204 { "passed" } else { "blocked" };
        assert_eq!(v["action"].as_str(), Some(action), "{line}");
    }
    assert_eq!(json(&lines[1])["user"].as_str(), Some("skipper"), "decoded from base64");
    assert_eq!(json(&lines[2])["x_client_ip"].as_str(), Some("192.0.2.44"));
    assert_eq!(json(&lines[3])["user"].as_str(), Some("skipperX"));
    assert!(json(&lines[4])["x_client_ip"].is_null() && json(&lines[4])["user"].is_null(), "{}", lines[4]);
    assert!(json(&lines[0])["client"].as_str().unwrap().starts_with("127.0.0.1:"), "the connecting address");
    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    assert_eq!(metric(&m, "icapd_transactions_by_policy_total{policy=\"default\"}"), 4.0);
    assert_eq!(metric(&m, "icapd_transactions_by_policy_total{policy=\"skip\"}"), 3.0);
    assert_eq!(metric(&m, "icapd_transactions_by_policy_total{policy=\"strict\"}"), 1.0);
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log);
}

#[test]
fn strict_refuses_the_early_204_that_default_allows() {
    let log = std::env::temp_dir().join(format!("icapd-policy-strict-{}.log", std::process::id()));
    let (server, _) = engine_server(&log, "icap", TABLE);
    let body = pseudo_random(3000, 5);
    for (identity, early) in [("", true), ("X-Client-Username: tight\r\n", false)] {
        // A clean 1024-byte preview without ieof of an application/octet-stream object.
        let s = server.connect();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut req = head_with(identity, Some(1024));
        req.extend(chunked(&body[..1024], 1024));
        req.extend_from_slice(b"0\r\n\r\n");
        (&s).write_all(&req).unwrap();
        let r = read_response(&mut reader).unwrap();
        if early {
            assert_eq!(r.status, 204, "default: the early-204 list allows it");
        } else {
            assert_eq!(r.status, 100, "strict: the whole object must be judged");
            (&s).write_all(&chunked(&body[1024..], 1024)).unwrap();
            (&s).write_all(b"0\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut reader).unwrap().status, 204);
        }
    }
    let lines = wait_lines(&log, 2);
    assert!(lines[0].ends_with(" - - - default -"), "{}", lines[0]);
    assert!(lines[1].ends_with(" - - tight strict -"), "{}", lines[1]);
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log);
}

#[test]
fn strict_scans_less_and_blocks_over_its_limit_even_under_pass() {
    let log = std::env::temp_dir().join(format!("icapd-policy-limit-{}.log", std::process::id()));
    let config = format!("[limits]\nstrict_scan_bytes_max = 4096\n[policy]\nover_limit = \"pass\"\n{TABLE}");
    let (server, _) = engine_server(&log, "json", &config);
    let s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let big = pseudo_random(10_000, 9);
    (&s).write_all(&respmod_as("", &big)).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 204, "default: under scan_bytes_max");
    (&s).write_all(&respmod_as("X-Client-Username: tight\r\n", &big)).unwrap();
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 200, "strict: over strict_scan_bytes_max, blocked whatever over_limit says");
    assert_eq!(r.header("X-Virus-ID"), Some("Heuristics.Limits.Exceeded.MaxScanSize"));
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log);
}

#[test]
fn addresses_outside_allow_clients_are_closed_unanswered_and_counted() {
    let log = std::env::temp_dir().join(format!("icapd-policy-allow-{}.log", std::process::id()));
    let (server, metrics_port) = engine_server(&log, "json", "allow_clients = [\"127.0.0.1/32\", \"::1/128\"]\n");
    // 127.0.0.2 reaches loopback too, but is not on the list.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&SocketAddr::from(([127, 0, 0, 1], server.port)).into()).unwrap();
    let mut denied: TcpStream = socket.into();
    denied.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = denied.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut got = Vec::new();
    // End of input or a reset, either way without a byte of an answer.
    let _ = denied.read_to_end(&mut got);
    assert!(got.is_empty(), "no answer for a denied address: {:?}", String::from_utf8_lossy(&got));
    // The listed address is served.
    check_serves(&server).unwrap();
    let m = parse_metrics(&http_get(metrics_port, "/metrics").1);
    assert_eq!(metric(&m, "icapd_connections_denied_total"), 1.0);
    assert_eq!(metric(&m, "icapd_connections_accepted_total"), 1.0);
    // Nothing about the denied connection reached the access log: no work was done for it.
    let lines = wait_lines(&log, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log);
}

#[test]
fn an_unknown_service_is_logged_by_name_and_status_times_are_iso_8601() {
    let log = std::env::temp_dir().join(format!("icapd-policy-service-{}.log", std::process::id()));
    let (server, metrics_port) = engine_server(&log, "icap", "");
    for service in ["avscn", "srv_clamav"] {
        let mut s = server.connect();
        s.write_all(format!("OPTIONS icap://127.0.0.1/{service} ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        let want = if service == "avscn" { 404 } else { 200 };
        assert_eq!(read_response(&mut BufReader::new(s)).unwrap().status, want);
    }
    let lines = wait_lines(&log, 2);
    let url = |service: &str| format!(" icap://127.0.0.1:{}/{service} ", server.port);
    assert!(lines[0].contains(&format!("OPTIONS{}404 ", url("avscn"))), "{}", lines[0]);
    assert!(lines[1].contains(&url("srv_clamav")) && lines[1].contains(" 200 "), "{}", lines[1]);
    let (_, page) = http_get(metrics_port, "/status");
    let started = page.lines().find_map(|l| l.strip_prefix("started:")).expect("a started line").trim();
    let loaded = page.split(" at ").nth(1).and_then(|t| t.lines().next()).expect("a load time").trim();
    for t in [started, loaded] {
        let b = t.as_bytes();
        let shape = b.len() == 20
            && [4, 7].iter().all(|&i| b[i] == b'-')
            && b[10] == b'T'
            && [13, 16].iter().all(|&i| b[i] == b':')
            && b[19] == b'Z';
        assert!(shape && t.starts_with("20"), "{t:?} is not ISO 8601 UTC:\n{page}");
    }
    assert!(!page.contains("since the epoch"), "{page}");
    assert!(server.stop().success());
    let _ = std::fs::remove_file(&log);
}
