//! Shard placement as an operator sees it: the start-up log names the CPU of every shard, and
//! a CPU set the process cannot use is refused with one line and exit status 2 instead of a
//! server that quietly runs on fewer CPUs than it was given.

mod common;

use common::{free_port, lines_until_ready, spawn_with_stderr, terminate};
use std::process::Command;

/// Runs `icapd ARGS` under `taskset -c CPUS` and returns (exit code, stdout, stderr).
fn under_taskset(cpus: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new("taskset")
        .args(["-c", cpus, env!("CARGO_BIN_EXE_icapd")])
        .args(args)
        .output()
        .expect("taskset (util-linux) runs");
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn start_up_log_names_the_cpu_of_each_shard() {
    // The last CPU we may use, so that following the inherited mask differs from "CPU 0".
    let cpu = *icapd::server::cpus::allowed_cpus().last().unwrap();
    let port = free_port();
    let (mut child, rx) =
        spawn_with_stderr(Command::new("taskset").args(["-c", &cpu.to_string(), env!("CARGO_BIN_EXE_icapd")]).args([
            "--inspector",
            "null",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]));
    let lines = lines_until_ready(&rx);
    let status = terminate(&mut child);
    let log = lines.join("\n");
    assert!(
        log.contains(&format!("icapd: shard 0 pinned to CPU {cpu}, listening on 127.0.0.1:{port}")),
        "no pinning line for CPU {cpu}:\n{log}"
    );
    assert!(!log.contains("shard 1 "), "one CPU allowed, one shard:\n{log}");
    assert!(log.contains("icapd: ready: 1 shard(s)"), "{log}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit after SIGTERM");
}

#[test]
fn a_cpu_outside_the_inherited_mask_is_refused_with_one_line_and_status_2() {
    // Only CPU 0 allowed; CPU 1 need not even exist for the refusal.
    let (code, _, err) = under_taskset("0", &["--check", "--cpus", "0-1"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("icapd: CPU 1 is not in the allowed set [0]"), "{err}");

    // The same from the configuration file.
    let dir = std::env::temp_dir().join(format!("icapd-cpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("icapd.toml");
    std::fs::write(&config, "cpus = \"1\"\ninspector = \"null\"\n").unwrap();
    let (code, _, err) = under_taskset("0", &["--check", "--config", config.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("CPU 1 is not in the allowed set [0]"), "{err}");

    // More shards than allowed CPUs is refused too, rather than doubling up on a CPU.
    let (code, _, err) = under_taskset("0", &["--check", "--shards", "2", "--inspector", "null"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("exceeds the 1 CPUs available"), "{err}");

    // And a CPU inside the mask is accepted.
    let (code, out, err) = under_taskset("0", &["--check", "--cpus", "0", "--inspector", "null"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 shard(s) on CPUs [0]"), "{out}");
}
