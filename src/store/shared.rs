//! The shared journal in PostgreSQL: what lets several hookyard instances behind one load
//! balancer process every event exactly once.
//!
//! Each instance keeps its own SQLite journal for what is local to it — the requests it
//! received, the effects on its data directory and their redo — and PostgreSQL holds what
//! the instances share:
//!
//! - `hookyard_journal_keys`: every idempotency key, `claimed` by one instance while it
//!   processes the event, then `done`. A key claimed or done anywhere is not processed again
//!   anywhere: a resend to another instance is acknowledged as a duplicate (done) or told to
//!   retry (claimed).
//! - `hookyard_journal_events`: one row per event of every instance (protocol, source, key,
//!   outcome, error, JSON form): the cluster-wide record, and the source of `hookyard replay`
//!   from any instance.
//!
//! Order: claim in PostgreSQL → scripts and outputs → local journal commit (the request is
//! safe) → keys `done` + ledger rows in PostgreSQL. If an instance dies or loses PostgreSQL
//! between the last two steps, its claims stay; at its next start (and every 30 s) it settles
//! its own stale claims from its local journal: keys it committed become `done`, the others
//! are released.

use std::time::Duration;

use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hookyard_journal_keys (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    instance TEXT NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS hookyard_journal_keys_claims ON hookyard_journal_keys (instance) WHERE state = 'claimed';
CREATE TABLE IF NOT EXISTS hookyard_journal_events (
    id BIGSERIAL PRIMARY KEY,
    instance TEXT NOT NULL,
    protocol TEXT NOT NULL,
    operation TEXT NOT NULL,
    source TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    idem_key TEXT,
    status TEXT NOT NULL,
    error TEXT,
    data TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hookyard_journal_events_status ON hookyard_journal_events (status, id);
";

/// What the cluster says about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedClaim {
    /// Claimed now, by this instance.
    New,
    /// Processed by some instance.
    Done,
    /// Being processed (or waiting to be settled) by some instance.
    Claimed,
}

/// One event for the cluster-wide ledger.
#[derive(Clone, Debug)]
pub struct LedgerRow {
    pub protocol: String,
    pub operation: String,
    pub source: String,
    pub received_ms: i64,
    pub key: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub data: String,
}

/// One failed event of the ledger (for replay on any instance).
#[derive(Clone, Debug)]
pub struct LedgerEvent {
    pub id: i64,
    pub instance: String,
    pub key: Option<String>,
    pub data: String,
}

/// A connection pool to the shared journal. Its calls block: use them from blocking threads.
pub struct Shared {
    /// Always `Some` until dropped (taken to close it off the async threads).
    pool: Option<Pool>,
    pub instance: String,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("shared journal (PostgreSQL): {e}")
}

impl Shared {
    /// Connects and creates the tables.
    pub fn open(url: &str, instance: &str) -> Result<Self, String> {
        let config: postgres::Config = url.parse().map_err(|e| err(format!("the url is not valid: {e}")))?;
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            .build(PostgresConnectionManager::new(config, NoTls))
            .map_err(|e| err(format!("cannot connect: {e}")))?;
        let mut client = pool.get().map_err(err)?;
        let mut tx = client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock(726172002)", &[]).map_err(err)?;
        tx.batch_execute(SCHEMA).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Self { pool: Some(pool), instance: instance.to_owned() })
    }

    fn client(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, String> {
        let pool = self.pool.as_ref().ok_or_else(|| err("closed"))?;
        pool.get().map_err(|e| err(format!("cannot connect: {e}")))
    }

    /// Claims `keys` for this instance; what the cluster says about each.
    pub fn claim(&self, keys: &[String]) -> Result<Vec<SharedClaim>, String> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client()?;
        let claimed: Vec<String> = client
            .query(
                "INSERT INTO hookyard_journal_keys (key, state, instance)
                 SELECT k, 'claimed', $2 FROM unnest($1::text[]) AS k
                 ON CONFLICT (key) DO NOTHING RETURNING key",
                &[&keys, &self.instance],
            )
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let others: Vec<(String, String)> = if claimed.len() == keys.len() {
            Vec::new()
        } else {
            client
                .query("SELECT key, state FROM hookyard_journal_keys WHERE key = ANY($1)", &[&keys])
                .map_err(err)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        };
        Ok(keys
            .iter()
            .map(|k| {
                if claimed.contains(k) {
                    SharedClaim::New
                } else if others.iter().any(|(key, state)| key == k && state == "done") {
                    SharedClaim::Done
                } else {
                    SharedClaim::Claimed
                }
            })
            .collect())
    }

    /// After the local commit: `done` keys are processed, `released` keys may be processed
    /// again; the events go to the ledger. One transaction.
    pub fn settle(&self, done: &[String], released: &[String], rows: &[LedgerRow]) -> Result<(), String> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(err)?;
        if !done.is_empty() {
            // An upsert: a claim released meanwhile (settled as stale) is taken back.
            tx.execute(
                "INSERT INTO hookyard_journal_keys (key, state, instance, settled_at)
                 SELECT k, 'done', $2, now() FROM unnest($1::text[]) AS k
                 ON CONFLICT (key) DO UPDATE SET state = 'done', settled_at = now()
                 WHERE hookyard_journal_keys.instance = $2",
                &[&done, &self.instance],
            )
            .map_err(err)?;
        }
        if !released.is_empty() {
            tx.execute(
                "DELETE FROM hookyard_journal_keys WHERE key = ANY($1) AND instance = $2 AND state = 'claimed'",
                &[&released, &self.instance],
            )
            .map_err(err)?;
        }
        let stmt = tx
            .prepare(
                "INSERT INTO hookyard_journal_events
                 (instance, protocol, operation, source, received_ms, idem_key, status, error, data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .map_err(err)?;
        for r in rows {
            tx.execute(
                &stmt,
                &[
                    &self.instance,
                    &r.protocol,
                    &r.operation,
                    &r.source,
                    &r.received_ms,
                    &r.key,
                    &r.status,
                    &r.error,
                    &r.data,
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Settles this instance's claims older than `min_age`: keys the local journal holds
    /// become `done`, the others are released. Returns (done, released).
    pub fn settle_stale(
        &self,
        min_age: Duration,
        locally_done: impl Fn(&str) -> bool,
    ) -> Result<(usize, usize), String> {
        let mut client = self.client()?;
        let seconds = min_age.as_secs_f64();
        let keys: Vec<String> = client
            .query(
                "SELECT key FROM hookyard_journal_keys WHERE instance = $1 AND state = 'claimed'
                 AND claimed_at < now() - make_interval(secs => $2)",
                &[&self.instance, &seconds],
            )
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (done, released): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| locally_done(k));
        drop(client);
        self.settle(&done, &released, &[])?;
        Ok((done.len(), released.len()))
    }

    /// Failed events of the ledger (any instance) not yet replayed, after ledger id `after`.
    pub fn failed_events(&self, protocol: Option<&str>, after: i64, limit: i64) -> Result<Vec<LedgerEvent>, String> {
        let mut client = self.client()?;
        let rows = client
            .query(
                "SELECT id, instance, idem_key, data FROM hookyard_journal_events
                 WHERE status = 'failed' AND id > $1 AND ($2::text IS NULL OR protocol = $2)
                 ORDER BY id LIMIT $3",
                &[&after, &protocol, &limit],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| LedgerEvent { id: r.get(0), instance: r.get(1), key: r.get(2), data: r.get(3) })
            .collect())
    }

    /// Marks a ledger event as replayed (by this instance), with the new outcome.
    pub fn mark_replayed(&self, id: i64, outcome: &str, error: Option<&str>) -> Result<(), String> {
        let status = if outcome == "processed" { "superseded" } else { "failed" };
        self.client()?
            .execute(
                "UPDATE hookyard_journal_events SET status = $2, error = COALESCE($3, error) WHERE id = $1",
                &[&id, &status, &error],
            )
            .map_err(err)?;
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing PostgreSQL connections blocks: never on an async thread.
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::Builder::new().name("shared-close".into()).spawn(move || drop(pool));
        }
    }
}
