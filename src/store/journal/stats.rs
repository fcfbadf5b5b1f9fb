//! Counting what the journal holds, for the health view: journaled requests per protocol in
//! time buckets (accepted, or failed when one of their events failed: to seed the per-minute
//! counters at start-up), the journal's totals, the latest arrivals per source (to seed the
//! last-seen view), and finding a test request by its body.

use rusqlite::{Connection, params};

use super::JournalError;

/// How many of the latest requests seed the last-seen view (a rowid range: cheap on any
/// journal). A source absent from them shows up again with its next request.
pub const SEED_REQUESTS: i64 = 20_000;

/// Journaled requests of one protocol in one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketCount {
    pub protocol: String,
    /// The bucket's position from the start of the window.
    pub bucket: i64,
    /// Requests none of whose events failed.
    pub accepted: u64,
    /// Requests with an event that failed (or failed first and was retried later).
    pub failed: u64,
}

/// Journaled requests received in `[from_ms, to_ms)` per protocol and bucket of `bucket_ms`.
pub fn buckets(conn: &Connection, from_ms: i64, to_ms: i64, bucket_ms: i64) -> Result<Vec<BucketCount>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT protocol, (received_ms - ?1) / ?3 AS bucket, COUNT(*),
                SUM(EXISTS (SELECT 1 FROM events e WHERE e.request_id = r.id AND e.status IN ('failed', 'superseded')))
         FROM requests r WHERE received_ms >= ?1 AND received_ms < ?2
         GROUP BY protocol, bucket ORDER BY protocol, bucket",
    )?;
    let rows = stmt.query_map(params![from_ms, to_ms, bucket_ms.max(1)], |r| {
        let (all, failed): (i64, i64) = (r.get(2)?, r.get(3)?);
        Ok(BucketCount {
            protocol: r.get(0)?,
            bucket: r.get(1)?,
            accepted: (all - failed).max(0) as u64,
            failed: failed.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What the journal holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub events: u64,
    /// The oldest request's receive time (Unix ms).
    pub oldest_ms: Option<i64>,
}

/// The journal's request and event counts and its oldest request.
pub fn totals(conn: &Connection) -> Result<Totals, JournalError> {
    let (requests, oldest_ms): (i64, Option<i64>) =
        conn.query_row("SELECT COUNT(*), MIN(received_ms) FROM requests", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let events: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    Ok(Totals { requests: requests.max(0) as u64, events: events.max(0) as u64, oldest_ms })
}

/// `(protocol, source, received_ms)` of the latest [`SEED_REQUESTS`] requests, oldest first.
pub fn recent_arrivals(conn: &Connection) -> Result<Vec<(String, String, i64)>, JournalError> {
    let mut stmt = conn.prepare(
        "SELECT protocol, source, received_ms FROM requests
         WHERE id > (SELECT IFNULL(MAX(id), 0) FROM requests) - ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![SEED_REQUESTS], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest request of `protocol` received at or after `since_ms` whose body is `body`
/// (among the latest 100 of the protocol; bodies may be kept deflated).
pub fn request_with_body(
    conn: &Connection,
    protocol: &str,
    since_ms: i64,
    body: &[u8],
) -> Result<Option<i64>, JournalError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, body, packed FROM requests WHERE received_ms >= ?1 AND protocol = ?2 ORDER BY id DESC LIMIT 100",
    )?;
    let rows = stmt.query_map(params![since_ms, protocol], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (id, kept, packed) = row?;
        if super::packed::unpack(id, kept, packed)? == body {
            return Ok(Some(id));
        }
    }
    Ok(None)
}
