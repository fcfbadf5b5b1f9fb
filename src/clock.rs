//! The wall clock the server reads for receive times and retention, passed in so a test can
//! move it: [`Clock::system`] is the real time; [`Clock::shifted`] is the real time plus an
//! offset that [`Clock::advance`] moves forward (a test's "29 days later"). Intervals
//! (checkpoints, prune passes) run on monotonic time and are not affected.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as the server sees them.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Added to the system time; `None` for the plain system clock.
    offset_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's real time.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system's time plus an offset that starts at zero; clones share the offset.
    pub fn shifted() -> Self {
        Self { offset_ms: Some(Arc::new(AtomicI64::new(0))) }
    }

    /// Moves a shifted clock forward by `by` (a system clock stays as it is).
    pub fn advance(&self, by: Duration) {
        if let Some(offset) = &self.offset_ms {
            offset.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    /// Now, in milliseconds since the Unix epoch (0 if the system clock is before it).
    pub fn now_ms(&self) -> i64 {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default();
        system + self.offset_ms.as_ref().map_or(0, |o| o.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_moves_for_all_its_clones_and_a_system_clock_does_not() {
        let (system, shifted) = (Clock::system(), Clock::shifted());
        let seen_by_other = shifted.clone();
        shifted.advance(Duration::from_secs(86_400));
        system.advance(Duration::from_secs(86_400));
        let ahead = seen_by_other.now_ms() - system.now_ms();
        assert!((86_399_000..86_401_000).contains(&ahead), "{ahead}");
    }
}
