//! Counting what the journal holds, for the health view: journaled requests per protocol in
//! time buckets (accepted, or failed when one of their events failed: to seed the per-minute
//! counters at start-up), the journal's totals, the latest arrivals per source (to seed the
//! last-seen view), and finding a test request by its body.

use rusqlite::{Connection, OptionalExtension, params};

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

/// `+received_ms`: walk the id range, not the time index (which would visit the whole window).
const BUCKETS: &str = "SELECT protocol, (received_ms - ?1) / ?3 AS bucket, COUNT(*),
        SUM(EXISTS (SELECT 1 FROM events e WHERE e.request_id = r.id AND e.status IN ('failed', 'superseded')))
 FROM requests r WHERE r.id >= ?4 AND r.id < ?5 AND +received_ms >= ?1 AND +received_ms < ?2
 GROUP BY protocol, bucket ORDER BY protocol, bucket";

/// Journaled requests with an id in `ids` received in `[from_ms, to_ms)`, per protocol and
/// bucket of `bucket_ms`. The id range bounds what one query (one read snapshot) walks,
/// however many requests a stretch of time holds.
pub fn buckets(
    conn: &Connection,
    ids: std::ops::Range<i64>,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<BucketCount>, JournalError> {
    let mut stmt = conn.prepare_cached(BUCKETS)?;
    let rows = stmt.query_map(params![from_ms, to_ms, bucket_ms.max(1), ids.start, ids.end], |r| {
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

/// The ids from the first request received at or after `from_ms` to the latest one (empty
/// when there is none).
pub fn ids_since(conn: &Connection, from_ms: i64) -> Result<std::ops::Range<i64>, JournalError> {
    let first: Option<i64> = conn
        .query_row("SELECT id FROM requests WHERE received_ms >= ?1 ORDER BY received_ms LIMIT 1", [from_ms], |r| {
            r.get(0)
        })
        .optional()?;
    let last: Option<i64> = conn.query_row("SELECT MAX(id) FROM requests", [], |r| r.get(0))?;
    Ok(match (first, last) {
        (Some(first), Some(last)) if first <= last => first..last + 1,
        _ => 0..0,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn journal(dir: &tempfile::TempDir) -> Connection {
        let conn = super::super::schema::open(&dir.path().join("journal.db")).unwrap();
        // Request 1 is before the window, 2–5 in it (4 a minute later, with a failed event;
        // 5 of another protocol), 6 after it.
        for (id, protocol, at) in [(1, "g", 0), (2, "g", 10 * MINUTE), (3, "g", 10 * MINUTE + 5), (4, "g", 11 * MINUTE)]
            .into_iter()
            .chain([(5, "w", 11 * MINUTE), (6, "g", 20 * MINUTE)])
        {
            conn.execute(
                "INSERT INTO requests (id, protocol, operation, source, received_ms, headers, body)
                 VALUES (?1, ?2, 'e', '', ?3, '[]', x'')",
                params![id, protocol, at],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO events (request_id, idx, data, status) VALUES (4, 0, '{}', 'processed'), (4, 1, '{}', 'failed'),
                                                                      (3, 0, '{}', 'processed')",
        )
        .unwrap();
        conn
    }

    fn count(b: &[BucketCount]) -> Vec<(String, i64, u64, u64)> {
        b.iter().map(|b| (b.protocol.clone(), b.bucket, b.accepted, b.failed)).collect()
    }

    #[test]
    fn chunks_of_ids_count_what_one_query_over_the_window_counts() {
        let dir = tempfile::tempdir().unwrap();
        let conn = journal(&dir);
        let (from, until) = (10 * MINUTE, 20 * MINUTE);
        assert_eq!(ids_since(&conn, from).unwrap(), 2..7);
        assert_eq!(ids_since(&conn, 21 * MINUTE).unwrap(), 0..0);
        let whole = count(&buckets(&conn, 2..7, from, until, MINUTE).unwrap());
        let expected = vec![("g".to_owned(), 0, 2, 0), ("g".to_owned(), 1, 0, 1), ("w".to_owned(), 1, 1, 0)];
        assert_eq!(whole, expected);
        // In chunks of one request (minute 0 of "g" split over two queries), summed per minute.
        let mut summed = std::collections::BTreeMap::<(String, i64), (u64, u64)>::new();
        for id in 2..7 {
            for b in buckets(&conn, id..id + 1, from, until, MINUTE).unwrap() {
                let slot = summed.entry((b.protocol, b.bucket)).or_default();
                *slot = (slot.0 + b.accepted, slot.1 + b.failed);
            }
        }
        let summed: Vec<_> = summed.into_iter().map(|((p, b), (a, f))| (p, b, a, f)).collect();
        assert_eq!(summed, expected);
    }

    #[test]
    fn a_chunk_walks_its_id_range_not_the_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let conn = journal(&dir);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {BUCKETS}")).unwrap();
        let plan: Vec<String> =
            stmt.query_map(params![0, 1, 1, 0, 1], |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("SEARCH r USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"), "{plan}");
        assert!(!plan.contains("requests_time"), "{plan}");
    }
}
