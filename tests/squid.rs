//! Squid in front of icapd, end to end: a local origin server, icapd on a private port, and
//! Squid on a private port with its own configuration, logs and pid file (never the system
//! service), driven with curl through the proxy. The test command installs squid and curl; a
//! component that cannot start fails the test loudly.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EICAR: &[u8] = include_bytes!("samples/eicar.com");

/// A minimal HTTP/1.1 origin on loopback: serves fixed objects, records the bodies it is sent.
struct Origin {
    port: u16,
    uploads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Origin {
    fn start(objects: HashMap<String, Vec<u8>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let objects = Arc::new(objects);
        let seen = uploads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (objects, seen) = (objects.clone(), seen.clone());
                std::thread::spawn(move || serve_origin(stream, &objects, &seen));
            }
        });
        Origin { port, uploads }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve_origin(stream: TcpStream, objects: &HashMap<String, Vec<u8>>, uploads: &Mutex<Vec<Vec<u8>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let path =
            target.split("://").nth(1).map_or(target.as_str(), |r| &r[r.find('/').unwrap_or(r.len())..]).to_string();
        let body: Vec<u8> = if method == "POST" {
            let mut b = vec![0; length];
            if reader.read_exact(&mut b).is_err() {
                return;
            }
            uploads.lock().unwrap().push(b);
            b"stored\n".to_vec()
        } else {
            match objects.get(&path) {
                Some(b) => b.clone(),
                None => {
                    let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
            }
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).and_then(|_| out.write_all(&body)).is_err() {
            return;
        }
    }
}

/// The Squid snippet of README.md, exactly as documented (between its marker comments),
/// with the log folder and the ICAP port changed for this run.
fn readme_snippet(log_dir: &Path, icap_port: u16) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let begin = "<!-- squid-snippet:begin -->";
    let end = "<!-- squid-snippet:end -->";
    let start = readme.find(begin).expect("README.md has the Squid snippet's begin marker") + begin.len();
    let stop = readme[start..].find(end).expect("and its end marker") + start;
    let block = readme[start..stop].trim();
    let body = block
        .strip_prefix("```text")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the snippet is one ```text block")
        .trim();
    assert!(body.contains("/var/log/squid/") && body.contains("127.0.0.1:1344"), "{body}");
    body.replace("/var/log/squid/", &format!("{}/", log_dir.display()))
        .replace("127.0.0.1:1344", &format!("127.0.0.1:{icap_port}"))
}

/// Squid with a private configuration, killed when dropped.
struct Squid {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Squid {
    fn start(icap_port: u16) -> Squid {
        Squid::start_with(icap_port, "http_access allow localhost\n")
    }

    /// Like [`Squid::start`] with `access` as the test's http_access lines (before a final
    /// `http_access deny all`), e.g. to require proxy authentication.
    fn start_with(icap_port: u16, access: &str) -> Squid {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("icapd-squid-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        // The test's own lines (ports, pid file, no cache), then README's snippet as it is.
        let conf = format!(
            "http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log stdio:{d}/logs/cache.log
cache_store_log none
coredump_dir {d}
cache deny all
{access}http_access deny all
shutdown_lifetime 1 seconds
{snippet}
",
            d = dir.display(),
            snippet = readme_snippet(&dir.join("logs"), icap_port),
        );
        std::fs::write(dir.join("squid.conf"), conf).unwrap();
        // Squid drops to the proxy user when started as root; it must be able to write its logs.
        let _ = Command::new("chown").args(["-R", "proxy:proxy"]).arg(&dir).status();
        let _ = Command::new("chmod").args(["-R", "a+rwX"]).arg(&dir).status();
        let child = Command::new("squid")
            .args(["-N", "-f"])
            .arg(dir.join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid must be installed (apt-get install squid); the test command installs it");
        let squid = Squid { child, port, dir };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return squid;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(squid.dir.join("logs/cache.log")).unwrap_or_default();
        panic!("squid did not start listening on {port}; cache.log:\n{log}");
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

/// Runs curl through the proxy; returns (HTTP status, body, curl exit code).
fn curl(squid: &Squid, url: &str, extra: &[&str]) -> (u16, Vec<u8>, i32) {
    let out_file = squid.dir.join(format!("curl-{}", free_port()));
    let output = Command::new("curl")
        .args(["-s", "--max-time", "30", "-x", &format!("http://127.0.0.1:{}", squid.port), "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl must be installed; the test command installs it");
    let status = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    let body = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    (status, body, output.status.code().unwrap_or(-1))
}

fn signatures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures")
}

#[test]
fn squid_in_front_of_icapd() {
    let clean_page = b"<html><body>a clean page</body></html>\n".to_vec();
    let big = pseudo_random(8 * 1024 * 1024, 8);
    let mut poisoned = pseudo_random(6 * 1024 * 1024, 6);
    poisoned[3 * 1024 * 1024..3 * 1024 * 1024 + EICAR.len()].copy_from_slice(EICAR);
    let objects: HashMap<String, Vec<u8>> = [
        ("/clean.html".to_string(), clean_page.clone()),
        ("/eicar.com".to_string(), EICAR.to_vec()),
        ("/big.bin".to_string(), big.clone()),
        ("/poisoned.bin".to_string(), poisoned.clone()),
    ]
    .into_iter()
    .collect();
    let origin = Origin::start(objects);
    let sigs = signatures();
    let mut icapd = Server::start(&["--shards", "2", "--signatures", sigs.to_str().unwrap()], None);
    let squid = Squid::start(icapd.port);

    // A clean page passes byte-exact.
    let (status, body, _) = curl(&squid, &origin.url("/clean.html"), &[]);
    assert_eq!((status, body), (200, clean_page.clone()));

    // EICAR is blocked with the block page.
    let (status, body, _) = curl(&squid, &origin.url("/eicar.com"), &[]);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("Eicar-Test-Signature"));

    // An 8 MB clean binary arrives byte-exact (servers that wait for the whole body stall here).
    let (status, body, code) = curl(&squid, &origin.url("/big.bin"), &[]);
    assert_eq!((status, code), (200, 0));
    assert!(body == big, "8 MB object differs ({} bytes received)", body.len());

    // A 6 MB binary with EICAR in the middle is never delivered whole.
    let (_, body, code) = curl(&squid, &origin.url("/poisoned.bin"), &[]);
    assert!(
        body.len() < poisoned.len() && code != 0,
        "poisoned object delivered: {} bytes, curl exit {code}",
        body.len()
    );

    // An upload carrying EICAR is blocked before the origin sees it; a clean one reaches it.
    let upload_dir = squid.dir.join("uploads");
    std::fs::create_dir_all(&upload_dir).unwrap();
    std::fs::write(upload_dir.join("eicar.txt"), EICAR).unwrap();
    std::fs::write(upload_dir.join("clean.txt"), b"just a clean upload").unwrap();
    let form = |f: &str| format!("file=@{}", upload_dir.join(f).display());
    let (status, _, _) = curl(&squid, &origin.url("/upload"), &["-F", &form("eicar.txt")]);
    assert_eq!(status, 403);
    assert!(origin.uploads.lock().unwrap().iter().all(|u| !u.windows(EICAR.len()).any(|w| w == EICAR)));
    let (status, body, _) = curl(&squid, &origin.url("/upload"), &["-F", &form("clean.txt")]);
    assert_eq!((status, body.as_slice()), (200, &b"stored\n"[..]));
    assert!(origin.uploads.lock().unwrap().iter().any(|u| u.windows(19).any(|w| w == b"just a clean upload")));

    // README's snippet logs just the threat name in threats.log ("-" for a clean object)
    // and keeps Squid's standard access log, in its default format, beside it.
    let threat_line = |path: &str| {
        let url = origin.url(path);
        for _ in 0..50 {
            if let Some(line) = squid.log("threats.log").lines().find(|l| l.ends_with(&format!(" {url}"))) {
                return line.to_string();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no threats.log line for {url}:\n{}", squid.log("threats.log"));
    };
    let eicar_line = threat_line("/eicar.com");
    let fields: Vec<&str> = eicar_line.split(' ').collect();
    assert_eq!(fields.len(), 4, "time, client, threat, URL: {eicar_line}");
    assert_eq!((fields[1], fields[2]), ("127.0.0.1", "Eicar-Test-Signature"), "{eicar_line}");
    let clean_line = threat_line("/clean.html");
    assert_eq!(clean_line.split(' ').nth(2), Some("-"), "{clean_line}");
    let access = squid.log("access.log");
    let standard = access.lines().find(|l| l.contains("/eicar.com")).unwrap_or_else(|| panic!("{access}"));
    // Squid's native format: time elapsed client code/status bytes method URL ...
    let f: Vec<&str> = standard.split_whitespace().collect();
    assert!(f.len() >= 10 && f[3].ends_with("/403") && f[5] == "GET", "{standard}");
    assert!(!access.contains("Threat="), "the standard log is not the place for ICAP headers: {access}");

    // 200 clean fetches, 8 at a time, all succeed.
    let squid_port = squid.port;
    let url = origin.url("/clean.html");
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (url, failures, page) = (url.clone(), failures.clone(), clean_page.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let out = Command::new("curl")
                        .args(["-s", "--max-time", "30", "-x", &format!("http://127.0.0.1:{squid_port}"), &url])
                        .output()
                        .unwrap();
                    if !out.status.success() || out.stdout != page {
                        failures.lock().unwrap().push(out.status.code());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(failures.lock().unwrap().is_empty(), "failed fetches: {:?}", failures.lock().unwrap());

    // icapd restarted (SIGTERM, start again on the same port) between two fetches.
    assert_eq!(curl(&squid, &origin.url("/clean.html"), &[]).0, 200);
    let port = icapd.port;
    let status = icapd.stop();
    assert_eq!(status.code(), Some(0));
    icapd = Server::start_on(port, &["--shards", "2", "--signatures", sigs.to_str().unwrap()], None);
    let (status, body, _) = curl(&squid, &origin.url("/clean.html"), &[]);
    assert_eq!((status, body), (200, clean_page));
    drop(icapd);
}

/// Squid's own identity headers reach icapd's policy table: with proxy authentication
/// (Squid's basic_fake_auth helper accepts any password) and README's snippet, Squid sends
/// the user base64-encoded in X-Client-Username and the client address in X-Client-IP. A user
/// mapped to `skip` gets the EICAR page unscanned, logged as skipped; anyone else is blocked.
#[test]
fn squid_sends_who_is_asking_and_the_policy_table_uses_it() {
    let origin = Origin::start([("/eicar.com".to_string(), EICAR.to_vec())].into_iter().collect());
    let log = std::env::temp_dir().join(format!("icapd-squid-identity-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let sigs = signatures();
    let args = ["--shards", "1", "--signatures", sigs.to_str().unwrap(), "--access-log", log.to_str().unwrap()];
    let config = "[[policy.rules]]\nusers = [\"trusted\"]\npolicy = \"skip\"\n";
    let icapd = Server::start(&[&args[..], &["--access-log-format", "json"]].concat(), Some(config));
    let squid = Squid::start_with(
        icapd.port,
        "auth_param basic program /usr/lib/squid/basic_fake_auth
auth_param basic realm icapd-test
acl authed proxy_auth REQUIRED
http_access allow localhost authed
",
    );
    let (status, body, _) = curl(&squid, &origin.url("/eicar.com"), &["-U", "trusted:any"]);
    assert_eq!((status, body.as_slice()), (200, EICAR), "skipped for the trusted user");
    let (status, _, _) = curl(&squid, &origin.url("/eicar.com"), &["-U", "mallory:any"]);
    assert_eq!(status, 403, "scanned for everyone else");
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        if lines.iter().filter(|l| l.contains("\"method\":\"RESPMOD\"")).count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let respmods: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.contains("\"method\":\"RESPMOD\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(respmods.len(), 2, "{lines:#?}");
    for (v, user, policy, action) in
        [(&respmods[0], "trusted", "skip", "passed"), (&respmods[1], "mallory", "default", "blocked")]
    {
        assert_eq!(v["user"].as_str(), Some(user), "decoded from Squid's base64: {v}");
        assert_eq!(v["x_client_ip"].as_str(), Some("127.0.0.1"), "{v}");
        assert_eq!((v["policy"].as_str(), v["action"].as_str()), (Some(policy), Some(action)), "{v}");
    }
    drop(squid);
    drop(icapd);
    let _ = std::fs::remove_file(&log);
}
