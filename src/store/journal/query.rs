//! Reading journaled events back (for replay and inspection).

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::JournalError;
use crate::event::Event;

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
}

/// One journaled event, ready to be processed again.
pub struct Journaled {
    pub event_id: i64,
    pub request_id: i64,
    pub status: String,
    pub key: Option<String>,
    pub event: Event,
}

const PAGE: i64 = 500;

/// The next page of events after `after_id` matching `filter` (processed or failed ones:
/// duplicates and superseded attempts are never processed again).
pub fn page(conn: &Connection, filter: &Filter, after_id: i64) -> Result<Vec<Journaled>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.request_id, e.status, e.idem_key, e.data, CASE WHEN e.blob THEN r.body END
         FROM events e JOIN requests r ON r.id = e.request_id
         WHERE e.id > ?1 AND (?2 IS NULL OR r.protocol = ?2) AND (?3 IS NULL OR r.received_ms >= ?3)
           AND (?4 IS NULL OR r.received_ms < ?4)
           AND (e.status = 'failed' OR (?5 = 0 AND e.status = 'processed'))
         ORDER BY e.id LIMIT ?6",
    )?;
    let rows = stmt.query_map(
        params![after_id, filter.protocol, filter.since_ms, filter.until_ms, filter.failed_only, PAGE],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<Vec<u8>>>(5)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (event_id, request_id, status, key, data, blob) = row?;
        let mut event: Event = serde_json::from_str(&data)
            .map_err(|e| JournalError::Store(format!("event {event_id} cannot be read back: {e}")))?;
        event.blob = blob.map(Bytes::from);
        out.push(Journaled { event_id, request_id, status, key, event });
    }
    Ok(out)
}

/// Whether `key` has been processed (by this event or another).
pub fn key_processed(conn: &Connection, key: &str) -> Result<bool, JournalError> {
    let found: Option<i64> =
        conn.query_row("SELECT event_id FROM keys WHERE key = ?1", params![key], |r| r.get(0)).ok();
    Ok(found.is_some())
}
