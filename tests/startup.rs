//! Start-up refuses an address and port another process already listens on: every shard
//! binds with SO_REUSEPORT, which would otherwise let a second server start silently and take
//! part of the first one's connections.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Runs icapd on `port` with `extra` flags; returns (exit code, stderr) once it exits, or
/// `None` if it is still running after 20 s (then it is killed).
fn run_on(port: u16, extra: &[&str]) -> Option<(Option<i32>, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_icapd"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--inspector", "null", "--shards", "1"]).args(extra);
    let (mut child, stderr) = spawn_with_stderr(&mut cmd);
    match wait_timeout(&mut child, Duration::from_secs(20)) {
        // The reader thread ends at the end of the pipe, which the exit has closed: wait for
        // every line, not just those read so far.
        Some(status) => Some((status.code(), stderr.iter().collect::<Vec<_>>().join("\n"))),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

#[test]
fn a_second_server_on_the_same_port_is_refused_with_one_line() {
    let first = Server::start(&["--inspector", "null", "--shards", "1"], None);
    let (code, stderr) = run_on(first.port, &[]).expect("the second server must exit, not serve");
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("already in use") && lines[0].contains("--allow-shared-port"), "{stderr}");
    // The first server is untouched and still answers.
    check_serves(&first).unwrap();
}

#[test]
fn a_port_held_by_another_program_is_refused_too() {
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    let (code, stderr) = run_on(port, &[]).expect("must exit");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn allow_shared_port_starts_beside_another_server() {
    let first = Server::start(&["--inspector", "null", "--shards", "1"], None);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_icapd"));
    cmd.args(["--listen", &format!("127.0.0.1:{}", first.port), "--inspector", "null", "--shards", "1"]);
    cmd.arg("--allow-shared-port");
    let (mut child, stderr) = spawn_with_stderr(&mut cmd);
    let lines = lines_until_ready(&stderr);
    assert!(lines.iter().any(|l| l.contains("icapd: ready")), "{lines:?}");
    assert_eq!(terminate(&mut child).and_then(|s| s.code()), Some(0));
    // The same through the configuration file.
    let second =
        Server::start_on(first.port, &["--inspector", "null", "--shards", "1"], Some("allow_shared_port = true\n"));
    check_serves(&second).unwrap();
}
