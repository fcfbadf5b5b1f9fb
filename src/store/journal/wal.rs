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
//! `[journal] wal_restart_mb` the writer ([`Wal::wants_reset`]) asks the checkpointer for a
//! pass at once (not after [`EVERY`]), and once a pass that began after the ask is done and
//! left at most [`TAIL_FRAMES`] (the commits made during it; more, and it asks again), it
//! copies that short rest itself between two of its turns, not everything since the last
//! pass. Its next commit starts the WAL from the beginning (`journal_size_limit` shrinks the
//! file). The writer counts, not the checkpointer, because
//! a fast writer fills many times `wal_restart_mb` between two of the checkpointer's looks.
//! Should no fresh pass come within [`ASK_WAIT`], the writer copies all that is left itself.
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
/// How long the writer waits for the pass it asked for before it copies the rest itself.
const ASK_WAIT: Duration = Duration::from_secs(1);
/// At most this many frames left for the writer to copy (what was committed during the
/// checkpointer's last pass); more, and it asks for another pass first.
const TAIL_FRAMES: i64 = 128;
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
    /// The writer asks for a pass now (the WAL is long enough to restart).
    asked: AtomicBool,
    /// A pass that began after the writer's ask is done: what is left is what was committed
    /// during it.
    fresh: AtomicBool,
    /// The frames that pass left in the database (the WAL's copied prefix).
    copied: AtomicI64,
}

/// The writer's handle on the checkpointer thread; dropping it stops the thread.
pub struct Wal {
    commits: Option<mpsc::SyncSender<()>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// When the writer asked the checkpointer for a pass it still waits for.
    asked_at: Option<Instant>,
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
        let shared = Arc::new(Shared {
            reset: AtomicBool::new(false),
            frames: AtomicI64::new(0),
            restart,
            asked: AtomicBool::new(false),
            fresh: AtomicBool::new(false),
            copied: AtomicI64::new(0),
        });
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
        Ok(Self { commits: Some(commits), shared, thread: Some(thread), asked_at: None })
    }

    /// Tells the checkpointer that the writer committed (never waits).
    pub fn committed(&self) {
        if let Some(commits) = &self.commits {
            let _ = commits.try_send(());
        }
    }

    /// Whether the WAL is long enough to restart (the writer waits for it to).
    pub fn long(&self) -> bool {
        self.shared.reset.load(Ordering::Relaxed) || self.shared.frames.load(Ordering::Relaxed) >= self.shared.restart
    }

    /// Whether the writer should finish a checkpoint now ([`Wal::finish`]): the WAL is long
    /// enough to restart and a pass of the checkpointer that began after the writer asked for
    /// it is done (or none came within [`ASK_WAIT`]). The first time the WAL is long enough,
    /// this asks for that pass and says "not yet".
    pub fn wants_reset(&mut self) -> bool {
        if !self.long() {
            return false;
        }
        let Some(at) = self.asked_at else {
            self.asked_at = Some(Instant::now());
            self.ask();
            return false;
        };
        if at.elapsed() >= ASK_WAIT {
            return true;
        }
        if !self.shared.fresh.load(Ordering::Acquire) {
            return false;
        }
        // The commits made during that pass: short enough, or another pass first.
        let left = self.shared.frames.load(Ordering::Relaxed) - self.shared.copied.load(Ordering::Relaxed);
        if left <= TAIL_FRAMES {
            return true;
        }
        self.ask();
        false
    }

    /// Asks the checkpointer for a pass now.
    fn ask(&self) {
        self.shared.fresh.store(false, Ordering::Relaxed);
        self.shared.asked.store(true, Ordering::Release);
        self.committed();
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }

    /// Copies what the checkpointer has not yet copied, on the writer's connection, so its
    /// next commit starts the WAL from the beginning.
    pub fn finish(&mut self, writer: &Connection) {
        let started = Instant::now();
        match checkpoint(writer, "PASSIVE") {
            Ok(Pass { busy: false, log, done }) if log == done => {
                self.shared.reset.store(false, Ordering::Relaxed);
                // The next commit starts the WAL again and reports its frames.
                self.shared.frames.store(0, Ordering::Relaxed);
                self.asked_at = None;
                let ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
                tracing::trace!(frames = log, ms, "wal copied on the writer; it restarts");
            }
            // A reader's snapshot keeps the copy short of the end (or another checkpoint
            // runs): the WAL grows until that reader ends; the writer asks for a pass again.
            Ok(Pass { busy, log, done }) => {
                self.asked_at = None;
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

/// The checkpointer's loop: after a commit, wait [`EVERY`] for more (or less, when the writer
/// asks for a pass), then copy.
fn run(conn: &Connection, commits: &mpsc::Receiver<()>, shared: &Shared) {
    while commits.recv().is_ok() {
        let woke = Instant::now();
        while !shared.asked.load(Ordering::Acquire) {
            let Some(left) = EVERY.checked_sub(woke.elapsed()) else { break };
            std::thread::park_timeout(left);
        }
        // An ask seen before the pass begins is answered by it.
        let asked = shared.asked.swap(false, Ordering::AcqRel);
        let started = Instant::now();
        match checkpoint(conn, "PASSIVE") {
            Ok(Pass { log, done, .. }) => {
                shared.reset.store(log >= shared.restart, Ordering::Relaxed);
                if asked {
                    shared.copied.store(done, Ordering::Relaxed);
                    shared.fresh.store(true, Ordering::Release);
                }
                if log >= FAR * shared.restart {
                    truncate(conn, log);
                }
                tracing::trace!(
                    frames = log,
                    copied = done,
                    asked,
                    ms = started.elapsed().as_millis() as u64,
                    "wal checkpoint"
                );
            }
            Err(e) => {
                if asked {
                    shared.asked.store(true, Ordering::Release);
                }
                tracing::warn!(error = %e, "journal: wal checkpoint failed; will retry")
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits rows until the WAL is long enough to restart.
    fn fill(writer: &Connection, wal: &Wal) {
        let mut n = 0;
        while !wal.long() {
            writer.execute("INSERT INTO t (v) VALUES (zeroblob(4000))", []).unwrap();
            wal.committed();
            n += 1;
            assert!(n < 10_000, "the WAL never reached its restart size");
        }
    }

    #[test]
    fn the_writer_asks_for_a_pass_then_copies_only_what_came_after_it_and_the_wal_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let mut writer = super::super::schema::open(&path).unwrap();
        writer.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)").unwrap();
        // 0.1 MiB: the WAL restarts at 25 pages of 4 KiB.
        let mut wal = Wal::start(&mut writer, &path, 0.1).unwrap();
        fill(&writer, &wal);
        assert!(!wal.wants_reset(), "the first look asks the checkpointer instead of copying on the writer");
        assert!(wal.asked_at.is_some());
        // The checkpointer answers the ask with a pass of its own (long before ASK_WAIT's
        // fallback would let the writer copy everything itself).
        let asked = Instant::now();
        while !wal.shared.fresh.load(Ordering::Acquire) {
            assert!(asked.elapsed() < Duration::from_secs(10), "the checkpointer did not answer the ask");
            std::thread::sleep(Duration::from_millis(1));
        }
        let copied = wal.shared.copied.load(Ordering::Relaxed);
        assert_eq!(copied, wal.shared.frames.load(Ordering::Relaxed), "no commit came during the pass: it copied all");
        assert!(wal.wants_reset(), "the pass left nothing: the writer finishes");
        wal.finish(&writer);
        assert_eq!(wal.shared.frames.load(Ordering::Relaxed), 0);
        assert!(wal.asked_at.is_none());
        writer.execute("INSERT INTO t (v) VALUES (x'01')", []).unwrap();
        let frames = wal.shared.frames.load(Ordering::Relaxed);
        assert!(
            frames < copied,
            "the next commit starts the WAL from its beginning ({frames} frames, {copied} before)"
        );
    }
}
