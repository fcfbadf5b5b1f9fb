//! The memory of processed idempotency keys, so a resent request is not processed twice.
//!
//! Keys are appended, one JSON string per line, to `<data>/.hookyard/seen-keys.log` and
//! synced before the request that processed them is acknowledged; the log is read back at
//! start-up, so the memory survives restarts. A key is *claimed* while its request is being
//! processed: a concurrent duplicate is told to retry rather than acknowledged early.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What to do with one event's key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not seen before: process it, then [`SeenKeys::commit`] or [`SeenKeys::release`].
    New,
    /// Already processed: acknowledge without processing again.
    Seen,
    /// Being processed by another request right now: ask the sender to retry.
    InFlight,
}

#[derive(Default)]
struct State {
    seen: HashSet<String>,
    in_flight: HashSet<String>,
}

/// Processed keys, persisted in the data directory.
pub struct SeenKeys {
    path: PathBuf,
    state: Mutex<State>,
    file: Mutex<Option<File>>,
}

impl SeenKeys {
    /// Opens the key log under `data_dir`, reading back every key recorded so far.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join(".hookyard");
        fs::create_dir_all(&dir)?;
        let path = dir.join("seen-keys.log");
        let mut seen = HashSet::new();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                if let Ok(key) = serde_json::from_str::<String>(&line?) {
                    seen.insert(key);
                }
            }
        }
        Ok(Self {
            path,
            state: Mutex::new(State {
                seen,
                in_flight: HashSet::new(),
            }),
            file: Mutex::new(None),
        })
    }

    pub fn claim(&self, key: &str) -> Claim {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.seen.contains(key) {
            Claim::Seen
        } else if !state.in_flight.insert(key.to_owned()) {
            Claim::InFlight
        } else {
            Claim::New
        }
    }

    /// Gives up claims whose processing failed, so a retry processes them.
    pub fn release(&self, keys: &[String]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            state.in_flight.remove(k);
        }
    }

    /// Records processed keys durably; on error the claims are released.
    pub fn commit(&self, keys: &[String]) -> io::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.persist(keys) {
            self.release(keys);
            return Err(e);
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            state.in_flight.remove(k);
            state.seen.insert(k.clone());
        }
        Ok(())
    }

    fn persist(&self, keys: &[String]) -> io::Result<()> {
        let mut text = String::new();
        for k in keys {
            text.push_str(&serde_json::to_string(k).unwrap_or_default());
            text.push('\n');
        }
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = guard.as_mut().expect("opened above");
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_reopen_and_claims_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SeenKeys::open(dir.path()).unwrap();
        assert_eq!(keys.claim("a"), Claim::New);
        assert_eq!(keys.claim("a"), Claim::InFlight);
        keys.commit(&["a".into()]).unwrap();
        assert_eq!(keys.claim("a"), Claim::Seen);
        assert_eq!(keys.claim("b"), Claim::New);
        keys.release(&["b".into()]);
        assert_eq!(keys.claim("b"), Claim::New);
        let reopened = SeenKeys::open(dir.path()).unwrap();
        assert_eq!(reopened.claim("a"), Claim::Seen);
        assert_eq!(reopened.claim("b"), Claim::New);
    }
}
