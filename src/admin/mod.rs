//! The management API: `/healthz` (open), the console's log-in (`session.rs`), and behind the
//! `[admin] token` (or a session) the journal's events (list, inspect, replay one or many), the
//! meter series (`meters.rs`), `/metrics`, the health figures (`stats.rs`: requests per
//! protocol over time and sources last seen; `outputs.rs`: outputs and the journal) and each
//! protocol's setup (`setup.rs`, what it shows in `describe.rs`, its test requests in
//! `samples.rs`).
//!
//! Typed with poem-openapi (so it is in the Swagger UI), the token compared in constant time;
//! without a token configured, the protected part answers 404 "disabled". Replays run inside
//! the server through the same pipeline and journal writer as requests.

mod bulk;
mod curl;
pub mod describe;
mod dry;
pub mod guard;
pub mod health;
pub mod inspect;
pub mod log;
pub mod meters;
pub mod outputs;
pub mod params;
pub mod samples;
pub mod session;
pub mod sessions;
pub mod setup;
pub mod stats;
pub mod stream;

use std::sync::Arc;

use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, ResponseContent};

pub use guard::{AdminAuth, AdminError, AdminState, ApiMessage, Shared, guard, internal, message};

use crate::event::rfc3339_millis;
use crate::ingest::Pipeline;
use crate::replay::{Replayed, Tally, replay_event};
use crate::store::journal::Status;
use crate::store::journal::query::{self, Filter, ListFilter, Summary};
use params::{EventStatus, ReplayStatus, Time};

/// The management API (disabled when `state` holds `None`).
pub struct Admin {
    pub state: Shared,
}

/// One journaled event, in brief.
#[derive(Object)]
pub struct EventSummary {
    pub id: i64,
    pub request_id: i64,
    pub protocol: String,
    pub operation: String,
    /// Tenant, device or user that sent it (empty when the protocol has none).
    pub source: String,
    pub received_at: String,
    /// Position within its request.
    pub index: i64,
    /// processed, failed, duplicate or superseded.
    pub status: String,
    pub error: Option<String>,
}

impl From<Summary> for EventSummary {
    fn from(s: Summary) -> Self {
        Self {
            id: s.id,
            request_id: s.request_id,
            protocol: s.protocol,
            operation: s.operation,
            source: s.source,
            received_at: rfc3339_millis(s.received_ms),
            index: s.index,
            status: s.status.to_string(),
            error: s.error,
        }
    }
}

/// A request header the journal keeps.
#[derive(Object)]
pub struct HeaderField {
    pub name: String,
    pub value: String,
}

/// The outcome of replaying one event.
#[derive(Object)]
pub struct ReplayResult {
    /// The event in this instance's journal (0 for an event of another instance).
    pub event_id: i64,
    /// With a shared journal: the event in the cluster-wide ledger, when it came from there.
    pub ledger_id: Option<i64>,
    /// With a shared journal: the instance that received the event.
    pub instance: Option<String>,
    /// processed, failed or skipped.
    pub outcome: String,
    pub detail: Option<String>,
}

fn result(event_id: i64, r: Replayed) -> ReplayResult {
    let (outcome, detail) = match r {
        Replayed::Processed => ("processed", None),
        Replayed::Failed(why) => ("failed", Some(why)),
        Replayed::Skipped(why) => ("skipped", Some(why)),
    };
    ReplayResult { event_id, ledger_id: None, instance: None, outcome: outcome.into(), detail }
}

/// Which events to replay.
#[derive(Object)]
pub struct ReplayRequest {
    pub protocol: Option<String>,
    /// Received at or after (RFC 3339 or Unix milliseconds).
    pub since: Option<Time>,
    /// Received before (RFC 3339 or Unix milliseconds).
    pub until: Option<Time>,
    /// Only events whose processing failed (the same as `status: "failed"`).
    #[oai(default)]
    pub failed: bool,
    /// Only events from this tenant, device or user.
    pub source: Option<String>,
    /// `processed` or `failed` (the log's other statuses are never replayed).
    pub status: Option<ReplayStatus>,
    /// Only count and try: run the current scripts, write and deliver nothing.
    #[oai(default)]
    pub dry_run: bool,
}

/// The outcome of a replay over many events.
#[derive(Object)]
pub struct ReplaySummary {
    pub processed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// How many events the filter selected.
    pub count: u64,
    /// Whether this was a dry run (nothing written or delivered).
    pub dry_run: bool,
    /// Per event (the first 1,000).
    pub results: Vec<ReplayResult>,
}

/// The metrics: the Prometheus text format, or OpenMetrics when the `Accept` header asks.
#[derive(ResponseContent)]
pub enum MetricsText {
    #[oai(content_type = "text/plain; version=0.0.4; charset=utf-8")]
    Prometheus(PlainText<String>),
    #[oai(content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")]
    OpenMetrics(PlainText<String>),
}

/// The answer of `/metrics`.
#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Every metric, with the journal size read now.
    #[oai(status = 200)]
    Ok(MetricsText),
}

/// The management service (mounted at `/`): health, log-in, and the API behind the admin token.
pub type Service = OpenApiService<
    (
        health::HealthApi,
        session::SessionApi,
        Admin,
        meters::MetersApi,
        log::LogApi,
        stream::StreamApi,
        inspect::InspectApi,
        stats::StatsApi,
        outputs::OutputsApi,
        setup::SetupApi,
    ),
    (),
>;

/// The APIs of the health and setup views.
pub struct Views {
    pub stats: stats::StatsApi,
    pub outputs: outputs::OutputsApi,
    pub setup: setup::SetupApi,
}

/// Builds the management service.
pub fn service(health: health::HealthApi, sessions: session::SessionApi, admin: Admin, views: Views) -> Service {
    let meters = meters::MetersApi { state: admin.state.clone() };
    let (log, stream, inspect) = (
        log::LogApi { state: admin.state.clone() },
        stream::StreamApi { state: admin.state.clone() },
        inspect::InspectApi { state: admin.state.clone() },
    );
    OpenApiService::new(
        (health, sessions, admin, meters, log, stream, inspect, views.stats, views.outputs, views.setup),
        "hookyard management API",
        env!("CARGO_PKG_VERSION"),
    )
}

/// Replays the failed events other instances recorded in the shared ledger.
async fn replay_cluster_failed(
    pipeline: &Pipeline,
    shared: &Arc<crate::store::Shared>,
    protocol: Option<String>,
    tally: &mut Tally,
    results: &mut Vec<ReplayResult>,
) -> Result<(), AdminError> {
    let mut after = 0;
    loop {
        let (client, protocol) = (shared.clone(), protocol.clone());
        let page = tokio::task::spawn_blocking(move || client.failed_events(protocol.as_deref(), after, 500))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.id;
        for item in page.iter().filter(|e| e.instance != shared.instance) {
            let r = crate::replay::replay_foreign(pipeline, item).await;
            tally.add(&r);
            if results.len() < 1000 {
                let mut shown = result(0, r);
                (shown.ledger_id, shown.instance) = (Some(item.id), Some(item.instance.clone()));
                results.push(shown);
            }
        }
    }
}

#[OpenApi]
impl Admin {
    /// List journaled events, oldest first, filtered by protocol, source, status and time.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/events", method = "get")]
    async fn list_events(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        protocol: Query<Option<String>>,
        source: Query<Option<String>>,
        status: Query<Option<EventStatus>>,
        since: Query<Option<Time>>,
        until: Query<Option<Time>>,
        /// Only events with a larger id (paging)
        after: Query<Option<i64>>,
        /// At most this many (default 100, at most 1000)
        limit: Query<Option<u32>>,
    ) -> Result<Json<Vec<EventSummary>>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let filter = ListFilter {
            protocol: protocol.0,
            source: source.0,
            status: status.0.map(Status::from),
            since_ms: since.0.map(|t| t.0),
            until_ms: until.0.map(|t| t.0),
            after_id: after.0,
            limit: i64::from(limit.0.unwrap_or(100).clamp(1, 1000)),
        };
        let conn = state.pipeline.journal.reader().map_err(internal)?;
        let events = query::list(&conn, &filter).map_err(internal)?;
        Ok(Json(events.into_iter().map(EventSummary::from).collect()))
    }

    /// Prometheus metrics: requests, events, failures by kind, script time, journal size.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        /// `application/openmetrics-text` for OpenMetrics (as Prometheus asks)
        #[oai(name = "Accept")]
        accept: Header<Option<String>>,
    ) -> Result<MetricsResponse, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (content_type, text) = state.pipeline.metrics.exposition(accept.0.as_deref());
        Ok(MetricsResponse::Ok(if content_type == crate::metrics::OPENMETRICS {
            MetricsText::OpenMetrics(PlainText(text))
        } else {
            MetricsText::Prometheus(PlainText(text))
        }))
    }

    /// Run the current script again over one processed or failed event.
    #[oai(path = "/api/events/:id/replay", method = "post")]
    async fn replay_one(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> Result<Json<ReplayResult>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let item = {
            let conn = state.pipeline.journal.reader().map_err(internal)?;
            query::journaled(&conn, state.splits.as_ref(), id.0).map_err(internal)?
        };
        let item =
            item.ok_or_else(|| AdminError::NotFound(message(format!("no processed or failed event {}", id.0))))?;
        let r = replay_event(&state.pipeline, &item).await;
        Ok(Json(result(item.event_id, r)))
    }

    /// Run the current scripts again over every event matching the filter.
    #[oai(path = "/api/replay", method = "post")]
    async fn replay_many(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        request: Json<ReplayRequest>,
    ) -> Result<Json<ReplaySummary>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let request = request.0;
        let failed_only = request.failed || request.status == Some(ReplayStatus::Failed);
        let filter = Filter {
            protocol: request.protocol.clone(),
            since_ms: request.since.map(|t| t.0),
            until_ms: request.until.map(|t| t.0),
            failed_only,
            ..Filter::default()
        };
        let mut run = bulk::Run { dry_run: request.dry_run, ..bulk::Run::default() };
        let processed_only = request.status == Some(ReplayStatus::Processed);
        let mut after = 0;
        loop {
            let page = {
                let conn = state.pipeline.journal.reader().map_err(internal)?;
                query::page(&conn, state.splits.as_ref(), &filter, after).map_err(internal)?
            };
            let Some(last) = page.last() else { break };
            after = last.event_id;
            let chosen = page.iter().filter(|i| request.source.as_ref().is_none_or(|s| *s == i.event.source));
            for item in chosen.filter(|i| !processed_only || i.status == Status::Processed) {
                run.one(&state.pipeline, item).await;
            }
        }
        // With a shared journal, failed events other instances recorded are replayed here.
        if let (Some(shared), true, false) = (state.pipeline.shared.clone(), failed_only, request.dry_run) {
            let (tally, results) = (&mut run.tally, &mut run.results);
            replay_cluster_failed(&state.pipeline, &shared, request.protocol.clone(), tally, results).await?;
        }
        Ok(Json(run.summary()))
    }
}
