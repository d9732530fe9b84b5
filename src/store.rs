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
        done: tokio::sync::oneshot::Sender<()>,
    },
    Failed {
        id: i64,
        next_at_ms: i64,
        error: String,
        done: tokio::sync::oneshot::Sender<()>,
    },
    Prune {
        before_ms: i64,
    },
    OpenLeg(warmline_store::OpenLeg),
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
                loop {
                    let w = match rx.try_recv() {
                        Ok(w) => w,
                        Err(std::sync::mpsc::TryRecvError::Empty) => {
                            match rx.recv_timeout(crate::alloc::IDLE) {
                                Ok(w) => w,
                                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                                    // Idle: what a burst of writes left in this thread's
                                    // cache goes back before it sleeps.
                                    crate::alloc::flush_now();
                                    match rx.recv() {
                                        Ok(w) => w,
                                        Err(_) => break,
                                    }
                                }
                                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                            }
                        }
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                    };
                    let result = match w {
                        Write::Audit {
                            call_id,
                            at_ms,
                            event,
                            detail,
                        } => writer
                            .append_audit(&call_id, at_ms, &event, &detail)
                            .map(|_| {
                                m.store_audit_rows.inc();
                            }),
                        Write::Context {
                            call_id,
                            at_ms,
                            body,
                        } => writer.put_context(&call_id, at_ms, &body),
                        Write::Enqueue {
                            call_id,
                            url,
                            body,
                            at_ms,
                        } => writer.enqueue(&call_id, &url, &body, at_ms).map(|_| {
                            notify.notify_one();
                        }),
                        Write::Delivered { id, at_ms, done } => {
                            let r = writer.delivered(id, at_ms);
                            let _ = done.send(());
                            r
                        }
                        Write::OpenLeg(leg) => writer.put_open_leg(&leg),
                        Write::CloseLeg { call_id, leg } => writer.close_leg(&call_id, &leg),
                        Write::Prune { before_ms } => writer.prune(before_ms).map(|n| {
                            if n > 0 {
                                tracing::info!(rows = n, "store: old rows pruned");
                            }
                        }),
                        Write::Failed {
                            id,
                            next_at_ms,
                            error,
                            done,
                        } => {
                            let r = writer.failed(id, next_at_ms, &error);
                            let _ = done.send(());
                            r
                        }
                    };
                    if let Err(e) = result {
                        m.store_write_errors.inc();
                        tracing::error!(error = %e, "store write failed");
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
        tracing::info!(event = event.code(), %detail, "audit");
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
        let (done, wait) = tokio::sync::oneshot::channel();
        self.write(Write::Delivered {
            id,
            at_ms: now_ms(),
            done,
        });
        let _ = wait.await;
    }

    /// A failed attempt, committed before returning (see [`StoreHandle::delivered`]).
    pub async fn failed(&self, id: i64, next_at_ms: i64, error: String) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.write(Write::Failed {
            id,
            next_at_ms,
            error,
            done,
        });
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
