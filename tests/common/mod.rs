//! Helpers for integration tests: start the real `icapd` binary on a free loopback port, talk
//! raw ICAP to it, and decode its responses.
#![allow(dead_code)]

use icapd::proto::chunked::{Chunk, ChunkDecoder};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running server; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stderr: mpsc::Receiver<String>,
    pub dir: std::path::PathBuf,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts icapd with `args` plus a private listen port, and an optional TOML config.
    pub fn start(args: &[&str], config_toml: Option<&str>) -> Server {
        Server::start_on(free_port(), args, config_toml)
    }

    /// Like [`Server::start`] on a given port (to restart a server where a client expects it).
    pub fn start_on(port: u16, args: &[&str], config_toml: Option<&str>) -> Server {
        let dir = std::env::temp_dir().join(format!("icapd-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_icapd"));
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}")).args(args);
        if let Some(toml) = config_toml {
            let path = dir.join("icapd.toml");
            std::fs::write(&path, toml).unwrap();
            cmd.arg("--config").arg(path);
        }
        let (child, rx) = spawn_with_stderr(&mut cmd);
        let server = Server { child, port, stderr: rx, dir };
        server.wait_for_line("icapd: ready");
        server
    }

    /// Waits (up to 20 s) for a stderr line containing `needle`; returns it.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("icapd did not print {needle:?} in time"),
            }
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to icapd");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(20)).expect("icapd exits after SIGTERM");
        let _ = std::fs::remove_dir_all(&self.dir);
        std::mem::forget(self);
        status
    }
}

/// Spawns `cmd` (an icapd, perhaps behind taskset or setpriv) with its stderr read line by
/// line on a thread of its own, so the child never blocks on a full pipe.
pub fn spawn_with_stderr(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start icapd");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // ICAPD_TEST_ECHO=1 shows the server's stderr in the test output, for a failure
            // that the test's own message does not explain (a crash, an abort).
            if std::env::var_os("ICAPD_TEST_ECHO").is_some() {
                eprintln!("icapd stderr: {line}");
            }
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Collects stderr lines until `icapd: ready` (included), the end of stderr, or 20 s of silence.
pub fn lines_until_ready(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let ready = line.contains("icapd: ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    lines
}

/// Sends SIGTERM and waits up to 20 s for the exit status; kills the child if it does not exit.
pub fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_timeout(child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One decoded ICAP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub hdr: Vec<u8>,
    pub body: Option<Vec<u8>>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Why reading a response failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection closed before any byte of a response.
    Closed,
    /// The connection closed in the middle of a response (for a body: before the last chunk).
    Truncated(String),
}

/// Reads one complete response.
pub fn read_response<R: Read>(r: &mut BufReader<R>) -> Result<Response, ReadError> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).map_err(|e| ReadError::Truncated(e.to_string()))?;
        if n == 0 {
            return Err(if head.is_empty() { ReadError::Closed } else { ReadError::Truncated("head".into()) });
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let head = String::from_utf8(head).expect("response head is text");
    let status: u16 = head[9..12].parse().expect("status code");
    let mut resp = Response { status, head, hdr: Vec::new(), body: None };
    let Some(encap) = resp.header("Encapsulated").map(str::to_string) else { return Ok(resp) };
    let last = encap.rsplit(", ").next().unwrap();
    let (name, offset) = last.split_once('=').unwrap();
    let offset: usize = offset.parse().unwrap();
    resp.hdr = vec![0; offset];
    r.read_exact(&mut resp.hdr).map_err(|_| ReadError::Truncated("encapsulated headers".into()))?;
    if name == "null-body" {
        return Ok(resp);
    }
    let mut decoder = ChunkDecoder::new(1024, 65536);
    let mut body = Vec::new();
    loop {
        let buf = r.fill_buf().map_err(|e| ReadError::Truncated(e.to_string()))?;
        if buf.is_empty() {
            return Err(ReadError::Truncated(format!("body after {} bytes", body.len())));
        }
        let (n, chunk) = decoder.decode(buf).expect("server sends valid chunks");
        if let Chunk::Data { start, end } = chunk {
            body.extend_from_slice(&buf[start..end]);
        }
        r.consume(n);
        if let Chunk::End { .. } = chunk {
            break;
        }
    }
    resp.body = Some(body);
    Ok(resp)
}

/// True when the server closed the connection (read returns 0 or a reset).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0) | Err(_))
}

pub const REQ_HDR: &str = "GET http://origin.test/file HTTP/1.1\r\nHost: origin.test\r\n\r\n";
pub const RES_HDR: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n";

pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 12 + 16);
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// RESPMOD head (ICAP head + encapsulated headers) for `service`.
pub fn respmod_head(service: &str, preview: Option<usize>, allow_204: bool) -> Vec<u8> {
    format!(
        "RESPMOD icap://127.0.0.1/{service} ICAP/1.0\r\nHost: 127.0.0.1\r\n{}{}Encapsulated: req-hdr=0, res-hdr={}, res-body={}\r\n\r\n{REQ_HDR}{RES_HDR}",
        if allow_204 { "Allow: 204\r\n" } else { "" },
        preview.map(|p| format!("Preview: {p}\r\n")).unwrap_or_default(),
        REQ_HDR.len(),
        REQ_HDR.len() + RES_HDR.len()
    )
    .into_bytes()
}

/// A complete RESPMOD without preview.
pub fn respmod(body: &[u8], allow_204: bool) -> Vec<u8> {
    let mut out = respmod_head("respmod", None, allow_204);
    out.extend(chunked(body, 16 * 1024));
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `input` from another thread while this one reads the answer, as a real client does
/// (a large echo would otherwise deadlock on full socket buffers).
pub fn exchange(stream: &TcpStream, input: Vec<u8>) -> Result<Response, ReadError> {
    let mut writer = stream.try_clone().unwrap();
    let handle = std::thread::spawn(move || {
        let _ = writer.write_all(&input);
    });
    let resp = read_response(&mut BufReader::new(stream.try_clone().unwrap()));
    handle.join().unwrap();
    resp
}

/// Deterministic pseudo-random bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A RESPMOD whose whole body fits in the preview (`Preview` + `ieof`), with `Allow: 204`.
pub fn respmod_preview_ieof(body: &[u8]) -> Vec<u8> {
    let mut out = respmod_head("respmod", Some(body.len()), true);
    out.extend(chunked(body, 1024));
    out.extend_from_slice(b"0; ieof\r\n\r\n");
    out
}

/// A well-behaved client's check on a fresh connection: a clean RESPMOD (preview with `ieof`)
/// must be answered 204 and an OPTIONS on the same connection 200. Returns what went wrong.
pub fn check_serves(server: &Server) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    s.write_all(&respmod_preview_ieof(b"a clean little body")).map_err(|e| format!("write: {e}"))?;
    match read_response(&mut reader) {
        Ok(r) if r.status == 204 => {}
        other => return Err(format!("clean RESPMOD: {other:?}")),
    }
    s.write_all(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    match read_response(&mut reader) {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("OPTIONS: {other:?}")),
    }
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Open file descriptors of a process (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd").count()
}

/// Like [`exchange`], but a connection reset before the first byte of an answer counts as
/// [`ReadError::Closed`]: the server closed the connection without having read the request
/// (a reset is what TCP sends when unread bytes are discarded), which is not a cut-off answer.
pub fn exchange_or_closed(stream: &TcpStream, input: Vec<u8>) -> Result<Response, ReadError> {
    let mut writer = stream.try_clone().unwrap();
    let handle = std::thread::spawn(move || {
        let _ = writer.write_all(&input);
    });
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let result = match reader.fill_buf() {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(ReadError::Closed),
        _ => read_response(&mut reader),
    };
    handle.join().unwrap();
    result
}

/// GETs `path` from the metrics listener; returns (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Parses a Prometheus text page into series -> value.
pub fn parse_metrics(page: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in page.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("malformed value in {line:?}"));
        assert!(out.insert(series.to_string(), value).is_none(), "series {series} twice");
    }
    out
}

pub fn metric(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| panic!("no series {series}"))
}

/// Peak resident memory of a process in KiB (`VmHWM` in `/proc/PID/status`).
pub fn hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}

/// Writes a chunked body of `total` bytes (generated, never held whole: one 1 MiB piece is
/// sent again and again), starting with `first`, and the final zero chunk. Returns the body
/// bytes written before an error (a write timeout when the server stops reading).
pub fn send_generated_body(w: &mut impl Write, first: &[u8], total: u64) -> std::io::Result<u64> {
    const PIECE: usize = 1 << 20;
    let filler = pseudo_random(PIECE, 42);
    let mut sent = 0u64;
    if !first.is_empty() {
        w.write_all(format!("{:x}\r\n", first.len()).as_bytes())?;
        w.write_all(first)?;
        w.write_all(b"\r\n")?;
        sent += first.len() as u64;
    }
    while sent < total {
        let n = (total - sent).min(PIECE as u64) as usize;
        w.write_all(format!("{n:x}\r\n").as_bytes())?;
        w.write_all(&filler[..n])?;
        w.write_all(b"\r\n")?;
        sent += n as u64;
    }
    w.write_all(b"0\r\n\r\n")?;
    Ok(sent)
}

/// Certificates for TLS tests, made with `openssl` (the test command installs it).
pub struct TestCerts {
    /// The CA that signed both certificates below.
    pub ca: std::path::PathBuf,
    /// Server certificate for 127.0.0.1 and localhost, and its key.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// Client certificate (extendedKeyUsage clientAuth), and its key.
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

/// Makes a throwaway CA and a server and a client certificate signed by it in `dir`, with file
/// names starting with `name`.
pub fn make_certs(dir: &std::path::Path, name: &str) -> TestCerts {
    std::fs::create_dir_all(dir).unwrap();
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl must be installed (apt-get install openssl); the test command installs it");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let s = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let certs = TestCerts {
        ca: p("ca.pem"),
        cert: p("cert.pem"),
        key: p("key.pem"),
        client_cert: p("client.pem"),
        client_key: p("client-key.pem"),
    };
    let (ca_key, ext) = (p("ca-key.pem"), p("ext.cnf"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", &s(&ca_key), "-out", &s(&certs.ca), "-subj", "/CN=icapd test CA", "-days", "2"],
        ]
        .concat(),
    );
    for (cert, key, cn, ext_text) in [
        (
            &certs.cert,
            &certs.key,
            "localhost",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        ),
        (&certs.client_cert, &certs.client_key, "squid", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"),
    ] {
        let csr = p("req.csr");
        std::fs::write(&ext, ext_text).unwrap();
        openssl(&[&["req"][..], &ec, &["-keyout", &s(key), "-out", &s(&csr), "-subj", &format!("/CN={cn}")]].concat());
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&certs.ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-out",
            &s(cert),
            "-days",
            "2",
            "-extfile",
            &s(&ext),
        ]);
    }
    certs
}
