//! The readings index: the meter readings of processed events, kept beside the journal.
//!
//! `series` has one row per series (protocol + name) with its last value, time and status
//! and its count; `readings` one small row per reading, clustered by series and time (so a
//! range of one series is one index walk); `readings_hours` the hour level of the same
//! readings (`rollup.rs`); `series_images` the request whose raw body is the last image of a
//! source's series (that request is kept by retention while it is the last); and
//! `readings_backfill` how far the readings of events journaled before this index (or by a
//! version that did not index replays) have been indexed (`backfill.rs`). Rows are written by
//! the journal writer in the transaction of their events (a replayed event's too), from what
//! the request side computed of the operation's `x-hookyard-readings` block. Readings outlive
//! the journal's retention: they are pruned after `[journal] readings_retention_days`.

use rusqlite::{OptionalExtension, Transaction, params};
use sha2::Digest;

use super::rollup;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    protocol TEXT NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    unit TEXT,
    kind TEXT NOT NULL,
    last_value REAL,
    last_ms INTEGER NOT NULL,
    status TEXT,
    count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS readings (
    series_id INTEGER NOT NULL,
    ms INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    value REAL,
    status TEXT,
    PRIMARY KEY (series_id, ms, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_images (
    protocol TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    ms INTEGER NOT NULL,
    PRIMARY KEY (protocol, source)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings_hours (
    series_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    n INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    first_v REAL NOT NULL,
    min_ms INTEGER NOT NULL,
    min_v REAL NOT NULL,
    max_ms INTEGER NOT NULL,
    max_v REAL NOT NULL,
    last_ms INTEGER NOT NULL,
    last_v REAL NOT NULL,
    good INTEGER NOT NULL,
    good_first REAL NOT NULL,
    good_last REAL NOT NULL,
    used REAL NOT NULL,
    PRIMARY KEY (series_id, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings_backfill (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_request INTEGER NOT NULL,
    last_request INTEGER NOT NULL,
    indexed INTEGER NOT NULL DEFAULT 0
);
";

/// The url-safe, stable id of a series: 16 hex digits of the SHA-256 of protocol and name.
pub fn slug(protocol: &str, name: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{protocol}\n{name}").as_bytes());
    hex::encode(&digest[..8])
}

/// Removes the readings and images of events that failed after all (their write failed).
pub fn forget(tx: &Transaction<'_>, event_ids: &[i64]) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (event_ids.iter().min(), event_ids.iter().max()) else { return Ok(()) };
    let touched: Vec<(i64, i64)> = tx
        .prepare("DELETE FROM readings WHERE event_id BETWEEN ?1 AND ?2 RETURNING series_id, ms")?
        .query_map(params![first, last], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    tx.execute("DELETE FROM series_images WHERE event_id BETWEEN ?1 AND ?2", params![first, last])?;
    let mut hours = std::collections::BTreeMap::<i64, Vec<i64>>::new();
    for &(series_id, ms) in &touched {
        hours.entry(series_id).or_default().push(ms.div_euclid(rollup::HOUR_MS));
    }
    for (series_id, hours) in hours {
        rollup::touch(tx, series_id, hours)?;
    }
    refresh(tx, &touched.iter().map(|t| t.0).collect::<Vec<_>>())
}

/// Prunes readings older than `cutoff_ms` (their time, not their arrival); returns how many.
pub fn prune(tx: &Transaction<'_>, cutoff_ms: i64) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = tx.prepare("SELECT id FROM series")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut removed = 0;
    let mut touched = Vec::new();
    for id in ids {
        let n = tx.execute("DELETE FROM readings WHERE series_id = ?1 AND ms < ?2", params![id, cutoff_ms])?;
        if n > 0 {
            removed += n;
            touched.push(id);
            rollup::prune(tx, id, cutoff_ms)?;
        }
    }
    refresh(tx, &touched)?;
    Ok(removed)
}

/// Recomputes the count and last reading of `series` from their readings (a series left
/// without readings goes).
fn refresh(tx: &Transaction<'_>, series: &[i64]) -> rusqlite::Result<()> {
    let mut done = std::collections::HashSet::new();
    for id in series.iter().filter(|id| done.insert(**id)) {
        let last: Option<(i64, Option<f64>, Option<String>)> = tx
            .query_row(
                "SELECT ms, value, status FROM readings WHERE series_id = ?1 ORDER BY ms DESC LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((ms, value, status)) = last else {
            tx.execute("DELETE FROM series WHERE id = ?1", [id])?;
            continue;
        };
        let last_value: Option<f64> = tx
            .query_row(
                "SELECT value FROM readings WHERE series_id = ?1 AND value IS NOT NULL ORDER BY ms DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute(
            "UPDATE series SET last_ms = ?2, last_value = ?3, status = ?4,
             count = (SELECT COUNT(*) FROM readings WHERE series_id = ?1) WHERE id = ?1",
            params![id, ms, value.or(last_value), status],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::readings::{Kind, Reading};
    use crate::store::journal::indexer::Indexer;
    use crate::store::journal::{EventRecord, RequestRecord, Retention, Status, Submission, Target, retention, schema};

    fn submission(image: bool, rounds: &[(i64, Option<f64>, Option<&str>)]) -> Submission {
        let request = RequestRecord {
            protocol: "ai-on-the-edge".into(),
            operation: if image { "image" } else { "readings" }.into(),
            source: "ferienhaus".into(),
            received_ms: 0,
            headers: Vec::new(),
            verification: String::new(),
            body: bytes::Bytes::from_static(b"\xFF\xD8\xFF"),
            client: String::new(),
            method: "POST".into(),
            path: "/ai-on-the-edge/webhook".into(),
            reply_status: 200,
            failed_status: 503,
            spec: String::new(),
            query: String::new(),
        };
        let reading = |&(ms, value, status): &(i64, Option<f64>, Option<&str>)| Reading {
            name: "ferienhaus / main".into(),
            unit: None,
            kind: Kind::Counter,
            ms,
            value,
            status: status.map(str::to_owned),
        };
        let event = EventRecord {
            index: 0,
            key: None,
            data: "{}".into(),
            blob: image,
            outcome: Status::Processed,
            error: None,
            logs: Vec::new(),
            readings: rounds.iter().map(reading).collect(),
            image,
        };
        Submission { target: Target::New(Box::new(request)), events: vec![event], effects: Vec::new() }
    }

    /// Records `s` as request `id` with one event `id`, as the writer does.
    fn record(conn: &mut rusqlite::Connection, id: i64, s: &Submission) {
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO requests (id, protocol, operation, source, received_ms, headers, body)
             VALUES (?1, 'ai-on-the-edge', 'x', 'ferienhaus', 0, '[]', x'FFD8FF')",
            [id],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO events (id, request_id, idx, data, status) VALUES (?1, ?1, 0, '{}', 'processed')",
            [id],
        )
        .unwrap();
        let mut indexer = Indexer::default();
        indexer.index(&tx, s, id, &[id]).unwrap();
        indexer.save(&tx).unwrap();
        tx.commit().unwrap();
    }

    fn series_row(conn: &rusqlite::Connection) -> Option<(Option<f64>, i64, Option<String>, i64)> {
        conn.query_row("SELECT last_value, last_ms, status, count FROM series", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .unwrap()
    }

    #[test]
    fn the_last_reading_wins_by_time_and_pruning_keeps_the_counts_true_and_the_last_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = schema::open(&dir.path().join("journal.db")).unwrap();
        let day = 86_400_000;
        record(&mut conn, 1, &submission(false, &[(day, Some(1.0), None), (3 * day, Some(3.0), None)]));
        // An error round at the time of the last good one, and a late old reading.
        record(&mut conn, 2, &submission(false, &[(3 * day, None, Some("Rate too high")), (2 * day, Some(2.0), None)]));
        assert_eq!(series_row(&conn), Some((Some(3.0), 3 * day, Some("Rate too high".into()), 4)));
        record(&mut conn, 3, &submission(true, &[]));

        // Everything older than the journal's own window goes, but readings keep their days,
        // and the request of the last image stays.
        let rules = Retention { max_age_days: Some(0.0), readings_retention_days: 1.5, ..Retention::default() };
        retention::prune(&mut conn, &rules, 3 * day).unwrap();
        assert_eq!(series_row(&conn), Some((Some(3.0), 3 * day, Some("Rate too high".into()), 3)));
        let requests: Vec<i64> = conn
            .prepare("SELECT id FROM requests")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(requests, [3]);
        let rules = Retention { readings_retention_days: 0.0, ..rules };
        retention::prune(&mut conn, &rules, 4 * day).unwrap();
        assert_eq!(series_row(&conn), None, "a series without readings goes");
    }
}
