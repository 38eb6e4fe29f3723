//! The signature engine end to end: the real binary with the bundled signature folder (or a
//! folder made for one test), spoken to over loopback.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const EICAR: &[u8] = include_bytes!("samples/eicar.com");
const EICAR_ALTERED: &[u8] = include_bytes!("samples/eicar-altered.com");

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures")
}

fn start(signatures: &Path, config: Option<&str>) -> Server {
    Server::start(&["--shards", "2", "--signatures", signatures.to_str().unwrap()], config)
}

/// A folder holding copies of the named bundled files.
fn folder_with(server_dir_hint: &str, files: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("icapd-sigs-{}-{server_dir_hint}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in files {
        std::fs::copy(bundled().join(f), dir.join(f)).unwrap();
    }
    dir
}

/// RESPMOD without preview; returns the response.
fn scan(server: &Server, body: &[u8], allow_204: bool) -> Response {
    exchange(&server.connect(), respmod(body, allow_204)).expect("a response")
}

fn threat(r: &Response) -> Option<String> {
    r.header("X-Infection-Found").and_then(|v| v.split("Threat=").nth(1)).map(|t| t.trim_end_matches(';').to_string())
}

fn embed(at: usize, total: usize, sample: &[u8]) -> Vec<u8> {
    let mut body = pseudo_random(total, at as u64 + 1);
    body[at..at + sample.len()].copy_from_slice(sample);
    body
}

#[test]
fn every_bundled_format_has_a_positive_and_a_negative_sample() {
    for (file, name) in [
        ("eicar.ndb", "Eicar-Test-Signature"),
        ("eicar.hdb", "Eicar-Test-Signature-MD5"),
        ("eicar.hsb", "Eicar-Test-Signature-SHA1"),
        ("eicar.yar", "YARA.EICAR_Test_File"),
    ] {
        let dir = folder_with(file, &[file]);
        let server = start(&dir, None);
        let r = scan(&server, EICAR, true);
        assert_eq!(threat(&r).as_deref(), Some(name), "{file}: {r:?}");
        assert!(r.hdr.starts_with(b"HTTP/1.1 403"), "{file}");
        assert_eq!(scan(&server, EICAR_ALTERED, true).status, 204, "{file}: altered sample must pass");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
    // SHA-256 alone (the .hsb file carries SHA-1 and SHA-256 lines; SHA-1 matched above).
    let dir = std::env::temp_dir().join(format!("icapd-sigs-sha256-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hsb = std::fs::read_to_string(bundled().join("eicar.hsb")).unwrap();
    std::fs::write(dir.join("only256.hsb"), hsb.lines().filter(|l| !l.contains("SHA1")).collect::<Vec<_>>().join("\n"))
        .unwrap();
    let server = start(&dir, None);
    assert_eq!(threat(&scan(&server, EICAR, true)).as_deref(), Some("Eicar-Test-Signature-SHA256"));
    assert_eq!(scan(&server, EICAR_ALTERED, true).status, 204);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    // The bundled host rule: positive and negative.
    let server = start(&bundled(), None);
    let reqmod = |host: &str| {
        let hdr = format!("GET http://{host}/file HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let mut s = server.connect();
        s.write_all(format!("REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nAllow: 204\r\nEncapsulated: req-hdr=0, null-body={}\r\n\r\n{hdr}", hdr.len()).as_bytes()).unwrap();
        read_response(&mut BufReader::new(s)).unwrap()
    };
    let r = reqmod("www.blocked.icapd.test");
    assert_eq!(threat(&r).as_deref(), Some("Icapd-Test-Blocked-Host"));
    assert!(r.hdr.starts_with(b"HTTP/1.1 403"));
    assert_eq!(reqmod("notblocked.icapd.test").status, 204);
}

#[test]
fn eicar_anywhere_in_any_chunking_is_blocked() {
    let server = start(&bundled(), None);
    let s = server.connect();
    for (at, total) in [(0, 68), (1000, 5000), (65_530, 200_000), (1_048_500, 2_000_000)] {
        let body = embed(at, total, EICAR);
        for chunk in [1usize, 7, 4096, 65_536] {
            if chunk == 1 && total > 10_000 {
                continue;
            }
            let mut req = respmod_head("respmod", None, true);
            req.extend(chunked(&body, chunk));
            req.extend_from_slice(b"0\r\n\r\n");
            let r = exchange(&s, req).unwrap_or_else(|e| panic!("at {at} of {total}, chunks of {chunk}: {e:?}"));
            assert_eq!(threat(&r).as_deref(), Some("Eicar-Test-Signature"), "at {at} of {total}, chunks of {chunk}");
        }
    }
    let clean = pseudo_random(300_000, 99);
    assert_eq!(exchange(&s, respmod(&clean, true)).unwrap().status, 204);
}

#[test]
fn preview_answers() {
    let server = start(&bundled(), None);
    // A match inside the preview is answered at once, without 100 Continue.
    let body = embed(200, 50_000, EICAR);
    let mut s = server.connect();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut req = respmod_head("avscan", Some(1024), false);
    req.extend(chunked(&body[..1024], 300));
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).unwrap();
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(threat(&r).as_deref(), Some("Eicar-Test-Signature"));
    // A clean preview with ieof: 204.
    let mut req = respmod_head("avscan", Some(1024), false);
    req.extend(chunked(b"small clean object", 1024));
    req.extend_from_slice(b"0; ieof\r\n\r\n");
    s.write_all(&req).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 204);
    // A clean preview without ieof: 100 Continue (no policy allows an early 204 by default),
    // then the EICAR after the preview is still found.
    let mut req = respmod_head("avscan", Some(1024), true);
    req.extend(chunked(&body[1024..2048], 1024));
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 100);
    let mut rest = chunked(&body, 8192);
    rest.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&rest).unwrap();
    assert_eq!(threat(&read_response(&mut reader).unwrap()).as_deref(), Some("Eicar-Test-Signature"));
}

#[test]
fn early_204_only_by_explicit_policy() {
    let server = start(
        &bundled(),
        Some("[policy.early_204]\ncontent_types = [\"image/\"]\nmagic = [\"png\"]\nsize_max_bytes = 10000000\n"),
    );
    let png = [b"\x89PNG\r\n\x1a\n".to_vec(), pseudo_random(5000, 3)].concat();
    let send_preview = |content_type: &str, body: &[u8]| {
        let res = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len());
        let mut req = format!(
            "RESPMOD icap://127.0.0.1/respmod ICAP/1.0\r\nPreview: 1024\r\nEncapsulated: req-hdr=0, res-hdr={}, res-body={}\r\n\r\n{REQ_HDR}{res}",
            REQ_HDR.len(),
            REQ_HDR.len() + res.len()
        )
        .into_bytes();
        req.extend(chunked(&body[..1024], 1024));
        req.extend_from_slice(b"0\r\n\r\n");
        let mut s = server.connect();
        s.write_all(&req).unwrap();
        read_response(&mut BufReader::new(s)).unwrap().status
    };
    assert_eq!(send_preview("image/png", &png), 204, "allow-listed type and magic");
    assert_eq!(send_preview("image/png", &pseudo_random(5000, 4)), 100, "wrong magic for the claimed type");
    assert_eq!(send_preview("application/octet-stream", &png), 100, "type not allow-listed");
}

#[test]
fn over_limit_blocks_by_default_and_passes_by_choice() {
    let big = pseudo_random(100_000, 5);
    let server = start(&bundled(), Some("[limits]\nscan_bytes_max = 50000\n"));
    let r = scan(&server, &big, true);
    assert_eq!(threat(&r).as_deref(), Some("Heuristics.Limits.Exceeded.MaxScanSize"));
    assert_eq!(scan(&server, &big[..40_000], true).status, 204);
    drop(server);
    let server = start(&bundled(), Some("[limits]\nscan_bytes_max = 50000\n[policy]\nover_limit = \"pass\"\n"));
    assert_eq!(scan(&server, &big, true).status, 204);
}

#[test]
fn block_page_template_is_used() {
    let dir = std::env::temp_dir().join(format!("icapd-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.html");
    std::fs::write(&page, "<html>Stopped: {{THREAT}}</html>").unwrap();
    let server = start(&bundled(), Some(&format!("[policy]\nblock_page = \"{}\"\n", page.display())));
    let r = scan(&server, EICAR, true);
    assert_eq!(r.body.as_deref(), Some(&b"<html>Stopped: Eicar-Test-Signature</html>"[..]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reload_switches_generation_without_failing_requests() {
    let dir = folder_with("reload", &["eicar.ndb"]);
    let server = start(&dir, Some("reload_poll_ms = 0\n"));
    let yara_only = b"....icapd-reload-marker-string....".to_vec();
    let before = scan(&server, &yara_only, true);
    assert_eq!(before.status, 204);
    let istag_before = before.header("ISTag").unwrap().to_string();

    // Load: four clients keep scanning (clean and EICAR) while the set is reloaded.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = server.port;
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                let (mut ok, mut failed) = (0u32, 0u32);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let infected = n % 3 == 0;
                    let body = if infected { embed(100, 20_000, EICAR) } else { pseudo_random(20_000, n + i) };
                    match exchange(&s, respmod(&body, true)) {
                        Ok(r) if infected && threat(&r).is_some() => ok += 1,
                        Ok(r) if !infected && r.status == 204 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(
        dir.join("marker.yar"),
        "rule Reload_Marker { strings: $m = \"icapd-reload-marker-string\" condition: $m }",
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_line("generation 1 from");
    // A broken file is reported and the running generation stays.
    std::fs::write(dir.join("broken.yar"), "rule Broken { condition: oops }").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_line("reload failed, keeping generation 1");
    std::fs::remove_file(dir.join("broken.yar")).unwrap();
    for _ in 0..3 {
        server.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.join().unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "{failed} requests failed during reloads ({ok} succeeded)");
    assert!(ok > 20, "the load actually ran ({ok} requests)");
    let after = scan(&server, &yara_only, true);
    assert_eq!(threat(&after).as_deref(), Some("YARA.Reload_Marker"));
    assert_ne!(after.header("ISTag").unwrap(), istag_before, "ISTag changes with the signature set");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn folder_changes_are_noticed_without_sighup() {
    let dir = folder_with("watch", &["eicar.ndb"]);
    let server = start(&dir, Some("reload_poll_ms = 100\n"));
    assert_eq!(scan(&server, b"watch-marker-bytes", true).status, 204);
    std::fs::write(dir.join("w.ndb"), "Watch-Marker:0:*:77617463682d6d61726b6572\n").unwrap();
    server.wait_for_line("generation 1 from");
    // Shards pick the new generation up at their next control poll (every 50 ms).
    let mut found = None;
    for _ in 0..50 {
        found = threat(&scan(&server, b"watch-marker-bytes", true));
        if found.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(found.as_deref(), Some("Watch-Marker"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unloadable_signatures_refuse_to_start() {
    let dir = std::env::temp_dir().join(format!("icapd-badsigs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.yar"), "rule {").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_icapd"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--signatures", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yar"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whole-object rules that need `MZ` at the start run in their own set, only on objects that
/// start with it: a PE-shaped object is blocked by one (whole and chunked into a preview), the
/// same bytes without the `MZ` pass, and a rule beside it that needs no `MZ` still runs on both.
#[test]
fn rules_gated_on_mz_run_on_pe_objects_only() {
    let dir = folder_with("mz", &["eicar.ndb"]);
    std::fs::write(
        dir.join("pe.yar"),
        "rule Pe_Marker { strings: $m = \"pe-gated-marker\" condition: uint16(0) == 0x5a4d and filesize < 1MB and $m }\n\
         rule Size_Marker { strings: $s = \"size-marker\" condition: filesize > 3000 and $s }\n",
    )
    .unwrap();
    let server = start(&dir, None);
    let mut pe = embed(2000, 5000, b"pe-gated-marker");
    pe[..2].copy_from_slice(b"MZ");
    assert_eq!(threat(&scan(&server, &pe, true)).as_deref(), Some("YARA.Pe_Marker"));
    assert_eq!(threat(&scan(&server, &pe, false)).as_deref(), Some("YARA.Pe_Marker"));
    let mut not_pe = pe.clone();
    not_pe[..2].copy_from_slice(b"ZM");
    assert_eq!(scan(&server, &not_pe, true).status, 204);
    let mut sized = embed(1000, 5000, b"size-marker");
    assert_eq!(threat(&scan(&server, &sized, true)).as_deref(), Some("YARA.Size_Marker"));
    sized[..2].copy_from_slice(b"MZ");
    assert_eq!(threat(&scan(&server, &sized, true)).as_deref(), Some("YARA.Size_Marker"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
