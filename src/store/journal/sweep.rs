//! The key sweep: retention of processed keys by age, in small slices between the writer's
//! turns.
//!
//! `processed_keys` has no time index: old keys are found by walking the table in digest
//! order, a slice of at most [`KEY_BATCH`] keys at a time, from where the last slice stopped
//! (kept in `key_sweep`), on from the first key past the last. A slice is due once a second,
//! and sooner while keys arrive: the writer owes the sweep twice as many keys as events it
//! committed (an event has at most one key), so the sweep outpaces arrivals and every key is
//! visited once per sweep of the whole table. A key is never dropped before its window ends
//! and goes at most one sweep after it. One turn runs at most [`MAX_SLICES`] slices, so the
//! writer is never held for long; the position is saved with every slice that removed keys,
//! and otherwise once a minute (an idle receiver does not write every second).

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

/// Keys looked at per slice (a key is a small row: a slice reads a few dozen pages).
pub const KEY_BATCH: i64 = 5000;
/// At most this many slices per writer turn.
pub const MAX_SLICES: u64 = 20;
/// A slice is due at least this often.
const EVERY: Duration = Duration::from_secs(1);
/// The position is saved at least this often while nothing is removed.
const SAVE_EVERY: Duration = Duration::from_secs(60);

/// The sweep's pace and position, kept by the writer.
pub struct KeySweep {
    /// The last digest looked at (`None`: not read from the journal yet).
    after: Option<Vec<u8>>,
    /// Keys the sweep owes (twice the events committed since the last slice).
    owed: u64,
    last: Instant,
    saved: Instant,
}

impl Default for KeySweep {
    fn default() -> Self {
        Self { after: None, owed: 0, last: Instant::now(), saved: Instant::now() }
    }
}

impl KeySweep {
    /// `events` were committed (each may have brought a key).
    pub fn arrived(&mut self, events: usize) {
        self.owed = self.owed.saturating_add(2 * events as u64);
    }

    /// How many slices are due now: one a second, more while keys are owed.
    pub fn due(&self) -> u64 {
        let owed = self.owed / KEY_BATCH as u64;
        if owed == 0 && self.last.elapsed() < EVERY { 0 } else { owed.clamp(1, MAX_SLICES) }
    }

    /// Runs the due slices (removing the keys received before `cutoff`) in one transaction;
    /// returns how many keys went.
    pub fn run(&mut self, conn: &mut Connection, cutoff: i64) -> rusqlite::Result<usize> {
        let slices = self.due();
        if slices == 0 {
            return Ok(0);
        }
        let tx = conn.transaction()?;
        let mut after = match self.after.take() {
            Some(after) => after,
            None => tx.query_row("SELECT after FROM key_sweep WHERE id = 1", [], |r| r.get(0))?,
        };
        let mut removed = 0;
        for _ in 0..slices {
            let (end, n) = slice(&tx, &after, cutoff)?;
            after = end;
            removed += n;
        }
        let save = removed > 0 || self.saved.elapsed() >= SAVE_EVERY;
        if save {
            tx.execute("UPDATE key_sweep SET after = ?1 WHERE id = 1", [&after])?;
        }
        tx.commit()?;
        if save {
            self.saved = Instant::now();
        }
        self.after = Some(after);
        self.owed = self.owed.saturating_sub(slices * KEY_BATCH as u64);
        self.last = Instant::now();
        Ok(removed)
    }
}

/// One slice: the next `KEY_BATCH` keys after `after` in digest order, going on from the first
/// key past the last one (never beyond `after`: a table smaller than a slice is covered once);
/// removes those received before `cutoff`. Returns where the slice ended and how many went.
fn slice(conn: &Connection, after: &[u8], cutoff: i64) -> rusqlite::Result<(Vec<u8>, usize)> {
    let (end, seen) = slice_end(conn, after, KEY_BATCH)?;
    let mut removed = 0;
    if let Some(end) = end {
        removed += remove(conn, after, &end, cutoff)?;
        if seen == KEY_BATCH {
            return Ok((end, removed));
        }
    }
    // Past the last key: on from the first, up to `after` at most.
    let (end, _) = slice_end(conn, &[], KEY_BATCH - seen)?;
    let end = match end {
        Some(end) if end.as_slice() < after => end,
        _ => after.to_vec(),
    };
    removed += remove(conn, &[], &end, cutoff)?;
    Ok((end, removed))
}

/// The last digest of the `limit` keys after `after`, and how many there are.
fn slice_end(conn: &Connection, after: &[u8], limit: i64) -> rusqlite::Result<(Option<Vec<u8>>, i64)> {
    conn.prepare_cached(
        "SELECT MAX(digest), COUNT(*) FROM
         (SELECT digest FROM processed_keys WHERE digest > ?1 ORDER BY digest LIMIT ?2)",
    )?
    .query_row(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// Removes the keys in `(after, end]` received before `cutoff`.
fn remove(conn: &Connection, after: &[u8], end: &[u8], cutoff: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM processed_keys WHERE digest > ?1 AND digest <= ?2 AND received_ms < ?3")?
        .execute(params![after, end, cutoff])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(keys: impl IntoIterator<Item = (Vec<u8>, i64)>) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::journal::schema::open(&dir.path().join("j.db")).unwrap();
        let mut insert =
            conn.prepare("INSERT INTO processed_keys (digest, event_id, received_ms) VALUES (?1, ?2, ?3)").unwrap();
        for (n, (digest, received)) in keys.into_iter().enumerate() {
            insert.execute(params![digest, n as i64, received]).unwrap();
        }
        drop(insert);
        (dir, conn)
    }

    fn left(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT event_id FROM processed_keys ORDER BY digest").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn saved(conn: &Connection) -> Vec<u8> {
        conn.query_row("SELECT after FROM key_sweep", [], |r| r.get(0)).unwrap()
    }

    /// A slice that begins in the middle of a table smaller than a slice goes on from its
    /// first key and covers every key once: old ones go, fresh ones stay, and the next slice
    /// begins where this one did.
    #[test]
    fn a_slice_from_the_middle_covers_a_small_table_once() {
        let (_dir, mut conn) = journal((0..10u8).map(|i| (vec![i * 20; 16], if i % 2 == 0 { 100 } else { 900 })));
        conn.execute("UPDATE key_sweep SET after = ?1", [vec![100u8; 16]]).unwrap();
        let mut sweep = KeySweep { last: Instant::now() - EVERY, ..KeySweep::default() };
        assert_eq!(sweep.run(&mut conn, 500).unwrap(), 5);
        assert_eq!(left(&conn), [1, 3, 5, 7, 9]);
        assert_eq!(saved(&conn), vec![100u8; 16]);
    }

    /// On a table of many slices, a key received before the cutoff goes once the sweep
    /// reaches it, a key of the window never does, and the sweep comes round again.
    #[test]
    fn slices_remove_every_expired_key_and_never_a_live_one() {
        let keys = (0..12_000u32).map(|i| {
            let digest = crate::store::dedup::digest(&i.to_string()).to_vec();
            (digest, if i % 3 == 0 { 100 } else { 900 })
        });
        let (_dir, mut conn) = journal(keys);
        let mut sweep = KeySweep::default();
        sweep.arrived(KEY_BATCH as usize / 2);
        assert_eq!(sweep.due(), 1);
        let first = sweep.run(&mut conn, 500).unwrap();
        assert!(first > 0 && first < 4000, "one slice removes part of the old keys: {first}");
        assert_eq!(sweep.due(), 0, "nothing owed and the last slice just ran");
        sweep.arrived(KEY_BATCH as usize);
        assert_eq!(sweep.due(), 2);
        let rest = sweep.run(&mut conn, 500).unwrap();
        assert_eq!(first + rest, 4000, "three slices of 5,000 cover the 12,000 keys");
        assert_eq!(left(&conn).len(), 8000);
        assert!(left(&conn).iter().all(|id| id % 3 != 0), "only old keys went");
        sweep.arrived(KEY_BATCH as usize);
        assert_eq!(sweep.run(&mut conn, 500).unwrap(), 0, "round again: nothing more is old");
        assert_eq!(left(&conn).len(), 8000);
    }

    #[test]
    fn the_sweep_outpaces_arrivals_up_to_its_cap_per_turn() {
        let mut sweep = KeySweep::default();
        assert_eq!(sweep.due(), 0, "idle and just swept");
        sweep.arrived(300_000);
        assert_eq!(sweep.due(), MAX_SLICES, "600,000 keys owed: the cap this turn, the rest after");
        sweep = KeySweep { last: Instant::now() - EVERY, ..KeySweep::default() };
        assert_eq!(sweep.due(), 1, "once a second while idle");
    }
}
