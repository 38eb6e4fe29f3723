//! Handing a freshly accepted connection to a less-loaded shard (placement at accept; the
//! policy is [`crate::balance`]).
//!
//! The shards form a full glommio channel mesh. A shard that accepts a connection asks
//! [`crate::balance::policy::place`] where it belongs; if that is another shard, it counts the
//! connection there at once (so shards accepting in the same instant see it and do not all pick
//! the same target) and sends the socket's descriptor over the mesh. The receiving shard wraps
//! the descriptor and serves it like one of its own accepts: the allow-list was already checked,
//! the per-shard cap is checked again there. A TLS connection moves before its handshake, so the
//! handshake runs where the connection will live. When the target's queue is full or closed (it
//! is shutting down), the connection stays where it was accepted.
//!
//! Cost: one descriptor over an in-memory channel and a wake of the target's reactor, before
//! the client has sent its first byte (measured in `tuning/runs/`).

use crate::balance::board::{Board, Load};
use crate::balance::policy::{self, Tuning};
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::net::AcceptedTcpStream;
use glommio::{GlommioError, ResourceType};
use std::cell::RefCell;
use std::sync::Arc;

/// Connections in flight to one shard before a sender keeps new ones itself.
pub const HANDOFF_QUEUE_CONNECTIONS: usize = 256;

/// A connection on its way to another shard: glommio's accepted socket that is not yet bound
/// to an executor (it is `Send`; the receiving shard binds it).
pub enum Moved {
    /// A plain ICAP connection.
    Plain(AcceptedTcpStream),
    /// A TLS connection, not yet handshaken.
    Tls(AcceptedTcpStream),
}

/// What every shard starts with: the mesh to join and the board the shards share.
#[derive(Clone)]
pub struct Balance {
    pub mesh: MeshBuilder<Moved, Full>,
    pub board: Arc<Board>,
    pub tuning: Tuning,
}

impl Balance {
    pub fn new(shards: usize, tuning: Tuning) -> Balance {
        Balance { mesh: MeshBuilder::full(shards, HANDOFF_QUEUE_CONNECTIONS), board: Arc::new(Board::new(shards)), tuning }
    }
}

/// One shard's end of the mesh. The shard's index on the board is its peer id in the mesh
/// (the order in which shards joined), which is what the senders address.
pub struct Handoff {
    senders: Senders<Moved>,
    board: Arc<Board>,
    tuning: Tuning,
    loads: RefCell<Vec<Load>>,
}

impl Handoff {
    /// Joins the mesh (waits until every shard has); returns this shard's end and its
    /// receivers, for [`Handoff::take_streams`].
    pub async fn join(b: Balance) -> Result<(Handoff, Receivers<Moved>), String> {
        let shards = b.board.shards();
        let (senders, receivers) = b.mesh.join().await.map_err(|e| format!("joining the shard mesh failed: {e}"))?;
        let h = Handoff { senders, board: b.board, tuning: b.tuning, loads: RefCell::new(Vec::with_capacity(shards)) };
        Ok((h, receivers))
    }

    /// This shard's slot on the board.
    pub fn me(&self) -> usize {
        self.senders.peer_id()
    }

    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Where a connection just accepted here should be served: `None` to serve it here, or the
    /// connection handed over (already counted on the target).
    pub fn route(&self, conn: Moved) -> Option<Moved> {
        let me = self.me();
        if self.board.shards() < 2 {
            return Some(conn);
        }
        let target = {
            let mut loads = self.loads.borrow_mut();
            self.board.read_into(&mut loads);
            policy::place(me, &loads, &self.tuning)
        };
        if target == me {
            return Some(conn);
        }
        self.board.arrived(target);
        match self.senders.try_send_to(target, conn) {
            Ok(()) => {
                self.board.count_hand_off(me);
                None
            }
            Err(e) => {
                self.board.left(target);
                match e {
                    GlommioError::WouldBlock(ResourceType::Channel(c)) | GlommioError::Closed(ResourceType::Channel(c)) => {
                        Some(c)
                    }
                    // Only a channel error carries the connection back; glommio returns nothing
                    // else for a full mesh and a valid index, and a connection it did not return
                    // cannot be served or closed here.
                    other => {
                        eprintln!("icapd: handing a connection to shard slot {target} failed: {other}");
                        None
                    }
                }
            }
        }
    }

}
