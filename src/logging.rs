//! The log's writer. A line is formatted on the thread that logs it and handed to a thread
//! of its own (`wl-log`), which writes what has gathered to stderr in one `write` once its
//! queue runs dry. Before, every line was its own `write` on a runtime worker: two per call
//! at `[log] level = "info"`, about 5 % of the CPU at 2,500 calls a second
//! (`benches/sip_load.sh`), and a slow stderr (a full pipe, a stalled disk) stalled SIP and
//! RTP with it. `tracing-appender` already does the hand-off; the batching is its worker
//! writing into a `BufWriter`, which it flushes whenever its queue is empty.
//!
//! The queue is bounded: past [`QUEUE_LINES`] lines waiting, a line is dropped and counted
//! (`warmline_log_lines_dropped_total`), never waited for.

use std::sync::OnceLock;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Lines waiting for the writer, at most: about 4 s of a 5,000 calls/s gateway's lines.
const QUEUE_LINES: usize = 40_000;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Starts the log at `level` (an `EnvFilter` directive; `RUST_LOG` overrides it). Lines
/// still queued are written when the guard drops: hold it until the process ends.
pub fn init(level: &str) -> WorkerGuard {
    // rsipstack logs every datagram at info; keep it at warn unless asked for by name.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        if level.contains("rsipstack") {
            level.to_string()
        } else {
            format!("{level},rsipstack=warn")
        }
    });
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("wl-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let _ = DROPPED.set(writer.error_counter());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(writer)
        // Colour only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    guard
}

/// Lines dropped because the writer's queue was full.
pub fn dropped() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}
