//! The writer thread: group commit, apply in commit order, checkpoint.

use std::collections::BTreeSet;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, params};

use super::indexer::Indexer;
pub(super) use super::insert::{KeyWrites, Recorded, insert_submission};
use super::outlets::Outlets;
use super::packed::Packer;
use super::readings;
use super::retention::{self, Retention, room};
use super::sweep::KeySweep;
use super::tiers::{Between, Tiers, Upkeep};
use super::wal::Wal;
use super::{Job, JournalError, RejectedRecord, Reply, Submission};
use crate::clock::Clock;
use crate::store::DataDir;
use crate::store::dedup::digest;
use crate::store::handles::Handles;

const MAX_BATCH: usize = 512;
/// The writer wakes at least this often while idle (the key sweep's slice a second).
const SWEEP_WAKE: Duration = Duration::from_millis(250);
/// Turns that took at least this long are logged (at debug level) with their cause: the
/// latency target is a p99 of 5 ms.
const SLOW_TURN: Duration = Duration::from_millis(5);
/// A checkpoint at least this long is logged (debug) with the shares of the files' fsync, the
/// statements and the commit: the next batch waits for it.
const SLOW_CHECKPOINT: Duration = Duration::from_millis(2);

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
    /// that makes them durable drops their bytes from the journal.
    placed: Vec<Placed>,
    /// How many of `placed` have their offset (`effects.at`) recorded: the next batch's
    /// transaction records the others, so the checkpoint has only the bytes left to drop.
    placed_at: usize,
    /// Deflates request bodies (one compressor, set up once).
    packer: Packer,
    /// The checkpointer thread that copies the WAL into the database.
    wal: Wal,
    /// The pace and position of the key sweep.
    sweep: KeySweep,
    /// The processed keys' tiers (shared with the lookups), and the flush and merge under way.
    tiers: Arc<Tiers>,
    upkeep: Upkeep,
    /// Someone asked for a checkpoint; they wait in `checkpoint_replies`.
    checkpoint_asked: bool,
    checkpoint_replies: Vec<Reply>,
}

/// The jobs one turn of the writer takes (at most `MAX_BATCH`).
#[derive(Default)]
struct Turn {
    batch: Vec<(Submission, Reply)>,
    checkpoints: Vec<Reply>,
    refused: Vec<RejectedRecord>,
    backfill: Vec<(Box<super::backfill::Batch>, Reply)>,
}

impl Turn {
    /// `first` and whatever else is waiting.
    fn take(first: Option<Job>, jobs: &mpsc::Receiver<Job>) -> Self {
        let mut turn = Self::default();
        for job in first.into_iter().chain(std::iter::from_fn(|| jobs.try_recv().ok())).take(MAX_BATCH) {
            match job {
                Job::Submit(s, reply) => turn.batch.push((*s, reply)),
                Job::Checkpoint(reply) => turn.checkpoints.push(reply),
                Job::Rejected(r) => turn.refused.push(*r),
                Job::Readings(b, reply) => turn.backfill.push((b, reply)),
            }
        }
        turn
    }
}

/// Logs a turn that held the writer longer than [`SLOW_TURN`], with where the time went.
fn slow_turn(started: Instant, committed: Duration, submissions: usize) {
    let took = started.elapsed();
    if took >= SLOW_TURN {
        tracing::debug!(
            ms = took.as_millis() as u64,
            commit_ms = committed.as_millis() as u64,
            upkeep_ms = (took - committed).as_millis() as u64,
            submissions,
            "slow journal writer turn"
        );
    }
}

/// Where an applied effect's bytes begin in its file.
struct Placed {
    effect_id: i64,
    at: u64,
}

impl Writer {
    pub fn new(
        conn: Connection,
        data: Arc<DataDir>,
        retention: Retention,
        outlets: Outlets,
        clock: Clock,
        wal: Wal,
        tiers: Arc<Tiers>,
    ) -> Self {
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
            placed_at: 0,
            packer: Packer::default(),
            wal,
            sweep: KeySweep::default(),
            tiers,
            upkeep: Upkeep::default(),
            checkpoint_asked: false,
            checkpoint_replies: Vec::new(),
        }
    }

    /// Prunes done requests as the retention rules say (after a checkpoint, so the effects of
    /// what it removes are safely in the files).
    fn prune(&mut self) {
        match retention::prune(&mut self.conn, &self.retention, self.clock.now_ms()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "journal retention pruned old processed requests"),
            Err(e) => tracing::error!(error = %e, "journal retention failed; will retry"),
        }
    }

    pub fn run(mut self, jobs: mpsc::Receiver<Job>, every: Duration) {
        let mut last_checkpoint = Instant::now();
        let mut last_prune = Instant::now();
        let prune_every = Duration::from_millis(self.retention.prune_interval_ms.max(10));
        loop {
            let wait = every.saturating_sub(last_checkpoint.elapsed()).min(SWEEP_WAKE);
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let started = Instant::now();
            let idle = first.is_none();
            let turn = Turn::take(first, &jobs);
            let submissions = turn.batch.len();
            self.turn(turn);
            let committed = started.elapsed();
            let mut checkpointed = false;
            if last_checkpoint.elapsed() >= every || self.checkpoint_asked {
                checkpointed = self.checkpoint_and_reply();
                last_checkpoint = Instant::now();
            }
            // Keys before requests: a key table smaller than a slice is swept whole in the turn
            // its old requests go.
            let swept = self.key_upkeep() | self.sweep_keys();
            let due = checkpointed && last_prune.elapsed() >= prune_every;
            if due {
                self.prune();
                last_prune = Instant::now();
            }
            if swept || due || !idle {
                self.wal.committed();
            }
            if self.wal.wants_reset() {
                self.wal.finish(&self.conn);
            }
            slow_turn(started, committed, submissions);
        }
        if let Err(e) = self.checkpoint() {
            tracing::error!(error = %e, "final journal checkpoint failed; effects will be redone at start-up");
        }
    }

    /// One turn's work, in order: the batch's commit, the backfill, refused requests.
    fn turn(&mut self, turn: Turn) {
        if !turn.batch.is_empty() {
            self.commit_batch(turn.batch);
        }
        for (b, reply) in turn.backfill {
            let _ = reply.send(self.index_readings(&b));
        }
        self.record_rejected(turn.refused);
        self.checkpoint_asked |= !turn.checkpoints.is_empty();
        self.checkpoint_replies.extend(turn.checkpoints);
    }

    /// Syncs the data directory's files and answers who asked for it; returns whether it
    /// succeeded (retention prunes right after a checkpoint that did).
    fn checkpoint_and_reply(&mut self) -> bool {
        let result = self.checkpoint();
        if let Err(e) = &result {
            tracing::error!(error = %e, "journal checkpoint failed; will retry");
        }
        self.checkpoint_asked = false;
        for reply in self.checkpoint_replies.drain(..) {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| JournalError::Commit(e.to_string())));
        }
        result.is_ok()
    }

    /// The keys' tiers between turns: old keys out of the recent tier and the runs, a slice
    /// of the flush and of the merge under way (`tiers.rs`); returns whether it wrote.
    fn key_upkeep(&mut self) -> bool {
        let cutoff = self.retention.max_age_days.map(|days| self.clock.now_ms() - (days * 86_400_000.0) as i64);
        let started = Instant::now();
        let now = Between { cutoff, hold: self.wal.long() };
        match self.upkeep.step(&mut self.conn, &self.tiers, now) {
            Ok(wrote) => {
                if started.elapsed() >= SLOW_TURN {
                    tracing::debug!(ms = started.elapsed().as_millis() as u64, "slow key tiers step");
                }
                wrote
            }
            Err(e) => {
                tracing::error!(error = %e, sqlite = sqlite_code_of(&e), "journal key tiers: a flush or merge slice failed; will retry");
                true
            }
        }
    }

    /// The due slices of the key sweep (keys received before the retention window); returns
    /// whether any ran.
    fn sweep_keys(&mut self) -> bool {
        let Some(days) = self.retention.max_age_days else { return false };
        if self.sweep.due() == 0 {
            return false;
        }
        let cutoff = self.clock.now_ms() - (days * 86_400_000.0) as i64;
        match self.sweep.run(&mut self.conn, cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "journal retention pruned old processed keys"),
            Err(e) => tracing::error!(error = %e, "journal key sweep failed; will retry"),
        }
        true
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
                tracing::error!(error = %e, sqlite = sqlite_code(&e), requests = batch.len(), "journal commit failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(JournalError::Commit(e.to_string())));
                }
                return;
            }
        };
        self.sweep.arrived(batch.iter().map(|(s, _)| s.events.len()).sum());
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
        let mut keys = KeyWrites::new(Some(&self.tiers));
        for (s, _) in batch {
            let recorded = insert_submission(&tx, s, &mut self.packer, &mut keys)?;
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
        record_offsets(&tx, &self.placed[self.placed_at..])?;
        tx.commit()?;
        self.placed_at = self.placed.len();
        // Before anyone is answered: a resend of these keys finds them from now on.
        self.tiers.added(&keys.added);
        self.upkeep.arrived(keys.added.len());
        self.dirty.extend(newly_dirty);
        Ok(ids)
    }

    fn mark_failed(&mut self, failed: &[(Recorded, String)]) -> rusqlite::Result<()> {
        let runs = self.upkeep.run_tables(&self.tiers);
        let mut forgotten = Vec::new();
        let tx = self.conn.transaction()?;
        for (recorded, error) in failed {
            let error = format!("could not write to the data directory: {error}");
            for (event_id, key) in recorded.event_ids.iter().zip(&recorded.keys) {
                let marked = tx.execute(
                    "UPDATE events SET status = 'failed', error = ?2 WHERE id = ?1 AND status = 'processed'",
                    params![event_id, error],
                )?;
                if let (1, Some(key)) = (marked, key) {
                    let digest = digest(key);
                    // The recent row by its seq (that table has no index by digest), the
                    // merged table and the runs (a flush may have moved it) by digest.
                    for seq in recorded.key_rows.iter().filter(|r| r.1 == *event_id).map(|r| r.0) {
                        tx.execute("DELETE FROM keys_recent WHERE seq = ?1", [seq])?;
                    }
                    for table in std::iter::once("processed_keys".to_owned()).chain(runs.iter().cloned()) {
                        tx.execute(
                            &format!("DELETE FROM {table} WHERE digest = ?1 AND event_id = ?2"),
                            params![&digest[..], event_id],
                        )?;
                    }
                    forgotten.push((digest, *event_id));
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
        tx.commit()?;
        for (digest, event_id) in forgotten {
            self.upkeep.forget(&digest, event_id);
            self.tiers.forget(&digest, event_id);
        }
        Ok(())
    }

    /// Syncs every dirty file, then records their lengths and the last applied effect.
    fn checkpoint(&mut self) -> Result<(), JournalError> {
        self.retry_unmarked();
        if self.dirty.is_empty() {
            return Ok(());
        }
        // Directory entries changed only where files were created or replaced.
        let started = Instant::now();
        self.handles.close_all();
        self.data.sync_files(&self.dirty).map_err(JournalError::Sync)?;
        self.data.sync_dirs(self.handles.created()).map_err(JournalError::Sync)?;
        self.handles.synced();
        let synced = started.elapsed();
        let tx = self.conn.transaction()?;
        for path in &self.dirty {
            let length = self.data.length(path)?;
            tx.execute(
                "INSERT OR REPLACE INTO file_state (path, length) VALUES (?1, ?2)",
                params![path, length.map(|l| l as i64).unwrap_or(-1)],
            )?;
        }
        tx.execute("UPDATE checkpoint SET effect_id = (SELECT COALESCE(MAX(id), 0) FROM effects) WHERE id = 1", [])?;
        record_offsets(&tx, &self.placed[self.placed_at..])?;
        drop_placed_bytes(&tx, &self.placed)?;
        let written = started.elapsed();
        tx.commit()?;
        let took = started.elapsed();
        if took >= SLOW_CHECKPOINT {
            tracing::debug!(
                ms = took.as_millis() as u64,
                sync_ms = synced.as_millis() as u64,
                statements_ms = (written - synced).as_millis() as u64,
                commit_ms = (took - written).as_millis() as u64,
                files = self.dirty.len(),
                effects = self.placed.len(),
                "slow journal checkpoint"
            );
        }
        self.dirty.clear();
        self.placed.clear();
        self.placed_at = 0;
        Ok(())
    }
}

/// Records where applied effects went (in the next batch's transaction, or the checkpoint's:
/// then the checkpoint has only the bytes left to drop). Before their checkpoint the file's
/// page cache holds them, and a crash redoes them and records them again.
fn record_offsets(tx: &Transaction<'_>, placed: &[Placed]) -> rusqlite::Result<()> {
    let mut at = tx.prepare_cached("UPDATE effects SET at = ?2 WHERE id = ?1")?;
    for p in placed {
        at.execute(params![p.effect_id, p.at as i64])?;
    }
    Ok(())
}

/// The bytes of effects now durable in their files leave the journal: their rows keep the
/// path, kind, offset, size and digest (enough to read them back while the file matches).
/// One statement per run of consecutive ids (a batch's effects are one run or a few), not
/// one per effect: a checkpoint drops a second's effects while the next batch waits.
fn drop_placed_bytes(tx: &Transaction<'_>, placed: &[Placed]) -> rusqlite::Result<()> {
    let mut drop = tx.prepare_cached("DELETE FROM effect_bytes WHERE id BETWEEN ?1 AND ?2")?;
    for (first, last) in runs(placed.iter().map(|p| p.effect_id)) {
        drop.execute(params![first, last])?;
    }
    Ok(())
}

/// The maximal runs of consecutive values in `ids` (ascending), as (first, last).
fn runs(ids: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in ids {
        match runs.last_mut() {
            Some((_, last)) if id == *last + 1 => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// SQLite's extended result code behind `e`, if it is one (`5`: busy, `517`: busy snapshot).
fn sqlite_code(e: &JournalError) -> Option<i32> {
    match e {
        JournalError::Sql(e) => sqlite_code_of(e),
        _ => None,
    }
}

fn sqlite_code_of(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_of_consecutive_ids() {
        assert_eq!(runs([].into_iter()), vec![]);
        assert_eq!(runs([7].into_iter()), vec![(7, 7)]);
        assert_eq!(runs([1, 2, 3, 5, 6, 9].into_iter()), vec![(1, 3), (5, 6), (9, 9)]);
        assert_eq!(runs([4, 2, 3].into_iter()), vec![(4, 4), (2, 3)], "out of order: a run of its own");
    }
}
