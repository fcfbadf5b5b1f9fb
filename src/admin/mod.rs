//! The management API: `/healthz` (open), and behind the `[admin] token` the journal's events
//! (list, inspect, replay one or many) and `/metrics`.
//!
//! Typed with poem-openapi (so it is in the Swagger UI), the token compared in constant time;
//! without a token configured, the protected part answers 404 "disabled". Replays run inside
//! the server through the same pipeline and journal writer as requests.

pub mod guard;
pub mod health;

use std::sync::Arc;

use base64::Engine as _;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, ResponseContent};

pub use guard::{AdminAuth, AdminError, AdminState, ApiMessage, Shared, guard, internal, message};

use crate::event::{parse_time, rfc3339_millis};
use crate::ingest::Pipeline;
use crate::replay::{Replayed, Tally, replay_event};
use crate::store::journal::Status;
use crate::store::journal::query::{self, Detail, Filter, ListFilter, Summary};

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

/// One file effect of a request: where its bytes are and, while the file holds them, what
/// they are.
#[derive(Object)]
pub struct WrittenEffect {
    pub path: String,
    /// `append` or `write`.
    pub kind: String,
    /// Where the bytes begin in the file (absent until the checkpoint that made them durable).
    pub offset: Option<u64>,
    pub size: u64,
    /// The first 16 bytes of the bytes' SHA-256, hex (once checkpointed).
    pub digest: Option<String>,
    /// The bytes, when UTF-8 text and still in the file (absent when the file changed).
    pub text: Option<String>,
}

impl From<crate::store::journal::written::Written> for WrittenEffect {
    fn from(w: crate::store::journal::written::Written) -> Self {
        Self {
            text: w.bytes.and_then(|b| String::from_utf8(b).ok()),
            path: w.path,
            kind: w.kind.to_owned(),
            offset: w.at,
            size: w.size,
            digest: w.digest,
        }
    }
}

/// One event in full: the raw request, how it was verified, the event and the script outcome.
#[derive(Object)]
pub struct EventDetail {
    pub event: EventSummary,
    /// Which checks the request passed.
    pub verification: String,
    pub headers: Vec<HeaderField>,
    /// The raw request body, when it is UTF-8 text.
    pub body_text: Option<String>,
    /// The raw request body, base64.
    pub body_base64: String,
    /// The event's payload as handed to the script (derived again from the body when the
    /// journal kept no copy of it; null, with `data_problem` saying why, when it cannot be).
    pub data: serde_json::Value,
    pub data_problem: Option<String>,
    /// What the script logged while handling this event.
    pub logs: Vec<String>,
    /// What the scripts wrote for the event's request.
    pub effects: Vec<String>,
    /// The same in full: path, kind, offset, size, digest and the text (read back from the
    /// file once the journal no longer holds it).
    pub written: Vec<WrittenEffect>,
    /// The client's address.
    pub client: String,
    /// For a duplicate: the event that processed its key. A request that brought nothing new
    /// keeps no body of its own (its original has it).
    pub duplicate_of: Option<i64>,
}

impl From<Detail> for EventDetail {
    fn from(d: Detail) -> Self {
        Self {
            event: d.summary.into(),
            verification: d.verification,
            headers: d.headers.into_iter().map(|(name, value)| HeaderField { name, value }).collect(),
            body_text: String::from_utf8(d.body.clone()).ok(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&d.body),
            data: d.data,
            data_problem: d.data_problem,
            logs: d.logs,
            effects: d.effects,
            written: d.written.into_iter().map(Into::into).collect(),
            client: d.client,
            duplicate_of: d.duplicate_of,
        }
    }
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
    pub since: Option<String>,
    /// Received before (RFC 3339 or Unix milliseconds).
    pub until: Option<String>,
    /// Only events whose processing failed.
    #[oai(default)]
    pub failed: bool,
}

/// The outcome of a replay over many events.
#[derive(Object)]
pub struct ReplaySummary {
    pub processed: u64,
    pub failed: u64,
    pub skipped: u64,
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

/// The management service (mounted at `/`): health, and the API behind the admin token.
pub type Service = OpenApiService<(health::HealthApi, Admin), ()>;

/// Builds the management service.
pub fn service(health: health::HealthApi, admin: Admin) -> Service {
    OpenApiService::new((health, admin), "hookyard management API", env!("CARGO_PKG_VERSION"))
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

fn time(param: Option<&str>, name: &str) -> Result<Option<i64>, AdminError> {
    param.map(parse_time).transpose().map_err(|e| AdminError::BadRequest(message(format!("{name}: {e}"))))
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
        /// processed, failed, duplicate or superseded
        status: Query<Option<String>>,
        /// RFC 3339 or Unix milliseconds
        since: Query<Option<String>>,
        /// RFC 3339 or Unix milliseconds
        until: Query<Option<String>>,
        /// Only events with a larger id (paging)
        after: Query<Option<i64>>,
        /// At most this many (default 100, at most 1000)
        limit: Query<Option<u32>>,
    ) -> Result<Json<Vec<EventSummary>>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let filter = ListFilter {
            protocol: protocol.0,
            source: source.0,
            status: status
                .0
                .map(|s| s.parse::<Status>())
                .transpose()
                .map_err(|e| AdminError::BadRequest(message(format!("status: {e}"))))?,
            since_ms: time(since.0.as_deref(), "since")?,
            until_ms: time(until.0.as_deref(), "until")?,
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

    /// One event: raw request, verification, payload, script log lines and what was written.
    #[oai(path = "/api/events/:id", method = "get")]
    async fn show_event(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> Result<Json<EventDetail>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let conn = state.pipeline.journal.reader().map_err(internal)?;
        let detail =
            query::detail(&conn, state.pipeline.journal.data(), state.splits.as_ref(), id.0).map_err(internal)?;
        detail.map(|d| Json(d.into())).ok_or_else(|| AdminError::NotFound(message(format!("no event {}", id.0))))
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
        let filter = Filter {
            protocol: request.0.protocol.clone(),
            since_ms: time(request.0.since.as_deref(), "since")?,
            until_ms: time(request.0.until.as_deref(), "until")?,
            failed_only: request.0.failed,
            only_id: None,
        };
        let (mut tally, mut results, mut after) = (Tally::default(), Vec::new(), 0);
        loop {
            let page = {
                let conn = state.pipeline.journal.reader().map_err(internal)?;
                query::page(&conn, state.splits.as_ref(), &filter, after).map_err(internal)?
            };
            let Some(last) = page.last() else { break };
            after = last.event_id;
            for item in &page {
                let r = replay_event(&state.pipeline, item).await;
                tally.add(&r);
                if results.len() < 1000 {
                    results.push(result(item.event_id, r));
                }
            }
        }
        // With a shared journal, failed events other instances recorded are replayed here.
        if let (Some(shared), true) = (state.pipeline.shared.clone(), request.0.failed) {
            replay_cluster_failed(&state.pipeline, &shared, request.0.protocol.clone(), &mut tally, &mut results)
                .await?;
        }
        Ok(Json(ReplaySummary {
            processed: tally.processed as u64,
            failed: tally.failed as u64,
            skipped: tally.skipped as u64,
            results,
        }))
    }
}
