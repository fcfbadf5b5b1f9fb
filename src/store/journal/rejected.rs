//! Refused requests, in a bounded table of their own: when, what for, from whom, which check
//! refused them and what the client was told, the headers (secrets masked) and the first
//! 4 KiB of the body when it was read. Written by the journal writer between its batches
//! (without an fsync of their own: losing the last few to a power cut is fine), capped at
//! `[journal] rejected_max_rows` on every insert and pruned by age with the journal's
//! retention.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::JournalError;

/// The table (run from `schema::open`).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    operation TEXT NOT NULL,
    path TEXT NOT NULL,
    client TEXT NOT NULL,
    check_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    reply_status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB,
    body_truncated INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS rejected_time ON rejected(received_ms);
";

/// How much of a refused request's body is kept.
pub const BODY_KEPT: usize = 4096;

/// One refused request.
#[derive(Clone, Debug, Default)]
pub struct RejectedRecord {
    pub received_ms: i64,
    pub protocol: String,
    pub operation: String,
    /// URL path and query, secrets masked.
    pub path: String,
    pub client: String,
    /// Which check refused it (`hmac`, `api-key-header`, `schema`, `body-limit`, …).
    pub check: String,
    /// The reason as the client was told.
    pub reason: String,
    pub reply_status: u16,
    /// Headers, secrets masked.
    pub headers: Vec<(String, String)>,
    /// The first [`BODY_KEPT`] bytes, when the body was read.
    pub body: Option<Vec<u8>>,
    pub body_truncated: bool,
    /// The body's size (as read, or as declared when it was not read).
    pub size: u64,
}

impl RejectedRecord {
    /// Keeps at most [`BODY_KEPT`] bytes of `body`.
    pub fn with_body(mut self, body: &[u8]) -> Self {
        self.size = body.len() as u64;
        self.body_truncated = body.len() > BODY_KEPT;
        self.body = Some(body[..body.len().min(BODY_KEPT)].to_vec());
        self
    }
}

/// Inserts `records`; the oldest rows above `max_rows` go. Returns the new ids.
pub fn insert(tx: &Transaction<'_>, records: &[RejectedRecord], max_rows: u64) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO rejected (received_ms, protocol, operation, path, client, check_name, reason, reply_status,
                               headers, body, body_truncated, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut ids = Vec::with_capacity(records.len());
    for r in records {
        let headers = serde_json::to_string(&r.headers).unwrap_or_else(|_| "[]".into());
        stmt.execute(params![
            r.received_ms,
            r.protocol,
            r.operation,
            r.path,
            r.client,
            r.check,
            r.reason,
            r.reply_status,
            headers,
            r.body,
            r.body_truncated,
            r.size as i64
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    if let Some(last) = ids.last() {
        let keep = i64::try_from(max_rows).unwrap_or(i64::MAX);
        tx.prepare_cached("DELETE FROM rejected WHERE id <= ?1")?.execute(params![last.saturating_sub(keep)])?;
    }
    Ok(ids)
}

/// Removes refused requests received before `cutoff_ms`; how many went.
pub fn prune(conn: &Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM rejected WHERE received_ms < ?1", params![cutoff_ms])
}

/// One refused request as recorded, with its id.
pub fn read(conn: &Connection, id: i64) -> Result<Option<(i64, RejectedRecord)>, JournalError> {
    let row = conn
        .query_row(
            "SELECT id, received_ms, protocol, operation, path, client, check_name, reason, reply_status, headers,
                    body, body_truncated, size
             FROM rejected WHERE id = ?1",
            params![id],
            |r| {
                let record = RejectedRecord {
                    received_ms: r.get(1)?,
                    protocol: r.get(2)?,
                    operation: r.get(3)?,
                    path: r.get(4)?,
                    client: r.get(5)?,
                    check: r.get(6)?,
                    reason: r.get(7)?,
                    reply_status: r.get(8)?,
                    headers: Vec::new(),
                    body: r.get(10)?,
                    body_truncated: r.get(11)?,
                    size: r.get::<_, i64>(12)?.max(0) as u64,
                };
                Ok((r.get::<_, i64>(0)?, record, r.get::<_, String>(9)?))
            },
        )
        .optional()?;
    let Some((id, mut record, headers)) = row else { return Ok(None) };
    record.headers = serde_json::from_str(&headers).map_err(|source| JournalError::Corrupt { id, source })?;
    Ok(Some((id, record)))
}
