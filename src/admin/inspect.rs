//! The inspector of one event: the request as received (headers masked), its verdict, its
//! reply status, the other events of its request, what was written (`GET /api/events/:id`);
//! a dry run of the current scripts over its request with before and after per file (`POST
//! /api/events/:id/dry-run`, writes nothing); the request as a curl command line with
//! secrets as placeholders (`GET /api/events/:id/curl`); and as a test fixture (`GET
//! /api/events/:id/fixture`).

use base64::Engine as _;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::dry::DryRunResult;
use super::{AdminAuth, AdminError, AdminState, EventSummary, HeaderField, Shared, guard, internal, message};
use crate::store::Effect;
use crate::store::journal::query::{self, Detail};
use crate::store::journal::written::Written;

/// The inspector's endpoints.
pub struct InspectApi {
    pub state: Shared,
}

/// One write of a request's scripts.
#[derive(Object)]
pub struct EffectView {
    /// The file, relative to the data directory.
    pub path: String,
    /// `append` or `write`.
    pub kind: String,
    /// Bytes written.
    pub size: u64,
    /// Where the bytes begin in the file (once checkpointed).
    pub offset: Option<u64>,
    /// The first 16 bytes of the bytes' SHA-256, hex (once checkpointed).
    pub digest: Option<String>,
    /// The bytes written, when they are UTF-8 text and still to be had (from the journal
    /// until their checkpoint, then read back from the file while it holds them).
    pub text: Option<String>,
}

fn effect_view(w: &Written) -> EffectView {
    EffectView {
        path: w.path.clone(),
        kind: w.kind.into(),
        size: w.size,
        offset: w.at,
        digest: w.digest.clone(),
        text: w.bytes.as_ref().and_then(|b| String::from_utf8(b.clone()).ok()),
    }
}

/// What was written, as effects (those whose bytes can still be had), for the dry run's
/// "before".
fn as_effects(written: &[Written]) -> Vec<Effect> {
    let effect = |w: &Written| {
        let bytes = w.bytes.clone()?;
        Some(match w.kind {
            "write" => Effect::Write { path: w.path.clone(), bytes },
            _ => Effect::Append { path: w.path.clone(), header: None, bytes },
        })
    };
    written.iter().filter_map(effect).collect()
}

/// One event in full: the raw request, how it was verified, the event and the script outcome.
#[derive(Object)]
pub struct EventDetail {
    pub event: EventSummary,
    /// Which checks the request passed.
    pub verification: String,
    /// The headers the journal keeps; credentials masked.
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
    pub effects: Vec<EffectView>,
    /// The client's address.
    pub client: String,
    /// For a duplicate: the event that processed its key. A request that brought nothing new
    /// keeps no body of its own (its original has it).
    pub duplicate_of: Option<i64>,
    /// The HTTP status of the reply.
    pub reply_status: u16,
    /// The method and the URL path as received (query secrets masked).
    pub method: String,
    pub path: String,
    /// The request's other events, with their outcomes.
    pub siblings: Vec<EventSummary>,
}

fn event_detail(d: Detail, siblings: Vec<EventSummary>) -> EventDetail {
    EventDetail {
        event: d.summary.into(),
        verification: d.verification,
        headers: d.headers.into_iter().map(|(name, value)| HeaderField { name, value }).collect(),
        body_text: String::from_utf8(d.body.clone()).ok(),
        body_base64: base64::engine::general_purpose::STANDARD.encode(&d.body),
        data: d.data,
        data_problem: d.data_problem,
        logs: d.logs,
        effects: d.written.iter().map(effect_view).collect(),
        client: d.client,
        duplicate_of: d.duplicate_of,
        reply_status: d.reply_status,
        method: d.method,
        path: d.path,
        siblings,
    }
}

/// The test fixture of a request: what was sent and what came of it.
#[derive(Object)]
pub struct Fixture {
    pub protocol: String,
    pub operation: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<FixtureHeader>,
    pub body_base64: String,
    pub expected: Expected,
}

/// A header of a fixture (credentials masked).
#[derive(Object)]
pub struct FixtureHeader {
    pub name: String,
    pub value: String,
}

/// What the request brought: the reply status and its events.
#[derive(Object)]
pub struct Expected {
    pub status: u16,
    pub events: Vec<serde_json::Value>,
}

/// The fixture as a download.
#[derive(ApiResponse)]
pub enum FixtureDownload {
    /// The fixture, named `<protocol>-<id>.json`.
    #[oai(status = 200)]
    Ok(Json<Fixture>, #[oai(header = "Content-Disposition")] String),
}

fn not_found(id: i64) -> AdminError {
    AdminError::NotFound(message(format!("no event {id}")))
}

/// The event's detail and its request's events.
async fn load(state: &AdminState, id: i64) -> Result<(Detail, Vec<query::Summary>), AdminError> {
    let (journal, splits) = (state.pipeline.journal.clone(), state.splits.clone());
    let found = tokio::task::spawn_blocking(move || {
        let conn = journal.reader()?;
        let Some(detail) = query::detail(&conn, journal.data(), splits.as_ref(), id)? else { return Ok(None) };
        let siblings = query::siblings(&conn, detail.summary.request_id)?;
        Ok::<_, crate::store::journal::JournalError>(Some((detail, siblings)))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let (mut detail, siblings) = found.ok_or_else(|| not_found(id))?;
    // Journals written before credentials were masked on the way in are masked on the way
    // out; credentials are kept as empty values.
    for (name, value) in &mut detail.headers {
        *value = match crate::ingest::mask::value(name, value, &[]) {
            shown if shown.is_empty() => crate::ingest::mask::MASK.to_owned(),
            shown => shown,
        };
    }
    // The operation's own method and route are not journaled a second time.
    if let Some((method, route)) = state.splits.route(&detail.summary.protocol, &detail.summary.operation) {
        if detail.method.is_empty() {
            detail.method = method;
        }
        if detail.path.is_empty() {
            detail.path = route;
        }
    }
    Ok((detail, siblings))
}

#[OpenApi]
impl InspectApi {
    /// One event: raw request (headers masked), verification, reply status, payload, log
    /// lines, what was written, and its request's other events.
    #[oai(path = "/api/events/:id", method = "get")]
    async fn show_event(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> Result<Json<EventDetail>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (detail, siblings) = load(state, id.0).await?;
        let others = siblings.into_iter().filter(|s| s.id != id.0).map(EventSummary::from).collect();
        Ok(Json(event_detail(detail, others)))
    }

    /// What the current scripts would write for the event's request, beside what was written
    /// (writes nothing, delivers nothing).
    #[oai(path = "/api/events/:id/dry-run", method = "post")]
    async fn dry_run(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> Result<Json<DryRunResult>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (detail, _) = load(state, id.0).await?;
        let (journal, scripts, splits) =
            (state.pipeline.journal.clone(), state.pipeline.scripts.clone(), state.splits.clone());
        let request_id = detail.summary.request_id;
        let report = tokio::task::spawn_blocking(move || {
            let conn = journal.reader()?;
            let items = query::of_request(&conn, splits.as_ref(), request_id)?;
            Ok::<_, crate::store::journal::JournalError>(super::dry::run(&scripts, &items))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let report = report.ok_or_else(|| {
            AdminError::BadRequest(message(format!("event {} has no processed or failed event to run again", id.0)))
        })?;
        Ok(Json(super::dry::result(&as_effects(&detail.written), report)))
    }

    /// The request as a curl command line (credentials as `$HOOKYARD_…` placeholders).
    #[oai(path = "/api/events/:id/curl", method = "get")]
    async fn curl(&self, req: &poem::Request, auth: AdminAuth, id: Path<i64>) -> Result<PlainText<String>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (detail, _) = load(state, id.0).await?;
        let host = req.header("host").unwrap_or("127.0.0.1:8080").to_owned();
        Ok(PlainText(super::curl::command(&detail, &host)))
    }

    /// The request as a test fixture (JSON download).
    #[oai(path = "/api/events/:id/fixture", method = "get")]
    async fn fixture(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> Result<FixtureDownload, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let (detail, siblings) = load(state, id.0).await?;
        let conn = state.pipeline.journal.reader().map_err(internal)?;
        let mut events = Vec::new();
        for s in &siblings {
            let (data, splits) = (state.pipeline.journal.data(), state.splits.as_ref());
            if let Some(d) = query::detail(&conn, data, splits, s.id).map_err(internal)? {
                events.push(d.data);
            }
        }
        let name = format!("{}-{}.json", detail.summary.protocol, id.0);
        let fixture = Fixture {
            protocol: detail.summary.protocol.clone(),
            operation: detail.summary.operation.clone(),
            method: detail.method.clone(),
            path: detail.path.clone(),
            headers: detail
                .headers
                .iter()
                .map(|(name, value)| FixtureHeader { name: name.clone(), value: value.clone() })
                .collect(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&detail.body),
            expected: Expected { status: detail.reply_status, events },
        };
        Ok(FixtureDownload::Ok(Json(fixture), format!("attachment; filename=\"{name}\"")))
    }
}
