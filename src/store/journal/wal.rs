//! The WAL checkpointer: copies the journal's write-ahead log back into the database on a
//! thread of its own, so the writer's commits never wait for the database file's fsync.
//!
//! The write connection runs with `wal_autocheckpoint=0`. The checkpointer has its own
//! connection (`synchronous=FULL`, like the writer's: a checkpoint syncs the WAL before it
//! copies and the database after) and runs a PASSIVE checkpoint every [`EVERY`] while commits
//! come: it never blocks the writer or a reader, and a reader only ever sees committed pages.
//! A PASSIVE checkpoint that races the writer leaves the commits made meanwhile in the WAL, so
//! under a steady load the WAL would never start again from its beginning. The writer's
//! commits report how many frames the WAL holds (a WAL hook); once it holds
//! `[journal] wal_restart_mb` the writer ([`Wal::wants_reset`]) copies the short rest itself
//! between two of its turns, and its next commit starts the WAL from the beginning
//! (`journal_size_limit` shrinks the file). The writer counts, not the checkpointer, because
//! a fast writer fills many times `wal_restart_mb` between two of the checkpointer's looks.
//! Should the restart not happen (a reader that holds an old snapshot), at [`FAR`] times
//! `wal_restart_mb` the checkpointer runs a TRUNCATE checkpoint, which waits for the writer
//! and the readers.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the checkpointer copies the WAL while commits come.
pub const EVERY: Duration = Duration::from_millis(100);
/// How many times `[journal] wal_restart_mb` the WAL may hold before the checkpointer forces
/// a TRUNCATE checkpoint (waiting for the writer and every reader).
pub const FAR: i64 = 8;
/// The fewest frames (pages) the WAL restarts at.
const MIN_RESTART_FRAMES: i64 = 16;

/// The checkpointer could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal checkpointer: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("wal checkpointer: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// The checkpointer asks the writer to finish a checkpoint (the WAL is long enough).
struct Shared {
    reset: AtomicBool,
    /// Frames in the WAL after the writer's last commit (0 once the writer copied them all).
    frames: AtomicI64,
    /// Frames at which the WAL should restart.
    restart: i64,
}

/// The writer's handle on the checkpointer thread; dropping it stops the thread.
pub struct Wal {
    commits: Option<mpsc::SyncSender<()>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Wal {
    /// Turns `writer`'s automatic checkpoint off, counts the frames its commits leave in the
    /// WAL and starts the checkpointer on `path`; the WAL restarts once it holds `restart_mb`.
    pub fn start(writer: &mut Connection, path: &Path, restart_mb: f64) -> Result<Self, WalError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(1))?;
        let page: i64 = writer.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let restart = ((restart_mb * 1024.0 * 1024.0) as i64 / page.max(512)).max(MIN_RESTART_FRAMES);
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (commits, rx) = mpsc::sync_channel(1);
        let shared = Arc::new(Shared { reset: AtomicBool::new(false), frames: AtomicI64::new(0), restart });
        // Replaces the automatic checkpoint's own hook, which the pragma above removed.
        writer.wal_hook(Some({
            let shared = shared.clone();
            move |_: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
                shared.frames.store(i64::from(frames), Ordering::Relaxed);
                Ok(())
            }
        }))?;
        let thread = std::thread::Builder::new()
            .name("journal-wal".into())
            .spawn({
                let shared = shared.clone();
                move || run(&conn, &rx, &shared)
            })
            .map_err(WalError::Thread)?;
        Ok(Self { commits: Some(commits), shared, thread: Some(thread) })
    }

    /// Tells the checkpointer that the writer committed (never waits).
    pub fn committed(&self) {
        if let Some(commits) = &self.commits {
            let _ = commits.try_send(());
        }
    }

    /// Whether the writer should finish a checkpoint now ([`Wal::finish`]).
    pub fn wants_reset(&self) -> bool {
        self.shared.reset.load(Ordering::Relaxed) || self.shared.frames.load(Ordering::Relaxed) >= self.shared.restart
    }

    /// Copies what the checkpointer has not yet copied, on the writer's connection, so its
    /// next commit starts the WAL from the beginning.
    pub fn finish(&self, writer: &Connection) {
        match checkpoint(writer, "PASSIVE") {
            Ok(Pass { busy: false, log, done }) if log == done => {
                self.shared.reset.store(false, Ordering::Relaxed);
                // The next commit starts the WAL again and reports its frames.
                self.shared.frames.store(0, Ordering::Relaxed);
                tracing::trace!(frames = log, "wal copied on the writer; it restarts");
            }
            // A reader's snapshot keeps the copy short of the end (or another checkpoint
            // runs): the WAL grows until that reader ends.
            Ok(Pass { busy, log, done }) => {
                tracing::trace!(busy, frames = log, copied = done, "wal copy on the writer held back")
            }
            Err(e) => tracing::warn!(error = %e, "journal: wal checkpoint on the writer failed; will retry"),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.commits = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The checkpointer's loop: after a commit, wait [`EVERY`] for more, then copy.
fn run(conn: &Connection, commits: &mpsc::Receiver<()>, shared: &Shared) {
    while commits.recv().is_ok() {
        std::thread::sleep(EVERY);
        let started = Instant::now();
        match checkpoint(conn, "PASSIVE") {
            Ok(Pass { log, done, .. }) => {
                shared.reset.store(log >= shared.restart, Ordering::Relaxed);
                if log >= FAR * shared.restart {
                    truncate(conn, log);
                }
                tracing::trace!(
                    frames = log,
                    copied = done,
                    ms = started.elapsed().as_millis() as u64,
                    "wal checkpoint"
                );
            }
            Err(e) => tracing::warn!(error = %e, "journal: wal checkpoint failed; will retry"),
        }
    }
}

/// The last resort when the WAL keeps growing: a checkpoint that waits for the writer and
/// the readers, and empties the WAL file.
fn truncate(conn: &Connection, frames: i64) {
    tracing::warn!(frames, "journal: the wal did not restart; truncating it (the writer waits)");
    if let Err(e) = checkpoint(conn, "TRUNCATE") {
        tracing::warn!(error = %e, "journal: wal truncation failed; will retry");
    }
}

/// What one checkpoint found.
struct Pass {
    /// Another checkpoint was under way (nothing was done).
    busy: bool,
    /// Frames in the WAL.
    log: i64,
    /// Frames of it now in the database.
    done: i64,
}

/// Runs `PRAGMA wal_checkpoint(mode)`.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Pass> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok(Pass { busy: r.get::<_, i64>(0)? != 0, log: r.get(1)?, done: r.get(2)? })
    })
}
