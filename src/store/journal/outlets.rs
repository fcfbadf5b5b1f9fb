//! What the writer hands on besides replies: refused requests recorded between batches, and
//! new log entries published to the live feed after their commit. Neither ever waits: the
//! feed is a bounded broadcast (a slow reader lags, no sender waits), and refused requests
//! come through a bounded queue ([`super::Journal::reject`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::Connection;
use tokio::sync::broadcast;

use super::log::{Kind, LogRow};
use super::rejected::{self, RejectedRecord};
use super::{Submission, Target};

/// The writer's outlets.
pub struct Outlets {
    pub feed: broadcast::Sender<Arc<LogRow>>,
    pub rejected_queued: Arc<AtomicUsize>,
}

impl Outlets {
    /// Records refused requests in one transaction without an fsync of its own (they are
    /// not acknowledged data), then publishes them; without `room` on the disk they are
    /// dropped.
    pub fn record_rejected(&self, conn: &mut Connection, records: Vec<RejectedRecord>, max_rows: u64, room: bool) {
        if records.is_empty() {
            return;
        }
        self.rejected_queued.fetch_sub(records.len(), Ordering::Relaxed);
        if !room {
            return;
        }
        match insert_unsynced(conn, &records, max_rows) {
            Ok(ids) => {
                if self.feed.receiver_count() > 0 {
                    for (id, r) in ids.into_iter().zip(records) {
                        let _ = self.feed.send(Arc::new(rejected_row(id, r)));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, dropped = records.len(), "could not record refused requests"),
        }
    }

    /// Publishes the events of a committed new request.
    pub fn publish(&self, submission: &Submission, request_id: i64, event_ids: &[i64], reply_status: u16) {
        let Target::New(request) = &submission.target else { return };
        if self.feed.receiver_count() == 0 {
            return;
        }
        for (event, id) in submission.events.iter().zip(event_ids) {
            let row = LogRow {
                kind: Kind::Event,
                id: *id,
                request_id: Some(request_id),
                received_ms: request.received_ms,
                protocol: request.protocol.clone(),
                operation: request.operation.clone(),
                source: request.source.clone(),
                key: event.key.clone(),
                status: event.outcome.as_str().to_owned(),
                reply_status,
                size: request.body.len() as u64,
                error: event.error.clone(),
            };
            let _ = self.feed.send(Arc::new(row));
        }
    }
}

/// One transaction with `synchronous=NORMAL` (no fsync of its own; the next commit or
/// checkpoint makes it durable), then back to `FULL` for the requests' commits. Setting the
/// pragma outside a transaction does no I/O; should it fail all the same, the writer's next
/// request commit would not be fsynced, so it is tried again and logged as an error.
fn insert_unsynced(conn: &mut Connection, records: &[RejectedRecord], max_rows: u64) -> rusqlite::Result<Vec<i64>> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let inserted = conn.transaction().and_then(|tx| {
        let ids = rejected::insert(&tx, records, max_rows)?;
        tx.commit().map(|_| ids)
    });
    if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        tracing::error!(error = %e, "journal: could not set synchronous=FULL again; retrying");
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    inserted
}

fn rejected_row(id: i64, r: RejectedRecord) -> LogRow {
    LogRow {
        kind: Kind::Rejected,
        id,
        request_id: None,
        received_ms: r.received_ms,
        protocol: r.protocol,
        operation: r.operation,
        source: String::new(),
        key: None,
        status: "rejected".into(),
        reply_status: r.reply_status,
        size: r.size,
        error: Some(r.reason),
    }
}
