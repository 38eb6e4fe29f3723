//! Handing a freshly accepted connection to a less-loaded shard (placement at accept; the
//! policy is [`crate::balance`]).
//!
//! Every shard has an inbox: a bounded crossbeam queue of accepted sockets and a socketpair
//! whose read end the shard awaits with glommio. A shard that accepts a connection asks
//! [`crate::balance::policy::place`] where it belongs; if that is another shard, it counts the
//! connection there at once (so shards accepting in the same instant see it and do not all pick
//! the same target), pushes the socket into the target's queue and writes one byte to its wake
//! socket. The target reads the wake bytes, then drains its queue, and serves each socket like
//! one of its own accepts: the allow-list was already checked, the per-shard cap is checked
//! again there. A push always precedes its wake byte and the target drains after reading, so no
//! connection waits for a later wake; when the wake socket is full, unread bytes are already
//! there. A TLS connection moves before its handshake, so the handshake runs where the
//! connection will live. When the target's queue is full, the connection stays where it was
//! accepted.
//!
//! (glommio's own channel mesh was tried first: about one start in thirty hung in its join.)
//!
//! Cost: one queue push and one byte on a local socket, before the client has sent its first
//! byte.

use crate::balance::board::{Board, Load};
use crate::balance::busy::BusyWindow;
use crate::balance::policy::{self, Candidate, MoveGate, Tuning};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use glommio::net::AcceptedTcpStream;
use std::cell::RefCell;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections in flight to one shard before a sender keeps new ones itself.
pub const HANDOFF_QUEUE_CONNECTIONS: usize = 256;

/// A connection on its way to another shard: glommio's accepted socket that is not yet bound
/// to an executor (it is `Send`; the receiving shard binds it).
pub enum Moved {
    /// A plain ICAP connection.
    Plain(AcceptedTcpStream),
    /// A TLS connection, not yet handshaken.
    Tls(AcceptedTcpStream),
    /// A plain keep-alive connection moved at a transaction boundary (nothing buffered, nothing
    /// owed): the socket alone, since between transactions a connection has no other state.
    Resumed(OwnedFd),
}

/// What a shard keeps for moves at transaction boundaries: its busy fraction over a short
/// window (fed with the processing time its connections report, closed by the control task)
/// and the gate that spaces its moves. The clock is read here, in `server/`, and handed to
/// the sans-IO [`crate::balance`] types as nanoseconds since the shard started.
pub struct MoveState {
    epoch: Instant,
    window_ns: u64,
    pub window: BusyWindow,
    pub gate: MoveGate,
}

impl MoveState {
    pub fn new(window: Duration) -> MoveState {
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
        MoveState { epoch: Instant::now(), window_ns, window: BusyWindow::new(window_ns, 0), gate: MoveGate::default() }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A fresh window for one connection's own busy fraction, on the shard's clock.
    pub fn connection_window(&self) -> BusyWindow {
        BusyWindow::new(self.window_ns, self.now_ns())
    }
}

/// Where other shards put connections for one shard.
struct Inbox {
    tx: Sender<Moved>,
    /// The write end of the shard's wake socket (non-blocking).
    wake: StdUnixStream,
}

/// The receiving half of one shard's inbox, taken by that shard when it starts.
pub struct InboxEnd {
    pub rx: Receiver<Moved>,
    /// The read end of the wake socket, for glommio.
    pub wake: StdUnixStream,
}

/// What every shard starts with: the inboxes and the board the shards share.
#[derive(Clone)]
pub struct Balance {
    inboxes: Arc<[Inbox]>,
    ends: Arc<[Mutex<Option<InboxEnd>>]>,
    pub board: Arc<Board>,
    pub tuning: Tuning,
}

impl Balance {
    pub fn new(shards: usize, tuning: Tuning) -> std::io::Result<Balance> {
        let mut inboxes = Vec::with_capacity(shards);
        let mut ends = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = crossbeam_channel::bounded(HANDOFF_QUEUE_CONNECTIONS);
            let (wake_write, wake_read) = StdUnixStream::pair()?;
            wake_write.set_nonblocking(true)?;
            wake_read.set_nonblocking(true)?;
            inboxes.push(Inbox { tx, wake: wake_write });
            ends.push(Mutex::new(Some(InboxEnd { rx, wake: wake_read })));
        }
        Ok(Balance { inboxes: inboxes.into(), ends: ends.into(), board: Arc::new(Board::new(shards)), tuning })
    }
}

/// One shard's view: its index (the board slot), the inboxes of the others, the board.
pub struct Handoff {
    me: usize,
    inboxes: Arc<[Inbox]>,
    board: Arc<Board>,
    tuning: Tuning,
    loads: RefCell<Vec<Load>>,
}

impl Handoff {
    /// Shard `me`'s end; also returns its inbox's receiving half (once per shard).
    pub fn new(b: &Balance, me: usize) -> (Handoff, InboxEnd) {
        let end = b.ends[me].lock().unwrap_or_else(|p| p.into_inner()).take().expect("each shard takes its inbox once");
        let shards = b.board.shards();
        let h = Handoff {
            me,
            inboxes: b.inboxes.clone(),
            board: b.board.clone(),
            tuning: b.tuning,
            loads: RefCell::new(Vec::with_capacity(shards)),
        };
        (h, end)
    }

    /// This shard's slot on the board.
    pub fn me(&self) -> usize {
        self.me
    }

    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Whether a connection at a transaction boundary should move, and where: `own_permille` is
    /// this shard's busy fraction (read locally first, so a shard that is not busy never reads
    /// the board on this path), `gate` the shard's move gate.
    pub fn consider_move(&self, own_permille: u32, gate: &mut MoveGate, c: Candidate, now_ns: u64) -> Option<usize> {
        if self.board.shards() < 2 || own_permille <= self.tuning.move_margin_permille {
            return None;
        }
        let mut loads = self.loads.borrow_mut();
        self.board.read_into(&mut loads);
        gate.should_move(self.me, c, &loads, now_ns, &self.tuning)
    }

    /// Moves a connection to `target` (decided by [`Handoff::consider_move`]), carrying
    /// `busy_permille` of this shard's load with it. Gives the socket back when the target's
    /// queue is full; the caller then serves it here again.
    pub fn move_to(&self, target: usize, fd: OwnedFd, busy_permille: u32) -> Result<(), OwnedFd> {
        let inbox = &self.inboxes[target];
        self.board.moved(self.me, target, busy_permille);
        match inbox.tx.try_send(Moved::Resumed(fd)) {
            Ok(()) => {
                let _ = (&inbox.wake).write(&[1]);
                Ok(())
            }
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                self.board.move_failed(self.me, target, busy_permille);
                match m {
                    Moved::Resumed(fd) => Err(fd),
                    _ => unreachable!("we sent a resumed connection"),
                }
            }
        }
    }

    /// Where a connection just accepted here should be served: `Some` (the same connection)
    /// to serve it here, `None` when it was handed over. Either way it is counted on the board
    /// where it goes before this returns, so the next accept, even in the same scheduler turn,
    /// sees it (counting only once the connection's task runs let a burst of simultaneous
    /// connects all stay on the shard that accepted them).
    pub fn route(&self, conn: Moved) -> Option<Moved> {
        let me = self.me;
        if self.board.shards() < 2 {
            self.board.arrived(me);
            return Some(conn);
        }
        let target = {
            let mut loads = self.loads.borrow_mut();
            self.board.read_into(&mut loads);
            policy::place(me, &loads, &self.tuning)
        };
        if target == me {
            self.board.arrived(me);
            return Some(conn);
        }
        self.board.arrived(target);
        let inbox = &self.inboxes[target];
        match inbox.tx.try_send(conn) {
            Ok(()) => {
                // A full wake socket already holds unread bytes: the target will drain.
                let _ = (&inbox.wake).write(&[1]);
                self.board.count_hand_off(me);
                None
            }
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => {
                self.board.left(target);
                self.board.arrived(me);
                Some(c)
            }
        }
    }
}
