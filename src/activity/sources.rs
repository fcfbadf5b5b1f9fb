//! When each source (tenant, device, sender) was last seen, with its recent arrival times to
//! tell its usual interval: the median gap between them. A source is stale when its last
//! request is older than three of its intervals. Bounded: at most [`MAX_SOURCES`] sources
//! (sources are authenticated, so this is a safety cap, not a limit a user should meet).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// At most this many `(protocol, source)` pairs are tracked; later ones are not shown.
pub const MAX_SOURCES: usize = 1000;
/// Arrival times kept per source (for the median gap).
pub const KEPT: usize = 16;
/// A source is stale after this many of its usual intervals without a request.
pub const STALE_INTERVALS: f64 = 3.0;

/// One source and its recent arrival times (Unix ms, oldest first).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSeen {
    pub protocol: String,
    pub source: String,
    pub recent: Vec<i64>,
}

impl SourceSeen {
    /// The last arrival (Unix ms).
    pub fn last_ms(&self) -> i64 {
        self.recent.last().copied().unwrap_or_default()
    }
}

/// The tracked sources.
#[derive(Default)]
pub struct Sources {
    seen: Mutex<BTreeMap<(String, String), VecDeque<i64>>>,
}

impl Sources {
    /// Records a request of `source` at `at_ms`; false when it is a new source beyond the cap.
    pub fn record(&self, protocol: &str, source: &str, at_ms: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        let key = (protocol.to_owned(), source.to_owned());
        if !seen.contains_key(&key) && seen.len() >= MAX_SOURCES {
            return false;
        }
        let times = seen.entry(key).or_default();
        // Requests may commit out of order: keep the times sorted.
        let at = times.iter().rposition(|&t| t <= at_ms).map_or(0, |i| i + 1);
        times.insert(at, at_ms);
        while times.len() > KEPT {
            times.pop_front();
        }
        true
    }

    /// Every tracked source, sorted by protocol and source.
    pub fn snapshot(&self) -> Vec<SourceSeen> {
        let Ok(seen) = self.seen.lock() else { return Vec::new() };
        seen.iter()
            .map(|((protocol, source), times)| SourceSeen {
                protocol: protocol.clone(),
                source: source.clone(),
                recent: times.iter().copied().collect(),
            })
            .collect()
    }
}

/// The median gap between consecutive arrival times (sorted, Unix ms), in seconds; `None`
/// with fewer than two.
pub fn median_gap_s(recent: &[i64]) -> Option<f64> {
    let mut gaps: Vec<i64> = recent.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    let mid = gaps.len() / 2;
    let median = if gaps.len().is_multiple_of(2) { (gaps[mid - 1] + gaps[mid]) as f64 / 2.0 } else { gaps[mid] as f64 };
    Some(median / 1000.0)
}

/// Whether a source last seen at `last_ms` with its usual `interval_s` is overdue at `now_ms`
/// (never without an interval, nor with a zero one).
pub fn is_stale(last_ms: i64, interval_s: Option<f64>, now_ms: i64) -> bool {
    match interval_s {
        Some(interval) if interval > 0.0 => (now_ms - last_ms) as f64 > STALE_INTERVALS * interval * 1000.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_the_median_gap() {
        assert_eq!(median_gap_s(&[]), None);
        assert_eq!(median_gap_s(&[1_000]), None);
        assert_eq!(median_gap_s(&[0, 60_000, 120_000, 900_000]), Some(60.0), "one long pause does not count");
        assert_eq!(median_gap_s(&[0, 10_000, 40_000]), Some(20.0));
    }

    #[test]
    fn a_source_is_stale_after_three_intervals() {
        let last = 1_000_000;
        assert!(!is_stale(last, Some(60.0), last + 180_000));
        assert!(is_stale(last, Some(60.0), last + 180_001));
        assert!(!is_stale(last, None, last + 86_400_000), "no interval known yet");
        assert!(!is_stale(last, Some(0.0), last + 1));
    }

    #[test]
    fn times_stay_sorted_bounded_and_sources_capped() {
        let sources = Sources::default();
        for t in [30, 10, 20] {
            assert!(sources.record("p", "a", t));
        }
        for t in 100..100 + KEPT as i64 {
            sources.record("p", "a", t);
        }
        let seen = &sources.snapshot()[0];
        assert_eq!(seen.recent.len(), KEPT);
        assert_eq!(seen.recent.first(), Some(&100));
        assert_eq!(seen.last_ms(), 100 + KEPT as i64 - 1);
        for n in 1..MAX_SOURCES {
            assert!(sources.record("p", &format!("s{n}"), 1));
        }
        assert!(!sources.record("p", "one-too-many", 1));
        assert!(sources.record("p", "a", 500), "a known source is still recorded");
        assert_eq!(sources.snapshot().len(), MAX_SOURCES);
    }
}
