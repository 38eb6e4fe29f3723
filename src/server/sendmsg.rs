//! Vectored, non-blocking writes: the response head and retained body segments leave in one
//! `sendmsg` call, straight from the blocks they were received into. glommio's stream has no
//! vectored write, so this calls the socket directly and falls back to glommio's own
//! readiness wait only when the socket buffer is full.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

/// The most slices handed to one `sendmsg` (well under the kernel's IOV_MAX of 1024).
pub const IOV_MAX: usize = 64;

/// Writes as much of `iov` as the socket takes without blocking.
pub fn send_vectored(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: IoSlice is ABI-compatible with iovec; msghdr is plain data and only read by the
    // kernel for the duration of the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
