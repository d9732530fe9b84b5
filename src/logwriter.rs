//! The gateway's log writer: formatted lines are gathered in memory and written to stderr
//! by a thread of their own, a batch at a time.
//!
//! With the log an operator runs (`info`), each call writes a line per audited step, and
//! writing each on the thread that logged it was a `write` system call on the SIP path:
//! 2 % of warmline's CPU at 2,500 call set-ups a second (issue 14), and a stall whenever the
//! file or pipe behind stderr was slow. Here a line costs a lock and a copy; the writer
//! wakes once per batch, waits [`GATHER`] for more, and writes them in one call.
//! tracing-appender's non-blocking writer was the library choice, but it sends each line
//! through a channel as its own allocation and wakes its thread for it, which is the cost
//! this removes.
//!
//! Bounded: past [`MAX_PENDING`] bytes waiting (the writer stuck behind a full pipe), lines
//! are dropped and counted, never waited for. [`LogGuard`] writes what is left when `run`
//! returns, and a panic writes it before the panic's own message.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// How long the writer waits after a batch's first line for the rest of it.
pub const GATHER: Duration = Duration::from_millis(5);

/// At most this much waiting to be written: 4 MiB, some 16,000 lines.
pub const MAX_PENDING: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything pending, out to stderr now, on the calling thread.
    fn write_out(&self, spare: &mut Vec<u8>) {
        std::mem::swap(&mut *self.lock(), spare);
        if !spare.is_empty() {
            // Nowhere to report a failing stderr: the lines are lost, as they would be
            // written directly.
            let _ = std::io::stderr().lock().write_all(spare);
            spare.clear();
        }
    }
}

/// Lines dropped because the writer was [`MAX_PENDING`] behind, since start.
pub fn dropped() -> u64 {
    SHARED
        .get()
        .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// The one writer of the process (a panic hook must find it).
static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// `tracing_subscriber`'s writer: each event arrives as one `write_all` of its whole line.
/// `Direct` writes it to stderr at once (a command's log, or a writer thread that could not
/// be started).
#[derive(Debug, Clone)]
pub enum Gathered {
    Batched(Arc<Shared>),
    Direct,
}

impl Write for &Gathered {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let Gathered::Batched(shared) = self else {
            return std::io::stderr().write(line);
        };
        let mut pending = shared.lock();
        if pending.len() + line.len() > MAX_PENDING {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let was_empty = pending.is_empty();
        pending.extend_from_slice(line);
        drop(pending);
        // One wake per batch: the writer is asleep only while nothing is pending.
        if was_empty {
            shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Gathered {
    type Writer = &'a Gathered;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Ends the writer thread once everything pending is written.
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        {
            // Under the lock, so the writer cannot miss it between its check and its wait.
            let _pending = self.shared.lock();
            self.shared.closed.store(true, Ordering::Release);
        }
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Whatever came after the thread's last batch (it is gone, or never started).
        self.shared.write_out(&mut Vec::new());
    }
}

/// The writer and the guard that ends it; `Direct` and no guard if the thread cannot be
/// started.
pub fn start() -> (Gathered, Option<LogGuard>) {
    match start_thread() {
        Some((w, g)) => (w, Some(g)),
        None => (Gathered::Direct, None),
    }
}

fn start_thread() -> Option<(Gathered, LogGuard)> {
    let shared = Arc::new(Shared::default());
    let worker = shared.clone();
    let thread = std::thread::Builder::new()
        .name("wl-log".into())
        .spawn(move || {
            let mut spare = Vec::new();
            loop {
                {
                    let mut pending = worker.lock();
                    while pending.is_empty() && !worker.closed.load(Ordering::Acquire) {
                        pending = worker
                            .wake
                            .wait(pending)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
                let closing = worker.closed.load(Ordering::Acquire);
                if !closing {
                    std::thread::sleep(GATHER);
                }
                worker.write_out(&mut spare);
                if closing {
                    return;
                }
                // The batch's buffer is kept for the next, unless a burst made it large.
                if spare.capacity() > 256 << 10 {
                    spare = Vec::new();
                }
            }
        })
        .ok()?;
    let _ = SHARED.set(shared.clone());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(s) = SHARED.get() {
            s.write_out(&mut Vec::new());
        }
        hook(info);
    }));
    Some((
        Gathered::Batched(shared.clone()),
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_past_the_bound_is_dropped_and_counted_not_waited_for() {
        let shared = Arc::new(Shared::default());
        let w = Gathered::Batched(shared.clone());
        let line = vec![b'x'; MAX_PENDING / 2 + 1];
        (&w).write_all(&line).unwrap();
        (&w).write_all(&line).unwrap();
        assert_eq!(shared.lock().len(), line.len());
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
        // Written out, there is room again.
        shared.lock().clear();
        (&w).write_all(b"next\n").unwrap();
        assert_eq!(&shared.lock()[..], b"next\n");
    }
}
