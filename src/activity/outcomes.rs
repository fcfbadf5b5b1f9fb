//! Per-minute counters of accepted, refused and failed requests per protocol, for one day: a
//! ring of 1,440 minutes each, whose slots are reused as the clock passes (a slot from an
//! earlier day counts as empty). Fed by the request path; at start-up the accepted and failed
//! requests of the day before are added from the journal (refused ones are not journaled).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Minutes kept per protocol: one day.
pub const MINUTES: usize = 1440;
const MINUTE_MS: i64 = 60_000;

/// What happened to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Journaled and processed (duplicates included).
    Accepted,
    /// Refused: a check, the schema, a limit, the lockout.
    Rejected,
    /// Accepted but not processed: an event failed (journaled), or nothing could be
    /// journaled (busy, disk full, journal error).
    Failed,
}

/// The counts of one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
}

/// The rings of every protocol that has counted something.
#[derive(Default)]
pub struct Outcomes {
    rings: Mutex<BTreeMap<String, Box<[Minute]>>>,
    rejected_total: AtomicU64,
}

impl Outcomes {
    /// Counts one request of `protocol` at `now_ms`.
    pub fn count(&self, protocol: &str, outcome: Outcome, now_ms: i64) {
        if outcome == Outcome::Rejected {
            self.rejected_total.fetch_add(1, Ordering::Relaxed);
        }
        let add = match outcome {
            Outcome::Accepted => Minute { accepted: 1, ..Minute::default() },
            Outcome::Rejected => Minute { rejected: 1, ..Minute::default() },
            Outcome::Failed => Minute { failed: 1, ..Minute::default() },
        };
        self.add(protocol, Minute { minute: now_ms.div_euclid(MINUTE_MS), ..add });
    }

    /// Adds `counts` to its minute (a minute older than the ring's day is dropped).
    pub fn add(&self, protocol: &str, counts: Minute) {
        let Ok(mut rings) = self.rings.lock() else { return };
        if !rings.contains_key(protocol) {
            rings.insert(protocol.to_owned(), vec![Minute::default(); MINUTES].into_boxed_slice());
        }
        let Some(ring) = rings.get_mut(protocol) else { return };
        let slot = &mut ring[counts.minute.rem_euclid(MINUTES as i64) as usize];
        if slot.minute > counts.minute {
            return;
        }
        if slot.minute != counts.minute {
            *slot = Minute { minute: counts.minute, ..Minute::default() };
        }
        slot.accepted += counts.accepted;
        slot.rejected += counts.rejected;
        slot.failed += counts.failed;
    }

    /// The non-empty minutes of `protocol` starting in `[from_ms, to_ms)`, oldest first.
    pub fn minutes(&self, protocol: &str, from_ms: i64, to_ms: i64) -> Vec<Minute> {
        let Ok(rings) = self.rings.lock() else { return Vec::new() };
        let Some(ring) = rings.get(protocol) else { return Vec::new() };
        let (from, to) = (from_ms.div_euclid(MINUTE_MS), to_ms.div_euclid(MINUTE_MS));
        let mut found: Vec<Minute> = ring
            .iter()
            .filter(|m| m.minute >= from && m.minute < to && m.accepted + m.rejected + m.failed > 0)
            .copied()
            .collect();
        found.sort_by_key(|m| m.minute);
        found
    }

    /// Requests refused since the server started.
    pub fn rejected_total(&self) -> u64 {
        self.rejected_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_790_000_000_000;

    #[test]
    fn counts_land_in_their_minute_and_a_day_later_the_slot_starts_again() {
        let outcomes = Outcomes::default();
        outcomes.count("gridx", Outcome::Rejected, T);
        outcomes.count("gridx", Outcome::Rejected, T + 1);
        outcomes.count("gridx", Outcome::Failed, T + MINUTE_MS);
        outcomes.count("gridx", Outcome::Accepted, T + MINUTE_MS);
        let minutes = outcomes.minutes("gridx", T - MINUTE_MS, T + 2 * MINUTE_MS);
        let counts: Vec<(u64, u64, u64)> = minutes.iter().map(|m| (m.accepted, m.rejected, m.failed)).collect();
        assert_eq!(counts, [(0, 2, 0), (1, 0, 1)]);
        assert!(outcomes.minutes("wattmon", 0, i64::MAX).is_empty());
        let day = MINUTES as i64 * MINUTE_MS;
        outcomes.count("gridx", Outcome::Rejected, T + day);
        let later = outcomes.minutes("gridx", T + day - MINUTE_MS, T + day + MINUTE_MS);
        assert_eq!(later.iter().map(|m| m.rejected).collect::<Vec<_>>(), [1], "the old day's count is gone");
        assert_eq!(outcomes.rejected_total(), 3);
        let seeded = Minute { minute: T / MINUTE_MS, accepted: 5, rejected: 0, failed: 1 };
        outcomes.add("gridx", seeded);
        assert!(outcomes.minutes("gridx", T - MINUTE_MS, T + MINUTE_MS).is_empty(), "older than the ring's day");
    }
}
