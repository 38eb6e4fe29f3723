//! Issue 13 item 6 over loopback: a threat found at the end of the body (an MD5 hash signature
//! concludes only there) after the echo has started cuts the echo off and closes the
//! connection at once: no final chunk, no wait for the idle timeout, and the OPTIONS request
//! pipelined behind it is not answered inside the truncated body. Sent whole, split at sampled
//! points, and byte by byte.

mod common;

use common::*;
use md5::{Digest, Md5};
use std::io::{BufReader, Read, Write};
use std::time::Duration;

const OPTIONS: &[u8] = b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

fn input(body: &[u8]) -> Vec<u8> {
    let mut out = respmod_head("respmod", None, false);
    out.extend(chunked(body, 1000));
    out.extend_from_slice(b"0\r\n\r\n");
    out.extend_from_slice(OPTIONS);
    out
}

/// Sends `input` in the pieces `cuts` gives and checks the answer is a cut-off echo followed by
/// the server closing (well before the 120 s idle timeout).
fn check(server: &Server, input: &[u8], cuts: &[usize], body_len: usize) {
    let mut stream = server.connect();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let pieces: Vec<Vec<u8>> = {
        let mut v = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            v.push(input[prev..c].to_vec());
            prev = c;
        }
        v
    };
    let sender = std::thread::spawn(move || {
        for p in pieces {
            if writer.write_all(&p).is_err() {
                break;
            }
        }
    });
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    match read_response(&mut reader) {
        Err(ReadError::Truncated(what)) => assert!(what.starts_with("body after"), "{what} (cuts {cuts:?})"),
        other => panic!("expected a cut-off echo, got {other:?} (cuts {cuts:?})"),
    }
    let mut rest = Vec::new();
    let closed = match reader.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    // The 20 s read timeout set above, far below the 120 s idle timeout, is what proves the
    // close came at once: a connection left open fails this read instead of ending it.
    assert!(closed, "the connection must close at once (cuts {cuts:?})");
    assert!(rest.is_empty(), "nothing after the cut-off echo: {:?}", String::from_utf8_lossy(&rest));
    let _ = stream.shutdown(std::net::Shutdown::Both);
    sender.join().unwrap();
    let _ = body_len;
}

#[test]
fn a_threat_found_at_the_end_of_a_started_echo_closes_the_connection() {
    let body = pseudo_random(6000, 7);
    let digest: String = Md5::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("icapd-late-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("late.hdb"), format!("{digest}:{}:Test.Late.MD5\n", body.len())).unwrap();
    let server = Server::start(
        &["--shards", "1", "--signatures", dir.to_str().unwrap()],
        Some("[limits]\nholdback_bytes = 1024\n"),
    );
    let input = input(&body);
    check(&server, &input, &[], body.len());
    for cut in (1..input.len()).step_by(97).chain(input.len() - 80..input.len()) {
        check(&server, &input, &[cut], body.len());
    }
    let every: Vec<usize> = (1..input.len()).collect();
    check(&server, &input, &every, body.len());
    assert!(check_serves(&server).is_ok());
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
