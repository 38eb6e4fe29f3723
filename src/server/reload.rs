//! The reload control thread: compiles new signature generations off the data path.
//!
//! It wakes on SIGHUP (forwarded by the main thread) and every `reload_poll` to compare the
//! folder's fingerprint (file names, sizes, modification times) and where the folder resolves
//! to: `icapd-update` swaps a symbolic link to a new version folder, whose files may have the
//! same names, sizes and times as the old ones. When something changed it
//! loads the folder on this thread; the shards keep serving with the old generation meanwhile.
//! A set that loads is sent to every shard, which switches at its next request boundary; a set
//! that fails is reported and the old one stays.

use super::metrics_listener::SharedControl;
use super::Control;
use crate::signatures::{self, generation::fingerprint, Generation};
use crossbeam_channel::{unbounded, Sender};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Logs what a generation holds and every line it skipped.
pub fn report(gen: &Generation, dir: &Path) {
    // One line per file and reason (`icapd --check -v` lists every skipped line).
    for line in gen.report_lines() {
        eprintln!("icapd: signatures: {line}");
    }
    let s = &gen.summary;
    eprintln!(
        "icapd: signatures: generation {} from {}: {} body, {} logical, {} hash, {} PE section hash, {} allowlist, {} YARA streaming + {} whole-object rules, {} URL rules, {} skipped lines, {:.0?}; ISTag \"{}\"",
        gen.id,
        dir.display(),
        s.body,
        s.logical,
        s.hashes,
        s.sections,
        s.allow,
        s.yara_stream,
        s.yara_whole,
        s.urls,
        s.skipped_lines,
        s.load_time,
        gen.istag
    );
}

/// Starts the thread; returns the sender the main thread uses to ask for a reload (SIGHUP).
pub fn start(
    dir: PathBuf,
    poll: Duration,
    first: Arc<Generation>,
    shards: Vec<Sender<Control>>,
    state: SharedControl,
) -> std::io::Result<Sender<()>> {
    let (tx, rx) = unbounded::<()>();
    std::thread::Builder::new().name("icapd-reload".into()).spawn(move || {
        let print_of = |dir: &Path| (std::fs::canonicalize(dir).ok(), fingerprint(dir).ok());
        let mut last_print = print_of(&dir);
        let mut current = first;
        let wait = if poll.is_zero() { Duration::from_secs(3600) } else { poll };
        loop {
            let asked = match rx.recv_timeout(wait) {
                Ok(()) => true,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            let print = print_of(&dir);
            if !asked && (poll.is_zero() || print == last_print) {
                continue;
            }
            last_print = print;
            let id = current.id + 1;
            match signatures::load(&dir, signatures::LoadOptions { id, ..current.options }) {
                Ok(gen) => {
                    if gen.istag == current.istag && !asked {
                        continue;
                    }
                    report(&gen, &dir);
                    {
                        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                        st.signatures = Some(super::signature_info(&gen));
                        st.reloads_ok += 1;
                    }
                    let gen = Arc::new(gen);
                    for shard in &shards {
                        let _ = shard.send(Control::Install(gen.clone()));
                    }
                    current = gen;
                }
                Err(e) => {
                    state.lock().unwrap_or_else(|p| p.into_inner()).reloads_failed += 1;
                    eprintln!("icapd: signatures: reload failed, keeping generation {}: {e}", current.id);
                }
            }
        }
    })?;
    Ok(tx)
}
