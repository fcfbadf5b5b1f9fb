//! The dedup memory: which idempotency keys were processed, so a resent request is not
//! processed twice.
//!
//! Processed keys live in the journal (a 128-bit digest of the key, the event that processed
//! it, its receive time), written in the same transaction as the event, in tiers
//! (`journal/tiers.rs`: recent keys held in memory too, runs behind Bloom filters, the merged
//! `processed_keys`), and kept for the retention window (`[journal] max_age_days`). A claim
//! looks a key up there through a [`KeyIndex`] (memory, then about one B-tree probe on a
//! pooled read connection), after a bounded cache of recently processed keys: memory and
//! start-up do not grow with history.
//! A key is *claimed* while its request is being processed: a concurrent duplicate is told
//! to retry rather than acknowledged early. The claim is taken before the disk is asked, so
//! a key committed meanwhile is never claimed twice.
//!
//! Keys are digests (SHA-256, truncated to 128 bits), not text: two different keys share a
//! digest with a probability of about n²/2¹²⁹.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use std::sync::Arc;

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::journal::tiers::Tiers;

/// Recently processed keys kept in memory (about 40 bytes each); the journal's recent tier
/// holds the last ~65,000 too, so this is only the first stop of a resend.
pub const CACHE_KEYS: usize = 8_192;
/// Read connections kept for lookups (more are opened when needed, and dropped after).
const POOLED_READERS: usize = 4;

/// The first 128 bits of the key's SHA-256: what the journal and the cache hold.
pub fn digest(key: &str) -> [u8; 16] {
    let hash = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    first
}

/// The on-disk index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("cannot look up a key in the journal: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// What to do with one event's key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not seen before: process it, then [`SeenKeys::commit`] or [`SeenKeys::release`].
    New,
    /// Already processed: acknowledge without processing again.
    Seen,
    /// Being processed by another request right now, or the journal could not be asked:
    /// ask the sender to retry.
    InFlight,
}

/// Processed keys on disk: lookups in the journal's key tiers (`journal/tiers.rs`: the recent
/// keys in memory, the runs behind their filters, `processed_keys`).
pub struct KeyIndex {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    tiers: Arc<Tiers>,
}

impl KeyIndex {
    /// Lookups in the journal database at `path` (connections are opened when first needed)
    /// and its `tiers`.
    pub fn new(path: &Path, tiers: Arc<Tiers>) -> Self {
        Self { path: path.to_owned(), readers: Mutex::new(Vec::new()), tiers }
    }

    /// Whether the journal holds `digest` as processed.
    pub fn contains(&self, digest: &[u8; 16]) -> Result<bool, DedupError> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let found = self.tiers.event_of(&conn, digest)?;
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < POOLED_READERS {
            readers.push(conn);
        }
        Ok(found.is_some())
    }

    fn connect(&self) -> Result<Connection, DedupError> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "query_only", true)?;
        // A statement for each run's table besides the merged one's.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

/// Sets of digests: a digest is already a hash, so a fast seeded one suffices over it.
type DigestSet = HashSet<[u8; 16], foldhash::fast::RandomState>;

/// The most recently processed keys, at most `capacity` (oldest forgotten first).
struct Recent {
    set: DigestSet,
    order: VecDeque<[u8; 16]>,
    /// `None`: unbounded (no index behind it).
    capacity: Option<usize>,
}

impl Recent {
    fn insert(&mut self, digest: [u8; 16]) {
        if !self.set.insert(digest) {
            return;
        }
        self.order.push_back(digest);
        if self.capacity.is_some_and(|c| self.order.len() > c)
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
    }
}

struct State {
    recent: Recent,
    /// Digests of the keys claimed and not yet committed or released.
    in_flight: DigestSet,
}

/// Processed keys (on disk, with a cache) and claims in progress.
pub struct SeenKeys {
    state: Mutex<State>,
    index: Option<KeyIndex>,
}

impl Default for SeenKeys {
    /// Keys in memory only, never forgotten (no journal behind them: tests, dry runs).
    fn default() -> Self {
        Self::with(None, None)
    }
}

impl SeenKeys {
    /// Keys looked up in `index`, the last `cache` processed ones kept in memory too.
    pub fn on_disk(index: KeyIndex, cache: usize) -> Self {
        Self::with(Some(index), Some(cache))
    }

    fn with(index: Option<KeyIndex>, capacity: Option<usize>) -> Self {
        let recent = Recent { set: DigestSet::default(), order: VecDeque::new(), capacity };
        Self { state: Mutex::new(State { recent, in_flight: DigestSet::default() }), index }
    }

    pub fn claim(&self, key: &str) -> Claim {
        let digest = digest(key);
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.recent.set.contains(&digest) {
                return Claim::Seen;
            }
            if !state.in_flight.insert(digest) {
                return Claim::InFlight;
            }
        }
        // Held now: a commit of this key can only have happened before, and is on disk.
        let Some(index) = &self.index else { return Claim::New };
        match index.contains(&digest) {
            Ok(false) => Claim::New,
            Ok(true) => {
                self.commit(&[key.to_owned()]);
                Claim::Seen
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot tell whether a key was processed; the sender is asked to retry");
                self.release(&[key.to_owned()]);
                Claim::InFlight
            }
        }
    }

    /// Gives up claims whose processing failed, so a retry processes them.
    pub fn release(&self, keys: &[String]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            state.in_flight.remove(&digest(k));
        }
    }

    /// Marks claimed keys as processed (after the journal committed them).
    pub fn commit(&self, keys: &[String]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            let d = digest(k);
            state.in_flight.remove(&d);
            state.recent.insert(d);
        }
    }
}

#[cfg(test)]
mod tests;
