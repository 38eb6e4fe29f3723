//! The peer address of a connection the listener has just accepted, before it is bound to an
//! executor.
//!
//! glommio 0.9's `AcceptedTcpStream::peer_addr` wraps the descriptor in a temporary socket
//! and, when `getpeername` fails (the peer reset the connection between the accept and the
//! look, which HAProxy does when it gives up on a node), returns early and so drops that
//! temporary socket: the descriptor is closed there and then. Binding the stream afterwards
//! and dropping it closed the same number a second time. In a debug build the standard
//! library aborts the whole process on that ("owned file descriptor already closed"); in a
//! release build the second close lands on whatever connection or file had reused the number
//! meanwhile. So every accept loop asks here, and a stream whose peer is gone is forgotten,
//! never bound.

use glommio::net::AcceptedTcpStream;
use std::net::SocketAddr;

/// The peer of a freshly accepted stream, or `None` when the peer is already gone; the
/// descriptor is then closed already and the caller must drop the stream without binding it
/// (an unbound `AcceptedTcpStream` owns nothing on drop).
pub(super) fn accepted_peer(stream: &AcceptedTcpStream) -> Option<SocketAddr> {
    stream.peer_addr().ok()
}
