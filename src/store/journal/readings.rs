//! The readings index: the meter readings of processed events, kept beside the journal.
//!
//! `series` has one row per series (protocol + name) with its last value, time and status
//! and its count; `readings` one small row per reading, clustered by series and time (so a
//! range of one series is one index walk); `series_images` the request whose raw body is the
//! last image of a source's series (that request is kept by retention while it is the last).
//! Rows are written by the journal writer in the transaction of their events, from what the
//! request side computed of the operation's `x-hookyard-readings` block. Readings outlive
//! the journal's retention: they are pruned after `[journal] readings_retention_days`.

use rusqlite::{OptionalExtension, Transaction, params};
use sha2::Digest;

use super::{Status, Submission, Target};
use crate::spec::readings::Reading;

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
";

/// The url-safe, stable id of a series: 16 hex digits of the SHA-256 of protocol and name.
pub fn slug(protocol: &str, name: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{protocol}\n{name}").as_bytes());
    hex::encode(&digest[..8])
}

const UPSERT: &str = "
INSERT INTO series (slug, protocol, source, name, unit, kind, last_value, last_ms, status, count)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (slug) DO UPDATE SET
    count = count + excluded.count,
    unit = COALESCE(excluded.unit, unit),
    kind = excluded.kind,
    last_value = CASE WHEN excluded.last_ms >= last_ms THEN COALESCE(excluded.last_value, last_value)
                      ELSE last_value END,
    status = CASE WHEN excluded.last_ms >= last_ms THEN excluded.status ELSE status END,
    last_ms = MAX(last_ms, excluded.last_ms)
RETURNING id";

/// The readings of one series in one request, in order, with their event rows.
struct Group<'a> {
    first: &'a Reading,
    rows: Vec<(i64, &'a Reading)>,
}

impl Group<'_> {
    /// The series' last reading after this group, as one reading after another would leave
    /// it: the latest time wins (a tie: the later one), its value or the one before it.
    fn last(&self) -> (i64, Option<f64>, Option<&str>) {
        let mut last = (i64::MIN, None, None);
        for (_, r) in &self.rows {
            if r.ms >= last.0 {
                last = (r.ms, r.value.or(last.1), r.status.as_deref());
            }
        }
        last
    }
}

/// Indexes the readings and images of the processed events of a new request (`event_ids`:
/// the rows its events got, in order): one series row update per series and request (a
/// Wattmon block of 100 rows updates each column's series once), one row per reading.
pub fn index(tx: &Transaction<'_>, s: &Submission, request_id: i64, event_ids: &[i64]) -> rusqlite::Result<()> {
    let Target::New(request) = &s.target else { return Ok(()) };
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut by_name = std::collections::HashMap::new();
    for (e, event_id) in s.events.iter().zip(event_ids).filter(|(e, _)| e.outcome == Status::Processed) {
        for r in &e.readings {
            let n = *by_name.entry(r.name.as_str()).or_insert_with(|| {
                groups.push(Group { first: r, rows: Vec::new() });
                groups.len() - 1
            });
            groups[n].rows.push((*event_id, r));
        }
        if e.image {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO series_images (protocol, source, request_id, event_id, ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                request.protocol,
                request.source,
                request_id,
                event_id,
                request.received_ms
            ])?;
        }
    }
    for group in &groups {
        add(tx, &request.protocol, &request.source, group)?;
    }
    Ok(())
}

fn add(tx: &Transaction<'_>, protocol: &str, source: &str, group: &Group<'_>) -> rusqlite::Result<()> {
    let r = group.first;
    let (ms, value, status) = group.last();
    let count = group.rows.len() as i64;
    let row =
        params![slug(protocol, &r.name), protocol, source, r.name, r.unit, r.kind.as_str(), value, ms, status, count];
    let series_id: i64 = tx.prepare_cached(UPSERT)?.query_row(row, |row| row.get(0))?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO readings (series_id, ms, event_id, value, status) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (event_id, r) in &group.rows {
        insert.execute(params![series_id, r.ms, event_id, r.value, r.status])?;
    }
    Ok(())
}

/// Removes the readings and images of events that failed after all (their write failed).
pub fn forget(tx: &Transaction<'_>, event_ids: &[i64]) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (event_ids.iter().min(), event_ids.iter().max()) else { return Ok(()) };
    let touched: Vec<i64> = tx
        .prepare("DELETE FROM readings WHERE event_id BETWEEN ?1 AND ?2 RETURNING series_id")?
        .query_map(params![first, last], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    tx.execute("DELETE FROM series_images WHERE event_id BETWEEN ?1 AND ?2", params![first, last])?;
    refresh(tx, &touched)
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
    use crate::spec::readings::Kind;
    use crate::store::journal::{EventRecord, RequestRecord, Retention, retention, schema};

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
        index(&tx, s, id, &[id]).unwrap();
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
