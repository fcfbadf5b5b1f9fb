//! Indexing the readings of events journaled before the readings index existed (or before
//! it had its hour level, or by a version whose replays did not index): in the background,
//! in bounded batches, so start-up does not wait for it.
//!
//! The first start of this version records in `readings_backfill` the last request id it
//! found; every request up to it whose protocol declares readings is read again (its events
//! derived from the body as for a replay), and its processed events' readings are handed to
//! the writer, which indexes them in a transaction of their own (a reading already indexed
//! is not counted twice) and moves the cursor on. Requests after it are indexed as they
//! arrive. Until the cursor reaches the end, the meter pages read every reading, not the
//! hour level.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::derive::{Derive, Deriving, readings_of};
use super::indexer::{Indexed, Indexer, Origin};
use super::keys::KEY;
use super::texts::SPEC;
use super::{Journal, JournalError};
use crate::event::Event;
use crate::spec::readings::Reading;

/// Request ids looked at per batch at most (most may be of protocols without readings)...
const WINDOW: i64 = 20_000;
/// ...and requests with readings read again per batch at most.
const REQUESTS: i64 = 200;
/// The pause between batches, so ingest keeps the writer.
const PAUSE: Duration = Duration::from_millis(20);

/// How far the backfill has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Requests up to this id are indexed.
    pub next: i64,
    /// The last request it has to index.
    pub last: i64,
    /// Readings it added.
    pub indexed: u64,
}

impl Progress {
    pub fn done(&self) -> bool {
        self.next >= self.last
    }
}

/// One request's processed events with their readings.
#[derive(Debug)]
pub struct RequestReadings {
    pub request_id: i64,
    pub protocol: String,
    pub source: String,
    pub received_ms: i64,
    pub events: Vec<(i64, Vec<Reading>, bool)>,
}

/// What one batch indexes, and where the cursor goes after it.
#[derive(Debug)]
pub struct Batch {
    pub requests: Vec<RequestReadings>,
    pub next: i64,
}

/// Records, once, the last request the backfill has to index (on the write connection,
/// before the writer starts; a new journal has none and is done at once).
pub fn start(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO readings_backfill (id, next_request, last_request)
         SELECT 1, 0, COALESCE(MAX(id), 0) FROM requests",
        [],
    )?;
    Ok(())
}

/// The backfill's progress (none before [`start`]).
pub fn progress(conn: &Connection) -> rusqlite::Result<Option<Progress>> {
    conn.query_row("SELECT next_request, last_request, indexed FROM readings_backfill WHERE id = 1", [], |r| {
        Ok(Progress { next: r.get(0)?, last: r.get(1)?, indexed: r.get::<_, i64>(2)?.max(0) as u64 })
    })
    .optional()
}

/// Whether the hour level is complete (the backfill is done).
pub fn hours_ready(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(progress(conn)?.is_some_and(|p| p.done()))
}

/// The next batch after `at`: the requests of `protocols` in the next window of ids, at
/// most [`REQUESTS`] of them (the cursor then moves to the last one read).
pub fn read_batch(
    conn: &Connection,
    derive: &dyn Derive,
    protocols: &[String],
    at: Progress,
) -> Result<Batch, JournalError> {
    let end = at.last.min(at.next.saturating_add(WINDOW));
    let wanted = serde_json::to_string(protocols).unwrap_or_default();
    let mut stmt = conn.prepare_cached(
        "SELECT id, protocol, source, received_ms FROM requests
         WHERE id > ?1 AND id <= ?2 AND protocol IN (SELECT value FROM json_each(?3)) ORDER BY id LIMIT ?4",
    )?;
    let found = stmt.query_map(params![at.next, end, wanted, REQUESTS], |r| {
        Ok(RequestReadings {
            request_id: r.get(0)?,
            protocol: r.get(1)?,
            source: r.get(2)?,
            received_ms: r.get(3)?,
            events: Vec::new(),
        })
    })?;
    let (mut requests, mut read, mut last_read) = (Vec::new(), 0, at.next);
    let mut deriving = Deriving::new(derive);
    for request in found {
        let mut request = request?;
        (read, last_read) = (read + 1, request.request_id);
        request.events = events(conn, derive, &mut deriving, request.request_id)?;
        if !request.events.is_empty() {
            requests.push(request);
        }
    }
    Ok(Batch { requests, next: if read == REQUESTS { last_read } else { end } })
}

type EventRow = (i64, i64, Option<String>, String, bool, bool);

/// The processed events of request `id` that carry readings or an image.
fn events(
    conn: &Connection,
    derive: &dyn Derive,
    deriving: &mut Deriving<'_>,
    id: i64,
) -> Result<Vec<(i64, Vec<Reading>, bool)>, JournalError> {
    let rows: Vec<EventRow> = conn
        .prepare_cached(&format!(
            "SELECT e.id, e.idx, {KEY}, e.data, e.blob, {SPEC} != '' FROM events e JOIN requests r ON r.id = e.request_id
             WHERE e.request_id = ?1 AND e.status = 'processed' ORDER BY e.id"
        ))?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (event_id, index, key, data, blob, derived) in rows {
        let event: Option<Event> = if derived && data.is_empty() {
            deriving.event(conn, id, index as usize, key.as_deref())?.ok()
        } else {
            serde_json::from_str(&data).ok()
        };
        let Some(event) = event else { continue };
        let (readings, image) = readings_of(derive, &event, blob);
        if !readings.is_empty() || image {
            out.push((event_id, readings, image));
        }
    }
    Ok(out)
}

/// Indexes `batch` and moves the cursor on (the writer's transaction).
pub fn write_batch(tx: &Transaction<'_>, batch: &Batch) -> rusqlite::Result<()> {
    let (mut added, mut indexer) = (0, Indexer::default());
    for r in &batch.requests {
        let origin = Origin { protocol: &r.protocol, source: &r.source, received_ms: r.received_ms, fresh: false };
        let events: Vec<Indexed<'_>> =
            r.events.iter().map(|(id, readings, image)| (*id, readings.as_slice(), *image)).collect();
        added += indexer.index_events(tx, &origin, r.request_id, &events)?;
    }
    indexer.save(tx)?;
    tx.execute(
        "UPDATE readings_backfill SET next_request = MAX(next_request, ?1), indexed = indexed + ?2 WHERE id = 1",
        params![batch.next, added as i64],
    )?;
    Ok(())
}

/// Runs the backfill to its end (logging its progress), then returns. It reads at most a
/// fifth of the time (a pause of four times each read after it), and hands the writer only
/// batches with readings, or the cursor once a second, so ingest keeps the cores and the
/// writer.
pub async fn run(journal: Arc<Journal>, derive: Arc<dyn Derive + Send + Sync>) {
    let protocols = derive.reading_protocols();
    let (mut logged, mut saved, mut cursor) = (Instant::now(), Instant::now(), None::<Progress>);
    loop {
        let (at, batch, took) = match read(&journal, &derive, &protocols, cursor).await {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => return tracing::error!(error = %e, "readings index: the backfill stopped"),
        };
        if cursor.is_none() {
            tracing::info!(
                from = at.next,
                to = at.last,
                "readings index: indexing journaled requests in the background"
            );
        }
        let next = batch.next;
        cursor = Some(Progress { next, ..at });
        if !batch.requests.is_empty() || next >= at.last || saved.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = journal.index_readings(batch).await {
                return tracing::error!(error = %e, "readings index: the backfill stopped");
            }
            saved = Instant::now();
        }
        if next >= at.last {
            return tracing::info!(requests = at.last, "readings index: the journaled requests are indexed");
        }
        if logged.elapsed() >= Duration::from_secs(10) {
            tracing::info!(done = next, of = at.last, "readings index: backfill under way");
            logged = Instant::now();
        }
        tokio::time::sleep(PAUSE.max(took * 4)).await;
    }
}

/// The next batch from `cursor` (or from the journal's record of the progress), with the time
/// its reading took; none when the backfill is done.
async fn read(
    journal: &Arc<Journal>,
    derive: &Arc<dyn Derive + Send + Sync>,
    protocols: &[String],
    cursor: Option<Progress>,
) -> Result<Option<(Progress, Batch, Duration)>, JournalError> {
    let (journal, derive, protocols) = (journal.clone(), derive.clone(), protocols.to_vec());
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let conn = journal.reader()?;
        let at = match cursor {
            Some(at) => Some(at),
            None => progress(&conn)?,
        };
        let Some(at) = at.filter(|p| !p.done()) else { return Ok(None) };
        let batch = read_batch(&conn, derive.as_ref(), &protocols, at)?;
        Ok(Some((at, batch, started.elapsed())))
    })
    .await
    .map_err(|_| JournalError::Stopped)?
}
