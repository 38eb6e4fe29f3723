//! One shard: its listener, its accept loop, its connections and its block pool.

use super::conn_task;
use super::handoff::{Balance, Handoff, InboxEnd, MoveState, Moved};
use super::log_writer::LogMsg;
use super::tls::{self, TlsServer};
use super::{Control, ShardEvent};
use crate::budget::ShardBudget;
use crate::config::Config;
use crate::inspect::{Inspector, InspectorKind};
use crate::limits::Limits;
use crate::obs::access_log::AccessLog;
use crate::obs::metrics::ShardMetrics;
use crate::obs::record::TxnRecord;
use crate::obs::snapshot::ShardSnapshot;
use crate::proto::blocks::BlockPool;
use crate::proto::conn::TxnOutcome;
use crate::proto::response::{self, ServerInfo};
use crate::scan::engine::{EngineInspector, ScanCtx};
use crate::signatures::Generation;
use crossbeam_channel::{Receiver, Sender};
use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use glommio::spawn_local;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Listen backlog per shard: bursts of new connections from a busy proxy should queue, not be
/// refused.
const LISTEN_BACKLOG: i32 = 4096;
/// How often a shard looks for control messages from the main thread.
const CONTROL_POLL: Duration = Duration::from_millis(50);
/// Free receive blocks a shard keeps for reuse (and allocates up front).
const POOL_KEEP_BLOCKS: usize = 256;
const POOL_PREFILL_BLOCKS: usize = 16;
/// How often the pool gives back the free blocks nobody needed since the last time (and the
/// allocator returns the freed memory to the system), so RSS falls back after a burst.
const POOL_TRIM_EVERY: Duration = Duration::from_secs(1);

/// Everything a shard's connection tasks share. Single-threaded: cells, not locks.
pub struct ShardCtx {
    pub shard: usize,
    pub cpu: usize,
    pub limits: Limits,
    pub info: ServerInfo,
    pub inspector: InspectorKind,
    /// The scanning context when the inspector is the signature engine.
    pub scan: Option<Rc<ScanCtx>>,
    pub block_page: Option<Rc<str>>,
    /// Who may connect (checked at accept), and the policy table every connection judges
    /// its transactions with.
    pub allow: crate::access::AllowList,
    pub policies: Rc<crate::access::PolicyTable>,
    pub pool: RefCell<BlockPool>,
    /// The memory budget every big buffer of this shard is charged to.
    pub budget: Rc<ShardBudget>,
    /// The interactive and bulk task queues (see [`super::scan_queue`]).
    pub queues: super::scan_queue::Queues,
    /// This shard's end of the connection hand-off mesh and the shared load board.
    pub handoff: Handoff,
    /// The busy window and move gate behind moves at transaction boundaries.
    pub moves: RefCell<MoveState>,
    pub active: Cell<usize>,
    pub draining: Cell<bool>,
    /// Connections waiting between requests: closed at once when the shard drains, and the
    /// one idle longest is closed to make room for a new connection at the cap.
    pub idle: RefCell<IdleSet>,
    next_id: Cell<u64>,
    /// This shard's counters; scrapes get a copy.
    pub metrics: RefCell<ShardMetrics>,
    /// Formatted access-log lines waiting for the writer (None when the log is off).
    log: Option<RefCell<AccessLog>>,
    log_tx: Option<Sender<LogMsg>>,
}

impl ShardCtx {
    /// A fresh inspector for one connection.
    pub fn build_inspector(&self) -> Box<dyn Inspector> {
        match (self.inspector.build(), &self.scan) {
            (Some(builtin), _) => builtin,
            (None, Some(scan)) => Box::new(EngineInspector::new(scan.clone())),
            (None, None) => unreachable!("the engine inspector always has a scanning context"),
        }
    }

    /// The ISTag answers carry right now (without building an inspector).
    pub fn istag(&self) -> String {
        match (&self.scan, self.inspector.build()) {
            (Some(scan), _) => scan.current().gen.istag.clone(),
            (None, Some(builtin)) => builtin.istag().to_string(),
            (None, None) => String::new(),
        }
    }

    pub fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Counts and logs one finished transaction. `busy` is the processing time it took.
    pub fn record(&self, outcome: &TxnOutcome, client: Option<SocketAddr>, local: Option<SocketAddr>, busy: Duration) {
        let unix_millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let rec = TxnRecord {
            outcome,
            client,
            local,
            shard: self.shard,
            latency: outcome.started.elapsed(),
            busy,
            unix_millis,
        };
        self.metrics.borrow_mut().record(&rec);
        if let Some(log) = &self.log {
            let mut log = log.borrow_mut();
            log.write(&rec);
            if log.wants_flush() {
                drop(log);
                self.flush_log();
            }
        }
    }

    /// Hands the buffered access-log lines to the writer; drops (and counts) them when the
    /// writer's queue is full.
    pub fn flush_log(&self) {
        let (Some(log), Some(tx)) = (&self.log, &self.log_tx) else { return };
        let mut log = log.borrow_mut();
        if log.is_empty() {
            return;
        }
        let lines = log.take(None);
        if let Err(e) = tx.try_send(LogMsg::Lines(lines)) {
            let LogMsg::Lines(lost) = e.into_inner() else { unreachable!("we sent lines") };
            let dropped = lost.iter().filter(|&&b| b == b'\n').count() as u64;
            self.metrics.borrow_mut().log_lines_dropped += dropped;
        }
    }

    /// Closes the shard's busy window when it is due: publishes the new fraction on the board
    /// (for other shards' move decisions) and in the counters.
    pub fn tick_balance(&self) {
        let mut moves = self.moves.borrow_mut();
        let now = moves.now_ns();
        if let Some(permille) = moves.window.tick(now) {
            self.handoff.board().publish_busy(self.handoff.me(), permille);
            self.metrics.borrow_mut().busy_permille = permille;
        }
    }

    /// A copy of this shard's counters and state for a scrape.
    pub fn snapshot(&self) -> ShardSnapshot {
        let mut metrics = self.metrics.borrow().clone();
        metrics.memory = self.budget.stats();
        let pool = self.pool.borrow();
        metrics.memory.pool_allocated = pool.allocated_bytes() as u64;
        metrics.memory.pool_free = pool.free_bytes() as u64;
        ShardSnapshot {
            shard: self.shard,
            cpu: self.cpu,
            active: self.active.get(),
            generation: self.scan.as_ref().map(|s| s.current().gen.id),
            istag: self.istag(),
            metrics,
        }
    }
}

/// What a shard thread starts with.
pub struct ShardArgs {
    pub shard: usize,
    pub cpu: usize,
    pub shards: usize,
    pub cfg: Config,
    pub generation: Option<Arc<Generation>>,
    pub control: Receiver<Control>,
    pub events: Sender<ShardEvent>,
    pub log: Option<Sender<LogMsg>>,
    /// The TLS configuration when `cfg.tls.listen` is not empty.
    pub tls: Option<Arc<TlsServer>>,
    /// The hand-off mesh and load board every shard shares (src/server/handoff.rs).
    pub balance: Balance,
}

/// The connections of a shard that are blocked reading between requests (or before their
/// first request), with when they started waiting.
///
/// At the connection cap a new connection closes the one that has waited longest instead of
/// being refused, provided it has waited at least `idle_evict_after`. A 503 is a failed
/// transaction to Squid (ten of them suspend the service, and with `bypass=off` that blocks
/// all traffic), while closing an idle keep-alive connection costs the client one reconnect,
/// exactly as the idle timeout would. The minimum wait protects connections in active use: a
/// busy client's connection is idle only for a round trip between requests, and evicting it
/// there would trade one client's working connection for a newcomer that may be an attacker.
/// Connections in the middle of a request are never closed this way; slow ones are bounded by
/// the header and body deadlines instead. So a flood of idle connections cannot lock a proxy
/// out for longer than `idle_evict_after`, and only connections that all hold a request open
/// can fill the cap, each until its deadline.
#[derive(Debug, Default)]
pub struct IdleSet {
    /// id -> (socket, when it started waiting).
    waiting: HashMap<u64, (RawFd, Instant)>,
}

impl IdleSet {
    /// Connection `id` starts waiting for its next request on `fd`.
    pub fn insert(&mut self, id: u64, fd: RawFd) {
        self.waiting.insert(id, (fd, Instant::now()));
    }

    /// Connection `id` stopped waiting (it read something, or it is gone).
    pub fn remove(&mut self, id: &u64) {
        self.waiting.remove(id);
    }

    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.waiting.values().map(|&(fd, _)| fd)
    }

    /// Removes and returns the socket that has waited longest, if it has waited at least
    /// `min_wait` by `now`. A linear scan: it runs only at the cap, over at most
    /// `connections_per_shard_max` entries.
    pub fn take_oldest(&mut self, now: Instant, min_wait: Duration) -> Option<RawFd> {
        let (&id, &(fd, since)) = self.waiting.iter().min_by_key(|(_, &(_, since))| since)?;
        if now.saturating_duration_since(since) < min_wait {
            return None;
        }
        self.waiting.remove(&id);
        Some(fd)
    }
}

/// At the cap: closes the connection idle longest, if there is one idle long enough, to make
/// room. Its task sees end of input at once and exits, so the shard exceeds the cap only by
/// connections evicted within the same scheduler turn.
pub(super) fn evict_idle(ctx: &ShardCtx) -> bool {
    let oldest = ctx.idle.borrow_mut().take_oldest(Instant::now(), ctx.limits.idle_evict_after);
    let Some(fd) = oldest else { return false };
    ctx.metrics.borrow_mut().connections_evicted += 1;
    // SAFETY: the fd belongs to a live connection task of this shard that is blocked in a read
    // (it is in the set only then); shutdown only wakes that read with end of input.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RD);
    }
    true
}

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the fd is a bound, listening TCP socket whose ownership moves to glommio.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

pub async fn run(args: ShardArgs) {
    let ShardArgs { shard, cpu, shards, cfg, generation, control, events, log, tls, balance } = args;
    let (handoff, inbox) = Handoff::new(&balance, shard);
    let listener = match bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            let _ = events.send(ShardEvent::Failed { shard, error: format!("cannot listen on {}: {e}", cfg.listen) });
            return;
        }
    };
    // TLS listeners (src/server/tls.rs), bound beside the plain one.
    let tls_listeners = match tls::bind_listeners(&cfg.tls.listen) {
        Ok(l) => l,
        Err(error) => {
            let _ = events.send(ShardEvent::Failed { shard, error });
            return;
        }
    };
    let limits = cfg.limits;
    let budget = ShardBudget::new(limits.shard_memory_bytes_max);
    let ctx = Rc::new(ShardCtx {
        shard,
        cpu,
        limits,
        info: ServerInfo {
            max_connections: limits.connections_per_shard_max * shards,
            preview_bytes: limits.preview_bytes_max,
            options_ttl_secs: limits.options_ttl.as_secs(),
        },
        inspector: cfg.inspector,
        scan: generation
            .map(|g| ScanCtx::with_budget(g, limits.scan(), cfg.policy.clone(), budget.clone(), cfg.spool_dir.clone())),
        block_page: cfg.block_page.as_deref().map(Rc::from),
        allow: cfg.allow_clients.clone(),
        policies: Rc::new(cfg.policies.clone()),
        pool: RefCell::new(BlockPool::new(
            limits.recv_block_bytes,
            limits.idle_block_bytes,
            POOL_KEEP_BLOCKS,
            POOL_PREFILL_BLOCKS,
        )),
        budget,
        queues: super::scan_queue::Queues::create(),
        handoff,
        moves: RefCell::new(MoveState::new(limits.balance_window)),
        active: Cell::new(0),
        draining: Cell::new(false),
        idle: RefCell::new(IdleSet::default()),
        next_id: Cell::new(0),
        metrics: RefCell::new(ShardMetrics::new(limits.threat_labels_max)),
        log: log.as_ref().map(|_| RefCell::new(AccessLog::new(cfg.access_log_format, limits.access_log_flush_bytes))),
        log_tx: log,
    });
    let _ = events.send(ShardEvent::Listening { shard, cpu });

    let (stop_tx, stop_rx) = glommio::channels::local_channel::new_bounded::<()>(1);
    let control_ctx = ctx.clone();
    let interactive = ctx.queues.interactive;
    glommio::spawn_local_into(
        async move {
            let mut last_trim = Instant::now();
            loop {
                if last_trim.elapsed() >= POOL_TRIM_EVERY {
                    last_trim = Instant::now();
                    if control_ctx.pool.borrow_mut().trim() > 0 {
                        // SAFETY: malloc_trim only returns free heap memory to the system.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                }
                while let Ok(msg) = control.try_recv() {
                    match msg {
                        Control::Stop => {
                            let _ = stop_tx.send(()).await;
                            return;
                        }
                        Control::Install(gen) => {
                            if let Some(scan) = &control_ctx.scan {
                                scan.install(gen);
                            }
                        }
                        Control::Scrape(reply) => {
                            let _ = reply.try_send(control_ctx.snapshot());
                        }
                    }
                }
                control_ctx.flush_log();
                control_ctx.tick_balance();
                glommio::timer::sleep(CONTROL_POLL).await;
            }
        },
        interactive,
    )
    .expect("the interactive queue belongs to this executor")
    .detach();
    // Connections other shards hand over: served here like our own accepts.
    let receiving = spawn_local(receive(inbox, tls.clone(), ctx.clone()));
    // Dropping these tasks (below, when the shard stops accepting) closes the TLS listeners.
    let tls_accepting = match tls {
        Some(tls) => tls::spawn_accept_loops(tls_listeners, tls, &ctx),
        None => Vec::new(),
    };

    loop {
        let accepted = futures_lite::future::or(async { Some(listener.shared_accept().await) }, async {
            stop_rx.recv().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                // Before any work: a gone peer or an address outside allow_clients.
                let Some(stream) = super::accepted::admissible(stream, &ctx) else { continue };
                // A shard with fewer connections serves it, if there is one.
                match ctx.handoff.route(Moved::Plain(stream)) {
                    Some(Moved::Plain(stream)) => admit(stream.bind_to_executor(), &ctx),
                    Some(Moved::Tls(_) | Moved::Resumed(_)) => unreachable!("route gives back what it was given"),
                    None => ctx.metrics.borrow_mut().connections_handed_off += 1,
                }
            }
            Some(Err(e)) => {
                // Out of descriptors or memory: back off instead of spinning.
                eprintln!("icapd: shard {shard}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    drop(tls_accepting);
    drop(receiving);
    drain(&ctx, cfg.shutdown_grace).await;
    ctx.flush_log();
}

/// Serves a plain connection accepted here or handed over: at the cap the connection idle
/// longest makes room, else it is answered 503.
fn admit(stream: TcpStream, ctx: &Rc<ShardCtx>) {
    if ctx.active.get() >= ctx.limits.connections_per_shard_max && !evict_idle(ctx) {
        ctx.metrics.borrow_mut().connections_refused += 1;
        conn_task::not_admitted(ctx);
        spawn_local(refuse(stream, ctx.clone())).detach();
    } else {
        ctx.metrics.borrow_mut().connections_accepted += 1;
        conn_task::admitted(ctx);
        glommio::spawn_local_into(conn_task::serve(stream, ctx.clone()), ctx.queues.interactive)
            .expect("the interactive queue belongs to this executor")
            .detach();
    }
}

/// Serves a keep-alive connection another shard moved here between transactions. The mover
/// checked that this shard was below the cap; should it have filled meanwhile, the connection
/// is treated like a new one at the cap (an idle one makes room, else 503).
pub(super) fn resume(fd: std::os::fd::OwnedFd, ctx: &Rc<ShardCtx>) {
    // SAFETY: the descriptor is a connected TCP socket whose only owner is now this shard.
    let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    if ctx.active.get() >= ctx.limits.connections_per_shard_max && !evict_idle(ctx) {
        ctx.metrics.borrow_mut().connections_refused += 1;
        conn_task::not_admitted(ctx);
        spawn_local(refuse(stream, ctx.clone())).detach();
    } else {
        conn_task::admitted(ctx);
        glommio::spawn_local_into(conn_task::serve(stream, ctx.clone()), ctx.queues.interactive)
            .expect("the interactive queue belongs to this executor")
            .detach();
    }
}

/// Serves the connections other shards hand over (src/server/handoff.rs): each wake byte is
/// read first, then the queue drained, so a connection pushed before its byte is never left
/// waiting. The sender counted each one on our board slot already.
async fn receive(inbox: InboxEnd, tls: Option<Arc<TlsServer>>, ctx: Rc<ShardCtx>) {
    use futures_lite::AsyncReadExt;
    // SAFETY: the descriptor is the read end of a socketpair this shard owns from now on.
    let mut wake = unsafe { glommio::net::UnixStream::from_raw_fd(inbox.wake.into_raw_fd()) };
    let mut bytes = [0u8; 64];
    loop {
        match wake.read(&mut bytes).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(moved) = inbox.rx.try_recv() {
            let handed = !matches!(moved, Moved::Resumed(_));
            let mut m = ctx.metrics.borrow_mut();
            if handed {
                m.connections_received += 1;
            } else {
                m.connections_moved_in += 1;
            }
            drop(m);
            match moved {
                Moved::Resumed(fd) => resume(fd, &ctx),
                Moved::Plain(stream) => admit(stream.bind_to_executor(), &ctx),
                Moved::Tls(stream) => match &tls {
                    Some(tls) => tls::admit(stream.bind_to_executor(), tls, &ctx),
                    None => drop(stream.bind_to_executor()),
                },
            }
        }
    }
}

/// Stops idle connections at once and waits for busy ones, up to `grace`.
async fn drain(ctx: &ShardCtx, grace: Duration) {
    ctx.draining.set(true);
    let deadline = Instant::now() + grace;
    while ctx.active.get() > 0 && Instant::now() < deadline {
        for fd in ctx.idle.borrow().fds() {
            // SAFETY: the fd belongs to a live connection task of this shard (it removes
            // itself from `idle` before closing); shutdown only wakes its pending read.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RD);
            }
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers a connection over the per-shard cap (with no idle connection to evict) with 503 and
/// closes it.
async fn refuse(mut stream: TcpStream, ctx: Rc<ShardCtx>) {
    let mut out = Vec::with_capacity(256);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    response::bodiless(&mut out, 503, &ctx.istag(), now, true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::IdleSet;
    use std::time::{Duration, Instant};

    #[test]
    fn the_connection_idle_longest_goes_first_and_only_after_the_minimum_wait() {
        let mut idle = IdleSet::default();
        idle.insert(7, 70);
        idle.insert(3, 30);
        std::thread::sleep(Duration::from_millis(2));
        idle.insert(9, 90);
        idle.remove(&3);
        // Waiting again restarts the wait: 7 is now the newest.
        std::thread::sleep(Duration::from_millis(2));
        idle.insert(7, 70);
        let later = Instant::now() + Duration::from_secs(3600);
        assert_eq!(idle.take_oldest(Instant::now(), Duration::from_secs(60)), None, "nobody waited a minute");
        assert_eq!(idle.take_oldest(later, Duration::from_secs(60)), Some(90));
        assert_eq!(idle.take_oldest(later, Duration::from_secs(60)), Some(70));
        assert_eq!(idle.take_oldest(later, Duration::ZERO), None);
        assert_eq!(idle.fds().count(), 0);
    }
}
