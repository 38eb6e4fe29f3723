//! ICAP over TLS (`icaps://`, Squid's default port 11344): certificate loading and reloading,
//! the per-shard TLS listeners, the handshake, and the TLS [`Transport`].
//!
//! rustls with the `ring` provider and its safe defaults: TLS 1.3 and 1.2 only, rustls' default
//! cipher suites, no renegotiation. The certificate and key are read when the server starts (a
//! bad file is exit 2 with one line, like every other configuration error) and again on SIGHUP,
//! where a bad file keeps the certificate in use and logs one line. Client certificates are
//! required and verified against `tls_client_ca` when it is set; the CA file is read at start
//! and on SIGHUP with the certificate (all three files are applied together or not at all).
//! Handshakes are counted: completed (with a duration histogram) and failed by reason.
//!
//! Every shard binds each TLS address with SO_REUSEPORT, like the plain listener, so a TLS
//! connection is accepted, handshaken and served on one shard, counts against that shard's
//! connection cap from the start, and must finish its handshake within `tls_handshake_ms`.
//!
//! The connection is driven sans-IO: rustls reads ciphertext straight from the socket into its
//! own buffer (a non-blocking `recv`, then glommio's readiness wait) and writes records straight
//! from its buffer with one vectored `sendmsg`. Plaintext crosses exactly once each way, which
//! is what rustls' buffered API allows: decrypted bytes are copied into the connection's receive
//! block (where the ICAP core parses and retains them, as for plain TCP), and the response
//! slices are encrypted from the blocks into rustls' record buffer.

use super::handoff::Moved;
use super::sendmsg::send_vectored;
use super::shard::{self, ShardCtx};
use super::transport::Transport;
use crate::config::TlsConfig;
use crate::obs::metrics::TLS_FAILURES;
use glommio::net::{TcpListener, TcpStream};
use glommio::{spawn_local, Task};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// TLS records read in one turn without producing plaintext (empty records, alerts, key
/// updates) before the task yields to the shard's other connections.
const RECORDS_PER_TURN_MAX: usize = 64;
/// How long closing waits for the close_notify alert to leave.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// What the TLS listeners of every shard share: the rustls configuration in force, which SIGHUP
/// replaces as a whole (certificate, key and client CA), and the file names it is built from.
pub struct TlsServer {
    /// Read once per accepted connection (an uncontended read lock, never per request).
    config: RwLock<Arc<ServerConfig>>,
    paths: TlsConfig,
}

impl TlsServer {
    /// Reads the certificate, key and (if set) client CA files and builds the configuration.
    /// The error is one line naming the file.
    pub fn load(paths: &TlsConfig) -> Result<Arc<TlsServer>, String> {
        let config = build_config(paths)?;
        Ok(Arc::new(TlsServer { config: RwLock::new(config), paths: paths.clone() }))
    }

    /// Re-reads the certificate, key and client CA (SIGHUP). New handshakes use the new files;
    /// connections already established keep theirs. If any file does not load, everything in
    /// force stays (a half-applied reload could pair a new certificate with an old CA an
    /// operator meant to retire). TLS session tickets issued before the reload no longer
    /// resume: the new configuration has its own keys.
    pub fn reload(&self) -> Result<(), String> {
        let config = build_config(&self.paths)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The certificate file, for log lines.
    pub fn cert_path(&self) -> &Path {
        self.paths.cert.as_deref().unwrap_or(Path::new("-"))
    }

    /// Whether client certificates are verified (for the reload log line).
    pub fn verifies_clients(&self) -> bool {
        self.paths.client_ca.is_some()
    }
}

/// The rustls configuration from the files `paths` names: TLS 1.3 and 1.2, the certificate
/// chain and key, and a client-certificate verifier when `tls_client_ca` is set.
fn build_config(paths: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = Arc::new(load_certified_key(paths, &provider)?);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &paths.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for der in read_certs(ca, "TLS client CA file")? {
                roots.add(der).map_err(|e| format!("tls_client_ca {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls_client_ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(Arc::new(builder.with_cert_resolver(Arc::new(FixedCert(key)))))
}

/// The one certificate and key of a configuration.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// The PEM certificates in `path`; `what` names the file in errors.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// Loads the chain and key and checks that the key belongs to the leaf certificate.
fn load_certified_key(paths: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let (Some(cert), Some(key)) = (&paths.cert, &paths.key) else {
        return Err("TLS needs tls_cert and tls_key".into());
    };
    let chain = read_certs(cert, "TLS certificate file")?;
    let pem = read_file(key, "TLS key file")?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("TLS key file {}: no usable PEM private key ({e})", key.display()))?;
    CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| format!("TLS certificate {} and key {}: {e}", cert.display(), key.display()))
}

/// Binds one shard's TLS listeners (SO_REUSEPORT, like the plain one).
pub fn bind_listeners(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, String> {
    addrs.iter().map(|&a| shard::bind(a).map_err(|e| format!("cannot listen for TLS on {a}: {e}"))).collect()
}

/// Starts one accept loop per TLS listener. The loops run until the returned tasks are dropped
/// (the shard stops accepting); the connections they started live on.
pub fn spawn_accept_loops(listeners: Vec<TcpListener>, tls: Arc<TlsServer>, ctx: &Rc<ShardCtx>) -> Vec<Task<()>> {
    listeners.into_iter().map(|l| spawn_local(accept_loop(l, tls.clone(), ctx.clone()))).collect()
}

async fn accept_loop(listener: TcpListener, tls: Arc<TlsServer>, ctx: Rc<ShardCtx>) {
    loop {
        match listener.shared_accept().await {
            Ok(stream) => {
                // The allow-list holds for TLS as for plain ICAP, before the handshake.
                let Some(stream) = super::accepted::admissible(stream, &ctx) else { continue };
                // The handshake runs where the connection will live: a shard with fewer
                // connections, if there is one.
                match ctx.handoff.route(Moved::Tls(stream)) {
                    Some(Moved::Tls(stream)) => admit(stream.bind_to_executor(), &tls, &ctx),
                    Some(Moved::Plain(_) | Moved::Resumed(_)) => unreachable!("route gives back what it was given"),
                    None => ctx.metrics.borrow_mut().connections_handed_off += 1,
                }
            }
            Err(e) => {
                eprintln!("icapd: shard {}: TLS accept failed: {e}", ctx.shard);
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves a TLS connection accepted here or handed over. At the cap, as for plain connections,
/// the connection idle longest makes room. A refused TLS client gets no 503 (that would take a
/// handshake first): the connection is closed, which Squid retries like a refused connect.
pub(super) fn admit(stream: TcpStream, tls: &TlsServer, ctx: &Rc<ShardCtx>) {
    if ctx.active.get() >= ctx.limits.connections_per_shard_max && !shard::evict_idle(ctx) {
        ctx.metrics.borrow_mut().connections_refused += 1;
        super::conn_task::not_admitted(ctx);
        drop(stream);
        return;
    }
    ctx.metrics.borrow_mut().connections_accepted += 1;
    super::conn_task::admitted(ctx);
    let config = tls.config();
    glommio::spawn_local_into(
        super::conn_task::serve_over(ctx.clone(), handshake(stream, config, ctx.clone())),
        ctx.queues.interactive,
    )
    .expect("the interactive queue belongs to this executor")
    .detach();
}

/// Runs the server side of the handshake, bounded by `tls_handshake_ms` however the peer paces
/// its bytes, and counts it (completed with its duration, or failed by reason). `None` when it
/// fails or times out (the socket is then closed; nothing is logged per connection, so port
/// scans and health checks do not flood the log: the failure counters show them).
async fn handshake(stream: TcpStream, config: Arc<ServerConfig>, ctx: Rc<ShardCtx>) -> Option<TlsStream> {
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let tls = ServerConnection::new(config).ok()?;
    let mut conn = TlsStream { tcp: stream, tls };
    let done = futures_lite::future::or(poll_fn(|cx| conn.poll_handshake(cx)), async {
        glommio::timer::sleep(ctx.limits.tls_handshake).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await;
    // The counters are borrowed only for the update, never across the shutdown's await.
    match done {
        Ok(()) => {
            let mut metrics = ctx.metrics.borrow_mut();
            metrics.tls_handshakes += 1;
            metrics.tls_handshake.record(started.elapsed());
            Some(conn)
        }
        Err(e) => {
            ctx.metrics.borrow_mut().tls_handshake_failures[failure_slot(&e)] += 1;
            let _ = conn.tcp.shutdown(std::net::Shutdown::Both).await;
            None
        }
    }
}

/// The [`TLS_FAILURES`] index for a failed handshake: `process` reports rustls' refusals as
/// `InvalidData`; the deadline is `TimedOut`; anything else is the peer or the socket going away.
fn failure_slot(e: &io::Error) -> usize {
    let reason = match e.kind() {
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::InvalidData => "protocol",
        _ => "closed",
    };
    TLS_FAILURES.iter().position(|&r| r == reason).expect("TLS_FAILURES names every reason")
}

/// A TLS connection over a glommio socket.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
}

/// rustls' blocking-style `Read`/`Write` over the non-blocking socket: a call that would wait
/// registers the task's waker with glommio and reports `WouldBlock`.
struct SyncIo<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

fn ready_or_would_block<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        ready_or_would_block(futures_lite::AsyncRead::poll_read(Pin::new(&mut *self.tcp), self.cx, buf))
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        ready_or_would_block(futures_lite::AsyncWrite::poll_write(Pin::new(&mut *self.tcp), self.cx, buf))
    }

    /// All pending records in one `sendmsg`; when the socket is full, glommio's write (which
    /// waits for room) takes the first one.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match send_vectored(self.tcp.as_raw_fd(), bufs) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match bufs.iter().find(|b| !b.is_empty()) {
                Some(first) => self.write(first),
                None => Ok(0),
            },
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    /// Writes every record rustls has queued.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut SyncIo { tcp: &mut self.tcp, cx }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Feeds the records just read to rustls; a protocol error sends its alert and fails.
    fn process(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.tls.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.poll_flush_tls(cx);
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.tls.read_tls(&mut SyncIo { tcp: &mut self.tcp, cx }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {
                    if let Err(e) = self.process(cx) {
                        return Poll::Ready(Err(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_read_plain(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        for _ in 0..RECORDS_PER_TURN_MAX {
            match self.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the end of input, as a TCP close is.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Records rustls must send in reply (alerts, TLS 1.3 key updates) go out first.
            if let Poll::Ready(Err(e)) = self.poll_flush_tls(cx) {
                return Poll::Ready(Err(e));
            }
            match self.tls.read_tls(&mut SyncIo { tcp: &mut self.tcp, cx }) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => {
                    if let Err(e) = self.process(cx) {
                        return Poll::Ready(Err(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // Many records without data: let the shard's other connections run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Transport for TlsStream {
    fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.tcp.peer_addr().ok()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // The deadline holds for the whole read, however many records the peer trickles.
        futures_lite::future::or(poll_fn(|cx| self.poll_read_plain(cx, buf)), async {
            glommio::timer::sleep(left).await;
            Err(io::ErrorKind::TimedOut.into())
        })
        .await
    }

    /// Encrypts as much of `iov` as rustls buffers (its default limit, 64 KiB of records) and
    /// writes all of it before returning, so a peer that stops reading stops the connection
    /// here as it does for plain TCP.
    async fn write_vectored(&mut self, iov: &[IoSlice<'_>], stall: Duration) -> io::Result<usize> {
        let n = self.tls.writer().write_vectored(iov)?;
        self.tcp.set_write_timeout(Some(stall))?;
        poll_fn(|cx| self.poll_flush_tls(cx)).await?;
        if n == 0 && iov.iter().any(|s| !s.is_empty()) {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(n)
    }

    async fn close(mut self) {
        self.tls.send_close_notify();
        let _ = self.tcp.set_write_timeout(Some(CLOSE_NOTIFY_WAIT));
        let _ = poll_fn(|cx| self.poll_flush_tls(cx)).await;
        let _ = futures_lite::AsyncWriteExt::close(&mut self.tcp).await;
    }
}
