//! ICAP over TLS against the real binary: c-icap's own client with `-tls` (OPTIONS, EICAR
//! blocked, clean files passed and echoed byte-exact), a rustls client for what c-icap-client
//! cannot show (the certificate served before and after SIGHUP, a bad file at reload, client
//! certificates), the handshake deadline, and bad files at start (exit 2, one line). The test
//! command installs c-icap and openssl; a missing tool fails the test.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const OPTIONS: &[u8] = b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

/// Starts icapd with a TLS listener on a free port serving `certs`; returns it and the port.
fn start_tls(certs: &TestCerts, extra: &[&str]) -> (Server, u16) {
    let tls_port = free_port();
    let listen = format!("127.0.0.1:{tls_port}");
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let args = [&["--shards", "2", "--tls-listen", &listen, "--tls-cert", cert, "--tls-key", key][..], extra].concat();
    (Server::start(&args, None), tls_port)
}

fn c_icap_client(port: u16, dir: &Path, args: &[&str]) -> (String, Option<Vec<u8>>) {
    let out_file = dir.join(format!("out-{}", args.join("_").replace('/', "_")));
    let _ = std::fs::remove_file(&out_file);
    let output = Command::new("c-icap-client")
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-tls", "-tls-no-verify", "-v"])
        .args(args)
        .arg("-o")
        .arg(&out_file)
        .output()
        .expect("c-icap-client must be installed (apt-get install c-icap); the test command installs it");
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    (text, std::fs::read(&out_file).ok())
}

/// A rustls client trusting `ca`, optionally presenting a client certificate.
fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
    };
    // Every connection does a full handshake, so each one shows the certificate served now (a
    // resumed session skips the certificate).
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    rustls::StreamOwned::new(rustls::ClientConnection::new(config, name).unwrap(), tcp)
}

/// OPTIONS over a fresh TLS connection; the status, or the error that ended the attempt.
fn options_over_tls(port: u16, config: Arc<rustls::ClientConfig>) -> Result<u16, String> {
    let mut s = connect(port, config);
    s.write_all(OPTIONS).map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    read_response(&mut r).map(|resp| resp.status).map_err(|e| format!("{e:?}"))
}

#[test]
fn c_icap_client_over_tls_with_the_bundled_signatures() {
    let sigs = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    let dir = std::env::temp_dir().join(format!("icapd-tls-cicap-{}", std::process::id()));
    let certs = make_certs(&dir, "a");
    let (server, tls_port) = start_tls(&certs, &["--signatures", sigs.to_str().unwrap()]);
    let eicar = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/eicar.com");
    let clean = dir.join("clean.bin");
    // Larger than the hold-back window and many TLS records: the echo streams through rustls.
    let clean_bytes = pseudo_random(2_000_000, 31);
    std::fs::write(&clean, &clean_bytes).unwrap();
    let (eicar, clean) = (eicar.to_str().unwrap(), clean.to_str().unwrap());

    let (text, _) = c_icap_client(tls_port, &dir, &["-s", "avscan"]);
    assert!(text.contains("ICAP/1.0 200 OK") && text.contains("Preview: 1024"), "{text}");
    assert!(text.contains("Allow 206: Yes"), "{text}");
    for extra in [&[][..], &["-nopreview"][..], &["-no204"][..]] {
        let args = [&["-s", "avscan", "-f", eicar][..], extra].concat();
        let (text, out) = c_icap_client(tls_port, &dir, &args);
        assert!(text.contains("Threat=Eicar-Test-Signature;"), "{args:?}: {text}");
        assert!(String::from_utf8_lossy(&out.unwrap_or_default()).contains("Eicar-Test-Signature"), "{args:?}");
    }
    let (text, _) = c_icap_client(tls_port, &dir, &["-s", "avscan", "-f", clean]);
    assert!(text.contains("ICAP/1.0 204"), "{text}");
    // With -206 the client sends Allow: 206 (icapd offers it): the 204 stays the answer where 204
    // is allowed, and without -no204's 204 the body comes back whole (a 206 after the preview
    // is not allowed by Allow: 206 alone).
    let (text, _) = c_icap_client(tls_port, &dir, &["-s", "avscan", "-f", clean, "-206"]);
    assert!(text.contains("ICAP/1.0 204"), "{text}");
    for extra in [&["-no204"][..], &["-no204", "-nopreview"][..], &["-no204", "-206"][..]] {
        let args = [&["-s", "avscan", "-f", clean][..], extra].concat();
        let (text, out) = c_icap_client(tls_port, &dir, &args);
        assert!(text.contains("ICAP/1.0 200 OK"), "{args:?}: {text}");
        assert!(out.as_deref() == Some(&clean_bytes[..]), "{args:?}: echo over TLS differs");
    }
    let (text, _) = c_icap_client(tls_port, &dir, &["-s", "reqmod", "-req", "http://origin.test/up", "-f", eicar]);
    assert!(text.contains("Threat=Eicar-Test-Signature;") && text.contains("HTTP/1.1 403 Forbidden"), "{text}");
    // The plain listener serves beside the TLS one.
    check_serves(&server).unwrap();
    // Plain ICAP sent to the TLS port is not served (it is not a TLS handshake).
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    plain.write_all(OPTIONS).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("ICAP/1.0"), "plain ICAP answered on the TLS port");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reloads_the_certificate_and_a_bad_file_keeps_the_old_one() {
    let dir = std::env::temp_dir().join(format!("icapd-tls-reload-{}", std::process::id()));
    let first = make_certs(&dir, "first");
    let second = make_certs(&dir, "second");
    // The server reads its own copies, which the test replaces.
    let live = TestCerts {
        ca: first.ca.clone(),
        cert: dir.join("live-cert.pem"),
        key: dir.join("live-key.pem"),
        client_cert: first.client_cert.clone(),
        client_key: first.client_key.clone(),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let (server, port) = start_tls(&live, &["--inspector", "null"]);
    let trust_first = client_config(&first.ca, None);
    let trust_second = client_config(&second.ca, None);
    assert_eq!(options_over_tls(port, trust_first.clone()), Ok(200));
    assert!(options_over_tls(port, trust_second.clone()).is_err(), "served a certificate from the wrong CA");

    // A connection established before the reload keeps working after it.
    let mut before = connect(port, trust_first.clone());
    before.write_all(OPTIONS).unwrap();
    let mut before = BufReader::new(before);
    assert_eq!(read_response(&mut before).unwrap().status, 200);

    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&second.key, &live.key).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_line("TLS: reloaded the certificate and key");
    assert_eq!(options_over_tls(port, trust_second.clone()), Ok(200));
    assert!(options_over_tls(port, trust_first.clone()).is_err(), "still serving the old certificate");
    before.get_mut().write_all(OPTIONS).unwrap();
    assert_eq!(read_response(&mut before).unwrap().status, 200);

    // A broken certificate, then a key that does not match: each keeps the working pair.
    std::fs::write(&live.cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_line("TLS: reload failed, keeping the current certificate");
    assert!(line.contains("live-cert.pem"), "{line}");
    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_line("TLS: reload failed, keeping the current certificate");
    assert_eq!(options_over_tls(port, trust_second), Ok(200));
    check_serves(&server).unwrap();
    // SIGTERM stops the TLS listeners with the plain one: exit 0.
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_ca_requires_a_client_certificate_it_signed() {
    let dir = std::env::temp_dir().join(format!("icapd-tls-mtls-{}", std::process::id()));
    let certs = make_certs(&dir, "m");
    let other = make_certs(&dir, "other");
    let (server, port) = start_tls(&certs, &["--inspector", "null", "--tls-client-ca", certs.ca.to_str().unwrap()]);
    let with_cert = client_config(&certs.ca, Some((&certs.client_cert, &certs.client_key)));
    assert_eq!(options_over_tls(port, with_cert), Ok(200));
    assert!(options_over_tls(port, client_config(&certs.ca, None)).is_err(), "served a client without a certificate");
    let foreign = client_config(&certs.ca, Some((&other.client_cert, &other.client_key)));
    assert!(options_over_tls(port, foreign).is_err(), "served a client certificate from another CA");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_handshake_that_does_not_finish_in_time_is_closed() {
    let dir = std::env::temp_dir().join(format!("icapd-tls-slow-{}", std::process::id()));
    let certs = make_certs(&dir, "s");
    let tls_port = free_port();
    let toml = format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[limits]\ntls_handshake_ms = 300\n",
        certs.cert.display(),
        certs.key.display()
    );
    let server = Server::start(&["--inspector", "null", "--shards", "1"], Some(&toml));
    // Silent after connecting, and trickling the first bytes of a ClientHello: both are closed by
    // the deadline (the read below would otherwise wait its full 20 s and fail).
    for first_bytes in [&b""[..], &[0x16, 0x03, 0x01, 0x00][..]] {
        let mut s = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(first_bytes).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("handshake not cut off: {other:?}"),
        }
    }
    // The TLS listener from the file still serves a real client.
    assert_eq!(options_over_tls(tls_port, client_config(&certs.ca, None)), Ok(200));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_certificate_files_at_start_are_exit_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("icapd-tls-bad-{}", std::process::id()));
    let certs = make_certs(&dir, "b");
    let other = make_certs(&dir, "o");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, b"hello\n").unwrap();
    let missing = dir.join("missing.pem");
    let cases: [(&Path, &Path, &str); 4] = [
        (&missing, &certs.key, "missing.pem"),
        (&garbage, &certs.key, "garbage.pem"),
        (&certs.cert, &garbage, "garbage.pem"),
        (&certs.cert, &other.key, "key"),
    ];
    for (cert, key, needle) in cases {
        for check in [false, true] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_icapd"));
            cmd.args(["--inspector", "null", "--listen", &format!("127.0.0.1:{}", free_port())])
                .args(["--tls-listen", &format!("127.0.0.1:{}", free_port())])
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
            if check {
                cmd.arg("--check");
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cert:?} {key:?} check={check}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(needle) && err.starts_with("icapd: "), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `icap-bench --tls` against the TLS listener: every request answered and every verdict right
/// (EICAR planted in every 10th), verifying the certificate against the test CA, in a closed and
/// an open loop, with and without `Allow: 204` (a 200 KB echo through TLS). Counts only.
#[test]
fn icap_bench_over_tls_checks_every_verdict() {
    let sigs = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    let dir = std::env::temp_dir().join(format!("icapd-tls-bench-{}", std::process::id()));
    let certs = make_certs(&dir, "bench");
    let (server, port) = start_tls(&certs, &["--signatures", sigs.to_str().unwrap(), "--access-log", "off"]);
    let server_arg = format!("127.0.0.1:{port}");
    for extra in [
        &["--requests", "100", "--body-size", "1024"][..],
        &["--requests", "30", "--body-size", "200K", "--no204"][..],
        &["--requests", "50", "--rate", "500", "--body-size", "4K"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_icap-bench"))
            .args(["--server", &server_arg, "--tls", "--tls-ca", certs.ca.to_str().unwrap()])
            .args(["--connections", "4", "--duration", "30", "--quiet", "--eicar-every", "10", "--json", "-"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let requests: u64 = extra[1].parse().unwrap();
        let json = &stdout[stdout.find("\n{\n").map_or(0, |i| i + 1)..];
        let r: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(r["answered"].as_u64(), Some(requests), "{extra:?}: {r}");
        assert_eq!(r["verdicts"]["wrong"].as_u64(), Some(0), "{extra:?}: {r}");
        assert_eq!(r["verdicts"]["blocked"].as_u64(), Some(requests / 10), "{extra:?}: {r}");
    }
    // A certificate the client does not trust is a failed run, not a silent success.
    let other = make_certs(&dir, "untrusted");
    let out = Command::new(env!("CARGO_BIN_EXE_icap-bench"))
        .args(["--server", &server_arg, "--tls", "--tls-ca", other.ca.to_str().unwrap(), "--requests", "5", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads the metrics page until `series` reaches `want` (shards publish their counters on
/// their own schedule) or 20 s pass; returns the last page.
fn metrics_when(port: u16, series: &str, want: f64) -> std::collections::HashMap<String, f64> {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = parse_metrics(&http_get(port, "/metrics").1);
        if m.get(series) == Some(&want) || std::time::Instant::now() > until {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn handshakes_are_counted_completed_and_failed_by_reason() {
    let dir = std::env::temp_dir().join(format!("icapd-tls-metrics-{}", std::process::id()));
    let certs = make_certs(&dir, "x");
    let (tls_port, metrics_port) = (free_port(), free_port());
    let toml = format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n[limits]\ntls_handshake_ms = 300\n",
        certs.cert.display(),
        certs.key.display(),
        certs.ca.display()
    );
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(&["--inspector", "null", "--shards", "1", "--metrics", &metrics], Some(&toml));
    // Two completed handshakes.
    let with_cert = client_config(&certs.ca, Some((&certs.client_cert, &certs.client_key)));
    for _ in 0..2 {
        assert_eq!(options_over_tls(tls_port, with_cert.clone()), Ok(200));
    }
    // Refused by TLS: no client certificate, and plain ICAP on the TLS port.
    assert!(options_over_tls(tls_port, client_config(&certs.ca, None)).is_err());
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    plain.write_all(OPTIONS).unwrap();
    let _ = plain.read(&mut [0u8; 64]);
    // Silent until the deadline.
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = silent.read(&mut [0u8; 16]);
    // Gone before finishing: half a ClientHello, then close.
    let mut gone = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    gone.write_all(&[0x16, 0x03, 0x01, 0x00]).unwrap();
    drop(gone);

    let m = metrics_when(metrics_port, "icapd_tls_handshake_failures_total{reason=\"closed\"}", 1.0);
    assert_eq!(metric(&m, "icapd_tls_handshakes_total"), 2.0);
    assert_eq!(metric(&m, "icapd_tls_handshake_duration_seconds_count"), 2.0);
    assert_eq!(metric(&m, "icapd_tls_handshake_failures_total{reason=\"protocol\"}"), 2.0);
    assert_eq!(metric(&m, "icapd_tls_handshake_failures_total{reason=\"timeout\"}"), 1.0);
    assert_eq!(metric(&m, "icapd_tls_handshake_failures_total{reason=\"closed\"}"), 1.0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reloads_the_client_ca_and_a_bad_ca_keeps_the_old_one() {
    let dir = std::env::temp_dir().join(format!("icapd-tls-ca-reload-{}", std::process::id()));
    let first = make_certs(&dir, "one");
    let second = make_certs(&dir, "two");
    let live_ca = dir.join("live-ca.pem");
    std::fs::copy(&first.ca, &live_ca).unwrap();
    let (server, port) = start_tls(&first, &["--inspector", "null", "--tls-client-ca", live_ca.to_str().unwrap()]);
    // The server certificate is always first's; the client certificate decides.
    let client_one = client_config(&first.ca, Some((&first.client_cert, &first.client_key)));
    let client_two = client_config(&first.ca, Some((&second.client_cert, &second.client_key)));
    assert_eq!(options_over_tls(port, client_one.clone()), Ok(200));
    assert!(options_over_tls(port, client_two.clone()).is_err(), "accepted a client the CA did not sign");

    std::fs::copy(&second.ca, &live_ca).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_line("TLS: reloaded the certificate and key");
    assert!(line.contains("client CA"), "{line}");
    assert_eq!(options_over_tls(port, client_two.clone()), Ok(200), "the new CA is not in force");
    assert!(options_over_tls(port, client_one.clone()).is_err(), "the retired CA still admits clients");

    // A CA file that does not parse keeps the one in force.
    std::fs::write(&live_ca, b"not a certificate\n").unwrap();
    server.signal(libc::SIGHUP);
    let line = server.wait_for_line("TLS: reload failed, keeping the current certificate");
    assert!(line.contains("live-ca.pem"), "{line}");
    assert_eq!(options_over_tls(port, client_two), Ok(200));
    assert!(options_over_tls(port, client_one).is_err());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
