//! The only module that does I/O: shards, listeners, connection tasks, signals.
//!
//! One glommio executor per allowed CPU, pinned to it. Each shard binds its own listener on
//! the same address with SO_REUSEPORT, so the kernel spreads new connections across shards and
//! a connection lives and dies on the shard that accepted it. A shard owns its connections,
//! its receive-block pool and its counters: nothing on the per-request path is shared between
//! threads or locked. The main thread only starts shards, forwards signals to them over
//! crossbeam channels and watches for a shard that dies.

mod accepted;
mod agent;
mod conn_task;
mod handoff;
pub mod cpus;
mod log_writer;
mod metrics_listener;
pub mod port_check;
mod reload;
mod scan_queue;
mod sendmsg;
mod shard;
pub mod tls;
mod transport;

use crate::config::Config;
use crate::inspect::InspectorKind;
use crate::obs::snapshot::{ShardSnapshot, SignatureInfo};
use crate::signatures::{self, Generation};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use glommio::{LocalExecutorBuilder, Placement};
use log_writer::{LogMsg, LogWriter};
use metrics_listener::{ControlState, SharedControl};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages from the main thread to a shard.
#[derive(Clone)]
pub enum Control {
    /// Stop accepting, finish in-flight transactions, close idle connections, exit.
    Stop,
    /// Switch to this signature generation at the next request boundary.
    Install(Arc<Generation>),
    /// Send a copy of the shard's counters and state (for the metrics listener).
    Scrape(Sender<ShardSnapshot>),
}

/// Messages from a shard to the main thread.
#[derive(Debug)]
pub enum ShardEvent {
    Listening { shard: usize, cpu: usize },
    Failed { shard: usize, error: String },
    Exited { shard: usize, panicked: bool },
}

/// Sends `Exited` when the shard thread ends, however it ends.
struct ExitGuard {
    shard: usize,
    events: Sender<ShardEvent>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.events.send(ShardEvent::Exited { shard: self.shard, panicked: std::thread::panicking() });
    }
}

/// Memory glommio registers per executor for io_uring buffers. We use no DMA file I/O on the
/// request path, and the default (10 MiB) exceeds common memlock limits (8 MiB here).
const IO_MEMORY_BYTES: usize = 1024 * 1024;
/// How often the executor asks long-running tasks to yield.
const PREEMPT_TIMER: Duration = Duration::from_millis(10);

/// Runs the server until SIGTERM/SIGINT; returns the process exit code.
pub fn run(config: Config) -> i32 {
    // A peer that resets while we write must be an error, not a process-killing signal.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // Before anything else: a second server on a busy port would run silently beside the first.
    if !config.allow_shared_port {
        if let Err(e) = port_check::ensure_free(config.listen) {
            eprintln!("icapd: {e}");
            return 2;
        }
    }
    if !config.allow_clients.is_open() {
        let n = config.allow_clients.nets().ranges();
        eprintln!("icapd: allow_clients: {n} address range(s) may connect; others are closed at accept");
    }
    if !config.policies.is_empty() {
        eprintln!("icapd: policy table: {} rule(s), first match wins", config.policies.rules.len());
    }
    // The first generation is loaded before any shard starts: a server that cannot scan must
    // not accept traffic.
    let generation = if config.inspector == InspectorKind::Engine {
        match signatures::load(&config.signatures, signatures::LoadOptions { id: 0, yara_overlap_max: config.limits.yara_overlap_bytes }) {
            Ok(g) => {
                reload::report(&g, &config.signatures);
                Some(Arc::new(g))
            }
            Err(e) => {
                eprintln!("icapd: cannot load signatures: {e}");
                return 2;
            }
        }
    } else {
        None
    };
    // TLS certificate and key are checked before any shard starts, like the signatures.
    let tls = if config.tls.listen.is_empty() {
        None
    } else {
        match tls::TlsServer::load(&config.tls) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("icapd: {e}");
                return 2;
            }
        }
    };
    let started = Instant::now();
    let state: SharedControl = Arc::new(std::sync::Mutex::new(ControlState {
        signatures: generation.as_ref().map(|g| signature_info(g)),
        ..ControlState::default()
    }));
    let log = match LogWriter::start(&config.access_log, config.limits.access_log_queue_buffers) {
        Ok(log) => log,
        Err(e) => {
            // A log file that cannot be opened is a configuration error: restarting won't help.
            eprintln!("icapd: {e}");
            return 2;
        }
    };
    let (event_tx, event_rx) = unbounded::<ShardEvent>();
    let mut controls: Vec<Sender<Control>> = Vec::new();
    let shards = config.cpus.len();
    let balance = match handoff::Balance::new(
        shards,
        crate::balance::policy::Tuning {
            accept_slack: u32::try_from(config.limits.balance_accept_slack_connections).unwrap_or(u32::MAX),
            move_margin_permille: u32::try_from(config.limits.balance_move_margin_permille).unwrap_or(u32::MAX),
            move_cooldown_ns: u64::try_from(config.limits.balance_move_cooldown.as_nanos()).unwrap_or(u64::MAX),
            connections_per_shard_max: u32::try_from(config.limits.connections_per_shard_max).unwrap_or(u32::MAX),
        },
    ) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("icapd: cannot create the shards' connection hand-off: {e}");
            return 1;
        }
    };
    for (shard, &cpu) in config.cpus.iter().enumerate() {
        let balance = balance.clone();
        let (ctl_tx, ctl_rx) = crossbeam_channel::bounded::<Control>(4);
        controls.push(ctl_tx);
        let events = event_tx.clone();
        let cfg = config.clone();
        let gen = generation.clone();
        let log_tx = log.as_ref().map(|l| l.tx.clone());
        let shard_tls = tls.clone();
        let spawned = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("icapd-shard-{shard}"))
            .io_memory(IO_MEMORY_BYTES)
            .preempt_timer(PREEMPT_TIMER)
            .spawn(move || async move {
                let _guard = ExitGuard { shard, events: events.clone() };
                shard::run(shard::ShardArgs {
                    shard,
                    cpu,
                    shards,
                    cfg,
                    generation: gen,
                    control: ctl_rx,
                    events,
                    log: log_tx,
                    tls: shard_tls,
                    balance,
                })
                .await;
            });
        if let Err(e) = spawned {
            eprintln!("icapd: cannot start shard {shard} on CPU {cpu}: {e}");
            return 1;
        }
    }
    let signals = match signal_channel() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("icapd: cannot install signal handlers: {e}");
            return 1;
        }
    };
    if let Some(addr) = config.metrics {
        let facts = metrics_listener::Facts {
            listen: config.listen,
            inspector: config.inspector.name(),
            cpus: config.cpus.clone(),
            started,
            started_unix: metrics_listener::unix_now(),
            limits: config.limits,
        };
        let log_errors = log.as_ref().map(|l| l.write_errors.clone());
        if let Err(e) = metrics_listener::start(addr, facts, controls.clone(), state.clone(), log_errors) {
            eprintln!("icapd: {e}");
            return 1;
        }
        eprintln!("icapd: metrics on http://{addr}/metrics, status on http://{addr}/status");
    }
    if let Some(addr) = config.agent {
        if let Err(e) =
            agent::start(addr, controls.clone(), config.limits.connections_per_shard_max, config.limits.scrape_deadline)
        {
            eprintln!("icapd: {e}");
            return 1;
        }
        eprintln!("icapd: HAProxy agent-check on {addr}");
    }
    let reloads = match generation {
        Some(g) => match reload::start(config.signatures.clone(), config.reload_poll, g, controls.clone(), state) {
            Ok(tx) => Some(tx),
            Err(e) => {
                eprintln!("icapd: cannot start the reload thread: {e}");
                return 1;
            }
        },
        None => None,
    };
    let code = wait(config, controls, event_rx, signals, reloads, log.as_ref().map(|l| l.tx.clone()), tls);
    if let Some(log) = log {
        log.finish();
    }
    code
}

/// What the metrics pages say about a generation.
fn signature_info(gen: &Generation) -> SignatureInfo {
    SignatureInfo {
        generation: gen.id,
        istag: gen.istag.clone(),
        summary: gen.summary.clone(),
        loaded_unix: metrics_listener::unix_now(),
    }
}

fn signal_channel() -> std::io::Result<Receiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let (tx, rx) = unbounded();
    std::thread::Builder::new().name("icapd-signals".into()).spawn(move || {
        for sig in signals.forever() {
            if tx.send(sig).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}

fn wait(
    config: Config,
    controls: Vec<Sender<Control>>,
    events: Receiver<ShardEvent>,
    signals: Receiver<i32>,
    reloads: Option<Sender<()>>,
    log: Option<Sender<LogMsg>>,
    tls: Option<Arc<tls::TlsServer>>,
) -> i32 {
    let shards = controls.len();
    let mut listening = 0;
    let mut exited = 0;
    let mut stopping: Option<Instant> = None;
    // With an agent port and agent_drain_ms, a stop first answers agent checks with `drain`
    // and keeps accepting until then, so HAProxy stops sending before the listeners close.
    let mut drain_until: Option<Instant> = None;
    loop {
        let timeout = match (stopping, drain_until) {
            (Some(t), _) => {
                (t + config.shutdown_grace + Duration::from_secs(1)).saturating_duration_since(Instant::now())
            }
            (None, Some(d)) => d.saturating_duration_since(Instant::now()),
            (None, None) => Duration::from_secs(3600),
        };
        select! {
            recv(events) -> event => match event {
                Ok(ShardEvent::Listening { shard, cpu }) => {
                    eprintln!("icapd: shard {shard} pinned to CPU {cpu}, listening on {}", config.listen);
                    listening += 1;
                    if listening == shards {
                        for addr in &config.tls.listen {
                            eprintln!("icapd: TLS (icaps) on {addr}, certificate {}", config.tls.cert.as_deref().unwrap_or(std::path::Path::new("-")).display());
                        }
                        eprintln!("icapd: ready: {shards} shard(s), inspector {:?}", config.inspector);
                    }
                }
                Ok(ShardEvent::Failed { shard, error }) => {
                    eprintln!("icapd: shard {shard} failed: {error}");
                    return 1;
                }
                Ok(ShardEvent::Exited { shard, panicked }) => {
                    if stopping.is_none() {
                        eprintln!("icapd: shard {shard} exited unexpectedly (panicked: {panicked}); exiting so a supervisor restarts the service");
                        return 1;
                    }
                    exited += 1;
                    if exited == shards {
                        eprintln!("icapd: stopped");
                        return 0;
                    }
                }
                Err(_) => return 1,
            },
            recv(signals) -> sig => match sig {
                Ok(signal_hook::consts::SIGHUP) => {
                    if let Some(tls) = &tls {
                        match tls.reload() {
                            Ok(()) => eprintln!(
                                "icapd: TLS: reloaded the certificate and key ({}){}",
                                tls.cert_path().display(),
                                if tls.verifies_clients() { " and the client CA" } else { "" }
                            ),
                            Err(e) => eprintln!("icapd: TLS: reload failed, keeping the current certificate: {e}"),
                        }
                    }
                    match &reloads {
                        Some(tx) => {
                            let _ = tx.send(());
                        }
                        None if tls.is_some() => {}
                        None => eprintln!("icapd: SIGHUP: nothing to reload with the built-in inspector"),
                    }
                }
                Ok(signal_hook::consts::SIGUSR1) => match &log {
                    Some(tx) => {
                        let _ = tx.send(LogMsg::Reopen);
                    }
                    None => eprintln!("icapd: SIGUSR1: the access log is off"),
                },
                Ok(_) if stopping.is_none() && drain_until.is_none() => {
                    agent::set_draining();
                    if config.agent.is_some() && !config.agent_drain.is_zero() {
                        eprintln!("icapd: stopping: agent checks say drain; closing the listeners in {:?}", config.agent_drain);
                        drain_until = Some(Instant::now() + config.agent_drain);
                    } else {
                        stopping = Some(stop_shards(&config, &controls));
                    }
                }
                Ok(_) => {
                    eprintln!("icapd: second stop signal: exiting now");
                    return 0;
                }
                Err(_) => return 1,
            },
            default(timeout) => {
                if stopping.is_none() && drain_until.is_some_and(|d| Instant::now() >= d) {
                    stopping = Some(stop_shards(&config, &controls));
                } else if stopping.is_some() {
                    eprintln!("icapd: grace period over with {} shard(s) still busy; exiting", shards - exited);
                    return 0;
                }
            }
        }
    }
}

/// Asks every shard to stop accepting and finish; returns when that started.
fn stop_shards(config: &Config, controls: &[Sender<Control>]) -> Instant {
    eprintln!("icapd: stopping: finishing in-flight transactions (up to {:?})", config.shutdown_grace);
    for c in controls {
        let _ = c.send(Control::Stop);
    }
    Instant::now()
}

#[cfg(test)]
mod tests {
    //! The main thread's reaction to shard events. A shard that dies at run time cannot be
    //! provoked from outside (connections run under `catch_unwind`), so the exit decision is
    //! tested here by feeding `wait` the events a dying shard sends.

    use super::*;
    use crate::config::{parse, Parsed};

    fn config() -> Config {
        match parse(&["--inspector".into(), "null".into()], &[0, 1]) {
            Ok(Parsed::Run(c)) => *c,
            _ => panic!("a default configuration"),
        }
    }

    /// Runs `wait` over `events` (and `signals`), with two shards.
    fn exit_code(events: Vec<ShardEvent>, signals: Vec<i32>) -> i32 {
        let (event_tx, event_rx) = unbounded();
        let (signal_tx, signal_rx) = unbounded();
        let (control_tx, _control_rx) = unbounded();
        for s in signals {
            signal_tx.send(s).unwrap();
        }
        for e in events {
            event_tx.send(e).unwrap();
        }
        wait(config(), vec![control_tx.clone(), control_tx], event_rx, signal_rx, None, None, None)
    }

    #[test]
    fn a_shard_that_dies_makes_the_process_exit_1() {
        let listening = || vec![ShardEvent::Listening { shard: 0, cpu: 0 }, ShardEvent::Listening { shard: 1, cpu: 1 }];
        let mut died = listening();
        died.push(ShardEvent::Exited { shard: 1, panicked: true });
        assert_eq!(exit_code(died, vec![]), 1);
        let mut returned = listening();
        returned.push(ShardEvent::Exited { shard: 0, panicked: false });
        assert_eq!(exit_code(returned, vec![]), 1, "a shard that ends without being asked is a failure too");
        assert_eq!(exit_code(vec![ShardEvent::Failed { shard: 0, error: "bind".into() }], vec![]), 1);
    }

    #[test]
    fn shards_that_stop_after_sigterm_exit_0() {
        let mut events = vec![ShardEvent::Listening { shard: 0, cpu: 0 }, ShardEvent::Listening { shard: 1, cpu: 1 }];
        events.push(ShardEvent::Exited { shard: 0, panicked: false });
        events.push(ShardEvent::Exited { shard: 1, panicked: false });
        // `select!` picks among ready channels at random, so the exits are sent only once the
        // signal has been handled (the shards were asked to stop).
        let (event_tx, event_rx) = unbounded();
        let (signal_tx, signal_rx) = unbounded();
        let (control_tx, control_rx) = unbounded();
        signal_tx.send(signal_hook::consts::SIGTERM).unwrap();
        let feeder = std::thread::spawn(move || {
            // The stop request reaching the shards proves the signal was handled.
            assert!(matches!(control_rx.recv_timeout(Duration::from_secs(10)), Ok(Control::Stop)));
            for e in events {
                event_tx.send(e).unwrap();
            }
        });
        let code = wait(config(), vec![control_tx.clone(), control_tx], event_rx, signal_rx, None, None, None);
        feeder.join().unwrap();
        assert_eq!(code, 0);
    }

    #[test]
    fn with_an_agent_drain_period_the_shards_are_stopped_when_it_ends() {
        let mut cfg = config();
        cfg.agent = Some("127.0.0.1:1".parse().unwrap());
        cfg.agent_drain = Duration::from_millis(50);
        let (event_tx, event_rx) = unbounded();
        let (signal_tx, signal_rx) = unbounded();
        let (control_tx, control_rx) = unbounded();
        event_tx.send(ShardEvent::Listening { shard: 0, cpu: 0 }).unwrap();
        signal_tx.send(signal_hook::consts::SIGTERM).unwrap();
        let feeder = std::thread::spawn(move || {
            // Nothing but the end of the drain period can send this (no second signal comes).
            assert!(matches!(control_rx.recv_timeout(Duration::from_secs(10)), Ok(Control::Stop)));
            assert!(agent::is_draining());
            event_tx.send(ShardEvent::Exited { shard: 0, panicked: false }).unwrap();
        });
        assert_eq!(wait(cfg, vec![control_tx], event_rx, signal_rx, None, None, None), 0);
        feeder.join().unwrap();
    }
}
