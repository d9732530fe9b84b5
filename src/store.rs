//! The store's driver: one writer thread owns the SQLite writer connection (writes stay in
//! the order they were asked for, and no async thread ever waits on an fsync), and a reader
//! connection serves the API and the CRM sender from blocking tasks.

use crate::metrics::Metrics;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use warmline_call::Audit;
use warmline_store::{Store, StoreError};

enum Write {
    Audit {
        call_id: String,
        at_ms: i64,
        event: String,
        detail: String,
    },
    Context {
        call_id: String,
        at_ms: i64,
        body: String,
    },
    Enqueue {
        call_id: String,
        url: String,
        body: String,
        at_ms: i64,
    },
    Delivered {
        id: i64,
        at_ms: i64,
    },
    Failed {
        id: i64,
        next_at_ms: i64,
        error: String,
    },
    Prune {
        before_ms: i64,
    },
    OpenLeg(warmline_store::OpenLeg),
    /// Nothing to write: told once everything queued before it is committed (the one way
    /// to wait for a write).
    Flush(tokio::sync::oneshot::Sender<()>),
    CloseLeg {
        call_id: String,
        leg: String,
    },
}

pub struct StoreHandle {
    tx: std::sync::mpsc::Sender<Write>,
    reader: Mutex<Store>,
    /// Woken when a packet is queued, so the CRM sender does not wait for its next poll.
    pub outbox_ready: Arc<Notify>,
    /// Audit rows written and write errors are counted here; audits move the KPIs.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

/// Unix time in milliseconds (the driver's clock; the store itself is told the time).
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Writes committed together at most: bounds how long one commit takes.
const BATCH: usize = 256;

/// How long a batch waits for more writes after its first. A commit is an fsync (about
/// 0.1 ms here); committing each call's four or five writes alone cost 92 µs of CPU per call
/// at 3,000 calls/s (`perf`, `benches/sip_load.sh`), and at 5 ms the commits were still 5 %
/// of warmline's CPU at 2,500 calls/s; at 20 ms a batch at that rate is most of [`BATCH`].
/// Nothing on a call's path waits for its audit rows, and the CRM sender waits for its own
/// writes at most this long. What a crash can lose is what was not yet committed: up to
/// this long of writes, as before up to 5 ms of them.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// What a batch's writes leave to do once the batch is committed.
#[derive(Default)]
struct Committed {
    audit_rows: u64,
    /// A packet was queued: wake the CRM sender (after the commit, or it could look too early).
    enqueued: bool,
    done: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// The next write, waiting for it; `None` once every handle is gone and the queue is empty.
fn next_write(rx: &std::sync::mpsc::Receiver<Write>) -> Option<Write> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    match rx.try_recv() {
        Ok(w) => Some(w),
        Err(TryRecvError::Disconnected) => None,
        Err(TryRecvError::Empty) => match rx.recv_timeout(crate::alloc::IDLE) {
            Ok(w) => Some(w),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                // Idle: what a burst of writes left in this thread's cache goes back
                // before it sleeps.
                crate::alloc::flush_now();
                rx.recv().ok()
            }
        },
    }
}

/// Take queued writes into `batch` up to [`BATCH`]; true when it is full.
fn fill(rx: &std::sync::mpsc::Receiver<Write>, batch: &mut Vec<Write>) -> bool {
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(w) => batch.push(w),
            Err(_) => return false,
        }
    }
    true
}

/// Drops each `OpenLeg` that a `CloseLeg` of the same leg follows in the same batch: its
/// row would be deleted before the commit that writes it, so it is never written. Calls
/// shorter than [`GATHER`] (a load test's, a caller who hangs up at the greeting) then cost
/// no open-leg insert, the largest row a call writes (its BYE). The `CloseLeg` stays: a row
/// that an earlier batch wrote for that leg must still go.
fn elide_closed_legs(batch: &mut Vec<Write>) {
    let mut closed: Vec<(&str, &str)> = Vec::new();
    let mut keep = vec![true; batch.len()];
    for (i, w) in batch.iter().enumerate().rev() {
        match w {
            Write::CloseLeg { call_id, leg } => closed.push((call_id, leg)),
            Write::OpenLeg(open) => {
                keep[i] = !closed.contains(&(open.call_id.as_str(), open.leg.as_str()));
            }
            _ => {}
        }
    }
    let mut keep = keep.into_iter();
    batch.retain(|_| keep.next().unwrap_or(true));
}

/// One write, inside the writer's open batch.
fn apply(s: &Store, w: Write, after: &mut Committed) -> Result<(), StoreError> {
    match w {
        Write::Audit {
            call_id,
            at_ms,
            event,
            detail,
        } => s.append_audit(&call_id, at_ms, &event, &detail).map(|_| {
            after.audit_rows += 1;
        }),
        Write::Context {
            call_id,
            at_ms,
            body,
        } => s.put_context(&call_id, at_ms, &body),
        Write::Enqueue {
            call_id,
            url,
            body,
            at_ms,
        } => s.enqueue(&call_id, &url, &body, at_ms).map(|_| {
            after.enqueued = true;
        }),
        Write::Delivered { id, at_ms } => s.delivered(id, at_ms),
        Write::Failed {
            id,
            next_at_ms,
            error,
        } => s.failed(id, next_at_ms, &error),
        Write::OpenLeg(leg) => s.put_open_leg(&leg),
        Write::Flush(done) => {
            after.done.push(done);
            Ok(())
        }
        Write::CloseLeg { call_id, leg } => s.close_leg(&call_id, &leg),
        Write::Prune { before_ms } => s.prune(before_ms).map(|n| {
            if n > 0 {
                tracing::info!(rows = n, "store: old rows pruned");
            }
        }),
    }
}

impl StoreHandle {
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<Arc<Self>, StoreError> {
        let writer = Store::open(path)?;
        let reader = Store::open_reader(path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Write>();
        let outbox_ready = Arc::new(Notify::new());
        let notify = outbox_ready.clone();
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("wl-store".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(first) = next_write(&rx) {
                    batch.push(first);
                    // What comes within GATHER of the first write is committed with it: under
                    // load one fsync serves tens of rows, not one. The thread sleeps rather
                    // than waits on the queue, so a write in between wakes nobody; with a
                    // backlog of a full batch it does not sleep at all.
                    if !fill(&rx, &mut batch) {
                        std::thread::sleep(GATHER);
                        fill(&rx, &mut batch);
                    }
                    elide_closed_legs(&mut batch);
                    let n = batch.len();
                    let mut after = Committed::default();
                    let committed = writer.batch(|s| {
                        for w in batch.drain(..) {
                            if let Err(e) = apply(s, w, &mut after) {
                                m.store_write_errors.inc();
                                tracing::error!(error = %e, "store write failed");
                            }
                        }
                    });
                    match committed {
                        Ok(()) => {
                            m.store_audit_rows.inc_by(after.audit_rows);
                            if after.enqueued {
                                notify.notify_one();
                            }
                        }
                        Err(e) => {
                            // A batch that could not begin left its writes here; those are
                            // lost with the rest, and their waiters told.
                            for w in batch.drain(..) {
                                if let Write::Flush(done) = w {
                                    after.done.push(done);
                                }
                            }
                            m.store_write_errors.inc_by(n as u64);
                            tracing::error!(error = %e, writes = n, "store commit failed");
                        }
                    }
                    // Flushes are told after the commit, whatever its outcome: a waiter must
                    // not look at the outbox before its write is on disk, nor wait forever.
                    for done in after.done.drain(..) {
                        let _ = done.send(());
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("writer thread: {e}")))?;
        Ok(Arc::new(Self {
            tx,
            reader: Mutex::new(reader),
            outbox_ready,
            metrics,
        }))
    }

    fn write(&self, w: Write) {
        if self.tx.send(w).is_err() {
            self.metrics.store_write_errors.inc();
        }
    }

    /// Put an event on a call's audit trail, and move the metrics that follow from it: the
    /// one place the trail is written.
    pub fn record(&self, call_id: &str, event: &Audit) {
        let detail = event.detail();
        // The one log line per audited step: a call's start (who called whom) and end
        // (why) are these lines, not lines of their own. Debug-formatted: a detail holds
        // the caller's bytes (over TCP nothing has screened them for control characters).
        tracing::info!(event = event.code(), detail = ?detail, "audit");
        if let Audit::Trigger {
            kind,
            route,
            decision: Some(decision),
            ..
        } = event
        {
            self.metrics
                .escalations_total
                .with_label_values(&[kind.as_str(), route.as_str(), decision.as_str()])
                .inc();
        }
        self.write(Write::Audit {
            call_id: call_id.into(),
            at_ms: now_ms(),
            event: event.code().into(),
            detail,
        });
    }

    /// Keep the BYE that ends a confirmed leg, until `close_leg`: a restart after a crash
    /// sends it (see `crate::sip::recover`).
    pub fn open_leg(&self, call_id: &str, leg: &str, bye: String) {
        self.write(Write::OpenLeg(warmline_store::OpenLeg {
            call_id: call_id.into(),
            leg: leg.into(),
            at_ms: now_ms(),
            bye,
        }));
    }

    pub fn close_leg(&self, call_id: &str, leg: &str) {
        self.write(Write::CloseLeg {
            call_id: call_id.into(),
            leg: leg.into(),
        });
    }

    pub fn put_context(&self, call_id: &str, body: String) {
        self.write(Write::Context {
            call_id: call_id.into(),
            at_ms: now_ms(),
            body,
        });
    }

    pub fn enqueue(&self, call_id: &str, url: &str, body: String) {
        self.write(Write::Enqueue {
            call_id: call_id.into(),
            url: url.into(),
            body,
            at_ms: now_ms(),
        });
    }

    /// Mark a packet delivered; returns once it is committed, so the sender's next look
    /// at the outbox cannot see it again (and post it twice).
    pub async fn delivered(&self, id: i64) {
        self.write(Write::Delivered {
            id,
            at_ms: now_ms(),
        });
        self.flush().await;
    }

    /// A failed attempt, committed before returning (see [`StoreHandle::delivered`]).
    pub async fn failed(&self, id: i64, next_at_ms: i64, error: String) {
        self.write(Write::Failed {
            id,
            next_at_ms,
            error,
        });
        self.flush().await;
    }

    /// Returns once every write asked for before it is committed: the CRM sender's, and
    /// at shutdown, so the last calls' `end` rows are not left in the queue when the
    /// process exits.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.write(Write::Flush(done));
        let _ = wait.await;
    }

    /// Every hour, delete what is older than `retain` (see `warmline_store::Store::prune`).
    pub fn spawn_retention(self: &Arc<Self>, retain: std::time::Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                every.tick().await;
                me.write(Write::Prune {
                    before_ms: now_ms() - retain.as_millis() as i64,
                });
            }
        });
    }

    /// Run a read on the reader connection, off the async threads.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || match me.reader.lock() {
            Ok(store) => f(&store),
            Err(poisoned) => f(&poisoned.into_inner()),
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Writes are committed in batches; `flush` returns only once all of them are on disk,
    /// and the rows are counted once committed.
    #[tokio::test]
    async fn a_flush_waits_for_every_write_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let metrics = Arc::new(Metrics::new().unwrap());
        let store = StoreHandle::open(&path, metrics.clone()).unwrap();
        // More than one batch's worth, queued faster than the writer commits them.
        let n = 3 * BATCH + 7;
        for i in 0..n {
            store.record(
                &format!("c{}", i % 10),
                &Audit::CallStart {
                    from: "a".into(),
                    to: "b".into(),
                },
            );
        }
        store.flush().await;
        let rows: usize = store
            .read(|s| {
                (0..10)
                    .map(|c| s.audit(&format!("c{c}")).map(|r| r.len()))
                    .sum()
            })
            .await
            .unwrap();
        assert_eq!(rows, n);
        assert_eq!(metrics.store_audit_rows.get(), n as u64);
        assert_eq!(metrics.store_write_errors.get(), 0);
    }

    fn open(call_id: &str, leg: &str, bye: &str) -> Write {
        Write::OpenLeg(warmline_store::OpenLeg {
            call_id: call_id.into(),
            leg: leg.into(),
            at_ms: 1,
            bye: bye.into(),
        })
    }

    fn close(call_id: &str, leg: &str) -> Write {
        Write::CloseLeg {
            call_id: call_id.into(),
            leg: leg.into(),
        }
    }

    /// What is left of a batch, as `open a/caller`, `close a/caller`, `audit`.
    fn shape(batch: &[Write]) -> Vec<String> {
        batch
            .iter()
            .map(|w| match w {
                Write::OpenLeg(o) => format!("open {}/{} {}", o.call_id, o.leg, o.bye),
                Write::CloseLeg { call_id, leg } => format!("close {call_id}/{leg}"),
                _ => "other".into(),
            })
            .collect()
    }

    /// An open leg closed later in the same batch is never written; the close stays (an
    /// earlier batch may hold the row), and a leg opened again after its close is kept.
    #[test]
    fn a_leg_opened_and_closed_in_one_batch_is_not_written() {
        let mut batch = vec![
            open("a", "caller", "bye-a1"),
            open("b", "caller", "bye-b"),
            close("a", "caller"),
            open("a", "agent", "bye-a-agent"),
            open("a", "caller", "bye-a2"),
            Write::Prune { before_ms: 0 },
        ];
        elide_closed_legs(&mut batch);
        assert_eq!(
            shape(&batch),
            [
                "open b/caller bye-b",
                "close a/caller",
                "open a/agent bye-a-agent",
                "open a/caller bye-a2",
                "other",
            ]
        );
    }

    /// Through the writer: whatever the batches, the legs left open are those whose last
    /// word was an open, with its last BYE, including one written by an earlier batch and
    /// replaced then closed in a later one.
    #[tokio::test]
    async fn open_legs_end_as_their_last_write_left_them() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let store = StoreHandle::open(&dir.path().join("l.db"), metrics).unwrap();
        store.open_leg("old", "caller", "bye-old-1".into());
        store.flush().await;
        store.open_leg("old", "caller", "bye-old-2".into());
        store.close_leg("old", "caller");
        for i in 0..300 {
            store.open_leg(&format!("c{i}"), "caller", format!("bye-{i}"));
            if i % 3 != 0 {
                store.close_leg(&format!("c{i}"), "caller");
            }
        }
        store.open_leg("c1", "caller", "bye-1-again".into());
        store.flush().await;
        let mut left: Vec<(String, String)> = store
            .read(|s| s.open_legs(1000))
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.call_id, l.bye))
            .collect();
        left.sort();
        let mut want: Vec<(String, String)> = (0..300)
            .filter(|i| i % 3 == 0)
            .map(|i| (format!("c{i}"), format!("bye-{i}")))
            .collect();
        want.push(("c1".into(), "bye-1-again".into()));
        want.sort();
        assert_eq!(left, want);
    }
}
