//! The access-log writer: one thread that owns the log destination.
//!
//! Shards hand it whole buffers of formatted lines over a bounded channel (a `try_send` per
//! buffer, never per transaction) and go on serving; only this thread blocks on the disk or
//! on a full stderr pipe. When the queue is full the shard drops that buffer and counts the
//! lines it held (`icapd_access_log_dropped_lines_total`), because stalling every connection
//! of a core for the sake of its log is the worse failure.
//!
//! On SIGUSR1 (forwarded by the main thread) a file destination is reopened, so logrotate's
//! `postrotate` can move the file away and have icapd start a new one without a restart.

use crate::config::LogDest;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Messages to the writer.
pub enum LogMsg {
    /// A buffer of complete lines from a shard.
    Lines(Vec<u8>),
    /// Reopen the destination file (SIGUSR1).
    Reopen,
    /// Write what is queued and exit.
    Finish,
}

/// The shards' and main thread's handle on the writer.
pub struct LogWriter {
    pub tx: Sender<LogMsg>,
    handle: JoinHandle<()>,
    /// Writes that failed (also counted in the metrics).
    pub write_errors: Arc<AtomicU64>,
}

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogWriter {
    /// Opens the destination (an error here is a startup error) and starts the thread.
    /// `None` when the access log is off.
    pub fn start(dest: &LogDest, queue_buffers: usize) -> Result<Option<LogWriter>, String> {
        let sink = match dest {
            LogDest::Off => return Ok(None),
            LogDest::Stderr => Sink::Stderr,
            LogDest::File(path) => Sink::File {
                file: open(path).map_err(|e| format!("cannot open access log {}: {e}", path.display()))?,
                path: path.clone(),
            },
        };
        let (tx, rx) = bounded(queue_buffers);
        let write_errors = Arc::new(AtomicU64::new(0));
        let errors = write_errors.clone();
        let handle = std::thread::Builder::new()
            .name("icapd-log".into())
            .spawn(move || run(sink, rx, &errors))
            .map_err(|e| format!("cannot start the access log thread: {e}"))?;
        Ok(Some(LogWriter { tx, handle, write_errors }))
    }

    /// Writes everything queued before this call, then stops the thread.
    pub fn finish(self) {
        let _ = self.tx.send(LogMsg::Finish);
        let _ = self.handle.join();
    }
}

fn run(mut sink: Sink, rx: Receiver<LogMsg>, errors: &AtomicU64) {
    let mut reported = false;
    for msg in rx.iter() {
        let result = match msg {
            LogMsg::Lines(buf) => match &mut sink {
                Sink::Stderr => std::io::stderr().lock().write_all(&buf),
                Sink::File { file, .. } => file.write_all(&buf),
            },
            LogMsg::Reopen => match &mut sink {
                Sink::Stderr => Ok(()),
                Sink::File { path, file } => match open(path) {
                    Ok(f) => {
                        *file = f;
                        reported = false;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            },
            LogMsg::Finish => break,
        };
        if let Err(e) = result {
            errors.fetch_add(1, Ordering::Relaxed);
            // One report per failure streak, not one per buffer.
            if !reported {
                eprintln!("icapd: access log: {e}");
                reported = true;
            }
        }
    }
}
