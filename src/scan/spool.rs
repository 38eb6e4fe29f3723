//! The whole-object copy for YARA rules that need the complete object (`filesize`, `uintXX`,
//! modules), kept in memory while it is small and in a spool file beyond that.
//!
//! Up to `yara_whole_bytes_max` the bytes are kept in memory, charged to the shard's memory
//! budget as the buffer grows. Past that (or when the budget refuses) they move to an unnamed
//! file under the spool directory (`O_TMPFILE`: it has no name and disappears with its last
//! descriptor, so a crash leaves nothing behind), which is memory-mapped for yara-x at the end
//! of the object. So whole-object rules run on every object up to `scan_bytes_max`, and an
//! object that cannot be kept (no spool directory, a write error) is reported by name, never
//! skipped in silence.
//!
//! Writing to the spool is a blocking file write on the shard's thread; it goes to the page
//! cache and costs about a memory copy, and only objects past the in-memory size take it.

use crate::budget::{Charge, ShardBudget, Use};
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::rc::Rc;

/// Why the whole object could not be kept; each maps to a limit name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpoolError {
    /// The budget refused the memory and there is no spool directory.
    Memory,
    /// Too big for memory and there is no spool directory, or the spool failed.
    TooBig,
}

/// Capacity kept between objects; a larger buffer is freed.
const KEEP_BYTES: usize = 256 * 1024;

pub struct Spool {
    budget: Rc<ShardBudget>,
    mem_max: usize,
    dir: Option<PathBuf>,
    mem: Vec<u8>,
    charge: Option<Charge>,
    file: Option<File>,
    file_len: u64,
    map: Option<memmap2::Mmap>,
}

impl Spool {
    pub fn new(budget: Rc<ShardBudget>, mem_max: usize, dir: Option<PathBuf>) -> Spool {
        Spool { budget, mem_max, dir, mem: Vec::new(), charge: None, file: None, file_len: 0, map: None }
    }

    /// Forgets the current object.
    pub fn clear(&mut self) {
        self.map = None;
        self.file = None;
        self.file_len = 0;
        self.mem.clear();
        if self.mem.capacity() > KEEP_BYTES {
            self.mem = Vec::new();
        }
        if let Some(c) = self.charge.as_mut() {
            c.resize(self.mem.capacity());
        }
    }

    /// Bytes kept for the current object.
    pub fn len(&self) -> u64 {
        self.mem.len() as u64 + self.file_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the object went to the spool file.
    pub fn spooled(&self) -> bool {
        self.file.is_some()
    }

    /// Appends the next bytes of the object.
    pub fn push(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        if let Some(file) = self.file.as_mut() {
            // A mapping made earlier (a catch-up read) would not cover the new bytes.
            self.map = None;
            file.write_all(data).map_err(|_| SpoolError::TooBig)?;
            self.file_len += data.len() as u64;
            return Ok(());
        }
        let need = self.mem.len() + data.len();
        if need <= self.mem_max {
            if need <= self.mem.capacity() || self.grow(need) {
                self.mem.extend_from_slice(data);
                return Ok(());
            }
            if self.dir.is_none() {
                return Err(SpoolError::Memory);
            }
        }
        self.spill()?;
        self.push(data)
    }

    /// Grows the buffer (doubling) if the budget pays for it.
    fn grow(&mut self, need: usize) -> bool {
        let cap = need.max(2 * self.mem.capacity()).min(self.mem_max);
        let charged = match self.charge.as_mut() {
            Some(c) => c.resize(cap),
            None => match self.budget.try_charge(Use::WholeObject, cap) {
                Some(c) => {
                    self.charge = Some(c);
                    true
                }
                None => false,
            },
        };
        if charged {
            self.mem.reserve_exact(cap - self.mem.len());
        }
        charged
    }

    /// Moves what is in memory to a fresh spool file.
    fn spill(&mut self) -> Result<(), SpoolError> {
        let dir = self.dir.as_ref().ok_or(SpoolError::TooBig)?;
        let mut file = open_unnamed(dir).ok_or(SpoolError::TooBig)?;
        file.write_all(&self.mem).map_err(|_| SpoolError::TooBig)?;
        self.file_len = self.mem.len() as u64;
        self.file = Some(file);
        self.mem = Vec::new();
        if let Some(c) = self.charge.as_mut() {
            c.resize(0);
        }
        Ok(())
    }

    /// The whole object, for the end-of-object scan (memory, or the spool file mapped).
    pub fn contents(&mut self) -> Result<&[u8], SpoolError> {
        let Some(file) = self.file.as_ref() else { return Ok(&self.mem) };
        if self.file_len == 0 {
            return Ok(&[]);
        }
        if self.map.is_none() {
            // SAFETY: the file is unnamed and only this spool writes to it; writes only append
            // past the mapped length, and a push drops the mapping before writing.
            let map = unsafe { memmap2::Mmap::map(file) }.map_err(|_| SpoolError::TooBig)?;
            self.map = Some(map);
        }
        Ok(self.map.as_deref().expect("just mapped"))
    }
}

/// An unnamed read-write file in `dir` (`O_TMPFILE`), or a named one unlinked at once where the
/// file system lacks `O_TMPFILE`.
fn open_unnamed(dir: &std::path::Path) -> Option<File> {
    use std::os::unix::ffi::OsStrExt;
    let mut path = dir.as_os_str().as_bytes().to_vec();
    path.push(0);
    // SAFETY: `path` is a NUL-terminated path; open returns a new descriptor or -1.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if fd >= 0 {
        // SAFETY: fd is a fresh descriptor we own.
        return Some(unsafe { File::from_raw_fd(fd) });
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = dir.join(format!(".icapd-spool-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&name).ok()?;
    let _ = std::fs::remove_file(&name);
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn small_objects_stay_in_memory_big_ones_spool_and_both_read_back_whole() {
        let budget = ShardBudget::new(1 << 20);
        let mut s = Spool::new(budget.clone(), 1000, Some(std::env::temp_dir()));
        let small = data(900);
        for piece in small.chunks(7) {
            s.push(piece).unwrap();
        }
        assert!(!s.spooled());
        assert!(budget.used_by(Use::WholeObject) >= 900);
        assert_eq!(s.contents().unwrap(), &small[..]);
        s.clear();
        let big = data(50_000);
        for piece in big.chunks(333) {
            s.push(piece).unwrap();
        }
        assert!(s.spooled());
        assert_eq!(budget.used_by(Use::WholeObject), 0, "memory went back when the object spooled");
        assert_eq!(s.contents().unwrap(), &big[..]);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn without_a_spool_directory_the_reason_is_named() {
        let mut s = Spool::new(ShardBudget::new(1 << 20), 100, None);
        assert_eq!(s.push(&data(101)), Err(SpoolError::TooBig));
        let mut s = Spool::new(ShardBudget::new(10), 100, None);
        assert_eq!(s.push(&data(50)), Err(SpoolError::Memory));
        // With a spool, a refused budget spools instead.
        let mut s = Spool::new(ShardBudget::new(10), 100, Some(std::env::temp_dir()));
        s.push(&data(50)).unwrap();
        assert!(s.spooled());
    }
}
