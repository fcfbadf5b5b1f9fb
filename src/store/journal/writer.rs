//! The writer thread: group commit, apply in commit order, checkpoint.

use std::collections::BTreeSet;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::outlets::Outlets;
use super::readings;
use super::retention::{self, Retention, room};
use super::{EventRecord, Job, JournalError, RejectedRecord, Reply, RequestRecord, Status, Submission, Target};
use crate::clock::Clock;
use crate::store::DataDir;
use crate::store::dedup::digest;
use crate::store::handles::Handles;

const MAX_BATCH: usize = 512;

pub struct Writer {
    conn: Connection,
    data: Arc<DataDir>,
    /// Files written since the last checkpoint (their pre-checkpoint length is recorded).
    dirty: BTreeSet<String>,
    retention: Retention,
    /// Failed applies whose "mark failed" could not be written yet (disk full): retried.
    unmarked: Vec<(Recorded, String)>,
    /// Append handles of the files written since the last checkpoint.
    handles: Handles,
    outlets: Outlets,
    /// The wall clock retention measures age by.
    clock: Clock,
}

impl Writer {
    pub fn new(conn: Connection, data: Arc<DataDir>, retention: Retention, outlets: Outlets, clock: Clock) -> Self {
        let handles = Handles::default();
        Self { conn, data, dirty: BTreeSet::new(), retention, unmarked: Vec::new(), handles, outlets, clock }
    }

    /// Prunes done requests as the retention rules say (after a checkpoint, so the effects of
    /// what it removes are safely in the files).
    fn prune(&mut self) {
        match retention::prune(&mut self.conn, &self.retention, self.clock.now_ms()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "journal retention pruned old processed requests and keys"),
            Err(e) => tracing::error!(error = %e, "journal retention failed; will retry"),
        }
    }

    pub fn run(mut self, jobs: mpsc::Receiver<Job>, every: Duration) {
        let mut last_checkpoint = Instant::now();
        let mut last_prune = Instant::now();
        let prune_every = Duration::from_millis(self.retention.prune_interval_ms.max(10));
        loop {
            let wait = every.saturating_sub(last_checkpoint.elapsed());
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = Vec::new();
            let mut checkpoints = Vec::new();
            let mut refused = Vec::new();
            for job in first.into_iter().chain(std::iter::from_fn(|| jobs.try_recv().ok())).take(MAX_BATCH) {
                match job {
                    Job::Submit(s, reply) => batch.push((*s, reply)),
                    Job::Checkpoint(reply) => checkpoints.push(reply),
                    Job::Rejected(r) => refused.push(*r),
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
            self.record_rejected(refused);
            if !checkpoints.is_empty() || last_checkpoint.elapsed() >= every {
                let result = self.checkpoint();
                if let Err(e) = &result {
                    tracing::error!(error = %e, "journal checkpoint failed; will retry");
                }
                last_checkpoint = Instant::now();
                for reply in checkpoints {
                    let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| JournalError::Commit(e.to_string())));
                }
                if result.is_ok() && last_prune.elapsed() >= prune_every {
                    self.prune();
                    last_prune = Instant::now();
                }
            }
        }
        if let Err(e) = self.checkpoint() {
            tracing::error!(error = %e, "final journal checkpoint failed; effects will be redone at start-up");
        }
    }

    /// Records refused requests (dropped while the disk has no room: they are not data).
    fn record_rejected(&mut self, refused: Vec<RejectedRecord>) {
        let room = room(&self.data, self.retention.min_free_disk_mb).is_ok();
        self.outlets.record_rejected(&mut self.conn, refused, self.retention.rejected_max_rows, room);
    }

    /// Marks failed applies as failed in the journal (retried until the disk takes it).
    fn retry_unmarked(&mut self) {
        if self.unmarked.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.unmarked);
        if let Err(e) = self.mark_failed(&pending) {
            tracing::error!(error = %e, "could not mark failed requests yet; will retry");
            self.unmarked = pending;
        }
    }

    fn commit_batch(&mut self, batch: Vec<(Submission, Reply)>) {
        self.retry_unmarked();
        if let Err(full) = room(&self.data, self.retention.min_free_disk_mb) {
            tracing::error!(error = %full, requests = batch.len(), "refusing new work until the disk has room");
            for (_, reply) in batch {
                let _ = reply.send(Err(JournalError::DiskFull { free_mb: full.0, floor_mb: full.1 }));
            }
            return;
        }
        let ids = match self.record(&batch) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, requests = batch.len(), "journal commit failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(JournalError::Commit(e.to_string())));
                }
                return;
            }
        };
        let mut failed = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        self.handles.new_batch();
        for ((submission, _), recorded) in batch.iter().zip(ids) {
            match self.handles.apply(&self.data, &submission.effects).map_err(|e| e.to_string()) {
                Ok(()) => {
                    self.outlets.publish(submission, recorded.request_id, &recorded.event_ids, recorded.reply_status);
                    results.push(Ok(()));
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not write to the data directory; the request fails");
                    failed.push((recorded, e.clone()));
                    results.push(Err(JournalError::Commit(format!("could not write to the data directory: {e}"))));
                }
            }
        }
        self.unmarked.extend(failed);
        self.retry_unmarked();
        for ((_, reply), result) in batch.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    /// One transaction for the whole batch; returns what each submission wrote.
    fn record(&mut self, batch: &[(Submission, Reply)]) -> Result<Vec<Recorded>, JournalError> {
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(batch.len());
        let mut newly_dirty = Vec::new();
        for (s, _) in batch {
            let recorded = insert_submission(&tx, s)?;
            readings::index(&tx, s, recorded.request_id, &recorded.event_ids)?;
            ids.push(recorded);
            for effect in &s.effects {
                let path = effect.path();
                if !self.dirty.contains(path) && !newly_dirty.iter().any(|p| p == path) {
                    let length = self.data.length(path)?;
                    tx.prepare_cached("INSERT OR REPLACE INTO file_state (path, length) VALUES (?1, ?2)")?
                        .execute(params![path, length.map(|l| l as i64).unwrap_or(-1)])?;
                    newly_dirty.push(path.to_owned());
                }
            }
        }
        tx.commit()?;
        self.dirty.extend(newly_dirty);
        Ok(ids)
    }

    fn mark_failed(&mut self, failed: &[(Recorded, String)]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for (recorded, error) in failed {
            let error = format!("could not write to the data directory: {error}");
            for (event_id, key) in recorded.event_ids.iter().zip(&recorded.keys) {
                let marked = tx.execute(
                    "UPDATE events SET status = 'failed', error = ?2 WHERE id = ?1 AND status = 'processed'",
                    params![event_id, error],
                )?;
                if let (1, Some(key)) = (marked, key) {
                    tx.execute(
                        "DELETE FROM processed_keys WHERE digest = ?1 AND event_id = ?2",
                        params![&digest(key)[..], event_id],
                    )?;
                }
            }
            readings::forget(&tx, &recorded.event_ids)?;
            if let Some((first, last)) = recorded.effects {
                tx.execute("DELETE FROM effects WHERE id BETWEEN ?1 AND ?2", params![first, last])?;
            }
            if let Some(status) = recorded.failed_status {
                tx.execute(
                    "UPDATE requests SET reply_status = ?2 WHERE id = ?1",
                    params![recorded.request_id, status],
                )?;
            }
        }
        tx.commit()
    }

    /// Syncs every dirty file, then records their lengths and the last applied effect.
    fn checkpoint(&mut self) -> Result<(), JournalError> {
        self.retry_unmarked();
        if self.dirty.is_empty() {
            return Ok(());
        }
        // Directory entries changed only where files were created or replaced.
        self.handles.close_all();
        self.data.sync_files(&self.dirty).map_err(JournalError::Sync)?;
        self.data.sync_dirs(self.handles.created()).map_err(JournalError::Sync)?;
        self.handles.synced();
        let tx = self.conn.transaction()?;
        for path in &self.dirty {
            let length = self.data.length(path)?;
            tx.execute(
                "INSERT OR REPLACE INTO file_state (path, length) VALUES (?1, ?2)",
                params![path, length.map(|l| l as i64).unwrap_or(-1)],
            )?;
        }
        tx.execute("UPDATE checkpoint SET effect_id = (SELECT COALESCE(MAX(id), 0) FROM effects) WHERE id = 1", [])?;
        tx.commit()?;
        self.dirty.clear();
        Ok(())
    }
}

/// What one submission wrote: its event rows and the id range of its effects.
#[derive(Clone, Debug)]
pub struct Recorded {
    request_id: i64,
    /// The reply status recorded for the request.
    reply_status: u16,
    /// For a new request: its status should it fail after all.
    failed_status: Option<u16>,
    event_ids: Vec<i64>,
    /// The idempotency key of each event (by position).
    keys: Vec<Option<String>>,
    effects: Option<(i64, i64)>,
}

pub(super) fn insert_submission(tx: &Transaction<'_>, s: &Submission) -> Result<Recorded, JournalError> {
    let (request_id, event_ids, reply_status, failed_status) = match &s.target {
        Target::New(request) => {
            let (request_id, ids, status) = insert_request(tx, request, &s.events)?;
            (request_id, ids, status, Some(request.failed_status))
        }
        Target::Replay { event_id, request_id } => {
            update_replayed(tx, *event_id, *request_id, s.events.first())?;
            (*request_id, vec![*event_id], 0, None)
        }
    };
    let keys = s.events.iter().map(|e| e.key.clone()).collect();
    let mut insert_effect =
        tx.prepare_cached("INSERT INTO effects (request_id, path, kind, header, bytes) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let mut range: Option<(i64, i64)> = None;
    for effect in &s.effects {
        let (kind, header, bytes) = effect.parts();
        insert_effect.execute(params![request_id, effect.path(), kind, header, bytes])?;
        let id = tx.last_insert_rowid();
        range = Some((range.map_or(id, |r| r.0), id));
    }
    Ok(Recorded { request_id, reply_status, failed_status, event_ids, keys, effects: range })
}

fn insert_request(
    tx: &Transaction<'_>,
    r: &RequestRecord,
    events: &[EventRecord],
) -> Result<(i64, Vec<i64>, u16), JournalError> {
    let headers = serde_json::to_string(&r.headers).unwrap_or_default();
    let failed = events.iter().any(|e| e.outcome == Status::Failed);
    let reply_status = if failed { r.failed_status } else { r.reply_status };
    // A request that brought nothing new (a resend, a replayed capture) costs a row, not a
    // copy of its body: its events point at the ones that processed their keys.
    let nothing_new = !events.is_empty() && events.iter().all(|e| e.outcome == Status::Duplicate);
    let body: &[u8] = if nothing_new { &[] } else { r.body.as_ref() };
    tx.prepare_cached(
        "INSERT INTO requests (protocol, operation, source, received_ms, headers, verification, body, client,
                               reply_status, method, path)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        r.protocol,
        r.operation,
        r.source,
        r.received_ms,
        headers,
        r.verification,
        body,
        r.client,
        reply_status,
        r.method,
        r.path
    ])?;
    let request_id = tx.last_insert_rowid();
    let ids = insert_events(tx, request_id, r.received_ms, events)?;
    Ok((request_id, ids, reply_status))
}

/// The event rows of request `request_id`; a duplicate points at the event that processed
/// its key instead of keeping its data.
fn insert_events(
    tx: &Transaction<'_>,
    request_id: i64,
    received_ms: i64,
    events: &[EventRecord],
) -> Result<Vec<i64>, JournalError> {
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (request_id, idx, idem_key, data, blob, status, error, logs, duplicate_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut ids = Vec::with_capacity(events.len());
    for e in events {
        let logs = (!e.logs.is_empty()).then(|| serde_json::to_string(&e.logs).unwrap_or_default());
        let original = match (e.outcome, &e.key) {
            (Status::Duplicate, Some(key)) => processed_event(tx, key)?,
            _ => None,
        };
        let data = if original.is_some() { "" } else { e.data.as_str() };
        let row = params![request_id, e.index as i64, e.key, data, e.blob, e.outcome.as_str(), e.error, logs, original];
        insert_event.execute(row)?;
        let event_id = tx.last_insert_rowid();
        ids.push(event_id);
        if let (Status::Processed, Some(key)) = (e.outcome, &e.key) {
            remember_key(tx, key, event_id, received_ms)?;
        }
    }
    Ok(ids)
}

fn update_replayed(
    tx: &Transaction<'_>,
    event_id: i64,
    request_id: i64,
    record: Option<&EventRecord>,
) -> Result<(), JournalError> {
    let Some(e) = record else { return Ok(()) };
    let logs = (!e.logs.is_empty()).then(|| serde_json::to_string(&e.logs).unwrap_or_default());
    tx.execute(
        "UPDATE events SET status = ?2, error = ?3, logs = ?4 WHERE id = ?1",
        params![event_id, e.outcome.as_str(), e.error, logs],
    )?;
    if let (Status::Processed, Some(key)) = (e.outcome, &e.key) {
        let received_ms: i64 =
            tx.query_row("SELECT received_ms FROM requests WHERE id = ?1", params![request_id], |r| r.get(0))?;
        remember_key(tx, key, event_id, received_ms)?;
    }
    Ok(())
}

/// The event that processed `key`, if the journal still has it (its key may outlive it:
/// keys are kept for the whole dedup window, requests may be pruned earlier by size).
fn processed_event(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT e.id FROM processed_keys k JOIN events e ON e.id = k.event_id WHERE k.digest = ?1")?
        .query_row(params![&digest(key)[..]], |row| row.get(0))
        .optional()
}

/// A key was processed (the event row says so): it goes into `processed_keys`, and earlier
/// failed attempts with it become `superseded` (one probe of the small index of failed keys).
fn remember_key(tx: &Transaction<'_>, key: &str, event_id: i64, received_ms: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO processed_keys (digest, event_id, received_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![&digest(key)[..], event_id, received_ms])?;
    tx.prepare_cached(
        "UPDATE events SET status = 'superseded' WHERE idem_key = ?1 AND status = 'failed' AND id != ?2",
    )?
    .execute(params![key, event_id])?;
    Ok(())
}
