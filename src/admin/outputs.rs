//! The health view's state of the outputs (`/api/outputs`: deliveries and failures since
//! start, the last error) and of the journal (`/api/journal`: size, counts, oldest request,
//! retention as configured).

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::{AdminAuth, AdminError, Shared, guard, internal};
use crate::event::rfc3339_millis;
use crate::output::OutputSettings;
use crate::store::journal::retention::Retention;
use crate::store::journal::{JournalError, backfill, stats};

/// The outputs and journal part of the management API.
pub struct OutputsApi {
    pub state: Shared,
    /// The outputs shown: `(kind, name)`, names without credentials.
    pub outputs: Vec<(&'static str, String)>,
    pub retention: Retention,
}

/// The configured outputs, named without secrets: SQL when tables are declared, MQTT when a
/// broker is configured, HTTP always (scripts may post without configuration).
pub fn configured(settings: &OutputSettings) -> Vec<(&'static str, String)> {
    let mut shown = Vec::new();
    if !settings.sql.tables.is_empty() {
        let name = match &settings.sql.url {
            Some(url) if !url.0.is_empty() => "PostgreSQL".to_owned(),
            _ => format!("SQLite {}", settings.sql.sqlite_file.as_deref().unwrap_or("hookyard.db")),
        };
        shown.push(("sql", name));
    }
    if let Some(mqtt) = &settings.mqtt {
        shown.push(("mqtt", format!("broker {}:{}", mqtt.host, mqtt.port)));
    }
    shown.push(("http", "http_post".to_owned()));
    shown
}

/// One output's deliveries since the server started.
#[derive(Object)]
pub struct OutputStatus {
    pub name: String,
    /// sql, mqtt or http.
    pub kind: String,
    /// SQL: request transactions; MQTT and HTTP: messages.
    pub delivered: u64,
    pub failed: u64,
    /// The last failure (URLs without credentials or query strings).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// Retention as configured (`[journal]`).
#[derive(Object)]
pub struct RetentionShown {
    /// Requests older than this are pruned (none: kept).
    pub days: Option<f64>,
    /// The oldest requests are pruned while the journal is larger (none: no limit).
    pub max_mb: Option<f64>,
    /// New work is refused below this much free disk.
    pub min_free_disk_mb: f64,
    pub prune_interval_ms: u64,
}

/// The journal now.
#[derive(Object)]
pub struct JournalStatus {
    /// On disk, its write-ahead log included.
    pub bytes: u64,
    pub requests: u64,
    pub events: u64,
    /// Requests refused since the server started (refused requests are not journaled).
    pub rejected: u64,
    pub oldest_at: Option<String>,
    pub oldest_ms: Option<i64>,
    pub retention: RetentionShown,
    /// The readings index's backfill of requests journaled before it (or before its hour
    /// level): `indexing` while it runs in the background, then `ready`.
    pub readings_index: ReadingsIndexShown,
}

/// How far the readings index has indexed the journal's earlier requests.
#[derive(Object)]
pub struct ReadingsIndexShown {
    /// `ready` or `indexing`.
    pub state: String,
    /// Request ids up to this one are indexed.
    pub requests_done: u64,
    /// The last request id to index.
    pub requests_total: u64,
    /// Readings the backfill added.
    pub readings_added: u64,
}

#[OpenApi]
impl OutputsApi {
    /// Each output's deliveries and failures since the server started, with the last error.
    #[oai(path = "/api/outputs", method = "get")]
    async fn outputs(&self, req: &poem::Request, auth: AdminAuth) -> Result<Json<Vec<OutputStatus>>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let health = &state.pipeline.outputs.health;
        let shown = self.outputs.iter().map(|(kind, name)| {
            let s = health.status(kind);
            let (last_error, last_ms) = s.last_error.map_or((None, None), |(text, at)| (Some(text), Some(at)));
            OutputStatus {
                name: name.clone(),
                kind: (*kind).to_owned(),
                delivered: s.delivered,
                failed: s.failed,
                last_error,
                last_error_at: last_ms.map(rfc3339_millis),
                last_error_ms: last_ms,
            }
        });
        Ok(Json(shown.collect()))
    }

    /// The journal's size, its requests and events, the oldest request and the retention.
    #[oai(path = "/api/journal", method = "get")]
    async fn journal(&self, req: &poem::Request, auth: AdminAuth) -> Result<Json<JournalStatus>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let journal = state.pipeline.journal.clone();
        let (totals, backfill) = tokio::task::spawn_blocking(move || {
            let conn = journal.reader()?;
            Ok::<_, JournalError>((stats::totals(&conn)?, backfill::progress(&conn)?))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let backfill = backfill.unwrap_or(backfill::Progress { next: 0, last: 0, indexed: 0 });
        let r = &self.retention;
        Ok(Json(JournalStatus {
            bytes: state.pipeline.metrics.journal_size(),
            requests: totals.requests,
            events: totals.events,
            rejected: state.pipeline.activity.outcomes.rejected_total(),
            oldest_at: totals.oldest_ms.map(rfc3339_millis),
            oldest_ms: totals.oldest_ms,
            retention: RetentionShown {
                days: r.max_age_days,
                max_mb: r.max_size_mb,
                min_free_disk_mb: r.min_free_disk_mb,
                prune_interval_ms: r.prune_interval_ms,
            },
            readings_index: ReadingsIndexShown {
                state: if backfill.done() { "ready" } else { "indexing" }.to_owned(),
                requests_done: backfill.next.min(backfill.last).max(0) as u64,
                requests_total: backfill.last.max(0) as u64,
                readings_added: backfill.indexed,
            },
        }))
    }
}
