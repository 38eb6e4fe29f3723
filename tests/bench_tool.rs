//! The load generator against the real server: `icap-bench` must count exactly the requests
//! it sent, find every planted EICAR blocked and everything else passed, in both loop modes
//! and with and without `Allow: 204`; and it must fail (exit 1) against a server that lets
//! a planted EICAR through. Counts only: nothing here measures speed.

mod common;

use common::*;
use std::process::Command;

fn bench(port: u16, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_icap-bench"))
        .args(["--server", &format!("127.0.0.1:{port}"), "--connections", "4", "--duration", "30", "--quiet"])
        .args(["--json", "-"])
        .args(extra)
        .output()
        .expect("run icap-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The markdown table comes first; the JSON report is the object that starts on a line of
    // its own.
    let json_start = if stdout.starts_with("{\n") { Some(0) } else { stdout.find("\n{\n").map(|i| i + 1) };
    let json_start = json_start.unwrap_or_else(|| panic!("no JSON in {stdout}"));
    let report: serde_json::Value =
        serde_json::from_str(&stdout[json_start..]).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (out.status.code(), report)
}

#[test]
fn icap_bench_checks_every_verdict_against_the_real_server() {
    let signatures = concat!(env!("CARGO_MANIFEST_DIR"), "/signatures");
    let server = Server::start(&["--shards", "2", "--signatures", signatures, "--access-log", "off"], None);
    for extra in [
        &["--requests", "200", "--body-size", "1024", "--eicar-every", "10"][..],
        &["--requests", "40", "--body-size", "200K", "--no204", "--eicar-every", "10"][..],
        &["--requests", "30", "--body-size", "64K", "--method", "reqmod", "--preview", "off", "--eicar-every", "5"][..],
        &["--requests", "100", "--rate", "500", "--body-size", "4K", "--eicar-every", "10"][..],
    ] {
        let (code, r) = bench(server.port, extra);
        assert_eq!(code, Some(0), "{extra:?}: {r}");
        let requests: u64 = extra[1].parse().unwrap();
        let every: u64 = extra[extra.iter().position(|a| *a == "--eicar-every").unwrap() + 1].parse().unwrap();
        let v = &r["verdicts"];
        assert_eq!(r["answered"].as_u64(), Some(requests), "{extra:?}: {r}");
        assert_eq!(v["wrong"].as_u64(), Some(0), "{extra:?}: {r}");
        assert_eq!(v["infected_sent"].as_u64(), Some(requests / every), "{extra:?}: {r}");
        assert_eq!(v["blocked"].as_u64(), Some(requests / every), "{extra:?}: {r}");
        assert_eq!(v["passed"].as_u64(), Some(requests - requests / every), "{extra:?}: {r}");
    }
    assert!(server.stop().success());
}

#[test]
fn icap_bench_fails_against_a_server_that_misses_eicar() {
    // The null inspector finds nothing, so every planted EICAR passes: a wrong verdict.
    let server = Server::start(&["--shards", "1", "--inspector", "null", "--access-log", "off"], None);
    let (code, r) = bench(server.port, &["--requests", "20", "--eicar-every", "10"]);
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["verdicts"]["wrong"].as_u64(), Some(2), "{r}");
    assert!(server.stop().success());
}
