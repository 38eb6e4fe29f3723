//! The versioned signature store and the atomic swap.
//!
//! The signature folder the server is configured with (`signatures = ...`, here the *link*)
//! is a symbolic link to `<link>.versions/<n>`, one folder per installed bundle. A new
//! version is unpacked and test-compiled in `<link>.versions/.new-<pid>`, renamed to the next
//! number, and then a new symbolic link is renamed over the old one: rename(2) is atomic, so
//! the server's reload thread sees either the whole old set or the whole new one, never a mix.
//! The reload thread notices the link's new target (it fingerprints the resolved folder) at
//! its next poll, or at once on SIGHUP.
//!
//! A link that is still a real folder (as the Debian package installs it) is adopted on the
//! first update: the new link and the folder change places in one `renameat2(RENAME_EXCHANGE)`,
//! and the old folder becomes version 0, the first rollback target. The previous versions are
//! kept (`--keep`, 2 by default) for `--rollback`; older ones are removed.
//!
//! `state` in the same folder records where the current version came from (URL, ETag,
//! Last-Modified, SHA-256 of the bundle) for the next conditional request.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct Store {
    link: PathBuf,
    root: PathBuf,
}

/// Where the installed version came from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub sha256: String,
}

impl State {
    fn parse(text: &str) -> State {
        let mut s = State::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "url" => s.url = value.to_string(),
                "etag" => s.etag = Some(value.to_string()),
                "last-modified" => s.last_modified = Some(value.to_string()),
                "sha256" => s.sha256 = value.to_string(),
                _ => {}
            }
        }
        s
    }

    fn render(&self) -> String {
        let mut out = format!("url {}\nsha256 {}\n", self.url, self.sha256);
        if let Some(e) = &self.etag {
            out.push_str(&format!("etag {e}\n"));
        }
        if let Some(l) = &self.last_modified {
            out.push_str(&format!("last-modified {l}\n"));
        }
        out
    }
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{}: NUL in path", p.display()))
}

/// Swaps two existing paths atomically (Linux 3.15+).
fn exchange(a: &Path, b: &Path) -> Result<(), String> {
    let (ca, cb) = (cstr(a)?, cstr(b)?);
    // SAFETY: both are valid NUL-terminated paths, relative to the current directory.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("cannot exchange {} and {}: {}", a.display(), b.display(), std::io::Error::last_os_error()))
    }
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

impl Store {
    pub fn new(link: &Path) -> Store {
        let mut name = link.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "signatures".into());
        name.push(".versions");
        Store { link: link.to_path_buf(), root: link.with_file_name(name) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn version_dir(&self, n: u64) -> PathBuf {
        self.root.join(n.to_string())
    }

    /// The link's target as the server would store it: relative, so the whole tree can move.
    fn link_target(&self, n: u64) -> PathBuf {
        Path::new(self.root.file_name().unwrap_or_default()).join(n.to_string())
    }

    /// Installed version numbers, ascending.
    pub fn versions(&self) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        v.sort_unstable();
        v
    }

    /// The version the link points at now (None when it is a plain folder or missing).
    pub fn current(&self) -> Option<u64> {
        let target = std::fs::read_link(&self.link).ok()?;
        target.file_name()?.to_str()?.parse().ok()
    }

    pub fn state(&self) -> Option<State> {
        std::fs::read_to_string(self.root.join("state")).ok().map(|t| State::parse(&t))
    }

    /// An empty folder to unpack into, inside the store (same file system as the versions).
    pub fn staging(&self) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.root).map_err(|e| format!("cannot create {}: {e}", self.root.display()))?;
        let dir = self.root.join(format!(".new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Makes `staged` the next version and points the link at it; returns its number.
    pub fn install(&self, staged: &Path, state: Option<&State>) -> Result<u64, String> {
        let n = self.versions().last().map_or(1, |v| v + 1);
        let dir = self.version_dir(n);
        std::fs::rename(staged, &dir)
            .map_err(|e| format!("cannot rename {} to {}: {e}", staged.display(), dir.display()))?;
        sync_dir(&self.root)?;
        self.point_at(n)?;
        if let Some(s) = state {
            crate::bundle::write_atomically(&self.root.join("state"), s.render().as_bytes())?;
        }
        Ok(n)
    }

    /// Points the link at version `n`, atomically.
    pub fn point_at(&self, n: u64) -> Result<(), String> {
        let parent = self.link.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = parent.join(format!(
            ".{}.new-{}",
            self.root.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(self.link_target(n), &tmp)
            .map_err(|e| format!("cannot create the link {}: {e}", tmp.display()))?;
        let meta = std::fs::symlink_metadata(&self.link);
        match meta {
            Ok(m) if m.is_dir() => {
                // First update: adopt the package's folder as version 0 (or the next free one).
                exchange(&tmp, &self.link)?;
                let mut adopt = 0;
                while self.version_dir(adopt).exists() {
                    adopt += 1;
                }
                std::fs::rename(&tmp, self.version_dir(adopt))
                    .map_err(|e| format!("cannot keep the previous folder as version {adopt}: {e}"))?;
            }
            _ => std::fs::rename(&tmp, &self.link)
                .map_err(|e| format!("cannot swap the link {}: {e}", self.link.display()))?,
        }
        sync_dir(parent)
    }

    /// Points the link at the newest version older than the current one.
    pub fn rollback(&self) -> Result<u64, String> {
        let current =
            self.current().ok_or(format!("{} is not a link into {}", self.link.display(), self.root.display()))?;
        let previous = self.versions().into_iter().rfind(|&v| v < current);
        let previous = previous.ok_or(format!("no version older than {current} is kept"))?;
        self.point_at(previous)?;
        // The state no longer describes what is installed: the next update downloads again.
        let _ = std::fs::remove_file(self.root.join("state"));
        Ok(previous)
    }

    /// Removes staging leftovers and every version but the current one, the `keep` newest
    /// below it and any above it (a rollback target's successors stay for a roll forward).
    pub fn prune(&self, keep: usize) {
        for entry in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(".new-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let Some(current) = self.current() else { return };
        let older: Vec<u64> = self.versions().into_iter().filter(|&v| v < current).collect();
        for v in older.iter().rev().skip(keep) {
            let _ = std::fs::remove_dir_all(self.version_dir(*v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let s = State {
            url: "http://x/b.tar.gz".into(),
            etag: Some("\"abc\"".into()),
            last_modified: None,
            sha256: "00ff".into(),
        };
        assert_eq!(State::parse(&s.render()), s);
    }

    #[test]
    fn the_first_update_adopts_the_folder_and_rollback_returns_to_it() {
        let base = std::env::temp_dir().join(format!("icapd-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("signatures")).unwrap();
        std::fs::write(base.join("signatures/a.ndb"), "old").unwrap();
        let store = Store::new(&base.join("signatures"));
        let mut installed = Vec::new();
        for text in ["one", "two", "three", "four"] {
            let staged = store.staging().unwrap();
            std::fs::write(staged.join("a.ndb"), text).unwrap();
            installed.push(store.install(&staged, None).unwrap());
            assert_eq!(std::fs::read_to_string(base.join("signatures/a.ndb")).unwrap(), text);
        }
        assert_eq!(installed, [1, 2, 3, 4]);
        assert_eq!(std::fs::read_to_string(base.join("signatures.versions/0/a.ndb")).unwrap(), "old");
        store.prune(2);
        assert_eq!(store.versions(), [2, 3, 4]);
        assert_eq!(store.rollback().unwrap(), 3);
        assert_eq!(std::fs::read_to_string(base.join("signatures/a.ndb")).unwrap(), "three");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
