//! The live log as Server-Sent Events (`GET /api/log/stream`): each new entry as `event:
//! entry`, a comment line every 15 s, and `event: lagged` when this reader fell behind the
//! feed (its page then reloads the first page). Entries come from the journal's bounded
//! broadcast, fed after each commit: a slow browser only lags, it never holds up a sender.

use std::time::Duration;

use futures_util::stream::BoxStream;
use poem::web::sse::Event;
use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::EventStream;
use poem_openapi::types::ToJSON;
use tokio::sync::broadcast::error::RecvError;

use super::log::{FilterParams, LogEntry, filter};
use super::params::LogStatus;
use super::{AdminAuth, AdminError, Shared, guard};
use crate::store::journal::log::LogFilter;

/// The live log's endpoint.
pub struct StreamApi {
    pub state: Shared,
}

/// A new entry, or `None`: the reader lagged and missed some.
type Item = Option<LogEntry>;

fn to_event(item: Item) -> Event {
    match item {
        Some(entry) => Event::message(entry.to_json_string()).event_type("entry"),
        None => Event::message("{}").event_type("lagged"),
    }
}

fn entries(
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::store::journal::LogRow>>,
    f: LogFilter,
) -> BoxStream<'static, Item> {
    let stream = futures_util::stream::unfold((rx, f), |(mut rx, f)| async move {
        loop {
            match rx.recv().await {
                Ok(row) if f.admits(&row) => return Some((Some(LogEntry::from(row.as_ref())), (rx, f))),
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return Some((None, (rx, f))),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Box::pin(stream)
}

#[OpenApi]
impl StreamApi {
    /// New log entries as they arrive (`event: entry`; `event: lagged` after missed ones).
    #[oai(path = "/api/log/stream", method = "get")]
    async fn stream(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        protocol: Query<Option<String>>,
        source: Query<Option<String>>,
        status: Query<Option<LogStatus>>,
    ) -> Result<EventStream<BoxStream<'static, Item>>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let params =
            FilterParams { protocol: protocol.0, source: source.0, status: status.0, ..FilterParams::default() };
        let f = filter(params);
        let rx = state.pipeline.journal.subscribe();
        Ok(EventStream::new(entries(rx, f)).keep_alive(Duration::from_secs(15)).to_event(to_event))
    }
}
