//! icapd-update against a running icapd, with the bundle served over loopback by a tiny HTTP
//! server written here (one thread, one request per connection, Connection: close).
//!
//! The happy path proves the whole chain: key generation, bundle and signature, download,
//! verification, unpack, test compile, the atomic swap, and the running server switching to
//! the new ISTag (and finding the new signature) while a client keeps sending requests, none
//! of which fails. A second run gets a 304; a second node updated from the same bundle
//! reports the same ISTag. The refusal tests prove that a bad signature, a truncated
//! download, a bundle that does not compile and a bundle that tries to climb out of its
//! folder each exit 1 with one line and leave the running set untouched.

mod common;

use common::{read_response, respmod_preview_ieof, Server};
use ed25519_dalek::{Signer, SigningKey};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the HTTP server answers for one path.
#[derive(Clone)]
struct Reply {
    body: Vec<u8>,
    etag: Option<String>,
    /// Announce this many more bytes than are sent, then close: a cut download.
    short_by: usize,
}

struct Http {
    port: u16,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    /// Every request head received, in order.
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Http {
    fn start() -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (routes.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    serve(conn, &r, &s);
                }
            }
        });
        Http { port, routes, seen, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, routes: &Mutex<HashMap<String, Reply>>, seen: &Mutex<Vec<String>>) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    seen.lock().unwrap().push(head.clone());
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let inm = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("if-none-match").then(|| v.trim().to_string())
    });
    let mut out = conn;
    let reply = routes.lock().unwrap().get(&path).cloned();
    let _ = match reply {
        None => out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(r) if r.etag.is_some() && inm == r.etag => out.write_all(
            format!("HTTP/1.1 304 Not Modified\r\nETag: {}\r\nConnection: close\r\n\r\n", r.etag.unwrap()).as_bytes(),
        ),
        Some(r) => {
            let etag = r.etag.map(|e| format!("ETag: {e}\r\n")).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{etag}Connection: close\r\n\r\n",
                r.body.len() + r.short_by
            );
            out.write_all(head.as_bytes()).and_then(|_| out.write_all(&r.body))
        }
    };
    let _ = out.shutdown(std::net::Shutdown::Both);
}

/// A scratch folder removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("icapd-update-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo_signatures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures")
}

/// A copy of the repository's signature files (what the package installs) in `dir`.
fn copy_signatures(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in std::fs::read_dir(repo_signatures()).unwrap() {
        let f = f.unwrap();
        if f.file_name() != "README.md" {
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn update(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_icapd-update")).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The ISTag the server advertises in OPTIONS now.
fn istag(server: &Server) -> String {
    let mut s = server.connect();
    s.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s)).unwrap();
    r.header("ISTag").unwrap().trim_matches('"').to_string()
}

/// The status of a RESPMOD with `body` (204: clean; 200 with a block page: found).
fn scan(server: &Server, body: &[u8]) -> u16 {
    let mut s = server.connect();
    s.write_all(&respmod_preview_ieof(body)).unwrap();
    read_response(&mut BufReader::new(s)).unwrap().status
}

const MARKER: &[u8] = b"ICAPD-UPDATE-TEST-MARKER-7f3a";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The quoted ISTag in an icapd-update line.
fn reported_istag(line: &str) -> String {
    line.split("ISTag \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no ISTag in {line}"))
        .into()
}

#[test]
fn an_update_swaps_the_running_set_without_a_failed_request_and_changes_istag() {
    let t = Scratch::new("happy");
    let node = t.0.join("node/signatures");
    copy_signatures(&node);
    // The publisher: keys, a folder with one more signature, the bundle and its signature.
    let keys = t.0.join("keys/pub");
    std::fs::create_dir_all(keys.parent().unwrap()).unwrap();
    let gen = update(&["--gen-key", p(&keys)]);
    assert_eq!(gen.code, 0, "{}", gen.stderr);
    let publish = t.0.join("publish");
    copy_signatures(&publish);
    std::fs::write(publish.join("marker.ndb"), format!("Test.Update.Marker:0:*:{}\n", hex(MARKER))).unwrap();
    let bundle = t.0.join("www/bundle.tar.gz");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let made = update(&["--make-bundle", p(&publish), "--key", &format!("{}.key", p(&keys)), "-o", p(&bundle)]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let published_tag = reported_istag(&made.stdout);
    let http = Http::start();
    http.set("/b.tar.gz", Reply { body: std::fs::read(&bundle).unwrap(), etag: Some("\"v1\"".into()), short_by: 0 });
    http.set(
        "/b.tar.gz.sig",
        Reply { body: std::fs::read(format!("{}.sig", p(&bundle))).unwrap(), etag: None, short_by: 0 },
    );

    let server = Server::start(&["--signatures", p(&node), "--shards", "1"], None);
    let before = istag(&server);
    assert_eq!(scan(&server, MARKER), 204, "the marker is not a signature yet");

    // A client keeps scanning clean bodies, each on a new connection, through the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let port = server.port;
    let client = {
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let ok = TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.write_all(&respmod_preview_ieof(b"a clean body during the update")).ok()?;
                    read_response(&mut BufReader::new(s)).ok()
                });
                match ok {
                    Some(r) if r.status == 204 => answered.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };
    let pub_key = format!("{}.pub", p(&keys));
    let url = http.url("/b.tar.gz");
    let pid = server.child.id().to_string();
    let run = update(&["--signatures", p(&node), "--url", &url, "--public-key", &pub_key, "--reload-pid", &pid]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("installed version 1"), "{}", run.stdout);
    let new_tag = reported_istag(&run.stdout);
    assert_eq!(new_tag, published_tag, "the node compiles the bundle to the publisher's ISTag");
    assert_ne!(new_tag, before);
    let deadline = Instant::now() + Duration::from_secs(20);
    while istag(&server) != new_tag {
        assert!(Instant::now() < deadline, "the server never served ISTag {new_tag}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the client run on the new set a little too.
    let seen_before = answered.load(Ordering::SeqCst);
    while answered.load(Ordering::SeqCst) < seen_before + 20 {
        assert!(Instant::now() < deadline + Duration::from_secs(20), "the client stalled");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "requests failed during the swap");
    assert!(answered.load(Ordering::SeqCst) >= 20);
    assert_eq!(scan(&server, MARKER), 200, "the new signature blocks");

    // The folder is now a link to version 1; the package's folder is kept as version 0.
    let target = std::fs::read_link(&node).unwrap();
    assert_eq!(target, Path::new("signatures.versions/1"));
    assert!(node.with_file_name("signatures.versions/0/eicar.ndb").is_file());

    // Again: the server answers 304 to the conditional request and nothing changes.
    let again = update(&["--signatures", p(&node), "--url", &url, "--public-key", &pub_key]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("up to date (version 1)"), "{}", again.stdout);
    let last = http.seen.lock().unwrap().iter().rev().find(|h| h.contains("/b.tar.gz ")).cloned().unwrap();
    assert!(last.contains("If-None-Match: \"v1\""), "{last}");

    // A second node updated from the same bundle serves the same ISTag.
    let node2 = t.0.join("node2/signatures");
    copy_signatures(&node2);
    let run2 = update(&["--signatures", p(&node2), "--url", &url, "--public-key", &pub_key]);
    assert_eq!(run2.code, 0, "{}", run2.stderr);
    assert_eq!(reported_istag(&run2.stdout), new_tag);

    // Rollback returns the first node to the package's set and its ISTag.
    let back = update(&["--signatures", p(&node), "--rollback", "--reload-pid", &pid]);
    assert_eq!(back.code, 0, "{}", back.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    while istag(&server) != before {
        assert!(Instant::now() < deadline, "the rollback never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

/// A ustar member header and data, written by hand so that names the tar crate would refuse
/// (`..`) can be sent, as an attacker would.
fn raw_member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn gz_tar(members: &[Vec<u8>]) -> Vec<u8> {
    let mut tar = members.concat();
    tar.extend_from_slice(&[0u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn bad_signature_truncation_non_compiling_and_traversal_leave_the_running_set_untouched() {
    let t = Scratch::new("refuse");
    let node = t.0.join("signatures");
    copy_signatures(&node);
    let key = SigningKey::from_bytes(&[42; 32]);
    let pub_key = t.0.join("update.pub");
    std::fs::write(&pub_key, format!("{}\n", hex(key.verifying_key().as_bytes()))).unwrap();
    let sign = |bytes: &[u8]| format!("{}\n", hex(&key.sign(bytes).to_bytes())).into_bytes();
    let stranger = SigningKey::from_bytes(&[43; 32]);

    let eicar = std::fs::read(repo_signatures().join("eicar.ndb")).unwrap();
    let good = gz_tar(&[raw_member("eicar.ndb", &eicar), raw_member("extra.ndb", b"Extra:0:*:41424344454647\n")]);
    let broken_yara = gz_tar(&[raw_member("eicar.ndb", &eicar), raw_member("bad.yar", b"rule broken { condition: \n")]);
    let traversal = gz_tar(&[raw_member("eicar.ndb", &eicar), raw_member("../escaped.ndb", &eicar)]);
    let http = Http::start();
    let plain = |body: Vec<u8>| Reply { body, etag: None, short_by: 0 };
    http.set("/stranger.tar.gz", plain(good.clone()));
    http.set("/stranger.tar.gz.sig", plain(format!("{}\n", hex(&stranger.sign(&good).to_bytes())).into_bytes()));
    http.set("/cut.tar.gz", Reply { body: good[..good.len() / 2].to_vec(), etag: None, short_by: good.len() / 2 });
    http.set("/cut.tar.gz.sig", plain(sign(&good)));
    http.set("/yara.tar.gz", plain(broken_yara.clone()));
    http.set("/yara.tar.gz.sig", plain(sign(&broken_yara)));
    http.set("/climb.tar.gz", plain(traversal.clone()));
    http.set("/climb.tar.gz.sig", plain(sign(&traversal)));

    let server = Server::start(&["--signatures", p(&node), "--shards", "1"], Some("reload_poll_ms = 100\n"));
    let before = istag(&server);
    let pid = server.child.id().to_string();
    let cases = [
        ("/stranger.tar.gz", "bad signature"),
        ("/cut.tar.gz", "cut short"),
        ("/yara.tar.gz", "does not compile"),
        ("/climb.tar.gz", "climbs out"),
        ("/missing.tar.gz", "HTTP 404"),
    ];
    for (path, why) in cases {
        let run = update(&[
            "--signatures",
            p(&node),
            "--url",
            &http.url(path),
            "--public-key",
            p(&pub_key),
            "--reload-pid",
            &pid,
        ]);
        assert_eq!(run.code, 1, "{path}: {}{}", run.stdout, run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{path}: one line, not {lines:?}");
        assert!(lines[0].contains(why) && lines[0].contains("unchanged"), "{path}: {}", lines[0]);
        assert!(std::fs::symlink_metadata(&node).unwrap().is_dir(), "{path}: the folder was not touched");
        assert!(!t.0.join("escaped.ndb").exists() && !t.0.join("signatures.versions/escaped.ndb").exists());
    }
    let versions: Vec<_> = std::fs::read_dir(t.0.join("signatures.versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "lock")
        .collect();
    assert!(versions.is_empty(), "nothing was installed or left behind: {versions:?}");
    // Well past several reload polls, the server still serves the set it started with.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(istag(&server), before);

    // The same store then takes a good bundle, as a control that the cases above failed for
    // their own reasons.
    http.set("/good.tar.gz", plain(good.clone()));
    http.set("/good.tar.gz.sig", plain(sign(&good)));
    let run = update(&["--signatures", p(&node), "--url", &http.url("/good.tar.gz"), "--public-key", p(&pub_key)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut rest = Vec::new();
    std::fs::File::open(node.join("extra.ndb")).unwrap().read_to_end(&mut rest).unwrap();
    assert!(!rest.is_empty());
    server.stop();
}

/// The update units as shipped pass `systemd-analyze verify`, with the binary under test in
/// place of /usr/bin/icapd-update.
#[test]
fn update_units_verify() {
    let t = Scratch::new("units");
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/systemd");
    for name in ["icapd-update.service", "icapd-update.timer"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        std::fs::write(t.0.join(name), text.replace("/usr/bin/icapd-update", env!("CARGO_BIN_EXE_icapd-update")))
            .unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(t.0.join("icapd-update.service"))
        .arg(t.0.join("icapd-update.timer"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze runs (Debian package systemd)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Documentation=man:icapd(8) resolves only where the package is installed.
    let complaints: Vec<&str> = said.lines().filter(|l| l.contains("icapd") && !l.contains("man icapd(8)")).collect();
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
    let service = std::fs::read_to_string(units.join("icapd-update.service")).unwrap();
    assert!(service.contains("--public-key /etc/icapd/update.pub") && service.contains("Type=oneshot"));
}
