//! Squid in front of icapd over TLS (`icaps://`), end to end: a local origin server, icapd with a
//! TLS listener and a throwaway certificate, and Squid on a private port with its own
//! configuration (never the system service), driven with curl through the proxy. Debian's
//! Squid 5.7 speaks icaps in both its GnuTLS (`squid`) and OpenSSL (`squid-openssl`) builds;
//! the test command installs one of them, curl and openssl. A component that cannot start
//! fails the test loudly.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const EICAR: &[u8] = include_bytes!("samples/eicar.com");

/// A minimal HTTP/1.1 origin on loopback serving fixed objects; returns its port.
fn start_origin(objects: HashMap<String, Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let objects = Arc::new(objects);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let objects = objects.clone();
            std::thread::spawn(move || serve_origin(stream, &objects));
        }
    });
    port
}

fn serve_origin(stream: TcpStream, objects: &HashMap<String, Vec<u8>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let path = target.split("://").nth(1).map_or(target.as_str(), |r| &r[r.find('/').unwrap_or(r.len())..]);
        let Some(body) = objects.get(path) else {
            let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).and_then(|_| out.write_all(body)).is_err() {
            return;
        }
    }
}

/// Squid with a private configuration using icapd over icaps://, killed when dropped.
struct Squid {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Squid {
    /// Squid using icapd at `icaps_port`, with `tls_options` on both ICAP services.
    fn start(icaps_port: u16, tls_options: &str) -> Squid {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("icapd-squid-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let icaps = format!("icaps://127.0.0.1:{icaps_port}");
        let conf = format!(
            "http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
access_log {d}/logs/access.log
cache_log {d}/logs/cache.log
cache_store_log none
logformat icapd %ts.%03tu %icap::>h
icap_log {d}/logs/icap.log icapd
coredump_dir {d}
cache deny all
http_access allow localhost
http_access deny all
icap_enable on
icap_preview_enable on
icap_preview_size 1024
icap_persistent_connections on
icap_service_failure_limit -1
icap_service svc_resp respmod_precache bypass=off {icaps}/respmod {tls_options}
icap_service svc_req reqmod_precache bypass=off {icaps}/reqmod {tls_options}
adaptation_access svc_resp allow all
adaptation_access svc_req allow all
shutdown_lifetime 1 seconds
",
            d = dir.display()
        );
        std::fs::write(dir.join("squid.conf"), conf).unwrap();
        // Squid drops to the proxy user when started as root; it must be able to write its logs.
        let _ = Command::new("chown").args(["-R", "proxy:proxy"]).arg(&dir).status();
        let _ = Command::new("chmod").args(["-R", "a+rwX"]).arg(&dir).status();
        let child = Command::new("/usr/sbin/squid")
            .args(["-N", "-f"])
            .arg(dir.join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid must be installed (apt-get install squid-openssl or squid); the test command installs it");
        let squid = Squid { child, port, dir };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return squid;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("squid did not start listening on {port}; cache.log:\n{}", squid.log("cache.log"));
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(name)).unwrap_or_default()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fetches `url` through the proxy; returns (HTTP status, body, curl exit code).
fn curl(squid: &Squid, url: &str) -> (u16, Vec<u8>, i32) {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "30", "-x", &format!("http://127.0.0.1:{}", squid.port), "-w", "\n%{http_code}"])
        .arg(url)
        .output()
        .expect("curl must be installed; the test command installs it");
    let mut out = output.stdout;
    let split = out.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&out[split..]).trim().parse().unwrap_or(0);
    out.truncate(split);
    (status, out, output.status.code().unwrap_or(-1))
}

#[test]
fn squid_over_icaps() {
    let clean_page = b"<html><body>a clean page over icaps</body></html>\n".to_vec();
    // Over the preview and under Squid's 64 KB backup limit (Squid sends Allow: 204 for it),
    // and far over both (Squid sends no Allow: 204; icapd echoes it through TLS).
    let medium = pseudo_random(40_000, 41);
    let big = pseudo_random(3 * 1024 * 1024, 42);
    let objects: HashMap<String, Vec<u8>> = [
        ("/clean.html".to_string(), clean_page.clone()),
        ("/eicar.com".to_string(), EICAR.to_vec()),
        ("/medium.bin".to_string(), medium.clone()),
        ("/big.bin".to_string(), big.clone()),
    ]
    .into_iter()
    .collect();
    let origin = start_origin(objects);
    let url = |p: &str| format!("http://127.0.0.1:{origin}{p}");
    let dir = std::env::temp_dir().join(format!("icapd-squid-tls-certs-{}", std::process::id()));
    let certs = make_certs(&dir, "squid");
    let tls_port = free_port();
    let sigs = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    let icapd = Server::start(
        &[
            "--shards",
            "2",
            "--signatures",
            sigs.to_str().unwrap(),
            "--tls-listen",
            &format!("127.0.0.1:{tls_port}"),
            "--tls-cert",
            certs.cert.to_str().unwrap(),
            "--tls-key",
            certs.key.to_str().unwrap(),
        ],
        None,
    );
    let squid = Squid::start(tls_port, "tls-flags=DONT_VERIFY_PEER");

    let (status, body, _) = curl(&squid, &url("/clean.html"));
    assert!(
        status == 200 && body == clean_page,
        "{status} {}\ncache.log:\n{}",
        String::from_utf8_lossy(&body),
        squid.log("cache.log")
    );
    let (status, body, _) = curl(&squid, &url("/eicar.com"));
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("Eicar-Test-Signature"));
    for (path, object) in [("/medium.bin", &medium), ("/big.bin", &big)] {
        let (status, body, code) = curl(&squid, &url(path));
        assert_eq!((status, code), (200, 0), "{path}");
        assert!(body == *object, "{path} differs ({} of {} bytes)", body.len(), object.len());
    }
    // icapd offers 206 in OPTIONS, so Squid (icap_206_enable on by default) allows 206 in its
    // requests: with 204 for the object it kept whole, alone for the one it could not (where only
    // an answer to the preview may be 206). Both arrived byte-exact above.
    // The log has one line per ICAP request, its headers URL-escaped.
    let respmods = |log: &str| -> Vec<String> {
        log.lines()
            .map(|l| l.replace("%20", " ").replace("%0D%0A", " | "))
            .filter(|l| l.contains("res-body="))
            .collect()
    };
    let mut icap_log = String::new();
    for _ in 0..50 {
        icap_log = squid.log("icap.log");
        if respmods(&icap_log).len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = respmods(&icap_log);
    assert!(lines.iter().any(|l| l.contains("Allow: 204, 206")), "icap.log:\n{icap_log}");
    assert!(lines.iter().any(|l| l.contains("Allow: 206") && !l.contains("204")), "icap.log:\n{icap_log}");
    // Every transaction went to icapd over TLS: its access log names the TLS port.
    let mut seen = String::new();
    for _ in 0..50 {
        if seen.matches(&format!(":{tls_port}/respmod")).count() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        while let Ok(line) = icapd.stderr.try_recv() {
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    assert!(seen.matches(&format!(":{tls_port}/respmod")).count() >= 4, "icapd's log:\n{seen}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(squid);
    drop(icapd);
}

/// Squid verifying icapd's certificate against the CA (`tls-cafile=`) and presenting a client
/// certificate (`tls-cert=`, `tls-key=`) that icapd requires with `--tls-client-ca`; and the same
/// Squid without its certificate, which icapd refuses (so Squid, with bypass=off, serves an error
/// instead of an unscanned object).
#[test]
fn squid_with_a_client_certificate() {
    let origin = start_origin([("/clean.html".to_string(), b"mutual TLS page\n".to_vec())].into_iter().collect());
    let url = format!("http://127.0.0.1:{origin}/clean.html");
    let dir = std::env::temp_dir().join(format!("icapd-squid-mtls-{}", std::process::id()));
    let certs = make_certs(&dir, "mtls");
    // Squid runs as the proxy user and must read its certificate and key.
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(&dir).status();
    let tls_port = free_port();
    let icapd = Server::start(
        &[
            "--shards",
            "2",
            "--inspector",
            "test",
            "--tls-listen",
            &format!("127.0.0.1:{tls_port}"),
            "--tls-cert",
            certs.cert.to_str().unwrap(),
            "--tls-key",
            certs.key.to_str().unwrap(),
            "--tls-client-ca",
            certs.ca.to_str().unwrap(),
        ],
        None,
    );
    // Squid checks the certificate against the name in tls-domain=. Without it, Squid 5.7 failed
    // the check for this URI's IP address although the certificate lists it, so the test names
    // localhost, which the certificate also carries.
    let verified = format!("tls-cafile={} tls-domain=localhost", certs.ca.display());
    let with_cert =
        format!("{verified} tls-cert={} tls-key={}", certs.client_cert.display(), certs.client_key.display());
    let squid = Squid::start(tls_port, &with_cert);
    let (status, body, _) = curl(&squid, &url);
    let log = squid.log("cache.log");
    let problems: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") || l.contains("WARNING")).collect();
    assert!(status == 200 && body == b"mutual TLS page\n", "{status}; cache.log:\n{}", problems.join("\n"));
    drop(squid);
    let squid = Squid::start(tls_port, &verified);
    let (status, body, _) = curl(&squid, &url);
    assert!(status >= 500 && body != b"mutual TLS page\n", "served without a client certificate: {status}");
    drop(squid);
    drop(icapd);
    let _ = std::fs::remove_dir_all(&dir);
}
