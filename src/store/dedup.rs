//! The in-memory view of processed idempotency keys, so a resent request is not processed twice.
//!
//! It is loaded from the journal's processed events at start-up (so it survives restarts) and
//! updated once the journal has committed. A key is *claimed* while its request is being
//! processed: a concurrent duplicate is told to retry rather than acknowledged early.
//!
//! Processed keys are held as 128-bit digests (SHA-256, truncated), not as text: the memory
//! holds every key of the retention window, and a digest takes a quarter of the space of a
//! typical key. Two different keys share a digest with a probability of about n²/2¹²⁹.

use std::collections::HashSet;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

fn digest(key: &str) -> u128 {
    let hash = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_le_bytes(first)
}

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
    seen: HashSet<u128>,
    in_flight: HashSet<String>,
}

/// Processed keys and claims in progress.
#[derive(Default)]
pub struct SeenKeys {
    state: Mutex<State>,
}

impl SeenKeys {
    /// Starts from the keys the journal already holds.
    pub fn new(seen: HashSet<String>) -> Self {
        let seen = seen.iter().map(|k| digest(k)).collect();
        Self { state: Mutex::new(State { seen, in_flight: HashSet::new() }) }
    }

    pub fn claim(&self, key: &str) -> Claim {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.seen.contains(&digest(key)) {
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

    /// Marks claimed keys as processed (after the journal committed them).
    pub fn commit(&self, keys: &[String]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            state.in_flight.remove(k);
            state.seen.insert(digest(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_exclude_each_other_until_committed_or_released() {
        let keys = SeenKeys::new(HashSet::from(["old".to_string()]));
        assert_eq!(keys.claim("old"), Claim::Seen);
        assert_eq!(keys.claim("a"), Claim::New);
        assert_eq!(keys.claim("a"), Claim::InFlight);
        keys.commit(&["a".into()]);
        assert_eq!(keys.claim("a"), Claim::Seen);
        assert_eq!(keys.claim("b"), Claim::New);
        keys.release(&["b".into()]);
        assert_eq!(keys.claim("b"), Claim::New);
    }
}
