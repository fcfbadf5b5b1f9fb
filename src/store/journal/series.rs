//! Reading the readings index (`readings.rs` writes it): the series, a series' readings over
//! a time range, its recent reading times (for its usual interval), and the raw body of the
//! last image of its source.

use rusqlite::{Connection, OptionalExtension, params};

pub use super::rollup::rounds;
use super::{backfill, rollup};

use crate::meters::{self, Round, Summary};

/// Series with at least this many readings are read at the hour level where it suffices.
pub const COARSE_FROM: u64 = 10_000;

/// One series as the index keeps it.
#[derive(Clone, Debug)]
pub struct SeriesRow {
    pub id: i64,
    pub slug: String,
    pub protocol: String,
    pub source: String,
    pub name: String,
    pub unit: Option<String>,
    pub kind: String,
    pub last_value: Option<f64>,
    pub last_ms: i64,
    pub status: Option<String>,
    pub count: u64,
    pub has_image: bool,
}

const SELECT: &str = "SELECT s.id, s.slug, s.protocol, s.source, s.name, s.unit, s.kind, s.last_value, s.last_ms,
    s.status, s.count, EXISTS (SELECT 1 FROM series_images i WHERE i.protocol = s.protocol AND i.source = s.source)
    FROM series s";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SeriesRow> {
    Ok(SeriesRow {
        id: r.get(0)?,
        slug: r.get(1)?,
        protocol: r.get(2)?,
        source: r.get(3)?,
        name: r.get(4)?,
        unit: r.get(5)?,
        kind: r.get(6)?,
        last_value: r.get(7)?,
        last_ms: r.get(8)?,
        status: r.get(9)?,
        count: r.get::<_, i64>(10)?.max(0) as u64,
        has_image: r.get(11)?,
    })
}

/// Every series, by protocol and name.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<SeriesRow>> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY s.protocol, s.name"))?;
    stmt.query_map([], row)?.collect()
}

/// The series whose url id is `slug`.
pub fn find(conn: &Connection, slug: &str) -> rusqlite::Result<Option<SeriesRow>> {
    conn.query_row(&format!("{SELECT} WHERE s.slug = ?1"), [slug], row).optional()
}

/// The distinct times of the series' last `n` readings, newest first.
pub fn recent_times(conn: &Connection, series_id: i64, n: usize) -> rusqlite::Result<Vec<i64>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT ms FROM readings WHERE series_id = ?1 ORDER BY ms DESC LIMIT ?2")?;
    stmt.query_map(params![series_id, n as i64], |r| r.get(0))?.collect()
}

/// The series' values with `since <= ms < until`, oldest first (error rounds left out).
pub fn points(conn: &Connection, series_id: i64, since: i64, until: i64) -> rusqlite::Result<Vec<(i64, f64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ms, value FROM readings WHERE series_id = ?1 AND ms >= ?2 AND ms < ?3 AND value IS NOT NULL
         ORDER BY ms, event_id",
    )?;
    stmt.query_map(params![series_id, since, until], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// The last good value before `before` (what the first reading of a range is counted from).
pub fn value_before(conn: &Connection, series_id: i64, before: i64) -> rusqlite::Result<Option<f64>> {
    conn.prepare_cached(
        "SELECT value FROM readings WHERE series_id = ?1 AND ms < ?2 AND value IS NOT NULL AND status IS NULL
         ORDER BY ms DESC, event_id DESC LIMIT 1",
    )?
    .query_row(params![series_id, before], |r| r.get(0))
    .optional()
}

/// `since..until` of `series` as summaries: its whole hours from the hour level, the readings
/// at its edges one by one; none when the series is small, the hour level not yet complete
/// (the backfill is under way) or the range holds no whole hour.
pub fn summaries(
    conn: &Connection,
    series: &SeriesRow,
    since: i64,
    until: i64,
) -> rusqlite::Result<Option<Vec<Summary>>> {
    if series.count < COARSE_FROM || !backfill::hours_ready(conn)? {
        return Ok(None);
    }
    let Some(whole) = rollup::whole_hours(since, until) else { return Ok(None) };
    let (head, tail) = rollup::edges(conn, series.id, since, until, whole)?;
    let single = |r: &Round| meters::summarize(std::slice::from_ref(r));
    let mut out: Vec<Summary> = head.iter().filter_map(single).collect();
    out.extend(rollup::summaries(conn, series.id, whole.0, whole.1)?);
    out.extend(tail.iter().filter_map(single));
    Ok(Some(out))
}

/// The raw body of the last image of the series' source (its request is kept while it is
/// the last one).
pub fn image(conn: &Connection, series: &SeriesRow) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT r.body FROM series_images i JOIN requests r ON r.id = i.request_id
         WHERE i.protocol = ?1 AND i.source = ?2",
        params![series.protocol, series.source],
        |r| r.get(0),
    )
    .optional()
}
