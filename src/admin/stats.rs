//! The health view's figures: accepted, rejected and failed requests per protocol over the
//! last hour or day (`/api/stats`), and when each source was last seen (`/api/sources`).
//!
//! The figures come from the per-minute counters the request path feeds (`activity`), so a
//! day's chart costs no journal scan; at start-up the accepted and failed requests of the day
//! before are added from the journal in the background. Refused requests are not journaled:
//! their counts start again at zero with the server.

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::{AdminAuth, AdminError, Shared, guard};
use crate::activity::sources::{is_stale, median_gap_s};
use crate::activity::{Minute, now_ms};
use crate::event::rfc3339_millis;

/// The statistics and last-seen part of the management API.
pub struct StatsApi {
    pub state: Shared,
    /// The served protocols (each is listed, with zeros when nothing arrived).
    pub protocols: Vec<String>,
}

/// The span `/api/stats` covers.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum StatsWindow {
    /// The last hour in 60 buckets of a minute.
    Hour,
    /// The last day in 96 buckets of 15 minutes.
    Day,
}

/// Requests in one bucket.
#[derive(Object, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Journaled requests none of whose events failed.
    pub accepted: u64,
    /// Requests refused (checks, schema, limits, lockout) since the server started.
    pub rejected: u64,
    /// Requests that failed: journaled with a failed event, or not journaled at all.
    pub failed: u64,
}

/// One bucket of a protocol's chart.
#[derive(Object, Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub start_ms: i64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
}

/// One protocol's chart and totals.
#[derive(Object, Clone, Debug, PartialEq, Eq)]
pub struct ProtocolStats {
    pub protocol: String,
    pub buckets: Vec<Bucket>,
    pub totals: Counts,
}

/// The answer of `/api/stats`.
#[derive(Object)]
pub struct Stats {
    pub bucket_seconds: u64,
    pub protocols: Vec<ProtocolStats>,
}

/// One source and when it last sent a journaled request.
#[derive(Object)]
pub struct SourceStatus {
    pub protocol: String,
    /// Tenant, device or sender (empty for a protocol that names none).
    pub source: String,
    pub last_seen_at: String,
    pub last_seen_ms: i64,
    /// The median gap between its recent requests (seconds), once it sent two.
    pub interval_s: Option<f64>,
    /// No request for longer than three of its intervals.
    pub stale: bool,
}

/// The buckets of a window ending with the bucket that holds `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start_ms: i64,
    pub bucket_ms: i64,
    pub count: i64,
}

impl Span {
    pub fn of(window: StatsWindow, now_ms: i64) -> Self {
        let (bucket_ms, count) = match window {
            StatsWindow::Hour => (60_000, 60),
            StatsWindow::Day => (900_000, 96),
        };
        let end = (now_ms.div_euclid(bucket_ms) + 1) * bucket_ms;
        Self { start_ms: end - count * bucket_ms, bucket_ms, count }
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.count * self.bucket_ms
    }
}

/// Every protocol's buckets from its counted minutes.
pub fn assemble(span: Span, protocols: &[String], minutes: impl Fn(&str) -> Vec<Minute>) -> Vec<ProtocolStats> {
    let mut names: Vec<String> = protocols.to_vec();
    names.sort();
    names.dedup();
    names.into_iter().map(|protocol| one_protocol(span, protocol, &minutes)).collect()
}

fn one_protocol(span: Span, protocol: String, minutes: &impl Fn(&str) -> Vec<Minute>) -> ProtocolStats {
    let mut buckets: Vec<Bucket> = (0..span.count)
        .map(|i| Bucket { start_ms: span.start_ms + i * span.bucket_ms, accepted: 0, rejected: 0, failed: 0 })
        .collect();
    for m in minutes(&protocol) {
        let at = (m.minute * 60_000 - span.start_ms).div_euclid(span.bucket_ms);
        if let Some(slot) = usize::try_from(at).ok().and_then(|i| buckets.get_mut(i)) {
            slot.accepted += m.accepted;
            slot.rejected += m.rejected;
            slot.failed += m.failed;
        }
    }
    let totals = buckets.iter().fold(Counts::default(), |t, b| Counts {
        accepted: t.accepted + b.accepted,
        rejected: t.rejected + b.rejected,
        failed: t.failed + b.failed,
    });
    ProtocolStats { protocol, buckets, totals }
}

#[OpenApi]
impl StatsApi {
    /// Accepted, rejected and failed requests per protocol over the last hour or day.
    /// Rejected counts restart with the server (refused requests are not journaled).
    #[oai(path = "/api/stats", method = "get")]
    async fn stats(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        /// hour (60 × 1 min, the default) or day (96 × 15 min)
        window: Query<Option<StatsWindow>>,
    ) -> Result<Json<Stats>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let span = Span::of(window.0.unwrap_or(StatsWindow::Hour), now_ms());
        let outcomes = &state.pipeline.activity.outcomes;
        let protocols = assemble(span, &self.protocols, |p| outcomes.minutes(p, span.start_ms, span.end_ms()));
        Ok(Json(Stats { bucket_seconds: (span.bucket_ms / 1000) as u64, protocols }))
    }

    /// Every source and when it last sent a journaled request, with its usual interval and
    /// whether it is overdue (at most 1,000 sources are tracked).
    #[oai(path = "/api/sources", method = "get")]
    async fn sources(&self, req: &poem::Request, auth: AdminAuth) -> Result<Json<Vec<SourceStatus>>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let now = now_ms();
        // Sorted by protocol and source.
        let seen = state.pipeline.activity.sources.snapshot();
        let shown = seen.into_iter().map(|s| {
            let (last, interval_s) = (s.last_ms(), median_gap_s(&s.recent));
            SourceStatus {
                protocol: s.protocol,
                source: s.source,
                last_seen_at: rfc3339_millis(last),
                last_seen_ms: last,
                interval_s,
                stale: is_stale(last, interval_s, now),
            }
        });
        Ok(Json(shown.collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_ends_with_the_current_bucket() {
        let span = Span::of(StatsWindow::Day, 1_000 * 900_000 + 5);
        assert_eq!((span.bucket_ms, span.count), (900_000, 96));
        assert_eq!(span.end_ms(), 1_001 * 900_000);
        assert_eq!(Span::of(StatsWindow::Hour, 120_000).start_ms, 180_000 - 3_600_000);
    }

    #[test]
    fn minutes_land_in_their_buckets() {
        let span = Span { start_ms: 0, bucket_ms: 900_000, count: 96 };
        let minutes = |p: &str| match p {
            "gridx" => vec![
                Minute { minute: 30, accepted: 3, rejected: 0, failed: 1 },
                Minute { minute: 31, accepted: 0, rejected: 4, failed: 2 },
                Minute { minute: 99_999, accepted: 1, rejected: 9, failed: 0 },
            ],
            _ => Vec::new(),
        };
        let all = assemble(span, &["wattmon".into(), "gridx".into()], minutes);
        assert_eq!(all.iter().map(|p| p.protocol.as_str()).collect::<Vec<_>>(), ["gridx", "wattmon"]);
        let gridx = &all[0];
        assert_eq!(gridx.buckets[2], Bucket { start_ms: 1_800_000, accepted: 3, rejected: 4, failed: 3 });
        assert_eq!(gridx.totals, Counts { accepted: 3, rejected: 4, failed: 3 }, "a minute outside is left out");
        assert_eq!(all[1].totals, Counts::default());
    }
}
