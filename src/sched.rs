//! What warmline asks of the kernel's scheduler for its own threads: the runtime's workers
//! (SIP, RTP, timers, the API) request a short time slice.
//!
//! The recognizer is CPU-bound: at full speech load ggml's threads keep both cores of a
//! small box busy (they spin at every barrier). A runtime worker woken by a datagram then
//! waited for a running decoder thread to finish its slice: the RTP relay's jitter p95
//! went from 0.40 ms idle to 1.08 ms at 4 callers talking, the SIP set-up p95 to 1.9×
//! (issue 14 item 4; `benches/speech_capacity.sh`). Lowering the recognizer's priority
//! (nice 10) fixed that and starved it under any other busy process.
//!
//! EEVDF (Linux 6.12 and later) takes a slice request from `sched_setattr`'s
//! `sched_runtime` for a normal thread: a shorter slice gives an earlier deadline, and a
//! woken thread with a shorter slice than the running one preempts it at once. Its share
//! of the CPU is unchanged: the recognizer still gets its fair half under load, and the
//! workers, which run in bursts of microseconds, get the core when a packet comes.
//! Older kernels ignore the request.

/// The slice the runtime's workers ask for. The kernel's floor is 0.1 ms; its default
/// (0.75 ms × (1 + log2 CPUs)) is 1.5 ms on two cores.
const WORKER_SLICE_NS: u64 = 250_000;

/// `struct sched_attr` (linux/sched/types.h, version 1 with the utilization clamps).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Children of the thread (a recorder's, say) start with the default slice.
const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

/// Ask for the workers' short slice on this thread (`on_thread_start`); says why not at
/// debug level when the kernel refuses.
pub fn short_slice() {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: SCHED_FLAG_RESET_ON_FORK,
        nice: 0,
        priority: 0,
        runtime: WORKER_SLICE_NS,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr(2) reads `size` bytes from the pointer, which points to a live
    // `SchedAttr` of exactly that size and layout; pid 0 is the calling thread, and the
    // last argument must be 0. No memory is written.
    #[allow(unsafe_code)]
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "worker time slice unchanged");
    }
}

#[cfg(test)]
mod tests {
    /// This thread's slice in ns, from /proc (`se.slice`, shown since EEVDF, Linux 6.6).
    fn slice_ns() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        sched
            .lines()
            .find(|l| l.starts_with("se.slice"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Custom slices came with Linux 6.12.
    fn kernel_takes_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>());
        matches!((v.next(), v.next()), (Some(Ok(major)), Some(Ok(minor))) if (major, minor) >= (6, 12))
    }

    #[test]
    fn a_worker_runs_with_the_short_slice() {
        let (before, after) = std::thread::spawn(|| {
            let before = slice_ns();
            super::short_slice();
            (before, slice_ns())
        })
        .join()
        .unwrap();
        if kernel_takes_slices() {
            assert_eq!(after, Some(super::WORKER_SLICE_NS), "before: {before:?}");
        } else {
            assert_eq!(after, before, "an older kernel keeps its slice");
        }
    }
}
