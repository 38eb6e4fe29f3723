//! The task that drives one connection: a loop around the sans-IO state machine.
//!
//! write everything pending -> read (with the phase deadline as timeout) -> handle -> yield.
//!
//! Output is flushed before more input is read, so a client that stops reading our answers
//! stops being read too (TCP back-pressure instead of unbounded buffering).

use super::scan_queue;
use super::sendmsg::IOV_MAX;
use super::shard::ShardCtx;
use super::transport::{Plain, Transport};
use crate::budget::{Charge, Use};
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
/// however the task ends.
struct Active(Rc<ShardCtx>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.handoff.board().left(self.0.handoff.me());
    }
}

pub async fn serve(stream: TcpStream, ctx: Rc<ShardCtx>) {
    serve_over(ctx, async move { Some(Plain::new(stream)) }).await
}

// --- transport seam (TLS, src/server/tls.rs) ---
/// Serves one connection over the transport `open` yields (a TLS connection after its
/// handshake; `None` when the handshake failed). The connection counts against the shard's cap
/// from the start, handshake included.
pub async fn serve_over<T: Transport>(ctx: Rc<ShardCtx>, open: impl Future<Output = Option<T>>) {
    ctx.active.set(ctx.active.get() + 1);
    ctx.handoff.board().arrived(ctx.handoff.me());
    let active = Active(ctx.clone());
    let id = ctx.next_id();
    // A panic in one transaction must not take the shard down: it ends this connection only.
    let result = AssertUnwindSafe(async {
        if let Some(transport) = open.await {
            drive(transport, &ctx, id).await;
        }
    })
    .catch_unwind()
    .await;
    ctx.idle.borrow_mut().remove(&id);
    if result.is_err() {
        ctx.metrics.borrow_mut().connection_panics += 1;
        eprintln!("icapd: connection task panicked; connection closed, shard continues");
    }
    drop(active);
}

async fn drive<T: Transport>(mut stream: T, ctx: &Rc<ShardCtx>, id: u64) {
    let fd = stream.fd();
    let peer = stream.peer_addr();
    let local = stream.local_addr();
    // Processing time since the last finished transaction, charged to the next one.
    let mut busy = Duration::ZERO;
    let limits = ctx.limits;
    let mut conn = Conn::new(limits, ctx.info, ctx.build_inspector(), Instant::now());
    if let Some(page) = &ctx.block_page {
        conn.set_block_page(page.clone());
    }
    if !ctx.policies.is_empty() {
        conn.set_policies(ctx.policies.clone(), peer.map(|p| p.ip()));
    }
    // This connection's share of the shard's memory budget while it is inside a transaction.
    let mut reservation: Option<Charge> = None;
    loop {
        while conn.has_output() {
            match write_some(&mut stream, &conn, limits.body_inactivity).await {
                Ok(n) => conn.handle_written(n, &mut ctx.pool.borrow_mut()),
                Err(_) => {
                    conn.release(&mut ctx.pool.borrow_mut());
                    return;
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
        if conn.in_transaction() && reservation.is_none() {
            reservation = reserve(ctx, &conn).await;
            if reservation.is_none() {
                // The budget stayed spent until the phase's deadline.
                conn.handle_timeout(Instant::now(), unix_now());
                record_outcomes(&mut conn, ctx, peer, local, &mut busy);
                continue;
            }
        } else if !conn.in_transaction() && conn.held_bytes() <= limits.idle_block_bytes {
            reservation = None;
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
                let now = Instant::now();
                let unix = unix_now();
                conn.handle_received(n, now);
                // One transaction per step: the CPU time a step spends is charged to the
                // transaction it worked on (pipelined ones included), and other connections
                // get the CPU between steps.
                loop {
                    let (back, more, spent) = scan_queue::step(ctx.queues, conn, now, unix).await;
                    conn = back;
                    conn.handle_scan_time(spent, unix);
                    busy += spent;
                    record_outcomes(&mut conn, ctx, peer, local, &mut busy);
                    if !more {
                        break;
                    }
                    glommio::yield_if_needed().await;
                }
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
}

/// How often a connection waiting for memory looks again.
const BUDGET_RETRY: Duration = Duration::from_millis(5);

/// Reserves the connection's share of the shard's memory budget (`conn_retained_bytes_max`,
/// the most it can hold), waiting while the budget is spent: the connection is not read from
/// meanwhile, so its client meets TCP back-pressure instead of the shard running out of memory.
/// Gives up at the phase's deadline (`None`).
async fn reserve(ctx: &ShardCtx, conn: &Conn) -> Option<Charge> {
    let bytes = ctx.limits.conn_retained_bytes_max;
    if let Some(c) = ctx.budget.try_charge(Use::Connections, bytes) {
        return Some(c);
    }
    ctx.budget.count_wait();
    let deadline = conn.poll_deadline()?;
    while Instant::now() < deadline {
        glommio::timer::sleep(BUDGET_RETRY).await;
        if ctx.budget.fits(bytes) {
            return ctx.budget.try_charge(Use::Connections, bytes);
        }
    }
    None
}

/// Counts and logs the transactions the connection finished since the last call. The
/// processing time accumulated since the previous answer goes to the first of them (reads are
/// processed one transaction per step, so that is the transaction that spent it).
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
