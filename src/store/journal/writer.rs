//! The writer thread: group commit, apply in commit order, checkpoint.

use std::collections::BTreeSet;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, params};

use super::indexer::Indexer;
pub(super) use super::insert::{Recorded, insert_submission};
use super::outlets::Outlets;
use super::packed::Packer;
use super::readings;
use super::retention::{self, Retention, room};
use super::{Job, JournalError, RejectedRecord, Reply, Submission};
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
    /// Effects applied since the last checkpoint, and where their bytes went: the checkpoint
    /// that makes them durable replaces their bytes in the journal by this.
    placed: Vec<Placed>,
    /// Deflates request bodies (one compressor, set up once).
    packer: Packer,
}

/// Where an applied effect's bytes begin in its file.
struct Placed {
    effect_id: i64,
    at: u64,
}

impl Writer {
    pub fn new(conn: Connection, data: Arc<DataDir>, retention: Retention, outlets: Outlets, clock: Clock) -> Self {
        Self {
            conn,
            data,
            dirty: BTreeSet::new(),
            retention,
            unmarked: Vec::new(),
            handles: Handles::default(),
            outlets,
            clock,
            placed: Vec::new(),
            packer: Packer::default(),
        }
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
            let mut backfill = Vec::new();
            for job in first.into_iter().chain(std::iter::from_fn(|| jobs.try_recv().ok())).take(MAX_BATCH) {
                match job {
                    Job::Submit(s, reply) => batch.push((*s, reply)),
                    Job::Checkpoint(reply) => checkpoints.push(reply),
                    Job::Rejected(r) => refused.push(*r),
                    Job::Readings(b, reply) => backfill.push((b, reply)),
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
            for (b, reply) in backfill {
                let _ = reply.send(self.index_readings(&b));
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

    /// Indexes a batch of the readings backfill.
    fn index_readings(&mut self, batch: &super::backfill::Batch) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        super::backfill::write_batch(&tx, batch)?;
        Ok(tx.commit()?)
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
                Ok(offsets) => {
                    self.place(&recorded, &offsets);
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
        self.outlets.flush();
        self.unmarked.extend(failed);
        self.retry_unmarked();
        for ((_, reply), result) in batch.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    /// Remembers where a submission's applied effects went (their ids are consecutive).
    fn place(&mut self, recorded: &Recorded, offsets: &[u64]) {
        let Some((first, _)) = recorded.effects else { return };
        for (n, at) in offsets.iter().enumerate() {
            self.placed.push(Placed { effect_id: first + n as i64, at: *at });
        }
    }

    /// One transaction for the whole batch; returns what each submission wrote.
    fn record(&mut self, batch: &[(Submission, Reply)]) -> Result<Vec<Recorded>, JournalError> {
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(batch.len());
        let mut newly_dirty = Vec::new();
        let mut indexer = Indexer::default();
        for (s, _) in batch {
            let recorded = insert_submission(&tx, s, &mut self.packer)?;
            indexer.index(&tx, s, recorded.request_id, &recorded.event_ids)?;
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
        indexer.save(&tx)?;
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
                tx.execute("DELETE FROM effect_bytes WHERE id BETWEEN ?1 AND ?2", params![first, last])?;
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
        drop_placed_bytes(&tx, &self.placed)?;
        tx.commit()?;
        self.dirty.clear();
        self.placed.clear();
        Ok(())
    }
}

/// The bytes of effects now durable in their files leave the journal: their rows keep the
/// path, kind, offset, size and digest (enough to read them back while the file matches).
fn drop_placed_bytes(tx: &Transaction<'_>, placed: &[Placed]) -> rusqlite::Result<()> {
    let mut at = tx.prepare_cached("UPDATE effects SET at = ?2 WHERE id = ?1")?;
    let mut drop = tx.prepare_cached("DELETE FROM effect_bytes WHERE id = ?1")?;
    for p in placed {
        at.execute(params![p.effect_id, p.at as i64])?;
        drop.execute(params![p.effect_id])?;
    }
    Ok(())
}
