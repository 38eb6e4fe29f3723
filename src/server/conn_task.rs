//! The task that drives one connection: a loop around the sans-IO state machine.
//!
//! write everything pending -> read (with the phase deadline as timeout) -> handle -> yield.
//!
//! Output is flushed before more input is read, so a client that stops reading our answers
//! stops being read too (TCP back-pressure instead of unbounded buffering).

use super::sendmsg::IOV_MAX;
use super::shard::ShardCtx;
use super::transport::{Plain, Transport};
use crate::balance::busy::BusyWindow;
use crate::balance::policy::Candidate;
use crate::proto::conn::{Conn, State};
use futures_lite::FutureExt;
use glommio::net::TcpStream;
use std::future::Future;
use std::io::{self, IoSlice};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Decrements the shard's connection count (its own and the one on the shared balance board)
/// however the task ends. A connection that moved to another shard was taken off the board by
/// the move (`moved`), so only the shard's own count drops then.
struct Active {
    ctx: Rc<ShardCtx>,
    moved: bool,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.ctx.active.set(self.ctx.active.get() - 1);
        if !self.moved {
            self.ctx.handoff.board().left(self.ctx.handoff.me());
        }
    }
}

/// Counts a connection on the shard as it is admitted, synchronously, so that the cap check of
/// the next accept in the same scheduler turn sees it. (The board was counted by the router.)
pub fn admitted(ctx: &ShardCtx) {
    ctx.active.set(ctx.active.get() + 1);
}

/// A connection the router counted here but that will not be served (refused at the cap):
/// takes its board count back.
pub fn not_admitted(ctx: &ShardCtx) {
    ctx.handoff.board().left(ctx.handoff.me());
}

pub async fn serve(stream: TcpStream, ctx: Rc<ShardCtx>) {
    serve_over(ctx, async move { Some(Plain::new(stream)) }).await
}

// --- transport seam (TLS, src/server/tls.rs) ---
/// Serves one connection over the transport `open` yields (a TLS connection after its
/// handshake; `None` when the handshake failed). The connection counts against the shard's cap
/// from its admission, handshake included: the caller counted it (see [`admitted`]) before
/// spawning this task, and the task takes the counts back however it ends.
pub async fn serve_over<T: Transport>(ctx: Rc<ShardCtx>, open: impl Future<Output = Option<T>>) {
    let mut active = Active { ctx: ctx.clone(), moved: false };
    let id = ctx.next_id();
    // A panic in one transaction must not take the shard down: it ends this connection only.
    let result = AssertUnwindSafe(async {
        match open.await {
            Some(transport) => drive(transport, &ctx, id).await,
            None => false,
        }
    })
    .catch_unwind()
    .await;
    active.moved = matches!(result, Ok(true));
    ctx.idle.borrow_mut().remove(&id);
    if result.is_err() {
        ctx.metrics.borrow_mut().connection_panics += 1;
        eprintln!("icapd: connection task panicked; connection closed, shard continues");
    }
    drop(active);
}

/// Serves the connection until it closes (`false`) or moves to another shard (`true`).
async fn drive<T: Transport>(mut stream: T, ctx: &Rc<ShardCtx>, id: u64) -> bool {
    let fd = stream.fd();
    let peer = stream.peer_addr();
    let local = stream.local_addr();
    // Processing time since the last finished transaction, charged to the next one.
    let mut busy = Duration::ZERO;
    // This connection's own busy fraction, and when it arrived here, for move decisions.
    let (mut own_window, arrived_ns) = {
        let moves = ctx.moves.borrow();
        (moves.connection_window(), moves.now_ns())
    };
    let limits = ctx.limits;
    let mut conn = Conn::new(limits, ctx.info, ctx.build_inspector(), Instant::now());
    if let Some(page) = &ctx.block_page {
        conn.set_block_page(page.clone());
    }
    if !ctx.policies.is_empty() {
        conn.set_policies(ctx.policies.clone(), peer.map(|p| p.ip()));
    }
    loop {
        while conn.has_output() {
            match write_some(&mut stream, &conn, limits.body_inactivity).await {
                Ok(n) => conn.handle_written(n, &mut ctx.pool.borrow_mut()),
                Err(_) => {
                    conn.release(&mut ctx.pool.borrow_mut());
                    return false;
                }
            }
        }
        if conn.is_done() || !conn.wants_read() {
            break;
        }
        let idle = conn.state() == State::Idle;
        if idle && ctx.draining.get() {
            break;
        }
        if idle && stream.can_move() && conn.at_rest() && move_away(&stream, &mut own_window, arrived_ns, ctx) {
            // The socket lives on in the other shard's duplicate; dropping this stream only
            // closes our descriptor (no shutdown, no close_notify).
            conn.release(&mut ctx.pool.borrow_mut());
            drop(stream);
            return true;
        }
        let now = Instant::now();
        let deadline = conn.poll_deadline().expect("a reading connection has a deadline");
        if deadline <= now {
            conn.handle_timeout(now, unix_now());
            record_outcomes(&mut conn, ctx, peer, local, &mut busy);
            continue;
        }
        if idle {
            ctx.idle.borrow_mut().insert(id, fd);
        }
        let buf = conn.recv_buf(&mut ctx.pool.borrow_mut());
        let read = stream.read(buf, deadline).await;
        if idle {
            ctx.idle.borrow_mut().remove(&id);
        }
        match read {
            Ok(0) => conn.handle_eof(),
            Ok(n) => {
                let started = Instant::now();
                let unix = unix_now();
                conn.handle_read(n, started, unix);
                let spent = started.elapsed();
                conn.handle_scan_time(spent, unix);
                busy += spent;
                let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
                own_window.add_busy(ns);
                ctx.moves.borrow_mut().window.add_busy(ns);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => conn.handle_timeout(Instant::now(), unix_now()),
            Err(_) => conn.handle_eof(),
        }
        record_outcomes(&mut conn, ctx, peer, local, &mut busy);
        glommio::yield_if_needed().await;
    }
    record_outcomes(&mut conn, ctx, peer, local, &mut busy);
    conn.release(&mut ctx.pool.borrow_mut());
    stream.close().await;
    false
}

/// At a transaction boundary: asks the balance policy whether this connection should move to
/// a less busy shard and, if so, hands a duplicate of its socket to that shard. `true` when it
/// went; the caller then drops its own end. A full target queue or a failed dup keeps the
/// connection here.
fn move_away<T: Transport>(stream: &T, own: &mut BusyWindow, arrived_ns: u64, ctx: &ShardCtx) -> bool {
    let (target, busy_permille) = {
        let mut moves = ctx.moves.borrow_mut();
        let now = moves.now_ns();
        own.tick(now);
        let c = Candidate { busy_permille: own.permille(), arrived_ns };
        let shard_permille = moves.window.permille();
        match ctx.handoff.consider_move(shard_permille, &mut moves.gate, c, now) {
            Some(target) => (target, c.busy_permille),
            None => return false,
        }
    };
    let Some(fd) = stream.movable_fd() else { return false };
    match ctx.handoff.move_to(target, fd, busy_permille) {
        Ok(()) => {
            ctx.metrics.borrow_mut().connections_moved_out += 1;
            true
        }
        // Dropping the duplicate closes only it.
        Err(_fd) => false,
    }
}

/// Counts and logs the transactions the connection finished since the last call. The
/// processing time accumulated since the previous answer goes to the first of them.
fn record_outcomes(
    conn: &mut Conn,
    ctx: &ShardCtx,
    peer: Option<std::net::SocketAddr>,
    local: Option<std::net::SocketAddr>,
    busy: &mut Duration,
) {
    while let Some(outcome) = conn.poll_outcome() {
        ctx.record(&outcome, peer, local, std::mem::take(busy));
    }
}

/// Writes some of the pending output in one vectored write (see [`Transport::write_vectored`]).
async fn write_some<T: Transport>(stream: &mut T, conn: &Conn, stall: std::time::Duration) -> io::Result<usize> {
    let mut iov = [IoSlice::new(&[]); IOV_MAX];
    let n = conn.poll_transmit(&mut iov);
    stream.write_vectored(&iov[..n], stall).await
}
