//! Scan time counts scanning, not the clock (issue 12).
//!
//! A clean download paced over 60 s, whose every chunk holds the first half of the EICAR string
//! (so YARA's atoms hit and the block scanner works on every chunk), passes with a 2 s
//! `scan_time_max`: only CPU time spent scanning is charged, and yara-x's block scanners no
//! longer carry a wall-clock timeout. The same body sent at full speed to a server whose rule
//! set is pathological (many regular expressions that run far from each atom hit) exceeds the
//! same 2 s of CPU and is blocked as `Heuristics.Limits.Exceeded.MaxScanTime`.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HALF_EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR";
const CHUNKS: usize = 60;
const CHUNK_BYTES: usize = 16 * 1024;
const CONFIG: &str = "[limits]\nscan_time_max_ms = 2000\n";

/// One chunk: filler with the half string planted every 64 bytes.
fn chunk(i: usize) -> Vec<u8> {
    let mut c = pseudo_random(CHUNK_BYTES, i as u64 + 1);
    for at in (0..CHUNK_BYTES - HALF_EICAR.len()).step_by(64) {
        c[at..at + HALF_EICAR.len()].copy_from_slice(HALF_EICAR);
    }
    c
}

fn signatures(name: &str, extra: Option<String>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("icapd-scantime-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    for f in ["eicar.ndb", "eicar.yar"] {
        std::fs::copy(bundled.join(f), dir.join(f)).unwrap();
    }
    if let Some(rules) = extra {
        std::fs::write(dir.join("slow.yar"), rules).unwrap();
    }
    dir
}

/// Rules whose regular expressions start at an atom of the half string and then run up to
/// 4000 bytes looking for a tail that is never there: every atom hit costs thousands of steps
/// per rule.
fn pathological_rules() -> String {
    (0..200)
        .map(|i| format!("rule slow_{i} {{ strings: $r = /X5O!P%@AP[^\\x00]{{0,4000}}Q{i:03}Z/ condition: $r }}\n"))
        .collect()
}

/// Sends the body (paced by `gap` between chunks) and returns the answer.
fn send(server: &Server, gap: Duration) -> Response {
    let stream = server.connect();
    stream.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
    let mut w = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&respmod_head("respmod", None, true)).unwrap();
        for i in 0..CHUNKS {
            let c = chunk(i);
            let _ = w.write_all(format!("{:x}\r\n", c.len()).as_bytes());
            let _ = w.write_all(&c);
            let _ = w.write_all(b"\r\n");
            std::thread::sleep(gap);
        }
        let _ = w.write_all(b"0\r\n\r\n");
    });
    let resp = read_response(&mut BufReader::new(stream)).expect("an answer");
    writer.join().unwrap();
    resp
}

#[test]
fn a_paced_clean_download_passes_and_the_same_body_with_pathological_rules_hits_max_scan_time() {
    let full_speed = {
        let dir = signatures("slow", Some(pathological_rules()));
        let server = Server::start(&["--shards", "1", "--signatures", dir.to_str().unwrap()], Some(CONFIG));
        let started = Instant::now();
        let resp = send(&server, Duration::ZERO);
        let took = started.elapsed();
        server.stop();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(resp.status, 200, "{resp:?}");
        assert!(
            resp.header("X-Infection-Found").is_some_and(|v| v.contains("Heuristics.Limits.Exceeded.MaxScanTime")),
            "{:?}",
            resp.head
        );
        took
    };
    let dir = signatures("paced", None);
    let server = Server::start(&["--shards", "1", "--signatures", dir.to_str().unwrap()], Some(CONFIG));
    let started = Instant::now();
    let resp = send(&server, Duration::from_secs(1));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(CHUNKS as u64), "the download was paced");
    assert_eq!(resp.status, 204, "a slow clean download is not judged by the clock: {resp:?}");
    eprintln!("scan_time: paced download {took:?} passed; pathological rules at full speed answered in {full_speed:?}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
