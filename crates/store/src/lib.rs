//! What must outlive a call and a restart, on embedded SQLite: the append-only audit trail,
//! each call's context packet, the CRM outbox (packets waiting for the CRM's 2xx), and the
//! open legs (the BYE that ends each confirmed dialog, for a restart after a crash).
//!
//! Durability: WAL journal with `synchronous = FULL`, so a transaction that returned is on
//! disk (fsync at each commit): a crash of the process or the machine loses nothing that
//! was acknowledged. The writer commits many writes at once ([`Store::batch`]): one fsync
//! per batch, not per row. Times are Unix milliseconds, given by the caller (the store never
//! reads a clock).
//!
//! One writer connection per process (the driver's store thread) and any number of reader
//! connections ([`Store::open_reader`]); WAL lets readers run beside the writer.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The store's thread or task could not run the request.
    #[error("store: {0}")]
    Unavailable(String),
}

/// One audited step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub call_id: String,
    pub at_ms: i64,
    pub event: String,
    pub detail: String,
}

/// A confirmed dialog of a live call: what ends it if the process dies first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenLeg {
    pub call_id: String,
    /// The call's leg (`caller`, `agent`…).
    pub leg: String,
    pub at_ms: i64,
    /// The BYE the dialog would send, as SIP text.
    pub bye: String,
}

/// A packet waiting for (or given to) the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub call_id: String,
    pub url: String,
    pub body: String,
    pub attempts: i64,
    pub next_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    at_ms   INTEGER NOT NULL,
    event   TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_call ON audit (call_id, seq);
CREATE TABLE IF NOT EXISTS context (
    call_id TEXT PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    body    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at_ms      INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at_ms, next_at_ms);
CREATE TABLE IF NOT EXISTS open_legs (
    call_id TEXT NOT NULL,
    leg     TEXT NOT NULL,
    at_ms   INTEGER NOT NULL,
    bye     TEXT NOT NULL,
    PRIMARY KEY (call_id, leg)
);
";

impl Store {
    /// Open (creating if needed) the store at `path`, as the writer.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Run `f` as one transaction: what it wrote is committed (one fsync) when this returns
    /// `Ok`. A statement that fails inside `f` undoes only itself, so `f` reports its own
    /// writes' errors and the batch goes on; if the commit fails, nothing of `f` is kept.
    pub fn batch<T>(&self, f: impl FnOnce(&Self) -> T) -> Result<T, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let out = f(self);
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            // An I/O error may already have rolled the transaction back; either way it
            // must not stay open for the next batch.
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(e.into());
        }
        Ok(out)
    }

    /// A reader beside the writer (the schema must exist: open the writer first).
    pub fn open_reader(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    pub fn append_audit(
        &self,
        call_id: &str,
        at_ms: i64,
        event: &str,
        detail: &str,
    ) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit (call_id, at_ms, event, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![call_id, at_ms, event, detail])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Calls whose trail has a `call_start` and no `end`, oldest first (at most `limit`):
    /// after a crash, the calls that were live when the process died.
    pub fn unended(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT call_id FROM audit a WHERE event = 'call_start' AND NOT EXISTS \
             (SELECT 1 FROM audit b WHERE b.call_id = a.call_id AND b.event = 'end') \
             GROUP BY call_id ORDER BY MIN(seq) LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A call's audit trail, in the order it was written.
    pub fn audit(&self, call_id: &str) -> Result<Vec<AuditRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, call_id, at_ms, event, detail FROM audit WHERE call_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([call_id], |r| {
            Ok(AuditRow {
                seq: r.get(0)?,
                call_id: r.get(1)?,
                at_ms: r.get(2)?,
                event: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn put_context(&self, call_id: &str, at_ms: i64, body: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO context (call_id, at_ms, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (call_id) DO UPDATE SET at_ms = excluded.at_ms, body = excluded.body",
            )?
            .execute(params![call_id, at_ms, body])?;
        Ok(())
    }

    pub fn context(&self, call_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT body FROM context WHERE call_id = ?1",
                [call_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Queue `body` for `url`, due at once.
    pub fn enqueue(
        &self,
        call_id: &str,
        url: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (call_id, url, body, next_at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![call_id, url, body, now_ms])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Undelivered packets due by `now_ms`, oldest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, call_id, url, body, attempts, next_at_ms, delivered_at_ms, last_error
             FROM outbox WHERE delivered_at_ms IS NULL AND next_at_ms <= ?1
             ORDER BY next_at_ms, id LIMIT ?2",
        )?;
        let rows = st.query_map(params![now_ms, limit as i64], outbox_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next undelivered packet is due, if any.
    pub fn next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT MIN(next_at_ms) FROM outbox WHERE delivered_at_ms IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn pending(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at_ms IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn outbox_for(&self, call_id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, call_id, url, body, attempts, next_at_ms, delivered_at_ms, last_error
             FROM outbox WHERE call_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([call_id], outbox_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE outbox SET delivered_at_ms = ?2, attempts = attempts + 1, last_error = NULL
             WHERE id = ?1",
            )?
            .execute(params![id, now_ms])?;
        Ok(())
    }

    /// A failed attempt: try again at `next_at_ms`.
    pub fn failed(&self, id: i64, next_at_ms: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_at_ms = ?2, last_error = ?3
             WHERE id = ?1",
            )?
            .execute(params![id, next_at_ms, error])?;
        Ok(())
    }
}

fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        call_id: r.get(1)?,
        url: r.get(2)?,
        body: r.get(3)?,
        attempts: r.get(4)?,
        next_at_ms: r.get(5)?,
        delivered_at_ms: r.get(6)?,
        last_error: r.get(7)?,
    })
}

impl Store {
    /// Keep (or replace) the BYE that ends a confirmed leg.
    pub fn put_open_leg(&self, leg: &OpenLeg) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO open_legs (call_id, leg, at_ms, bye) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![leg.call_id, leg.leg, leg.at_ms, leg.bye])?;
        Ok(())
    }

    /// The leg ended (or was ended after a restart): nothing left to clean up.
    pub fn close_leg(&self, call_id: &str, leg: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM open_legs WHERE call_id = ?1 AND leg = ?2")?
            .execute(params![call_id, leg])?;
        Ok(())
    }

    /// Legs still open, oldest first: at start, those the last process left behind.
    pub fn open_legs(&self, limit: usize) -> Result<Vec<OpenLeg>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT call_id, leg, at_ms, bye FROM open_legs ORDER BY at_ms LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(OpenLeg {
                call_id: r.get(0)?,
                leg: r.get(1)?,
                at_ms: r.get(2)?,
                bye: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete what is older than `before_ms`: audit rows, context packets, and packets the
    /// CRM acknowledged. Undelivered packets are never pruned. Returns the rows deleted.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut n = self
            .conn
            .execute("DELETE FROM audit WHERE at_ms < ?1", [before_ms])?;
        n += self
            .conn
            .execute("DELETE FROM context WHERE at_ms < ?1", [before_ms])?;
        n += self.conn.execute(
            "DELETE FROM outbox WHERE delivered_at_ms IS NOT NULL AND delivered_at_ms < ?1",
            [before_ms],
        )?;
        Ok(n)
    }
}

/// The wait before retry number `attempts` (1 s, 2 s, 4 s … capped at a minute).
pub fn backoff(attempts: i64) -> Duration {
    let exp = attempts.clamp(0, 6) as u32;
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn open_legs_are_kept_until_closed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let s = Store::open(&path).unwrap();
        let leg = |call: &str, leg: &str, at_ms| OpenLeg {
            call_id: call.into(),
            leg: leg.into(),
            at_ms,
            bye: format!("BYE sip:{leg}@h SIP/2.0\r\n\r\n"),
        };
        s.put_open_leg(&leg("a", "caller", 1)).unwrap();
        s.put_open_leg(&leg("a", "agent", 2)).unwrap();
        s.put_open_leg(&leg("b", "caller", 3)).unwrap();
        s.close_leg("a", "caller").unwrap();
        // A later confirmation of the same leg replaces its BYE.
        s.put_open_leg(&leg("b", "caller", 4)).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.open_legs(10).unwrap(),
            [leg("a", "agent", 2), leg("b", "caller", 4)]
        );
        assert_eq!(s.open_legs(1).unwrap().len(), 1);
    }

    #[test]
    fn a_batch_commits_together_and_a_failed_statement_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let s = Store::open(&path).unwrap();
        let reader = Store::open_reader(&path).unwrap();
        let errors = s
            .batch(|s| {
                s.append_audit("a", 1, "call_start", "").unwrap();
                // Not visible to a reader before the commit.
                assert!(reader.audit("a").unwrap().is_empty());
                let bad = s
                    .conn
                    .execute("INSERT INTO nowhere VALUES (1)", [])
                    .is_err();
                s.append_audit("a", 2, "end", "").unwrap();
                bad
            })
            .unwrap();
        assert!(errors, "the bad statement failed");
        let events: Vec<_> = reader
            .audit("a")
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        assert_eq!(events, ["call_start", "end"]);
        // The connection is back in autocommit: a write outside a batch is kept at once.
        s.append_audit("b", 3, "call_start", "").unwrap();
        assert_eq!(reader.audit("b").unwrap().len(), 1);
    }

    #[test]
    fn calls_left_without_an_end_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("w.db")).unwrap();
        for (id, ev) in [
            ("a", "call_start"),
            ("b", "call_start"),
            ("a", "end"),
            ("c", "call_start"),
            ("c", "turn"),
        ] {
            s.append_audit(id, 1, ev, "").unwrap();
        }
        assert_eq!(s.unended(10).unwrap(), ["b", "c"]);
        assert_eq!(s.unended(1).unwrap(), ["b"]);
    }

    #[test]
    fn audit_is_ordered_per_call_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        {
            let s = Store::open(&path).unwrap();
            s.append_audit("a", 10, "call_start", "from x").unwrap();
            s.append_audit("b", 11, "call_start", "from y").unwrap();
            s.append_audit("a", 12, "end", "peer bye").unwrap();
        }
        let s = Store::open(&path).unwrap();
        let events: Vec<_> = s.audit("a").unwrap().into_iter().map(|r| r.event).collect();
        assert_eq!(events, ["call_start", "end"]);
        let reader = Store::open_reader(&path).unwrap();
        assert_eq!(reader.audit("b").unwrap().len(), 1);
    }

    #[test]
    fn outbox_retries_until_delivered_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let id = {
            let s = Store::open(&path).unwrap();
            s.put_context("a", 5, "{\"v\":1}").unwrap();
            let id = s.enqueue("a", "http://crm", "{\"v\":1}", 100).unwrap();
            assert_eq!(s.due(100, 10).unwrap().len(), 1);
            s.failed(id, 1100, "connection refused").unwrap();
            assert!(s.due(1000, 10).unwrap().is_empty());
            id
        };
        let s = Store::open(&path).unwrap();
        assert_eq!(s.next_due().unwrap(), Some(1100));
        let due = s.due(1100, 10).unwrap();
        assert_eq!((due[0].id, due[0].attempts), (id, 1));
        assert_eq!(due[0].last_error.as_deref(), Some("connection refused"));
        s.delivered(id, 1200).unwrap();
        assert_eq!(s.pending().unwrap(), 0);
        assert_eq!(s.context("a").unwrap().as_deref(), Some("{\"v\":1}"));
        assert_eq!(backoff(1), Duration::from_secs(2));
        // Retention: old rows go, an undelivered packet stays whatever its age.
        s.append_audit("a", 10, "call_start", "").unwrap();
        let stuck = s.enqueue("b", "http://crm", "{}", 10).unwrap();
        assert_eq!(
            s.prune(2000).unwrap(),
            3,
            "the audit row, the context, the delivered packet"
        );
        assert!(s.audit("a").unwrap().is_empty());
        assert_eq!(s.due(5000, 10).unwrap()[0].id, stuck);
        assert_eq!(backoff(10), Duration::from_secs(60));
    }
}
