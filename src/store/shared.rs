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

use crate::store::journal::{JournalError, Status};
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
ALTER TABLE hookyard_journal_events ADD COLUMN IF NOT EXISTS blob BOOLEAN NOT NULL DEFAULT FALSE;
";

/// The shared journal could not be reached or refused a statement.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("shared journal (PostgreSQL): the url is not valid: {0}")]
    Url(postgres::Error),
    #[error("shared journal (PostgreSQL): cannot connect: {0}")]
    Connect(#[from] r2d2::Error),
    #[error("shared journal (PostgreSQL): {0}")]
    Sql(#[from] postgres::Error),
    #[error("shared journal (PostgreSQL): closed")]
    Closed,
    /// Whether a stale claim's key was processed here could not be read from the local
    /// journal: the claim is left as it is (settling it either way could be wrong).
    #[error("cannot settle stale claims: {0}")]
    Local(#[from] JournalError),
}

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
    pub status: Status,
    pub error: Option<String>,
    pub data: String,
    /// Whether the event's binary body is its request's body (an upload).
    pub blob: bool,
}

/// One failed event of the ledger (for replay on any instance).
#[derive(Clone, Debug)]
pub struct LedgerEvent {
    pub id: i64,
    pub instance: String,
    pub key: Option<String>,
    pub data: String,
    /// An upload: its bytes are in the recording instance's journal only.
    pub blob: bool,
}

/// A connection pool to the shared journal. Its calls block: use them from blocking threads.
pub struct Shared {
    /// Always `Some` until dropped (taken to close it off the async threads).
    pool: Option<Pool>,
    pub instance: String,
}

impl Shared {
    /// Connects and creates the tables.
    pub fn open(url: &str, instance: &str) -> Result<Self, SharedError> {
        let config: postgres::Config = url.parse().map_err(SharedError::Url)?;
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            .build(PostgresConnectionManager::new(config, NoTls))?;
        let mut client = pool.get()?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(726172002)", &[])?;
        tx.batch_execute(SCHEMA)?;
        tx.commit()?;
        Ok(Self { pool: Some(pool), instance: instance.to_owned() })
    }

    fn client(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, SharedError> {
        let pool = self.pool.as_ref().ok_or(SharedError::Closed)?;
        Ok(pool.get()?)
    }

    /// Claims `keys` for this instance; what the cluster says about each.
    pub fn claim(&self, keys: &[String]) -> Result<Vec<SharedClaim>, SharedError> {
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
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let others: Vec<(String, String)> = if claimed.len() == keys.len() {
            Vec::new()
        } else {
            client
                .query("SELECT key, state FROM hookyard_journal_keys WHERE key = ANY($1)", &[&keys])?
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
    pub fn settle(&self, done: &[String], released: &[String], rows: &[LedgerRow]) -> Result<(), SharedError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        if !done.is_empty() {
            // An upsert: a claim released meanwhile (settled as stale) is taken back.
            tx.execute(
                "INSERT INTO hookyard_journal_keys (key, state, instance, settled_at)
                 SELECT k, 'done', $2, now() FROM unnest($1::text[]) AS k
                 ON CONFLICT (key) DO UPDATE SET state = 'done', settled_at = now()
                 WHERE hookyard_journal_keys.instance = $2",
                &[&done, &self.instance],
            )?;
        }
        if !released.is_empty() {
            tx.execute(
                "DELETE FROM hookyard_journal_keys WHERE key = ANY($1) AND instance = $2 AND state = 'claimed'",
                &[&released, &self.instance],
            )?;
        }
        let stmt = tx.prepare(
            "INSERT INTO hookyard_journal_events
                 (instance, protocol, operation, source, received_ms, idem_key, status, error, data, blob)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )?;
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
                    &r.status.as_str(),
                    &r.error,
                    &r.data,
                    &r.blob,
                ],
            )?;
        }
        Ok(tx.commit()?)
    }

    /// Settles this instance's claims older than `min_age`: keys the local journal holds
    /// become `done`, the others are released. Returns (done, released).
    pub fn settle_stale(
        &self,
        min_age: Duration,
        locally_done: impl Fn(&str) -> Result<bool, JournalError>,
    ) -> Result<(usize, usize), SharedError> {
        let mut client = self.client()?;
        let seconds = min_age.as_secs_f64();
        let keys: Vec<String> = client
            .query(
                "SELECT key FROM hookyard_journal_keys WHERE instance = $1 AND state = 'claimed'
                 AND claimed_at < now() - make_interval(secs => $2)",
                &[&self.instance, &seconds],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (mut done, mut released) = (Vec::new(), Vec::new());
        for key in keys {
            // One failed read settles nothing: a key processed here must not be released.
            if locally_done(&key)? { done.push(key) } else { released.push(key) }
        }
        drop(client);
        self.settle(&done, &released, &[])?;
        Ok((done.len(), released.len()))
    }

    /// Failed events of the ledger (any instance) not yet replayed, after ledger id `after`.
    pub fn failed_events(
        &self,
        protocol: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LedgerEvent>, SharedError> {
        let mut client = self.client()?;
        let rows = client.query(
            "SELECT id, instance, idem_key, data, blob FROM hookyard_journal_events
                 WHERE status = 'failed' AND id > $1 AND ($2::text IS NULL OR protocol = $2)
                 ORDER BY id LIMIT $3",
            &[&after, &protocol, &limit],
        )?;
        Ok(rows
            .iter()
            .map(|r| LedgerEvent { id: r.get(0), instance: r.get(1), key: r.get(2), data: r.get(3), blob: r.get(4) })
            .collect())
    }

    /// Marks a ledger event as replayed (by this instance): superseded once processed.
    pub fn mark_replayed(&self, id: i64, processed: bool, error: Option<&str>) -> Result<(), SharedError> {
        let status = if processed { Status::Superseded } else { Status::Failed }.as_str();
        self.client()?.execute(
            "UPDATE hookyard_journal_events SET status = $2, error = COALESCE($3, error) WHERE id = $1",
            &[&id, &status, &error],
        )?;
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
