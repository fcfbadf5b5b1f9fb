//! Events derived again from their request's raw body, instead of a second copy of them.
//!
//! A request records the digest of the spec version that split it (`requests.spec`); its
//! events keep no data. Reading one back splits the body again through its operation (the
//! split is deterministic for a spec version). When the spec has changed since, the body is
//! split by the current one and the event is used only if the split still gives it — same
//! position, same idempotency key; otherwise reading it says why. The store knows no specs:
//! the split is a [`Derive`] the caller passes in (`ingest::Splits`).

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::JournalError;
use super::texts::{HEADERS, SPEC};
use crate::event::Event;
use crate::spec::readings::{Reading, ReadingsSpec};

/// A journaled request, as far as splitting it again needs.
#[derive(Clone, Debug)]
pub struct Received {
    pub protocol: String,
    pub operation: String,
    pub source: String,
    pub received_ms: i64,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The digest of the spec version that split it.
    pub spec: String,
    /// The declared query parameters it came with.
    pub query: Vec<(String, String)>,
}

/// A request split again: its events, their idempotency keys, and the spec version used.
pub struct Derived {
    pub events: Vec<Event>,
    pub keys: Vec<Option<String>>,
    pub spec: String,
}

/// Splits a journaled request's body into its events with the current specs.
pub trait Derive {
    fn derive(&self, request: &Received) -> Result<Derived, String>;

    /// The `x-hookyard-readings` block of `operation` of `protocol` (none by default).
    fn readings(&self, _protocol: &str, _operation: &str) -> Option<&ReadingsSpec> {
        None
    }

    /// The protocols with an operation that declares readings.
    fn reading_protocols(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The meter readings of a processed `event` as its operation declares them, and whether
/// its raw body (`blob`: it has one) is the last image of its source.
pub fn readings_of(derive: &dyn Derive, event: &Event, blob: bool) -> (Vec<Reading>, bool) {
    let Some(spec) = derive.readings(&event.protocol, &event.operation) else { return (Vec::new(), false) };
    (spec.series.as_ref().map(|s| s.extract(event)).unwrap_or_default(), spec.image && blob)
}

/// Reads events back, splitting each request once (a page of a 100-row block reads its
/// body once, not 100 times).
pub struct Deriving<'a> {
    derive: &'a dyn Derive,
    last: Option<(i64, Received, Result<Derived, String>)>,
}

impl<'a> Deriving<'a> {
    pub fn new(derive: &'a dyn Derive) -> Self {
        Self { derive, last: None }
    }

    /// Event `index` of request `request_id` (journaled with `key`); the inner `Err` says why
    /// the body no longer gives it. A failed read of the journal is the outer error.
    pub fn event(
        &mut self,
        conn: &Connection,
        request_id: i64,
        index: usize,
        key: Option<&str>,
    ) -> Result<Result<Event, String>, JournalError> {
        if self.last.as_ref().is_none_or(|(id, ..)| *id != request_id) {
            let Some(request) = received(conn, request_id)? else {
                return Ok(Err(format!("request {request_id} is no longer in the journal")));
            };
            let derived = self.derive.derive(&request);
            self.last = Some((request_id, request, derived));
        }
        let Some((_, request, derived)) = &self.last else { return Ok(Err("no request".into())) };
        Ok(pick(request, derived.as_ref().map_err(Clone::clone), index, key))
    }
}

/// Event `index` of a split, when the split still gives the journaled event.
fn pick(
    request: &Received,
    derived: Result<&Derived, String>,
    index: usize,
    key: Option<&str>,
) -> Result<Event, String> {
    let derived = derived.map_err(|e| {
        format!(
            "its body no longer splits with the current {} spec (it was split by version {}): {e}",
            request.protocol, request.spec
        )
    })?;
    let event = derived.events.get(index).cloned();
    if derived.spec == request.spec {
        return event.ok_or_else(|| format!("the body gives no event {index}"));
    }
    match (event, derived.keys.get(index)) {
        (Some(event), Some(now)) if now.as_deref() == key => Ok(event),
        _ => Err(format!(
            "the {} spec changed since this request was received (split by version {}, now {}) and its body no \
             longer gives this event",
            request.protocol, request.spec, derived.spec
        )),
    }
}

type Row = (String, String, String, i64, String, Vec<u8>, String, String, i64);

/// The parts of request `id` a split needs, or `None` when it is gone.
fn received(conn: &Connection, id: i64) -> Result<Option<Received>, JournalError> {
    let row: Option<Row> = conn
        .prepare_cached(&format!(
            "SELECT r.protocol, r.operation, r.source, r.received_ms, {HEADERS}, r.body, {SPEC}, r.query, r.packed
             FROM requests r WHERE r.id = ?1"
        ))?
        .query_row(params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
        })
        .optional()?;
    let Some((protocol, operation, source, received_ms, headers, body, spec, query, packed)) = row else {
        return Ok(None);
    };
    let body = super::packed::unpack(id, body, packed)?;
    let corrupt = |source| JournalError::Corrupt { id, source };
    let headers = serde_json::from_str(&headers).map_err(corrupt)?;
    let query = if query.is_empty() { Vec::new() } else { serde_json::from_str(&query).map_err(corrupt)? };
    Ok(Some(Received { protocol, operation, source, received_ms, headers, body: Bytes::from(body), spec, query }))
}
