//! The log: journaled events and refused requests in one list, newest first, paged by a
//! keyset cursor so entries arriving later never shift a page. The order is (received time,
//! kind, id), descending; each table is read along its time index and the two are merged.

use rusqlite::{Connection, params};

use super::keys::KEY;
use super::{JournalError, Status};

/// Which table an entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Event,
    Rejected,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Rejected => "rejected",
        }
    }

    /// The kind's place in the order at equal times (events first).
    fn rank(self) -> i64 {
        match self {
            Kind::Event => 1,
            Kind::Rejected => 0,
        }
    }
}

/// One line of the log.
#[derive(Clone, Debug)]
pub struct LogRow {
    pub kind: Kind,
    /// The event id, or the refused request's id.
    pub id: i64,
    pub request_id: Option<i64>,
    pub received_ms: i64,
    pub protocol: String,
    pub operation: String,
    pub source: String,
    pub key: Option<String>,
    /// An event [`Status`], or `rejected`.
    pub status: String,
    pub reply_status: u16,
    /// Request body bytes.
    pub size: u64,
    pub error: Option<String>,
}

impl LogRow {
    /// Where this row sits in the order, as a cursor.
    pub fn cursor(&self) -> Cursor {
        Cursor { ms: self.received_ms, rank: self.kind.rank(), id: self.id }
    }
}

/// A place in the log: entries strictly after it (older) come next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    ms: i64,
    rank: i64,
    id: i64,
}

/// A cursor that is not one this server handed out.
#[derive(Debug, thiserror::Error)]
#[error("not a cursor of this log (use the `next` of an earlier page)")]
pub struct BadCursor;

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.ms, self.rank, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.').map(|p| p.parse::<i64>().map_err(|_| BadCursor));
        let (Some(ms), Some(rank), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(BadCursor);
        };
        let (ms, rank, id) = (ms?, rank?, id?);
        if !(0..=1).contains(&rank) {
            return Err(BadCursor);
        }
        Ok(Cursor { ms, rank, id })
    }
}

/// Which entries to list.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub protocol: Option<String>,
    pub source: Option<String>,
    /// An event status, or `None` with `rejected_only` for refused requests only.
    pub status: Option<Status>,
    pub rejected_only: bool,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// An event id, a request id, or a prefix of an idempotency key.
    pub q: Option<String>,
    pub before: Option<Cursor>,
    pub limit: i64,
}

impl LogFilter {
    /// Whether a new `row` belongs to this filter (the time and cursor aside).
    pub fn admits(&self, row: &LogRow) -> bool {
        let status_ok = match (self.status, self.rejected_only) {
            (Some(s), _) => row.status == s.as_str(),
            (None, true) => row.kind == Kind::Rejected,
            (None, false) => true,
        };
        status_ok
            && self.protocol.as_ref().is_none_or(|p| *p == row.protocol)
            && self.source.as_ref().is_none_or(|s| *s == row.source)
    }
}

/// The page of entries `filter` selects, newest first, and the cursor of the next page.
pub fn list(conn: &Connection, filter: &LogFilter) -> Result<(Vec<LogRow>, Option<Cursor>), JournalError> {
    let mut rows = Vec::new();
    if !filter.rejected_only {
        rows.extend(events(conn, filter)?);
    }
    if filter.status.is_none() && filter.source.as_deref().is_none_or(str::is_empty) {
        rows.extend(rejected(conn, filter)?);
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.cursor()));
    let limit = usize::try_from(filter.limit).unwrap_or(0);
    let next = (limit > 0 && rows.len() > limit).then(|| rows[limit - 1].cursor());
    rows.truncate(limit);
    Ok((rows, next))
}

/// The cursor as SQL parameters: (ms, rank, id), or no bound.
fn bound(filter: &LogFilter) -> (Option<i64>, i64, i64) {
    match filter.before {
        Some(c) => (Some(c.ms), c.rank, c.id),
        None => (None, 0, 0),
    }
}

/// `q` as an id, and as a key prefix.
fn q_parts(filter: &LogFilter) -> (Option<i64>, Option<&str>) {
    let q = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    (q.and_then(|q| q.parse().ok()), q)
}

/// The tables and the status condition of the events query: newest requests first along
/// the time index, or, for the rarer statuses, their partial index (then sorted).
fn events_source(status: Option<Status>) -> (&'static str, String) {
    match status {
        Some(s) if s != Status::Processed => (
            "events e INDEXED BY events_unsettled JOIN requests r ON r.id = e.request_id",
            // The partial index's own condition, word for word, lets the planner use it.
            format!("e.status != 'processed' AND e.status = '{}' AND ?6 IS NOT NULL", s.as_str()),
        ),
        _ => (
            "requests r INDEXED BY requests_time JOIN events e ON e.request_id = r.id",
            "(?6 IS NULL OR e.status = ?6)".into(),
        ),
    }
}

fn events(conn: &Connection, f: &LogFilter) -> Result<Vec<LogRow>, JournalError> {
    let (ms, rank, id) = bound(f);
    let (q_id, q) = q_parts(f);
    let (from, status) = events_source(f.status);
    let sql = format!(
        "SELECT e.id, e.request_id, r.received_ms, r.protocol, r.operation, r.source, {KEY}, e.status,
                r.reply_status, COALESCE(r.size, length(r.body)), e.error
         FROM {from}
         WHERE (?1 IS NULL OR r.received_ms < ?1 OR (r.received_ms = ?1 AND ?2 = 1 AND e.id < ?3))
           AND (?4 IS NULL OR r.protocol = ?4) AND (?5 IS NULL OR r.source = ?5) AND {status}
           AND (?7 IS NULL OR r.received_ms >= ?7) AND (?8 IS NULL OR r.received_ms < ?8)
           AND (?10 IS NULL OR e.id = ?9 OR e.request_id = ?9 OR substr({KEY}, 1, length(?10)) = ?10)
         ORDER BY r.received_ms DESC, e.id DESC LIMIT ?11"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let params = params![ms, rank, id, f.protocol, f.source, f.status, f.since_ms, f.until_ms, q_id, q, f.limit + 1];
    let rows = stmt.query_map(params, |r| {
        Ok(LogRow {
            kind: Kind::Event,
            id: r.get(0)?,
            request_id: Some(r.get(1)?),
            received_ms: r.get(2)?,
            protocol: r.get(3)?,
            operation: r.get(4)?,
            source: r.get(5)?,
            key: r.get(6)?,
            status: r.get(7)?,
            reply_status: r.get(8)?,
            size: r.get::<_, Option<i64>>(9)?.unwrap_or_default().max(0) as u64,
            error: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn rejected(conn: &Connection, f: &LogFilter) -> Result<Vec<LogRow>, JournalError> {
    let (ms, rank, id) = bound(f);
    let (q_id, q) = q_parts(f);
    if q.is_some() && q_id.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_ms, protocol, operation, reason, reply_status, size FROM rejected INDEXED BY rejected_time
         WHERE (?1 IS NULL OR received_ms < ?1 OR (received_ms = ?1 AND (?2 = 1 OR id < ?3)))
           AND (?4 IS NULL OR protocol = ?4) AND (?5 IS NULL OR received_ms >= ?5) AND (?6 IS NULL OR received_ms < ?6)
           AND (?7 IS NULL OR id = ?7)
         ORDER BY received_ms DESC, id DESC LIMIT ?8",
    )?;
    let params = params![ms, rank, id, f.protocol, f.since_ms, f.until_ms, q_id, f.limit + 1];
    let rows = stmt.query_map(params, |r| {
        Ok(LogRow {
            kind: Kind::Rejected,
            id: r.get(0)?,
            request_id: None,
            received_ms: r.get(1)?,
            protocol: r.get(2)?,
            operation: r.get(3)?,
            source: String::new(),
            key: None,
            status: "rejected".into(),
            reply_status: r.get(5)?,
            size: r.get::<_, i64>(6)?.max(0) as u64,
            error: Some(r.get(4)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::schema::open(&dir.path().join("journal.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO requests (id, protocol, operation, source, received_ms, headers, body)
                 VALUES (1, 'gridx', 'events', '', 100, '[]', x'00'), (2, 'wattmon', 'upload', 'm1', 200, '[]', x'0000');
             INSERT INTO events (id, request_id, idx, idem_key, data, status)
                 VALUES (1, 1, 0, 'g1', '{}', 'failed'), (2, 2, 0, 'w1', '{}', 'processed'),
                        (3, 2, 1, 'w2', '{}', 'duplicate');
             INSERT INTO rejected (id, received_ms, protocol, operation, path, client, check_name, reason,
                                   reply_status, headers) VALUES (1, 200, 'gridx', 'events', '/', '', 'hmac', 'no', 401, '[]');",
        )
        .unwrap();
        (dir, conn)
    }

    fn listed(conn: &Connection, f: &LogFilter) -> (Vec<(&'static str, i64)>, Option<Cursor>) {
        let (rows, next) = list(conn, f).unwrap();
        (rows.iter().map(|r| (r.kind.as_str(), r.id)).collect(), next)
    }

    #[test]
    fn newest_first_events_before_refused_ones_at_one_time_and_pages_follow_on() {
        let (_dir, conn) = journal();
        let all = LogFilter { limit: 10, ..LogFilter::default() };
        assert_eq!(listed(&conn, &all).0, [("event", 3), ("event", 2), ("rejected", 1), ("event", 1)]);
        let (first, next) = listed(&conn, &LogFilter { limit: 2, ..all.clone() });
        assert_eq!(first, [("event", 3), ("event", 2)]);
        let (rest, last) = listed(&conn, &LogFilter { limit: 2, before: next, ..all.clone() });
        assert_eq!((rest, last), (vec![("rejected", 1), ("event", 1)], None));
        for (status, expected) in [(Status::Failed, 1), (Status::Duplicate, 3), (Status::Processed, 2)] {
            let f = LogFilter { status: Some(status), ..all.clone() };
            assert_eq!(listed(&conn, &f).0, [("event", expected)], "{status}");
        }
        let refused = LogFilter { rejected_only: true, ..all.clone() };
        assert_eq!(listed(&conn, &refused).0, [("rejected", 1)]);
        let by_key = LogFilter { q: Some("w".into()), ..all.clone() };
        assert_eq!(listed(&conn, &by_key).0, [("event", 3), ("event", 2)]);
        let by_request = LogFilter { q: Some("2".into()), source: Some("m1".into()), ..all };
        assert_eq!(listed(&conn, &by_request).0, [("event", 3), ("event", 2)]);
    }

    #[test]
    fn a_cursor_reads_back_and_junk_is_refused() {
        let c = Cursor { ms: 1_700_000_000_000, rank: 1, id: 42 };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for junk in ["", "1.2", "1.2.3", "a.1.1", "1.1.1.1"] {
            assert!(junk.parse::<Cursor>().is_err(), "{junk}");
        }
    }
}
