//! Where a shard runs its work: an interactive task queue for connections, accepts and the
//! control task, and a bulk queue for scanning the bodies of big objects.
//!
//! A connection processes its input one step at a time ([`Conn::step`]: at most one
//! transaction and at most `scan_turn_bytes` of body per step). A step that continues a body
//! which spans reads (a big object) runs as a task of the bulk queue; everything else (a small
//! request that arrived whole, OPTIONS, timers, the control task) runs in the interactive queue,
//! which has more shares and asks glommio to preempt often. So with big objects in flight the
//! shard alternates between turns of bulk scanning and whatever small work is waiting, instead
//! of finishing a whole object first.
//!
//! Each step's CPU time is measured on the shard's thread (`CLOCK_THREAD_CPUTIME_ID`) and
//! returned with the step, so the caller charges it to the transaction that spent it.

use crate::proto::conn::{Conn, State};
use glommio::{Latency, Shares, TaskQueueHandle};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// Shares of the interactive queue against the bulk queue: with both busy, small work gets
/// about ten times the CPU of bulk scanning.
const INTERACTIVE_SHARES: usize = 1000;
const BULK_SHARES: usize = 100;
/// How quickly the interactive queue wants the CPU back when it has work.
const INTERACTIVE_LATENCY: Duration = Duration::from_millis(1);

/// The shard's two task queues.
#[derive(Clone, Copy)]
pub struct Queues {
    pub interactive: TaskQueueHandle,
    pub bulk: TaskQueueHandle,
}

impl Queues {
    /// Creates the queues on the current executor.
    pub fn create() -> Queues {
        let ex = glommio::executor();
        Queues {
            interactive: ex.create_task_queue(
                Shares::Static(INTERACTIVE_SHARES),
                Latency::Matters(INTERACTIVE_LATENCY),
                "interactive",
            ),
            bulk: ex.create_task_queue(Shares::Static(BULK_SHARES), Latency::NotImportant, "bulk"),
        }
    }
}

/// CPU time this thread has used: what processing costs, without the time the thread spent
/// waiting for the network or for other tasks.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One step of `conn` and the CPU time it took.
fn timed_step(conn: &mut Conn, now: Instant, unix_secs: u64) -> (bool, Duration) {
    let started = thread_cpu_time();
    let more = conn.step(now, unix_secs);
    (more, thread_cpu_time().saturating_sub(started))
}

/// Runs one step of `conn`: in the bulk queue when it continues a body that spans reads,
/// inline otherwise. Returns the connection, whether more buffered input waits, and the CPU
/// time spent. A panic inside the step is re-raised here, in the connection's own task.
pub async fn step(queues: Queues, mut conn: Conn, now: Instant, unix_secs: u64) -> (Conn, bool, Duration) {
    let bulk = matches!(conn.state(), State::Preview | State::Body | State::Drain);
    if !bulk {
        let (more, spent) = timed_step(&mut conn, now, unix_secs);
        return (conn, more, spent);
    }
    let task = glommio::spawn_local_into(
        async move {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| timed_step(&mut conn, now, unix_secs)));
            (conn, result)
        },
        queues.bulk,
    );
    match task {
        Ok(task) => {
            let (conn, result) = task.await;
            match result {
                Ok((more, spent)) => (conn, more, spent),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Err(_) => unreachable!("the bulk queue belongs to this executor"),
    }
}
