//! Reading journaled events back (for replay and inspection).

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::derive::Deriving;
pub use super::derive::{Derive, Derived, Received};
use super::keys::KEY;
use super::texts::{CLIENT, HEADERS, SPEC, VERIFICATION};
use super::{JournalError, Status};
use crate::event::{Event, Origin};
use crate::store::DataDir;

/// Which events to read.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub protocol: Option<String>,
    /// Received at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Received before (Unix ms).
    pub until_ms: Option<i64>,
    /// Only events whose processing failed.
    pub failed_only: bool,
    /// Only this event.
    pub only_id: Option<i64>,
    /// Only events of this request.
    pub only_request: Option<i64>,
}

/// One journaled event, ready to be processed again.
pub struct Journaled {
    pub event_id: i64,
    pub request_id: i64,
    pub status: Status,
    pub key: Option<String>,
    /// The event (with `data: null` when it cannot be had: see `problem`).
    pub event: Event,
    /// Why the event cannot be derived again from its request's body (the spec changed and
    /// the body no longer gives it, or no longer splits): it is not processed again.
    pub problem: Option<String>,
    /// Its meter readings as its operation declares them now, and whether its raw body is
    /// its source's last image (indexed when a replay processes it).
    pub readings: Vec<crate::spec::readings::Reading>,
    pub image: bool,
}

const PAGE: i64 = 500;

type PageRow = (i64, i64, Status, Option<String>, String, Option<Vec<u8>>, i64, bool, i64);

/// The next page of events after `after_id` matching `filter` (processed or failed ones:
/// duplicates and superseded attempts are never processed again). Events stored without
/// their data are derived again from their request's body through `derive`.
pub fn page(
    conn: &Connection,
    derive: &dyn Derive,
    filter: &Filter,
    after_id: i64,
) -> Result<Vec<Journaled>, JournalError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.id, e.request_id, e.status, {KEY}, e.data, CASE WHEN e.blob THEN r.body END, e.idx, {SPEC} != '',
                r.packed
         FROM events e JOIN requests r ON r.id = e.request_id
         WHERE e.id > ?1 AND (?2 IS NULL OR r.protocol = ?2) AND (?3 IS NULL OR r.received_ms >= ?3)
           AND (?4 IS NULL OR r.received_ms < ?4)
           AND (e.status = 'failed' OR (?5 = 0 AND e.status = 'processed')) AND (?7 IS NULL OR e.id = ?7)
           AND (?8 IS NULL OR e.request_id = ?8)
         ORDER BY e.id LIMIT ?6"
    ))?;
    let rows = stmt.query_map(
        params![
            after_id,
            filter.protocol,
            filter.since_ms,
            filter.until_ms,
            filter.failed_only,
            PAGE,
            filter.only_id,
            filter.only_request
        ],
        |r| -> rusqlite::Result<PageRow> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
        },
    )?;
    let mut deriving = Deriving::new(derive);
    let mut out = Vec::new();
    for row in rows {
        let (event_id, request_id, status, key, data, blob, index, derived, packed) = row?;
        let (event, problem) = if derived && data.is_empty() {
            match deriving.event(conn, request_id, index as usize, key.as_deref())? {
                Ok(event) => (event, None),
                Err(why) => (placeholder(conn, request_id, index as usize)?, Some(why)),
            }
        } else {
            let mut event: Event =
                serde_json::from_str(&data).map_err(|source| JournalError::Corrupt { id: event_id, source })?;
            event.blob = blob.map(|b| super::packed::unpack(request_id, b, packed)).transpose()?.map(Bytes::from);
            (event, None)
        };
        let (readings, image) = match problem {
            None => super::derive::readings_of(derive, &event, event.blob.is_some()),
            Some(_) => (Vec::new(), false),
        };
        out.push(Journaled { event_id, request_id, status, key, event, problem, readings, image });
    }
    Ok(out)
}

/// An event of request `request_id` without its data (for labels, when it cannot be derived).
fn placeholder(conn: &Connection, request_id: i64, index: usize) -> Result<Event, JournalError> {
    let origin = conn.query_row(
        "SELECT protocol, operation, source, received_ms FROM requests WHERE id = ?1",
        params![request_id],
        |r| Ok(Origin { protocol: r.get(0)?, operation: r.get(1)?, source: r.get(2)?, received_ms: r.get(3)? }),
    )?;
    Ok(origin.event(index, Value::Null, serde_json::Map::new()))
}

/// Whether `key` has been processed (by this event or another).
pub fn key_processed(conn: &Connection, key: &str) -> Result<bool, JournalError> {
    let digest = crate::store::dedup::digest(key);
    Ok(super::tiers::stored_event(conn, &digest)?.is_some())
}

/// Which events to list (management API).
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub protocol: Option<String>,
    pub source: Option<String>,
    pub status: Option<Status>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only events with a larger id (paging).
    pub after_id: Option<i64>,
    pub limit: i64,
}

/// One journaled event, in brief.
#[derive(Clone, Debug)]
pub struct Summary {
    pub id: i64,
    pub request_id: i64,
    pub protocol: String,
    pub operation: String,
    pub source: String,
    pub received_ms: i64,
    pub index: i64,
    pub status: Status,
    pub error: Option<String>,
}

const SUMMARY: &str =
    "SELECT e.id, e.request_id, r.protocol, r.operation, r.source, r.received_ms, e.idx, e.status, e.error
     FROM events e JOIN requests r ON r.id = e.request_id";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        id: r.get(0)?,
        request_id: r.get(1)?,
        protocol: r.get(2)?,
        operation: r.get(3)?,
        source: r.get(4)?,
        received_ms: r.get(5)?,
        index: r.get(6)?,
        status: r.get(7)?,
        error: r.get(8)?,
    })
}

/// Events matching `f`, oldest first.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<Vec<Summary>, JournalError> {
    let sql = format!(
        "{SUMMARY} WHERE e.id > ?1 AND (?2 IS NULL OR r.protocol = ?2) AND (?3 IS NULL OR r.source = ?3)
         AND (?4 IS NULL OR e.status = ?4) AND (?5 IS NULL OR r.received_ms >= ?5) AND (?6 IS NULL OR r.received_ms < ?6)
         ORDER BY e.id LIMIT ?7"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![f.after_id.unwrap_or(0), f.protocol, f.source, f.status, f.since_ms, f.until_ms, f.limit],
        summary,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Everything the journal knows about one event.
#[derive(Clone, Debug)]
pub struct Detail {
    pub summary: Summary,
    pub headers: Vec<(String, String)>,
    pub verification: String,
    pub body: Vec<u8>,
    pub data: serde_json::Value,
    /// Why `data` is null: the event could not be derived again from the body.
    pub data_problem: Option<String>,
    pub logs: Vec<String>,
    /// What its request's scripts wrote (all events of the request), described.
    pub effects: Vec<String>,
    /// The same, with the bytes (read back from the files once checkpointed).
    pub written: Vec<super::written::Written>,
    /// The reply's HTTP status.
    pub reply_status: u16,
    /// The method and URL path (query secrets masked) as received; empty for older journals.
    pub method: String,
    pub path: String,
    /// The client's address.
    pub client: String,
    /// For a duplicate: the event that processed its key (whose data it shows). A request
    /// whose every event is a duplicate keeps no body of its own.
    pub duplicate_of: Option<i64>,
}

/// One event in full, or `None` when there is no such event; what was written is read back
/// from `files` once the journal no longer holds it, and the event's data is derived again
/// from its request's body through `derive` when it was not stored.
pub fn detail(
    conn: &Connection,
    files: &DataDir,
    derive: &dyn Derive,
    id: i64,
) -> Result<Option<Detail>, JournalError> {
    let sql = format!("{SUMMARY} WHERE e.id = ?1");
    let Some(summary) = conn.query_row(&sql, params![id], summary).optional()? else { return Ok(None) };
    type Row = (String, String, Vec<u8>, Option<String>, String, Option<i64>, i64);
    let (headers, verification, body, logs, client, duplicate_of, packed): Row = conn.query_row(
        &format!(
            "SELECT {HEADERS}, {VERIFICATION}, r.body, e.logs, {CLIENT}, e.duplicate_of, r.packed
             FROM events e JOIN requests r ON r.id = e.request_id WHERE e.id = ?1"
        ),
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
    )?;
    let (reply_status, method, path): (u16, String, String) = conn.query_row(
        "SELECT reply_status, method, path FROM requests WHERE id = ?1",
        params![summary.request_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let body = super::packed::unpack(summary.request_id, body, packed)?;
    let (data, data_problem) = match event_data(conn, &mut Deriving::new(derive), id)? {
        Some(Ok(data)) => (data, None),
        None => match duplicate_of {
            Some(original) => event_data(conn, &mut Deriving::new(derive), original)?.unwrap_or(Ok(Value::Null)),
            None => Ok(Value::Null),
        }
        .map_or_else(|why| (Value::Null, Some(why)), |data| (data, None)),
        Some(Err(why)) => (Value::Null, Some(why)),
    };
    let written = super::written::written(conn, files, summary.request_id)?;
    let effects = written.iter().map(super::written::Written::describe).collect();
    let corrupt = |source| JournalError::Corrupt { id, source };
    let logs = logs.map(|l| serde_json::from_str(&l)).transpose().map_err(corrupt)?;
    Ok(Some(Detail {
        headers: serde_json::from_str(&headers).map_err(corrupt)?,
        verification,
        body,
        data,
        data_problem,
        logs: logs.unwrap_or_default(),
        effects,
        written,
        summary,
        client,
        duplicate_of,
        reply_status,
        method,
        path,
    }))
}

/// Every event of request `request_id`, in order.
pub fn siblings(conn: &Connection, request_id: i64) -> Result<Vec<Summary>, JournalError> {
    let sql = format!("{SUMMARY} WHERE e.request_id = ?1 ORDER BY e.idx, e.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![request_id], summary)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The processed and failed events of request `request_id`, ready to run again.
pub fn of_request(conn: &Connection, derive: &dyn Derive, request_id: i64) -> Result<Vec<Journaled>, JournalError> {
    let filter = Filter { only_request: Some(request_id), ..Filter::default() };
    let mut all: Vec<Journaled> = Vec::new();
    loop {
        let next = page(conn, derive, &filter, all.last().map_or(0, |j| j.event_id))?;
        if next.is_empty() {
            return Ok(all);
        }
        all.extend(next);
    }
}

/// The payload (`data`) of event `id`: stored, or derived again from its request's body;
/// `None` when it has neither (a duplicate pointing at the event that has it).
fn event_data(
    conn: &Connection,
    deriving: &mut Deriving<'_>,
    id: i64,
) -> Result<Option<Result<Value, String>>, JournalError> {
    type Row = (String, i64, i64, Option<String>, bool);
    let row: Option<Row> = conn
        .query_row(
            &format!(
                "SELECT e.data, e.request_id, e.idx, {KEY}, {SPEC} != ''
                 FROM events e JOIN requests r ON r.id = e.request_id WHERE e.id = ?1"
            ),
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((data, request_id, index, key, derived)) = row else { return Ok(None) };
    if !data.is_empty() {
        let event: Value = serde_json::from_str(&data).map_err(|source| JournalError::Corrupt { id, source })?;
        return Ok(Some(Ok(event.get("data").cloned().unwrap_or_default())));
    }
    if !derived {
        return Ok(None);
    }
    Ok(Some(deriving.event(conn, request_id, index as usize, key.as_deref())?.map(|e| e.data)))
}

/// One event ready to replay (processed or failed), or `None`.
pub fn journaled(conn: &Connection, derive: &dyn Derive, id: i64) -> Result<Option<Journaled>, JournalError> {
    let filter = Filter { only_id: Some(id), ..Filter::default() };
    Ok(page(conn, derive, &filter, 0)?.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_read_is_an_error_not_a_not_processed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::schema::open(&dir.path().join("journal.db")).unwrap();
        let digest = crate::store::dedup::digest("k");
        conn.execute("INSERT INTO processed_keys (digest, event_id, received_ms) VALUES (?1, 1, 0)", [&digest[..]])
            .unwrap();
        assert!(key_processed(&conn, "k").unwrap());
        assert!(!key_processed(&conn, "other").unwrap());
        conn.execute_batch("ALTER TABLE processed_keys RENAME TO keys_unreadable").unwrap();
        assert!(key_processed(&conn, "k").is_err());
    }
}
