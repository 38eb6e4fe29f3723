//! The byte stream a connection task drives: plain TCP or TLS over TCP.
//!
//! The connection driver (`conn_task.rs`) only needs four things from its socket: read into the
//! connection's receive block before a deadline, write a vector of slices (the response head
//! and retained body segments) with a stall bound, the raw descriptor (idle eviction and drain
//! shut its read side down), and the addresses for the access log. [`Transport`] is exactly
//! that, so the same loop serves `icap://` and `icaps://`:
//!
//! * [`Plain`]: `recv` straight into the receive block and one vectored `sendmsg` straight
//!   from the blocks, with glommio's readiness wait only when the socket is not ready.
//! * [`super::tls::TlsStream`]: rustls, driven sans-IO over the same socket.

use super::sendmsg::send_vectored;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A connection's byte stream. Single-threaded (glommio), so the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// The socket, for `shutdown(SHUT_RD)` when the shard evicts or drains the connection.
    fn fd(&self) -> RawFd;
    fn peer_addr(&self) -> Option<SocketAddr>;
    fn local_addr(&self) -> Option<SocketAddr>;
    /// Reads some bytes into `buf`; `Ok(0)` is the end of the stream. Fails with
    /// [`io::ErrorKind::TimedOut`] when nothing arrived by `deadline`.
    async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize>;
    /// Writes some of `iov` (in order) and returns how many bytes were taken. Fails when the
    /// peer takes nothing for `stall`.
    async fn write_vectored(&mut self, iov: &[IoSlice<'_>], stall: Duration) -> io::Result<usize>;
    /// Ends the stream (TLS: with close_notify) and closes the socket.
    async fn close(self);
    /// A second descriptor for the socket, for moving the connection to another shard between
    /// transactions; `None` where the stream has state beyond the socket (TLS: rustls' session).
    fn movable_fd(&self) -> Option<OwnedFd> {
        None
    }
    /// Whether [`Transport::movable_fd`] can succeed (checked before a move is decided, so a
    /// connection that cannot move never uses up the shard's move gate).
    fn can_move(&self) -> bool {
        false
    }
}

/// Plain TCP.
pub struct Plain {
    stream: TcpStream,
}

impl Plain {
    pub fn new(stream: TcpStream) -> Plain {
        let _ = stream.set_nodelay(true);
        Plain { stream }
    }
}

impl Transport for Plain {
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf).await
    }

    /// One vectored `sendmsg` when the socket has room, otherwise glommio's readiness wait
    /// (bounded by `stall`) for the first slice.
    async fn write_vectored(&mut self, iov: &[IoSlice<'_>], stall: Duration) -> io::Result<usize> {
        match send_vectored(self.stream.as_raw_fd(), iov) {
            Ok(written) => Ok(written),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stream.set_write_timeout(Some(stall))?;
                match self.stream.write(&iov[0]).await {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    other => other,
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn close(mut self) {
        let _ = self.stream.close().await;
    }

    fn can_move(&self) -> bool {
        true
    }

    fn movable_fd(&self) -> Option<OwnedFd> {
        // SAFETY: the descriptor is this stream's open socket, borrowed only for the dup.
        unsafe { BorrowedFd::borrow_raw(self.stream.as_raw_fd()) }.try_clone_to_owned().ok()
    }
}
