//! The CPUs this process may run on: the affinity mask it inherited (taskset, systemd's
//! CPUAffinity=, a container's cpuset), so that one shard per allowed CPU is the default.

/// CPUs in the calling thread's affinity mask, ascending.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_least_one_cpu() {
        assert!(!super::allowed_cpus().is_empty());
    }
}
