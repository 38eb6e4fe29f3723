//! The connection's byte stream: plain TCP, or TLS (icaps) with rustls driven over the same
//! non-blocking socket, so the event loop stays the same.
//!
//! TLS needs two things from the loop that plain TCP does not: rustls may hold records it
//! could not write yet (the socket was full), which must be flushed when the socket turns
//! writable even if the request itself is written; and it may hold decrypted bytes while the
//! socket has nothing more, which no readiness event would announce. [`Stream::pending_output`]
//! and [`Stream::buffered_input`] tell the loop about both.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

/// How the benchmark connects over TLS.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl TlsClient {
    /// Trusts the CA certificates in `ca` (PEM), or, with `no_verify`, any certificate (a
    /// self-signed test certificate). The handshake signatures are checked either way.
    pub fn new(server: &str, ca: Option<&Path>, no_verify: bool) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match (ca, no_verify) {
            (_, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            (Some(ca), false) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = std::fs::read(ca).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                    roots.add(cert).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, false) => return Err("--tls needs --tls-ca FILE or --tls-no-verify".into()),
        };
        let host = server.rsplit_once(':').map_or(server, |(h, _)| h).trim_matches(|c| c == '[' || c == ']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("--server {server}: {e}"))?;
        Ok(TlsClient { config: Arc::new(config), name })
    }
}

/// Accepts any server certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A non-blocking byte stream; `WouldBlock` means "wait for readiness".
pub struct Stream {
    pub tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl Stream {
    pub fn new(tcp: TcpStream, tls: Option<&TlsClient>) -> io::Result<Stream> {
        let tls = match tls {
            Some(t) => {
                Some(Box::new(ClientConnection::new(t.config.clone(), t.name.clone()).map_err(io::Error::other)?))
            }
            None => None,
        };
        Ok(Stream { tcp, tls })
    }

    /// Records rustls holds for the socket.
    pub fn pending_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// The handshake is waiting for the server: writing more now would only fill rustls'
    /// buffer (and polling for writability would spin).
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Decrypted bytes are waiting to be read, whatever the socket says.
    pub fn buffered_input(&mut self) -> bool {
        self.tls.as_mut().is_some_and(|t| t.process_new_packets().is_ok_and(|s| s.plaintext_bytes_to_read() > 0))
    }

    /// Writes what rustls holds; `WouldBlock` when the socket is full.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else { return Ok(()) };
        while tls.wants_write() {
            tls.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else { return self.tcp.read(buf) };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            let processed = tls.process_new_packets().map_err(|e| io::Error::new(ErrorKind::InvalidData, e));
            // Handshake replies and alerts go out at once; a full socket is retried on POLLOUT.
            while tls.wants_write() {
                match tls.write_tls(&mut self.tcp) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
            }
            processed?;
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.tcp.write(buf);
        }
        self.flush_tls()?;
        let tls = self.tls.as_mut().expect("checked");
        // rustls takes plaintext up to its buffer limit; 0 means it is full until flushed.
        let n = tls.writer().write(buf)?;
        if let Err(e) = self.flush_tls() {
            if e.kind() != ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        if n == 0 && !buf.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
