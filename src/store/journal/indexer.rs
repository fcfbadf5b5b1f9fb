//! Writing the readings index (`readings.rs` has its tables) in one of the writer's
//! transactions: an [`Indexer`] takes the processed events of each request of a commit (new
//! requests, replays, a batch of the backfill) and adds their readings as they come, in
//! multi-row inserts, while each series row and each hour row it touches is read once and
//! written back once at the end of the commit ([`Indexer::save`]), however many of the
//! commit's requests carry readings of that series or hour.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::LazyLock;

use rusqlite::types::ToSql;
use rusqlite::{Transaction, params};

use super::readings::slug;
use super::{Status, Submission, Target, rollup};
use crate::meters::Round;
use crate::spec::readings::Reading;

/// Readings per multi-row insert (the rest of a series' readings go one by one).
const CHUNK: usize = 32;

const INSERT_ONE: &str =
    "INSERT OR IGNORE INTO readings (series_id, ms, event_id, value, status) VALUES (?1, ?2, ?3, ?4, ?5)";

static INSERT_CHUNK: LazyLock<String> = LazyLock::new(|| {
    let rows = vec!["(?, ?, ?, ?, ?)"; CHUNK].join(", ");
    format!("INSERT OR IGNORE INTO readings (series_id, ms, event_id, value, status) VALUES {rows}")
});

/// Creates a series on its first reading, or updates it with this commit's first group of
/// its readings; returns its row as it is then.
const UPSERT: &str = "
INSERT INTO series (slug, protocol, source, name, unit, kind, last_value, last_ms, status, count)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)
ON CONFLICT (slug) DO UPDATE SET
    unit = COALESCE(excluded.unit, unit),
    kind = excluded.kind,
    last_value = CASE WHEN excluded.last_ms >= last_ms THEN COALESCE(excluded.last_value, last_value)
                      ELSE last_value END,
    status = CASE WHEN excluded.last_ms >= last_ms THEN excluded.status ELSE status END,
    last_ms = MAX(last_ms, excluded.last_ms)
RETURNING id, last_ms, last_value, status";

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

/// A series row as this commit leaves it: written back once, at the end.
struct Series {
    id: i64,
    unit: Option<String>,
    kind: &'static str,
    last_ms: i64,
    last_value: Option<f64>,
    status: Option<String>,
    added: i64,
}

impl Series {
    /// Takes in a group of readings as the series row's upsert would.
    fn apply(&mut self, group: &Group<'_>) {
        let (ms, value, status) = group.last();
        if group.first.unit.is_some() {
            self.unit.clone_from(&group.first.unit);
        }
        self.kind = group.first.kind.as_str();
        if ms >= self.last_ms {
            self.last_value = value.or(self.last_value);
            self.status = status.map(str::to_owned);
            self.last_ms = ms;
        }
    }
}

/// The request readings come from: its protocol, source and receive time, and whether its
/// events are the journal's newest rows (a new request's, not a replay's or the backfill's).
pub struct Origin<'a> {
    pub protocol: &'a str,
    pub source: &'a str,
    pub received_ms: i64,
    pub fresh: bool,
}

/// One processed event to index: its row, its readings, whether its body is an image.
pub type Indexed<'a> = (i64, &'a [Reading], bool);

/// The readings index work of one transaction.
#[derive(Default)]
pub struct Indexer {
    /// By protocol and series name.
    series: HashMap<String, Series>,
    hours: rollup::Hours,
}

impl Indexer {
    /// Indexes the readings and images of the processed events of a submission (`event_ids`:
    /// the rows its events got, in order): a new request, or a replayed event (its readings
    /// counted once however often it is replayed).
    pub fn index(
        &mut self,
        tx: &Transaction<'_>,
        s: &Submission,
        request_id: i64,
        event_ids: &[i64],
    ) -> rusqlite::Result<()> {
        let processed = s.events.iter().zip(event_ids).filter(|(e, _)| e.outcome == Status::Processed);
        let events: Vec<Indexed<'_>> = processed.map(|(e, id)| (*id, e.readings.as_slice(), e.image)).collect();
        if events.iter().all(|(_, readings, image)| readings.is_empty() && !image) {
            return Ok(());
        }
        match &s.target {
            Target::New(r) => {
                let origin =
                    Origin { protocol: &r.protocol, source: &r.source, received_ms: r.received_ms, fresh: true };
                self.index_events(tx, &origin, request_id, &events).map(drop)
            }
            Target::Replay { request_id, .. } => {
                let (protocol, source, received_ms): (String, String, i64) = tx.query_row(
                    "SELECT protocol, source, received_ms FROM requests WHERE id = ?1",
                    [request_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                let origin = Origin { protocol: &protocol, source: &source, received_ms, fresh: false };
                self.index_events(tx, &origin, *request_id, &events).map(drop)
            }
        }
    }

    /// Indexes `events` of request `request_id`: one row per reading (none twice), the
    /// hours they fall in extended or computed again, the last image where it is newer.
    /// Returns how many readings it added.
    pub fn index_events(
        &mut self,
        tx: &Transaction<'_>,
        origin: &Origin<'_>,
        request_id: i64,
        events: &[Indexed<'_>],
    ) -> rusqlite::Result<usize> {
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut by_name = HashMap::new();
        for &(event_id, readings, image) in events {
            for r in readings {
                let n = *by_name.entry(r.name.as_str()).or_insert_with(|| {
                    groups.push(Group { first: r, rows: Vec::new() });
                    groups.len() - 1
                });
                groups[n].rows.push((event_id, r));
            }
            if image {
                image_row(tx, origin, request_id, event_id)?;
            }
        }
        let mut added = 0;
        for group in &groups {
            added += self.add(tx, origin, group)?;
        }
        Ok(added)
    }

    fn add(&mut self, tx: &Transaction<'_>, origin: &Origin<'_>, group: &Group<'_>) -> rusqlite::Result<usize> {
        let series = self.series(tx, origin, group)?;
        series.apply(group);
        let series_id = series.id;
        let added = insert(tx, series_id, &group.rows)?;
        series.added += added as i64;
        if origin.fresh && added == group.rows.len() {
            let mut rounds: Vec<(i64, Round)> = group.rows.iter().map(|(id, r)| (*id, round(r))).collect();
            rounds.sort_by_key(|(id, r)| (r.ms, *id));
            let rounds: Vec<Round> = rounds.into_iter().map(|(_, r)| r).collect();
            self.hours.extend(tx, series_id, &rounds)?;
        } else {
            self.hours.touch(series_id, group.rows.iter().map(|(_, r)| r.ms.div_euclid(rollup::HOUR_MS)));
        }
        Ok(added)
    }

    /// The group's series as this commit has it (created, or read, on its first group).
    fn series(
        &mut self,
        tx: &Transaction<'_>,
        origin: &Origin<'_>,
        group: &Group<'_>,
    ) -> rusqlite::Result<&mut Series> {
        match self.series.entry(format!("{}\n{}", origin.protocol, group.first.name)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => Ok(e.insert(upsert(tx, origin, group)?)),
        }
    }

    /// Writes back the series and hour rows this transaction changed.
    pub fn save(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut update = tx.prepare_cached(
            "UPDATE series SET unit = COALESCE(?2, unit), kind = ?3, last_ms = ?4, last_value = ?5, status = ?6,
                 count = count + ?7 WHERE id = ?1",
        )?;
        for s in self.series.values() {
            update.execute(params![s.id, s.unit, s.kind, s.last_ms, s.last_value, s.status, s.added])?;
        }
        self.hours.save(tx)
    }
}

/// Creates or updates the group's series row with the group's last reading; the row then.
fn upsert(tx: &Transaction<'_>, origin: &Origin<'_>, group: &Group<'_>) -> rusqlite::Result<Series> {
    let (protocol, r) = (origin.protocol, group.first);
    let (ms, value, status) = group.last();
    let row =
        params![slug(protocol, &r.name), protocol, origin.source, r.name, r.unit, r.kind.as_str(), value, ms, status];
    tx.prepare_cached(UPSERT)?.query_row(row, |row| {
        Ok(Series {
            id: row.get(0)?,
            unit: r.unit.clone(),
            kind: r.kind.as_str(),
            last_ms: row.get(1)?,
            last_value: row.get(2)?,
            status: row.get(3)?,
            added: 0,
        })
    })
}

/// Adds `rows` (event row, reading) to series `series_id` (a reading already there is left
/// alone); returns how many were new.
fn insert(tx: &Transaction<'_>, series_id: i64, rows: &[(i64, &Reading)]) -> rusqlite::Result<usize> {
    let mut added = 0;
    let mut chunks = rows.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(CHUNK * 5);
        for (event_id, r) in chunk {
            values.extend([&series_id as &dyn ToSql, &r.ms, event_id, &r.value, &r.status]);
        }
        added += tx.prepare_cached(&INSERT_CHUNK)?.execute(values.as_slice())?;
    }
    let mut one = tx.prepare_cached(INSERT_ONE)?;
    for (event_id, r) in chunks.remainder() {
        added += one.execute(params![series_id, r.ms, event_id, r.value, r.status])?;
    }
    Ok(added)
}

/// Records event `event_id`'s body as the last image of its source's series, if it is newer.
fn image_row(tx: &Transaction<'_>, origin: &Origin<'_>, request_id: i64, event_id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO series_images (protocol, source, request_id, event_id, ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (protocol, source) DO UPDATE SET request_id = excluded.request_id,
             event_id = excluded.event_id, ms = excluded.ms
         WHERE excluded.ms >= series_images.ms",
    )?
    .execute(params![origin.protocol, origin.source, request_id, event_id, origin.received_ms])?;
    Ok(())
}

fn round(r: &Reading) -> Round {
    Round { ms: r.ms, value: r.value, status: r.status.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::readings::Kind;
    use crate::store::journal::schema;

    const MINUTE: i64 = 60_000;

    /// A counter reading at minute `m` (every 7th an error round with no value).
    fn reading(m: i64) -> Reading {
        let error = m % 7 == 3;
        Reading {
            name: "ferienhaus / main".into(),
            unit: Some("m³".into()),
            kind: Kind::Counter,
            ms: m * MINUTE,
            value: (!error).then_some((m * 2 - m % 5) as f64),
            status: error.then(|| "Rate too high".into()),
        }
    }

    /// Indexes each request (a list of minutes; event rows are the minutes) in one commit.
    fn commit(conn: &mut rusqlite::Connection, requests: &[Vec<i64>], fresh: bool) {
        let tx = conn.transaction().unwrap();
        let mut indexer = Indexer::default();
        for (n, minutes) in requests.iter().enumerate() {
            let readings: Vec<Vec<Reading>> = minutes.iter().map(|m| vec![reading(*m)]).collect();
            let events: Vec<Indexed<'_>> =
                minutes.iter().zip(&readings).map(|(m, r)| (*m, r.as_slice(), false)).collect();
            let origin = Origin { protocol: "ai-on-the-edge", source: "ferienhaus", received_ms: 0, fresh };
            indexer.index_events(&tx, &origin, n as i64, &events).unwrap();
        }
        indexer.save(&tx).unwrap();
        tx.commit().unwrap();
    }

    fn hour_rows(conn: &rusqlite::Connection) -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn.prepare("SELECT * FROM readings_hours ORDER BY series_id, hour").unwrap();
        let rows = stmt.query_map([], |r| (0..15).map(|i| r.get(i)).collect::<Result<Vec<_>, _>>()).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn many_requests_of_one_series_in_one_commit_in_and_out_of_order_give_the_hours_a_recount_gives() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = schema::open(&dir.path().join("journal.db")).unwrap();
        // Hours 0-1: blocks of ten minutes in a racing order (extended and spliced).
        let blocks: Vec<Vec<i64>> =
            [3, 0, 1, 5, 4, 11, 2, 7, 6, 9, 10, 8].iter().map(|b| (b * 10..b * 10 + 10).collect()).collect();
        commit(&mut conn, &blocks[..5], true);
        commit(&mut conn, &blocks[5..], true);
        // Hours 2-3: requests whose readings interleave, then one after them all (in the same
        // commit), then one with its own out of order.
        let mut woven: Vec<Vec<i64>> = (0..6).map(|k| (120..228).filter(|m| m % 6 == k).collect()).collect();
        woven.push((228..240).collect());
        commit(&mut conn, &woven, true);
        commit(&mut conn, &[vec![250, 245, 241, 244]], true);
        // A resend (nothing new) and a replay (not fresh) in the same commit as new ones.
        commit(&mut conn, &[vec![246, 247], vec![245, 248], vec![249, 121]], true);
        commit(&mut conn, &[vec![260, 100]], false);

        let kept = hour_rows(&conn);
        assert_eq!(kept.len(), 5, "hours 0 to 4");
        let tx = conn.transaction().unwrap();
        rollup::touch(&tx, 1, 0..5).unwrap();
        tx.commit().unwrap();
        assert_eq!(kept, hour_rows(&conn), "the hours equal a recount");

        let all: Vec<i64> = (0..240).chain([241]).chain(244..251).chain([260]).collect();
        let row: (i64, i64, Option<f64>, Option<String>, Option<String>) = conn
            .query_row("SELECT count, last_ms, last_value, status, unit FROM series", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        let last = reading(260);
        assert_eq!(row, (all.len() as i64, last.ms, last.value, last.status, Some("m³".into())));
    }
}
