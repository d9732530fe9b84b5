//! What warmline's threads do for the allocator (jemalloc, `main.rs`): give their thread
//! caches back when they go idle.
//!
//! Objects a thread's cache holds keep their slabs' pages resident, and a thread that
//! goes idle after a burst never allocates enough to trigger the cache's own collection:
//! 150,000 junk datagrams left 1.9 MB in the caches and the slabs they pinned resident for
//! good (RSS 75 s after them +34 % with the caches kept, +18 % given back;
//! `benches/flood.sh 10 5000 0 150000`). Thread caches stay on: without them call setup at 3,000 CPS took
//! twice the CPU.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A busy thread gives its cache back at most this often; a thread that can wait with a
/// timeout gives it back after this long idle.
pub const IDLE: Duration = Duration::from_secs(1);

/// Give this thread's cache back, unless it did so less than a second ago: for the
/// runtime's workers, about to sleep (`on_thread_park`). They wake at least for the SIP
/// stack's timers, so the last burst's objects go back within a second or two of it.
pub fn flush_thread_cache() {
    thread_local! {
        static FLUSHED: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    if FLUSHED.get().is_some_and(|t| now.duration_since(t) < IDLE) {
        return;
    }
    FLUSHED.set(Some(now));
    flush_now();
}

/// Give this thread's cache back now: the main thread once start-up is done (it built the
/// prompts and the config, and then only waits).
pub fn flush_now() {
    // SAFETY: `thread.tcache.flush` takes no argument and returns nothing (both pointer
    // pairs null, as jemalloc requires), and the name is a NUL-terminated constant. Where
    // jemalloc's thread cache is off it returns an error, which changes nothing.
    #[allow(unsafe_code)]
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"thread.tcache.flush".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}
