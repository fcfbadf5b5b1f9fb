//! The hour level of the readings index: one row per series and UTC hour (`readings_hours`)
//! with that hour's summary (`meters::Summary`: how many values, the first, lowest, highest
//! and last, and its good readings' first, last and consumption), so a year of a series is
//! read as ~8,800 rows instead of ~100,000. A new request's readings that come after all of
//! their hour's extend its row; readings that arrive late, between older ones, are spliced in
//! from their two neighbours (senders on many connections race, so this is common); otherwise
//! (late readings interleaving older ones, a replay, a failed write, pruning) the hour's row
//! is computed again from its readings. Either way in the same transaction of the writer, so
//! it is never out of step with them; a commit reads and writes each hour row it touches
//! once ([`Hours`]), however many of its requests fall in that hour.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::meters::{self, Round, Stretch, Summary};

pub const HOUR_MS: i64 = 3_600_000;

/// Computes the rows of `hours` (hour numbers, `ms / HOUR_MS`) of `series_id` again.
pub fn touch(tx: &Transaction<'_>, series_id: i64, hours: impl IntoIterator<Item = i64>) -> rusqlite::Result<()> {
    let mut done = std::collections::HashSet::new();
    for hour in hours.into_iter().filter(|h| done.insert(*h)) {
        write(tx, series_id, hour, recount(tx, series_id, hour)?.as_ref())?;
    }
    Ok(())
}

/// The summary of hour `hour` of `series_id` computed from its readings.
fn recount(conn: &Connection, series_id: i64, hour: i64) -> rusqlite::Result<Option<Summary>> {
    Ok(meters::summarize(&rounds(conn, series_id, hour * HOUR_MS, (hour + 1) * HOUR_MS)?))
}

/// One hour row as a commit has it: as read, changed, or to be computed again from its
/// readings (at its next use or at the end of the commit).
enum Slot {
    Clean(Option<Summary>),
    Dirty(Option<Summary>),
    Stale,
}

/// The hour rows one commit reads or changes, each read at most once and written back once
/// at its end ([`Hours::save`]) however many of the commit's requests fall in it. Readings
/// are in the table as they are added; only their hours wait.
#[derive(Default)]
pub struct Hours {
    rows: HashMap<(i64, i64), Slot>,
}

impl Hours {
    /// The hour's summary as this commit has it so far, or `None` when it is to be computed
    /// again anyway (readings added to it meanwhile are counted then).
    fn get(&mut self, conn: &Connection, series_id: i64, hour: i64) -> rusqlite::Result<Option<Option<Summary>>> {
        let summary = match self.rows.get(&(series_id, hour)) {
            Some(Slot::Clean(s) | Slot::Dirty(s)) => return Ok(Some(s.clone())),
            Some(Slot::Stale) => return Ok(None),
            None => summaries(conn, series_id, hour, hour + 1)?.pop(),
        };
        self.rows.insert((series_id, hour), Slot::Clean(summary.clone()));
        Ok(Some(summary))
    }

    fn set(&mut self, series_id: i64, hour: i64, summary: Summary) {
        self.rows.insert((series_id, hour), Slot::Dirty(Some(summary)));
    }

    /// Marks `hours` of `series_id` to be computed again from their readings.
    pub fn touch(&mut self, series_id: i64, hours: impl IntoIterator<Item = i64>) {
        for hour in hours {
            self.rows.insert((series_id, hour), Slot::Stale);
        }
    }

    /// Adds `rounds` (readings of `series_id` a new request just added, in order) to their
    /// hours: an hour whose readings all came before them is extended, one they fall among
    /// gets them spliced in ([`meters::splice`]), and only one where they interleave with
    /// older readings is computed again.
    pub fn extend(&mut self, conn: &Connection, series_id: i64, rounds: &[Round]) -> rusqlite::Result<()> {
        for hour in rounds.chunk_by(|a, b| a.ms.div_euclid(HOUR_MS) == b.ms.div_euclid(HOUR_MS)) {
            let h = hour[0].ms.div_euclid(HOUR_MS);
            let Some(new) = meters::summarize(hour) else { continue };
            let Some(kept) = self.get(conn, series_id, h)? else { continue };
            match kept {
                Some(kept) if kept.last.0 <= new.first.0 => self.set(series_id, h, meters::merge(&kept, &new)),
                Some(kept) => match neighbours(conn, series_id, h, hour)? {
                    Some((before, after)) => self.set(series_id, h, meters::splice(&kept, &new, before, after)),
                    None => self.touch(series_id, [h]),
                },
                None => self.set(series_id, h, new),
            }
        }
        Ok(())
    }

    /// Writes the hours this commit changed.
    pub fn save(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        for ((series_id, hour), slot) in self.rows {
            match slot {
                Slot::Clean(_) => {}
                Slot::Dirty(s) => write(tx, series_id, hour, s.as_ref())?,
                Slot::Stale => write(tx, series_id, hour, recount(tx, series_id, hour)?.as_ref())?,
            }
        }
        Ok(())
    }
}

/// For `run` (readings of hour `h` just added, in order, that arrived after later ones): the
/// hour's good values just before and just after it, or none when an older reading falls
/// within its time span (then the hour is computed again). Reads a few rows, not the hour.
fn neighbours(conn: &Connection, series_id: i64, h: i64, run: &[Round]) -> rusqlite::Result<Option<Around>> {
    let (first, last) = (run[0].ms, run[run.len() - 1].ms);
    let within: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM readings WHERE series_id = ?1 AND ms BETWEEN ?2 AND ?3")?
        .query_row(params![series_id, first, last], |r| r.get(0))?;
    if within != run.len() as i64 {
        return Ok(None);
    }
    let good = |sql: &str, from: i64, to: i64| -> rusqlite::Result<Option<f64>> {
        conn.prepare_cached(sql)?.query_row(params![series_id, from, to], |r| r.get(0)).optional()
    };
    let before = good(
        "SELECT value FROM readings WHERE series_id = ?1 AND ms >= ?2 AND ms < ?3
             AND status IS NULL AND value IS NOT NULL ORDER BY ms DESC, event_id DESC LIMIT 1",
        h * HOUR_MS,
        first,
    )?;
    let after = good(
        "SELECT value FROM readings WHERE series_id = ?1 AND ms > ?2 AND ms < ?3
             AND status IS NULL AND value IS NOT NULL ORDER BY ms, event_id LIMIT 1",
        last,
        (h + 1) * HOUR_MS,
    )?;
    Ok(Some((before, after)))
}

/// The good values just before and just after a run of readings.
type Around = (Option<f64>, Option<f64>);

/// Writes the row of hour `hour` of `series_id` (none: the hour has no values, no row).
fn write(tx: &Transaction<'_>, series_id: i64, hour: i64, s: Option<&Summary>) -> rusqlite::Result<()> {
    let Some(s) = s else {
        tx.prepare_cached("DELETE FROM readings_hours WHERE series_id = ?1 AND hour = ?2")?
            .execute(params![series_id, hour])?;
        return Ok(());
    };
    let g = &s.stretch;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO readings_hours (series_id, hour, n, first_ms, first_v, min_ms, min_v, max_ms, max_v,
             last_ms, last_v, good, good_first, good_last, used)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        series_id,
        hour,
        s.values as i64,
        s.first.0,
        s.first.1,
        s.min.0,
        s.min.1,
        s.max.0,
        s.max.1,
        s.last.0,
        s.last.1,
        g.good as i64,
        g.first,
        g.last,
        g.used
    ])?;
    Ok(())
}

/// Drops the hours of `series_id` before `cutoff_ms` and computes the hour it falls in again.
pub fn prune(tx: &Transaction<'_>, series_id: i64, cutoff_ms: i64) -> rusqlite::Result<()> {
    let hour = cutoff_ms.div_euclid(HOUR_MS);
    tx.execute("DELETE FROM readings_hours WHERE series_id = ?1 AND hour < ?2", params![series_id, hour])?;
    touch(tx, series_id, [hour])
}

/// The summaries of the hours `from <= hour < to` of `series_id` that have values, in order.
pub fn summaries(conn: &Connection, series_id: i64, from: i64, to: i64) -> rusqlite::Result<Vec<Summary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hour, n, first_ms, first_v, min_ms, min_v, max_ms, max_v, last_ms, last_v, good, good_first,
                good_last, used
         FROM readings_hours WHERE series_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
    )?;
    let rows = stmt.query_map(params![series_id, from, to], |r| {
        let at = |i: usize| -> rusqlite::Result<(i64, f64)> { Ok((r.get(i)?, r.get(i + 1)?)) };
        let stretch = Stretch {
            ms: r.get::<_, i64>(0)? * HOUR_MS,
            good: r.get::<_, i64>(10)?.max(0) as u64,
            first: r.get(11)?,
            last: r.get(12)?,
            used: r.get(13)?,
        };
        let values = r.get::<_, i64>(1)?.max(0) as u64;
        Ok(Summary { values, first: at(2)?, min: at(4)?, max: at(6)?, last: at(8)?, stretch })
    })?;
    rows.collect()
}

/// The range `since..until` split into its whole hours (hour numbers `from..to`) and the
/// parts before and after them (read reading by reading); `None` when it holds no whole hour.
pub fn whole_hours(since: i64, until: i64) -> Option<(i64, i64)> {
    let from = if since == i64::MIN {
        i64::MIN / HOUR_MS
    } else {
        since.div_euclid(HOUR_MS) + i64::from(since.rem_euclid(HOUR_MS) != 0)
    };
    let to = if until == i64::MAX { i64::MAX / HOUR_MS } else { until.div_euclid(HOUR_MS) };
    (from < to).then_some((from, to))
}

/// The readings of the edges of `since..until` outside the whole hours `from..to`.
pub fn edges(
    conn: &Connection,
    series_id: i64,
    since: i64,
    until: i64,
    (from, to): (i64, i64),
) -> rusqlite::Result<(Vec<Round>, Vec<Round>)> {
    let head = if since < from * HOUR_MS { rounds(conn, series_id, since, from * HOUR_MS)? } else { Vec::new() };
    let tail = if until > to * HOUR_MS && to < i64::MAX / HOUR_MS {
        rounds(conn, series_id, to * HOUR_MS, until)?
    } else {
        Vec::new()
    };
    Ok((head, tail))
}

/// The series' readings with `since <= ms < until`, oldest first.
pub fn rounds(conn: &Connection, series_id: i64, since: i64, until: i64) -> rusqlite::Result<Vec<Round>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ms, value, status FROM readings WHERE series_id = ?1 AND ms >= ?2 AND ms < ?3 ORDER BY ms, event_id",
    )?;
    stmt.query_map(params![series_id, since, until], |r| {
        Ok(Round { ms: r.get(0)?, value: r.get(1)?, status: r.get(2)? })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_splits_into_whole_hours_and_edges() {
        assert_eq!(whole_hours(0, 3 * HOUR_MS), Some((0, 3)));
        assert_eq!(whole_hours(1, 3 * HOUR_MS - 1), Some((1, 2)));
        assert_eq!(whole_hours(1, HOUR_MS + 5), None);
        assert_eq!(whole_hours(i64::MIN, i64::MAX), Some((i64::MIN / HOUR_MS, i64::MAX / HOUR_MS)));
    }
}
