//! What every accept loop does first with a connection the listener has just accepted, before
//! it is bound to an executor: look at its peer, and close it unanswered when `allow_clients`
//! does not admit the address (as c-icap does: an ICAP status would tell a scanner it found a
//! server).
//!
//! glommio 0.9's `AcceptedTcpStream::peer_addr` wraps the descriptor in a temporary socket
//! and, when `getpeername` fails (the peer reset the connection between the accept and the
//! look, which HAProxy does when it gives up on a node), returns early and so drops that
//! temporary socket: the descriptor is closed there and then. Binding the stream afterwards
//! and dropping it closed the same number a second time. In a debug build the standard
//! library aborts the whole process on that ("owned file descriptor already closed"); in a
//! release build the second close lands on whatever connection or file had reused the number
//! meanwhile. So a stream whose peer is gone is forgotten here, never bound.

use super::shard::ShardCtx;
use glommio::net::AcceptedTcpStream;

/// The stream back if its peer may be served; `None` when the peer is already gone (the
/// descriptor is closed already, and the stream is dropped unbound: an unbound
/// `AcceptedTcpStream` owns nothing on drop) or its address is not allowed (counted, closed).
pub(super) fn admissible(stream: AcceptedTcpStream, ctx: &ShardCtx) -> Option<AcceptedTcpStream> {
    let peer = stream.peer_addr().ok()?;
    if !ctx.allow.allows(peer.ip()) {
        ctx.metrics.borrow_mut().connections_denied += 1;
        drop(stream.bind_to_executor());
        return None;
    }
    Some(stream)
}
