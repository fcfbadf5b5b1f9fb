//! The console's live log: journaled events and refused requests in one list, newest first
//! (`GET /api/log`, a keyset cursor for stable paging), and one refused request in full
//! (`GET /api/rejected/:id`: the client, the masked URL and headers, which check refused it
//! and why, the first 4 KiB of the body when it was read).

use base64::Engine as _;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::params::{LogStatus, Time};
use super::{AdminAuth, AdminError, HeaderField, Shared, guard, internal, message};
use crate::event::rfc3339_millis;
use crate::store::journal::log::{self, Cursor, LogFilter, LogRow};
use crate::store::journal::rejected;

/// The log's endpoints.
pub struct LogApi {
    pub state: Shared,
}

/// One line of the log: an event of an accepted request, or a refused request.
#[derive(Object, Clone)]
pub struct LogEntry {
    /// `event` or `rejected`.
    pub kind: String,
    /// The event id, or the refused request's id.
    pub id: i64,
    pub request_id: Option<i64>,
    pub received_at: String,
    pub received_ms: i64,
    pub protocol: String,
    pub operation: String,
    /// Tenant, device or user that sent it (empty when unknown).
    pub source: String,
    /// The idempotency key.
    pub key: Option<String>,
    /// processed, failed, duplicate, superseded or rejected.
    pub status: String,
    /// The HTTP status of the reply.
    pub reply_status: u16,
    /// Request body bytes.
    pub size: u64,
    /// The failure, or why the request was refused.
    pub error: Option<String>,
}

impl From<&LogRow> for LogEntry {
    fn from(r: &LogRow) -> Self {
        Self {
            kind: r.kind.as_str().into(),
            id: r.id,
            request_id: r.request_id,
            received_at: rfc3339_millis(r.received_ms),
            received_ms: r.received_ms,
            protocol: r.protocol.clone(),
            operation: r.operation.clone(),
            source: r.source.clone(),
            key: r.key.clone(),
            status: r.status.clone(),
            reply_status: r.reply_status,
            size: r.size,
            error: r.error.clone(),
        }
    }
}

/// A page of the log.
#[derive(Object)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// The cursor of the next (older) page, for `before`; none on the last page.
    pub next: Option<String>,
}

/// A refused request in full.
#[derive(Object)]
pub struct RejectedDetail {
    pub entry: LogEntry,
    /// The client's address (behind trusted proxies: the forwarded one).
    pub client: String,
    /// The URL path and query as received, secrets masked.
    pub path: String,
    /// Which check refused it: a spec block (`hmac`, `api-key-header`, …) or a step of the
    /// server (`schema`, `body-limit`, `media-type`, `method`, `lockout`, `https`, …).
    pub check: String,
    /// What the client was told.
    pub reason: String,
    /// The request's headers, secrets masked.
    pub headers: Vec<HeaderField>,
    /// The first 4 KiB of the body, when it was read (never for a request refused before).
    pub body_base64: Option<String>,
    pub body_truncated: bool,
}

/// The filter fields of the log, as received.
#[derive(Default)]
pub struct FilterParams {
    pub protocol: Option<String>,
    pub source: Option<String>,
    pub status: Option<LogStatus>,
    pub since: Option<Time>,
    pub until: Option<Time>,
    pub q: Option<String>,
}

/// The filter `params` describe.
pub fn filter(params: FilterParams) -> LogFilter {
    let rejected_only = params.status == Some(LogStatus::Rejected);
    let status = params.status.and_then(LogStatus::event);
    LogFilter {
        protocol: params.protocol.filter(|p| !p.is_empty()),
        source: params.source,
        status,
        rejected_only,
        since_ms: params.since.map(|t| t.0),
        until_ms: params.until.map(|t| t.0),
        q: params.q,
        before: None,
        limit: 50,
    }
}

#[OpenApi]
impl LogApi {
    /// The log: events and refused requests, newest first, filtered; page with `before`.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/api/log", method = "get")]
    async fn log(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        protocol: Query<Option<String>>,
        source: Query<Option<String>>,
        status: Query<Option<LogStatus>>,
        since: Query<Option<Time>>,
        until: Query<Option<Time>>,
        /// An event id, a request id, or the start of an idempotency key
        q: Query<Option<String>>,
        /// The `next` of the previous page
        #[oai(validator(pattern = r"^-?[0-9]{1,18}\.[01]\.-?[0-9]{1,18}$"))]
        before: Query<Option<String>>,
        /// At most this many (default 50, at most 500)
        limit: Query<Option<u32>>,
    ) -> Result<Json<LogPage>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let params = FilterParams {
            protocol: protocol.0,
            source: source.0,
            status: status.0,
            since: since.0,
            until: until.0,
            q: q.0,
        };
        let mut filter = filter(params);
        filter.limit = i64::from(limit.0.unwrap_or(50).clamp(1, 500));
        filter.before = before
            .0
            .map(|b| b.parse::<Cursor>())
            .transpose()
            .map_err(|e| AdminError::BadRequest(message(format!("before: {e}"))))?;
        let journal = state.pipeline.journal.clone();
        let (rows, next) = tokio::task::spawn_blocking(move || {
            let conn = journal.reader()?;
            log::list(&conn, &filter)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        Ok(Json(LogPage { entries: rows.iter().map(LogEntry::from).collect(), next: next.map(|c| c.to_string()) }))
    }

    /// One refused request: client, masked URL and headers, the check and the reason, the body.
    #[oai(path = "/api/rejected/:id", method = "get")]
    async fn rejected(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> Result<Json<RejectedDetail>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let conn = state.pipeline.journal.reader().map_err(internal)?;
        let found = rejected::read(&conn, id.0).map_err(internal)?;
        let (id, r) = found.ok_or_else(|| AdminError::NotFound(message(format!("no refused request {}", id.0))))?;
        Ok(Json(detail(id, r)))
    }
}

fn detail(id: i64, r: rejected::RejectedRecord) -> RejectedDetail {
    let entry = LogEntry {
        kind: "rejected".into(),
        id,
        request_id: None,
        received_at: rfc3339_millis(r.received_ms),
        received_ms: r.received_ms,
        protocol: r.protocol,
        operation: r.operation,
        source: String::new(),
        key: None,
        status: "rejected".into(),
        reply_status: r.reply_status,
        size: r.size,
        error: Some(r.reason.clone()),
    };
    RejectedDetail {
        entry,
        client: r.client,
        path: r.path,
        check: r.check,
        reason: r.reason,
        headers: r.headers.into_iter().map(|(name, value)| HeaderField { name, value }).collect(),
        body_base64: r.body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        body_truncated: r.body_truncated,
    }
}
