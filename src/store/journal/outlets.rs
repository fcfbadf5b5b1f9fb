//! What the writer hands on besides replies: refused requests recorded between batches, and
//! new log entries published to the live feed after their commit. Neither ever waits: the
//! feed is a bounded broadcast (a slow reader lags, no sender waits), and refused requests
//! come through a bounded queue ([`super::Journal::reject`]). The feed carries one
//! [`FeedBatch`] per committed batch (one send, one wake-up per listening reader), built only
//! while someone listens; each entry is rendered for the readers at most once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rusqlite::Connection;
use tokio::sync::broadcast;

use super::log::{Kind, LogRow};
use super::rejected::{self, RejectedRecord};
use super::{Submission, Target};

/// The new log entries of one commit, oldest first.
pub type FeedBatch = Arc<[FeedEntry]>;

/// One new log entry on the feed, with its rendering shared by all readers.
pub struct FeedEntry {
    pub row: LogRow,
    rendered: OnceLock<Box<str>>,
}

impl FeedEntry {
    fn new(row: LogRow) -> Self {
        Self { row, rendered: OnceLock::new() }
    }

    /// The entry as `render` writes it, rendered by the first reader that asks.
    pub fn rendered(&self, render: impl FnOnce(&LogRow) -> String) -> &str {
        self.rendered.get_or_init(|| render(&self.row).into_boxed_str())
    }
}

/// The writer's outlets.
pub struct Outlets {
    feed: broadcast::Sender<FeedBatch>,
    pub rejected_queued: Arc<AtomicUsize>,
    /// Entries of the batch being committed, sent together by [`Outlets::flush`].
    pending: Vec<FeedEntry>,
}

impl Outlets {
    pub fn new(feed: broadcast::Sender<FeedBatch>, rejected_queued: Arc<AtomicUsize>) -> Self {
        Self { feed, rejected_queued, pending: Vec::new() }
    }

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
                    let batch: FeedBatch =
                        ids.into_iter().zip(records).map(|(id, r)| FeedEntry::new(rejected_row(id, r))).collect();
                    let _ = self.feed.send(batch);
                }
            }
            Err(e) => tracing::warn!(error = %e, dropped = records.len(), "could not record refused requests"),
        }
    }

    /// Stages the events of a committed new request for the next [`Outlets::flush`].
    pub fn publish(&mut self, submission: &Submission, request_id: i64, event_ids: &[i64], reply_status: u16) {
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
            self.pending.push(FeedEntry::new(row));
        }
    }

    /// Sends the staged entries as one batch (none when nothing was staged).
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch: FeedBatch = std::mem::take(&mut self.pending).into();
        let _ = self.feed.send(batch);
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
