//! The live log as Server-Sent Events (`GET /api/log/stream`): new entries as `event:
//! entries` messages (at most one per [`INTERVAL`], each with at most [`MAX_ENTRIES`] of them,
//! newest first, and the count of those left out), a comment line every 15 s, and `event:
//! lagged` when this reader fell behind the feed (its page then reloads the first page).
//! Entries come from the journal's bounded broadcast, one batch per commit: a slow browser
//! only lags, it never holds up a sender; a busy feed costs a reader a few writes a second,
//! and each entry is serialised once however many readers show it.

use std::time::Duration;

use futures_util::stream::BoxStream;
use poem::web::sse::Event;
use poem_openapi::param::Query;
use poem_openapi::payload::EventStream;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{Object, OpenApi};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;

use super::log::{FilterParams, LogEntry, filter};
use super::params::LogStatus;
use super::{AdminAuth, AdminError, Shared, guard};
use crate::store::journal::log::LogFilter;
use crate::store::journal::{FeedBatch, FeedEntry};

/// A reader sends at most one message per this interval; what arrives meanwhile waits.
const INTERVAL: Duration = Duration::from_millis(200);
/// Entries in one message at most (a browser cannot show thousands a second anyway).
const MAX_ENTRIES: usize = 200;

/// The live log's endpoint.
pub struct StreamApi {
    pub state: Shared,
}

/// An `event: entries` message.
#[derive(Object)]
pub struct LiveEntries {
    /// New entries, newest first (as in `GET /api/log`).
    pub entries: Vec<LogEntry>,
    /// Entries that arrived in the same interval but were left out (older than these);
    /// `GET /api/log` lists them.
    pub skipped: u64,
}

/// What a reader sends: a message of entries as JSON, or `None`: it lagged and missed some.
pub struct Item(Option<String>);

impl Type for Item {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        LiveEntries::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        LiveEntries::schema_ref()
    }

    fn register(registry: &mut Registry) {
        LiveEntries::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ToJSON for Item {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.as_deref().and_then(|json| serde_json::from_str(json).ok())
    }
}

fn to_event(item: Item) -> Event {
    match item.0 {
        Some(json) => Event::message(json).event_type("entries"),
        None => Event::message("{}").event_type("lagged"),
    }
}

/// One reader's state: its receiver, its filter, and when it may send next.
struct Reader {
    rx: Receiver<FeedBatch>,
    filter: LogFilter,
    next_at: Instant,
}

/// What the feed held for a reader: batches in commit order, or that it missed some.
enum Drained {
    Batches(Vec<FeedBatch>),
    Lagged,
    Closed,
}

impl Reader {
    /// Waits for the first batch, then for the reader's next turn, and takes all there is.
    async fn drain(&mut self) -> Drained {
        let first = match self.rx.recv().await {
            Ok(batch) => batch,
            Err(RecvError::Lagged(_)) => return Drained::Lagged,
            Err(RecvError::Closed) => return Drained::Closed,
        };
        tokio::time::sleep_until(self.next_at).await;
        let mut batches = vec![first];
        loop {
            match self.rx.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return Drained::Batches(batches),
                Err(TryRecvError::Lagged(_)) => return Drained::Lagged,
            }
        }
    }

    /// The next message (`None` once the feed closed).
    async fn next(&mut self) -> Option<Item> {
        loop {
            let batches = match self.drain().await {
                Drained::Batches(batches) => batches,
                Drained::Lagged => return Some(Item(None)),
                Drained::Closed => return None,
            };
            let admitted: Vec<&FeedEntry> =
                batches.iter().flat_map(|b| b.iter()).filter(|e| self.filter.admits(&e.row)).collect();
            if !admitted.is_empty() {
                self.next_at = Instant::now() + INTERVAL;
                return Some(Item(Some(message(&admitted))));
            }
        }
    }
}

/// The newest [`MAX_ENTRIES`] of `admitted` (oldest first) as one `entries` message.
fn message(admitted: &[&FeedEntry]) -> String {
    let skipped = admitted.len().saturating_sub(MAX_ENTRIES);
    let mut json = String::from("{\"entries\":[");
    for (n, entry) in admitted[skipped..].iter().rev().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push_str(entry.rendered(|row| LogEntry::from(row).to_json_string()));
    }
    json.push_str(&format!("],\"skipped\":{skipped}}}"));
    json
}

fn entries(rx: Receiver<FeedBatch>, filter: LogFilter) -> BoxStream<'static, Item> {
    let reader = Reader { rx, filter, next_at: Instant::now() };
    let stream = futures_util::stream::unfold(reader, |mut reader| async move {
        let item = reader.next().await?;
        Some((item, reader))
    });
    Box::pin(stream)
}

#[OpenApi]
impl StreamApi {
    /// New log entries as they arrive (Server-Sent Events).
    ///
    /// `event: entries`: at most one message per 200 ms, at most 200 entries each, newest
    /// first, with the count of those left out; `event: lagged` after missed ones.
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
