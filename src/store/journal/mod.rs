//! The journal: every accepted request, its events, their outcome and their effects, in an
//! embedded SQLite database (`<data>/.hookyard/journal.db`, WAL, `synchronous=FULL`).
//!
//! One writer thread owns the write connection and does group commit: every submission that
//! arrives while a commit is under way joins the next one, so concurrent requests share one
//! fsync. After a commit the writer applies the batch's effects to the data directory in
//! commit order and only then answers the waiting requests. Files are synced at checkpoints
//! (about once a second and at shutdown), which also record each file's length; on start-up,
//! effects after the last checkpoint are redone from those lengths, so every committed effect
//! lands exactly once even after `kill -9` or a power loss. The writer keeps the files it
//! appends to open until the next checkpoint (`store::handles`). The WAL is copied into the
//! database by a thread of its own (`wal.rs`), not inside the writer's commits.

pub mod backfill;
mod bulk;
mod derive;
mod indexer;
mod insert;
pub use insert::keeps_event_data;
mod keys;
pub mod log;
mod outlets;
mod packed;
pub mod query;
pub mod readings;
mod recover;
pub mod rejected;
pub mod retention;
mod rollup;
pub(crate) mod schema;
pub mod series;
pub mod stats;
mod sweep;
mod texts;
pub mod tiers;
mod wal;
mod writer;
pub mod written;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;

use super::dedup::KeyIndex;
use super::{DataDir, Effect, StoreError};
use crate::clock::Clock;
pub use bulk::Bulk;
pub use log::LogRow;
pub use outlets::{FeedBatch, FeedEntry};
pub use packed::unpack as unpack_body;
pub use rejected::RejectedRecord;
pub use retention::Retention;

/// Refused requests waiting for the writer at most; more are dropped (and counted).
const REJECTED_QUEUE: usize = 1024;
/// Committed batches of log entries the live feed holds for a slow reader before it is told
/// it lagged.
const FEED_CAPACITY: usize = 1024;

/// A read-only connection to the journal of `data`, without taking it over (for dry runs
/// and inspection while the server runs).
pub fn open_read_only(data: &DataDir) -> Result<Connection, JournalError> {
    let path = data.root().join(".hookyard/journal.db");
    if !path.exists() {
        return Err(JournalError::Missing(path));
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The journal could not record or apply something.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("there is no journal at {0}")]
    Missing(PathBuf),
    #[error("journal directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("journal: event {id} cannot be read back: {source}")]
    Corrupt { id: i64, source: serde_json::Error },
    #[error("journal: the body of request {id} cannot be inflated: {source}")]
    Unpack { id: i64, source: std::io::Error },
    /// The data directory refused a write or a repair (the request's effects are not applied).
    #[error("{0}")]
    Data(#[from] StoreError),
    /// A commit of several requests failed; each of them gets this (the cause, as text).
    #[error("journal commit failed: {0}")]
    Commit(String),
    /// The data directory could not be synced at a checkpoint.
    #[error("checkpoint: cannot sync the data directory: {0}")]
    Sync(std::io::Error),
    /// The data directory's file system has less free space than `[journal]
    /// min_free_disk_mb`: new work waits for room (the journal's upkeep goes on).
    #[error("the disk is nearly full ({free_mb} MB free, below [journal] min_free_disk_mb = {floor_mb})")]
    DiskFull { free_mb: u64, floor_mb: u64 },
    #[error("the journal writer has stopped")]
    Stopped,
    #[error(transparent)]
    Wal(#[from] wal::WalError),
}

/// The request as received (after its checks passed).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub protocol: String,
    pub operation: String,
    pub source: String,
    pub received_ms: i64,
    /// Headers worth keeping (content type, user agent, signatures); never credentials.
    pub headers: Vec<(String, String)>,
    /// Which checks the request passed.
    pub verification: String,
    pub body: Bytes,
    /// The client's address (the peer, or the forwarded-for address from a trusted proxy).
    pub client: String,
    /// The method and the URL path with its query as received, secret parameters masked.
    pub method: String,
    pub path: String,
    /// The HTTP status of the reply when every event is processed (or a duplicate).
    pub reply_status: u16,
    /// The HTTP status of the reply when an event failed.
    pub failed_status: u16,
    /// The digest of the spec version whose split made the events (`OperationSpec::digest`):
    /// the events keep no data of their own and are derived again from `body`. Empty: the
    /// body is not theirs to be split (a replay of another instance's event), they keep it.
    pub spec: String,
    /// The query parameters the operation declares, as JSON pairs (empty when none came):
    /// the split puts them in each event's `meta`.
    pub query: String,
}

/// What became of one event (stored as its lowercase name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Processed,
    Failed,
    /// Its idempotency key was processed before; not processed again.
    Duplicate,
    /// A failed attempt that a later attempt with the same key processed.
    Superseded,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Processed, Status::Failed, Status::Duplicate, Status::Superseded];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processed => "processed",
            Status::Failed => "failed",
            Status::Duplicate => "duplicate",
            Status::Superseded => "superseded",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is none of [`Status::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?} (expected processed, failed, duplicate or superseded)")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl rusqlite::ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
    }
}

impl rusqlite::types::FromSql for Status {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// One event of a request, in its JSON form.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub index: usize,
    pub key: Option<String>,
    /// Its JSON form; may be left empty when [`keeps_event_data`] says the journal derives it
    /// again from the body (and no shared journal takes it).
    pub data: String,
    /// Whether the event's binary body is the request body (an upload).
    pub blob: bool,
    pub outcome: Status,
    pub error: Option<String>,
    /// What the script logged while handling this event.
    pub logs: Vec<String>,
    /// The meter readings it carries (`x-hookyard-readings`), indexed when it is processed.
    pub readings: Vec<crate::spec::readings::Reading>,
    /// Whether its raw body is the last image of its source's series.
    pub image: bool,
}

/// What a submission is about.
// Submissions travel boxed (`Job::Submit`), so the size of a new request's variant costs
// no copies.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Target {
    /// A request just received: recorded with all its events.
    New(Box<RequestRecord>),
    /// A journaled event processed again (replay): its one event record replaces the old
    /// outcome; the effects are added to its request.
    Replay { event_id: i64, request_id: i64 },
}

/// Everything one request (or one replayed event) adds to the journal.
#[derive(Debug)]
pub struct Submission {
    pub target: Target,
    pub events: Vec<EventRecord>,
    /// Effects of the processed events, in order.
    pub effects: Vec<Effect>,
}

type Reply = tokio::sync::oneshot::Sender<Result<(), JournalError>>;

enum Job {
    Submit(Box<Submission>, Reply),
    Checkpoint(Reply),
    Rejected(Box<RejectedRecord>),
    Readings(Box<backfill::Batch>, Reply),
}

/// How long a free-space check that found room is trusted by [`Journal::room`].
const ROOM_HOLDS: Duration = Duration::from_millis(100);

/// Handle to the journal (cheap to share behind an `Arc`).
pub struct Journal {
    jobs: Mutex<mpsc::Sender<Job>>,
    path: PathBuf,
    data: Arc<DataDir>,
    floor_mb: f64,
    /// Until when (ms after `opened`) the last free-space check holds: a request asks
    /// [`Journal::room`] first, and one `statvfs` per request was a syscall on the hot path.
    room_until: AtomicU64,
    opened: Instant,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Refused requests sent to the writer and not yet taken.
    rejected_queued: Arc<AtomicUsize>,
    /// New log entries, published after their commit (never waited on).
    feed: tokio::sync::broadcast::Sender<FeedBatch>,
    /// The processed keys' recent tier and runs (`tiers.rs`), for the key lookups.
    tiers: Arc<tiers::Tiers>,
}

impl Journal {
    /// Opens (creating if needed) the journal of `data`, redoes unapplied effects, and starts
    /// the writer.
    pub fn open(data: Arc<DataDir>, retention: Retention, clock: Clock) -> Result<Self, JournalError> {
        let dir =
            data.state_dir().map_err(|source| JournalError::Io { path: data.root().join(".hookyard"), source })?;
        let path = dir.join("journal.db");
        super::files::private_file(&path).map_err(|source| JournalError::Io { path: path.clone(), source })?;
        let mut conn = schema::open(&path)?;
        backfill::start(&conn)?;
        let redone = recover::redo(&mut conn, &data)?;
        if redone > 0 {
            tracing::warn!(effects = redone, "journal: redid effects that were committed but not checkpointed");
        }
        let floor_mb = retention.min_free_disk_mb;
        let (feed, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);
        let rejected_queued = Arc::new(AtomicUsize::new(0));
        let outlets = outlets::Outlets::new(feed.clone(), rejected_queued.clone());
        let wal = wal::Wal::start(&mut conn, &path, retention.wal_restart_mb)?;
        let tiers = Arc::new(tiers::Tiers::load(&conn)?);
        tiers.start_filter(&conn, &path)?;
        let writer = writer::Writer::new(conn, data.clone(), retention, outlets, clock, wal, tiers.clone());
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx, Duration::from_secs(1)))
            .map_err(|source| JournalError::Io { path: dir, source })?;
        let (room_until, opened) = (AtomicU64::new(0), Instant::now());
        let worker = Mutex::new(Some(worker));
        Ok(Self {
            jobs: Mutex::new(tx),
            path,
            data,
            floor_mb,
            room_until,
            opened,
            worker,
            rejected_queued,
            feed,
            tiers,
        })
    }

    /// Records `submission` durably and applies its effects; returns once both are done.
    pub async fn submit(&self, submission: Submission) -> Result<(), JournalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Submit(Box::new(submission), tx))?;
        rx.await.map_err(|_| JournalError::Stopped)?
    }

    /// Indexes a batch of the readings backfill (in a transaction of the writer's own).
    pub async fn index_readings(&self, batch: backfill::Batch) -> Result<(), JournalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Readings(Box::new(batch), tx))?;
        rx.await.map_err(|_| JournalError::Stopped)?
    }

    /// Hands a refused request to the writer without waiting; `false` when the queue is
    /// full (or the writer stopped) and the record was dropped.
    pub fn reject(&self, record: RejectedRecord) -> bool {
        if self.rejected_queued.fetch_add(1, Ordering::Relaxed) >= REJECTED_QUEUE {
            self.rejected_queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let sent = self.send(Job::Rejected(Box::new(record))).is_ok();
        if !sent {
            self.rejected_queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// New log entries from now on, one batch per commit (events after their commit,
    /// refused requests once recorded).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FeedBatch> {
        self.feed.subscribe()
    }

    /// Whether there is room for new work: the disk above `[journal] min_free_disk_mb`.
    /// Asked before a request's scripts run, so nothing is delivered that cannot be kept.
    /// A check that found room holds for [`ROOM_HOLDS`] (the writer checks again before each
    /// commit); a full disk is asked again every time.
    pub fn room(&self) -> Result<(), JournalError> {
        let now = self.opened.elapsed().as_millis() as u64;
        if now < self.room_until.load(Ordering::Relaxed) {
            return Ok(());
        }
        retention::room(&self.data, self.floor_mb)
            .map_err(|f| JournalError::DiskFull { free_mb: f.0, floor_mb: f.1 })?;
        self.room_until.store(now + ROOM_HOLDS.as_millis() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Syncs every file written so far and records the checkpoint.
    pub async fn checkpoint(&self) -> Result<(), JournalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Checkpoint(tx))?;
        rx.await.map_err(|_| JournalError::Stopped)?
    }

    fn send(&self, job: Job) -> Result<(), JournalError> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.send(job).map_err(|_| JournalError::Stopped)
    }

    /// Lookups of processed keys in this journal (the dedup memory's disk).
    pub fn key_index(&self) -> KeyIndex {
        KeyIndex::new(&self.path, self.tiers.clone())
    }

    /// The data directory the journal's effects are applied to.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// A read-only connection for inspection and replay.
    pub fn reader(&self) -> Result<Connection, JournalError> {
        schema::open_reader(&self.path)
    }

    /// Stops the writer after a final checkpoint.
    pub fn close(&self) {
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let _ = self.send(Job::Checkpoint(tx));
        let (closed, _) = mpsc::channel();
        *self.jobs.lock().unwrap_or_else(|e| e.into_inner()) = closed;
        if let Some(worker) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}
