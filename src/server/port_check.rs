//! Refusing to start beside another server on the same address and port.
//!
//! Every shard binds its listener with SO_REUSEPORT, so that the kernel spreads connections
//! over the shards. The same option would let a second icapd (or anything else that sets it)
//! bind the same address and port without an error, and the kernel would then split new
//! connections between the two processes: half the traffic scanned with another signature
//! set, another configuration, or a stale binary, and nothing to say so.
//!
//! So before any shard binds, a probe socket binds the address *without* SO_REUSEPORT. Linux
//! refuses that bind with EADDRINUSE while any socket holds the port, whatever options that
//! socket set. The probe does set SO_REUSEADDR, like the shard listeners, so connections of a
//! previous run lingering in TIME_WAIT do not count as another server. The probe is closed
//! before the shards bind. `--allow-shared-port` (`allow_shared_port = true`) skips the check
//! for those who run two servers on one port on purpose (a rolling restart by hand).

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

/// `Ok` when nothing holds `addr`; otherwise the one-line reason for the operator.
pub fn ensure_free(addr: SocketAddr) -> Result<(), String> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("cannot create a socket to check {addr}: {e}"))?;
    socket.set_reuse_address(true).map_err(|e| format!("cannot check {addr}: {e}"))?;
    match socket.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "{addr} is already in use by another process (a second server there would silently take part of its connections); stop it, choose another --listen, or pass --allow-shared-port"
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_with_or_without_reuseport_is_refused() {
        let free: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // A port nobody holds passes (port 0 binds an ephemeral one).
        assert_eq!(ensure_free(free), Ok(()));
        for reuse_port in [false, true] {
            let held = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            held.set_reuse_address(true).unwrap();
            held.set_reuse_port(reuse_port).unwrap();
            held.bind(&free.into()).unwrap();
            held.listen(16).unwrap();
            let addr = held.local_addr().unwrap().as_socket().unwrap();
            let err = ensure_free(addr).unwrap_err();
            assert!(err.contains("already in use") && !err.contains('\n'), "{err}");
            drop(held);
            assert_eq!(ensure_free(addr), Ok(()), "free again once closed");
        }
    }
}
