//! Copying the journal's WAL into its database on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the WAL size limit: that
//! commit (and every request waiting on it) then also waits for pages to be copied and the
//! database file to be fsynced. The writer's connection turns that off; this thread runs a
//! `PASSIVE` checkpoint every quarter second instead, which never blocks the writer. The last
//! connection to close checkpoints whatever is left.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{JournalError, schema};

pub struct WalCheckpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalCheckpointer {
    pub fn start(path: &Path, every: Duration) -> Result<Self, JournalError> {
        let conn = schema::open_reader(path)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("journal-wal".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    drop(stopped);
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "journal: WAL checkpoint failed; will retry");
                    }
                    stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if !*stopped {
                        stopped = wake.wait_timeout(stopped, every).unwrap_or_else(|e| e.into_inner()).0;
                    }
                }
            })
            .map_err(|e| JournalError::Store(e.to_string()))?;
        Ok(Self { stop, thread: Some(thread) })
    }

    pub fn stop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
