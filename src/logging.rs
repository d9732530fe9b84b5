//! The log's writer. A line is formatted on the thread that logs it and appended to a
//! shared buffer; a thread of its own (`wl-log`) writes what has gathered to stderr at most
//! every [`GATHER`], in one `write`. Before, every line was its own `write` on a runtime
//! worker: two per call at `[log] level = "info"`, about 5 % of the CPU at 2,500 calls a
//! second (`benches/sip_load.sh`), and a slow stderr (a full pipe, a stalled disk) stalled
//! SIP and RTP with it.
//!
//! Written by hand: `tracing-appender`'s non-blocking writer sends each line through a
//! channel and wakes its worker for it, which under load still cost a wake-up and a
//! `write` per line or two (3.6 % of the CPU at 2,500 calls/s). Here a logging thread wakes
//! the writer only when it finds the buffer empty, so under load there is one wake-up and
//! one `write` per [`GATHER`].
//!
//! The buffer is bounded: past [`MAX_PENDING`] bytes waiting (stderr stalled), a line is
//! dropped and counted (`warmline_log_lines_dropped_total`), never waited for.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How long the writer lets lines gather after the first before it writes them: what a
/// `kill -9` can lose of the log, and how late a line reaches a reader of the log.
const GATHER: Duration = Duration::from_millis(10);

/// Bytes waiting for the writer, at most: about 16,000 lines.
const MAX_PENDING: usize = 4 << 20;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Told when a line lands in an empty buffer, or when the log closes.
    wake: Condvar,
    closing: AtomicBool,
    dropped: AtomicU64,
    /// [`MAX_PENDING`], but for tests.
    max_pending: usize,
}

impl Shared {
    fn new(max_pending: usize) -> Self {
        Self {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            wake: Condvar::new(),
            closing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            max_pending,
        }
    }
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// Writes what is still waiting and stops the writer when dropped: hold it until the
/// process ends.
pub struct LogGuard {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// One line's writer (`tracing_subscriber` makes one per event and writes the formatted
/// line with one `write_all`).
#[derive(Clone)]
struct LineWriter(Arc<Shared>);

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let s = &self.0;
        let mut pending = match s.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if pending.len() + line.len() > s.max_pending {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let was_empty = pending.is_empty();
        pending.extend_from_slice(line);
        drop(pending);
        if was_empty {
            s.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The writer thread: waits for a first line, lets more gather for [`GATHER`], writes them
/// all; until the guard drops, then writes what is left.
fn write_out(shared: &Shared, sink: &mut impl Write) {
    let mut out: Vec<u8> = Vec::new();
    loop {
        {
            let mut pending = match shared.pending.lock() {
                Ok(p) => p,
                Err(poisoned) => poisoned.into_inner(),
            };
            while pending.is_empty() && !shared.closing.load(Ordering::Acquire) {
                pending = match shared.wake.wait(pending) {
                    Ok(p) => p,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            if pending.is_empty() {
                return;
            }
        }
        if !shared.closing.load(Ordering::Acquire) {
            std::thread::sleep(GATHER);
        }
        {
            let mut pending = match shared.pending.lock() {
                Ok(p) => p,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::swap(&mut *pending, &mut out);
        }
        // Nowhere to report a failed write to stderr: the lines are gone either way.
        let _ = sink.write_all(&out);
        out.clear();
        // A burst's buffer is not kept for ever.
        out.shrink_to(64 * 1024);
    }
}

/// Starts the log at `level` (an `EnvFilter` directive; `RUST_LOG` overrides it).
pub fn init(level: &str) -> LogGuard {
    // rsipstack logs every datagram at info; keep it at warn unless asked for by name.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        if level.contains("rsipstack") {
            level.to_string()
        } else {
            format!("{level},rsipstack=warn")
        }
    });
    let shared = Arc::new(Shared::new(MAX_PENDING));
    let for_thread = shared.clone();
    let writer = std::thread::Builder::new()
        .name("wl-log".into())
        .spawn(move || write_out(&for_thread, &mut std::io::stderr()))
        .ok();
    let _ = SHARED.set(shared.clone());
    let lines = LineWriter(shared.clone());
    let make = move || lines.clone();
    if writer.is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(make)
            // Colour only on a terminal: log files and journald get plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    } else {
        // No thread for the writer: each line is written where it is logged, as before.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    LogGuard { shared, writer }
}

/// Lines dropped because the writer fell behind.
pub fn dropped() -> u64 {
    SHARED
        .get()
        .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every line from every logging thread reaches the sink whole and in each thread's
    /// order, including those still waiting when the guard closes the log.
    #[test]
    fn every_line_is_written_once_in_order() {
        let shared = Arc::new(Shared::new(MAX_PENDING));
        let for_writer = shared.clone();
        let writer = std::thread::spawn(move || {
            let mut sink = Vec::new();
            write_out(&for_writer, &mut sink);
            sink
        });
        let loggers: Vec<_> = (0..3)
            .map(|t| {
                let mut w = LineWriter(shared.clone());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        w.write_all(format!("t{t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for l in loggers {
            l.join().unwrap();
        }
        let guard = LogGuard {
            shared: shared.clone(),
            writer: None,
        };
        drop(guard);
        let sink = String::from_utf8(writer.join().unwrap()).unwrap();
        for t in 0..3 {
            let mine: Vec<&str> = sink
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            let want: Vec<String> = (0..2000).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, want);
        }
        assert_eq!(sink.lines().count(), 6000);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
    }

    /// With the writer stalled, lines past the bound are dropped and counted, and the
    /// logging thread never waits.
    #[test]
    fn a_stalled_writer_costs_lines_not_waits() {
        let shared = Arc::new(Shared::new(100));
        let mut w = LineWriter(shared.clone());
        for _ in 0..10 {
            w.write_all(b"0123456789012345678\n").unwrap();
        }
        assert_eq!(shared.pending.lock().unwrap().len(), 100);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 5);
    }
}
