//! Retention: pruning old requests from the journal, only ones fully done.
//!
//! A request may go when every event of it is `processed`, `duplicate` or `superseded` (never
//! a `failed` one, which still waits for a retry or a replay) and all its effects are
//! checkpointed. By age: requests received before `max_age_days` ago. By size: the oldest
//! such requests until the journal's used pages fit `max_size_mb`. Processed keys
//! (`processed_keys`) are pruned by age only: the dedup window is `max_age_days` even when the
//! size limit has pruned the requests that brought the keys long before (with the defaults it
//! does: 1024 MB hold far fewer than 30 days of a busy receiver's bodies). Refused requests
//! (`rejected.rs`) older than `rejected_retention_days` go too. Freed pages are returned to
//! the file system (incremental vacuum).

use rusqlite::{Connection, params};
use serde::Deserialize;

/// `[journal]` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Prune done requests older than this many days (unset: keep).
    pub max_age_days: Option<f64>,
    /// Prune the oldest done requests while the journal uses more than this (unset: no limit).
    pub max_size_mb: Option<f64>,
    /// Refuse new work (with the protocol's retryable reply) while the data directory's file
    /// system has less free space than this, before the disk is full (0: never).
    pub min_free_disk_mb: f64,
    /// How often to prune.
    pub prune_interval_ms: u64,
    /// `postgres://…`: share idempotency keys and the event ledger with other instances
    /// (see `store::shared`). Unset: this instance is alone.
    pub postgres_url: Option<crate::secret::Secret>,
    /// This instance's name in the shared journal (default: host name + data directory).
    pub instance: Option<String>,
    /// Keep meter readings (the readings index) this many days, by their time: they are
    /// small, so they outlive the requests they came from.
    pub readings_retention_days: f64,
    /// Refused requests kept at most (the oldest go first).
    pub rejected_max_rows: u64,
    /// Refused requests are kept this many days.
    pub rejected_retention_days: f64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_days: Some(30.0),
            max_size_mb: Some(1024.0),
            min_free_disk_mb: 256.0,
            prune_interval_ms: 60_000,
            postgres_url: None,
            instance: None,
            readings_retention_days: 400.0,
            rejected_max_rows: 10_000,
            rejected_retention_days: 7.0,
        }
    }
}

const BATCH: i64 = 1000;
/// Keys removed by age per batch (a key is a small row: one probe each).
const KEY_BATCH: i64 = 5000;
/// At most this many batches per pruning pass, so the writer is never held for long.
const MAX_BATCHES: usize = 20;
/// At most this many batches of keys a sweep pass (`sweep_batches`).
const MAX_SWEEP_BATCHES: usize = 200;

const DONE: &str = "NOT EXISTS (SELECT 1 FROM events e WHERE e.request_id = r.id AND e.status = 'failed')
     AND NOT EXISTS (SELECT 1 FROM effects f WHERE f.request_id = r.id
                     AND f.id > (SELECT effect_id FROM checkpoint WHERE id = 1))
     AND NOT EXISTS (SELECT 1 FROM series_images i WHERE i.request_id = r.id)";

/// One pruning pass; returns how many requests and keys were removed.
pub fn prune(conn: &mut Connection, rules: &Retention, now_ms: i64) -> rusqlite::Result<usize> {
    let mut removed = 0;
    let rejected_cutoff = now_ms - (rules.rejected_retention_days * 86_400_000.0) as i64;
    let refused = super::rejected::prune(conn, rejected_cutoff)?;
    if refused > 0 {
        tracing::info!(rejected = refused, "journal retention pruned old refused requests");
    }
    if let Some(days) = rules.max_age_days {
        let cutoff = now_ms - (days * 86_400_000.0) as i64;
        // Keys first: once a request is seen gone, the keys of its age went before it.
        removed += prune_keys(conn, cutoff)?;
        for _ in 0..MAX_BATCHES {
            let n = remove_batch(conn, Some(cutoff))?;
            removed += n;
            if n < BATCH as usize {
                break;
            }
        }
    }
    if let Some(mb) = rules.max_size_mb {
        let limit = (mb * 1024.0 * 1024.0) as i64;
        for _ in 0..MAX_BATCHES {
            if used_bytes(conn)? <= limit {
                break;
            }
            let n = remove_batch(conn, None)?;
            removed += n;
            if n == 0 {
                break;
            }
        }
    }
    let readings = prune_readings(conn, rules.readings_retention_days, now_ms)?;
    if removed > 0 || readings > 0 {
        conn.execute_batch("PRAGMA incremental_vacuum;")?;
    }
    Ok(removed)
}

/// Removes the readings older than `days` (the last image of a series is a request, kept
/// above while it is the last).
fn prune_readings(conn: &mut Connection, days: f64, now_ms: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let n = super::readings::prune(&tx, now_ms - (days * 86_400_000.0) as i64)?;
    tx.commit()?;
    if n > 0 {
        tracing::info!(readings = n, "readings retention pruned old readings");
    }
    Ok(n)
}

/// Removes the processed keys received before `cutoff` from the next slice of the key table
/// (batches of `KEY_BATCH` keys, in digest order from where the last pass stopped, kept in
/// `key_sweep`; past the last key it starts again from the first, at most once a pass, never
/// beyond where it began). The table has no time index: a key goes at most one sweep of the
/// whole table after its window (never before it). Returns how many went.
fn prune_keys(conn: &Connection, cutoff: i64) -> rusqlite::Result<usize> {
    let (start, seen): (Vec<u8>, i64) =
        conn.query_row("SELECT after, events_seen FROM key_sweep WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let newest: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    let (mut after, mut wrapped, mut removed) = (start.clone(), false, 0);
    for _ in 0..sweep_batches(newest - seen) {
        let Some(mut end) = sweep_slice_end(conn, &after)? else {
            // Past the last key: the table is covered, or it goes on from the first key.
            after = Vec::new();
            if wrapped || start.is_empty() {
                break;
            }
            wrapped = true;
            continue;
        };
        if wrapped && end >= start {
            end.clone_from(&start);
        }
        removed += conn
            .prepare_cached("DELETE FROM processed_keys WHERE digest > ?1 AND digest <= ?2 AND received_ms < ?3")?
            .execute(params![after, end, cutoff])?;
        after = end;
        if wrapped && after == start {
            break;
        }
    }
    conn.execute("UPDATE key_sweep SET after = ?1, events_seen = ?2 WHERE id = 1", params![after, newest])?;
    Ok(removed)
}

/// How many batches a sweep pass takes when `new` events came since the last one: at least
/// `MAX_BATCHES`, and twice as many keys as could have come (an event has at most one key),
/// so the sweep outpaces the keys' arrival at any rate up to `MAX_SWEEP_BATCHES` (1,000,000
/// keys a pass; at the default pass a minute, 16,000 events a second).
fn sweep_batches(new: i64) -> usize {
    let wanted = (2 * new.max(0) as u64).div_ceil(KEY_BATCH as u64) as usize;
    wanted.clamp(MAX_BATCHES, MAX_SWEEP_BATCHES)
}

/// The last digest of the slice of `KEY_BATCH` keys after `after`; `None` past the last key.
fn sweep_slice_end(conn: &Connection, after: &[u8]) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached(
        "SELECT MAX(digest) FROM (SELECT digest FROM processed_keys WHERE digest > ?1 ORDER BY digest LIMIT ?2)",
    )?
    .query_row(params![after, KEY_BATCH], |r| r.get(0))
}

/// Removes up to one batch of the oldest done requests (received before `cutoff`, if given).
fn remove_batch(conn: &mut Connection, cutoff: Option<i64>) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let ids: Vec<i64> = {
        let sql = select_oldest(cutoff.is_some());
        let mut stmt = tx.prepare_cached(&sql)?;
        stmt.query_map(params![cutoff, BATCH], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for id in &ids {
        tx.execute("DELETE FROM events WHERE request_id = ?1", params![id])?;
        tx.execute("DELETE FROM effect_bytes WHERE id IN (SELECT id FROM effects WHERE request_id = ?1)", params![id])?;
        tx.execute("DELETE FROM effects WHERE request_id = ?1", params![id])?;
        tx.execute("DELETE FROM requests WHERE id = ?1", params![id])?;
    }
    tx.commit()?;
    Ok(ids.len())
}

/// The query for the oldest done requests. By age it walks the time index from the oldest
/// request and stops at the cutoff: with nothing old enough it reads one index entry instead
/// of every request row (the journal holds the bodies, so a full scan reads all of them while
/// the writer waits).
fn select_oldest(by_age: bool) -> String {
    if by_age {
        format!(
            "SELECT r.id FROM requests r INDEXED BY requests_time WHERE r.received_ms < ?1 AND {DONE}
             ORDER BY r.received_ms LIMIT ?2"
        )
    } else {
        format!("SELECT r.id FROM requests r WHERE ?1 IS NULL AND {DONE} ORDER BY r.id LIMIT ?2")
    }
}

fn used_bytes(conn: &Connection) -> rusqlite::Result<i64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((pages - free) * size)
}

/// Whether the data directory's file system has `floor_mb` free (0: always).
pub fn room(data: &crate::store::DataDir, floor_mb: f64) -> Result<(), DiskFull> {
    if floor_mb <= 0.0 {
        return Ok(());
    }
    // Unknown free space refuses nothing: a disk that is really full fails the commit.
    let Ok(stat) = rustix::fs::statvfs(data.root()) else { return Ok(()) };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize) / (1024 * 1024);
    if (free as f64) < floor_mb { Err(DiskFull(free, floor_mb as u64)) } else { Ok(()) }
}

/// Free and required space, in MB.
#[derive(Debug)]
pub struct DiskFull(pub u64, pub u64);

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MB free, below [journal] min_free_disk_mb = {}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite picks for the age query: a range search on the time index, never a scan
    /// of the requests table.
    #[test]
    fn pruning_by_age_searches_the_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::journal::schema::open(&dir.path().join("j.db")).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", select_oldest(true)))
            .unwrap()
            .query_map(params![0, BATCH], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|l| l.starts_with("SEARCH r USING") && l.ends_with("INDEX requests_time (received_ms<?)")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.starts_with("SCAN r")), "{plan:?}");
    }

    /// A pass that begins in the middle of the key table goes on from its first key and
    /// covers every key once: old ones go, fresh ones stay, and the next pass begins where
    /// this one did.
    #[test]
    fn a_key_sweep_from_the_middle_covers_the_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::journal::schema::open(&dir.path().join("j.db")).unwrap();
        let mut insert =
            conn.prepare("INSERT INTO processed_keys (digest, event_id, received_ms) VALUES (?1, ?2, ?3)").unwrap();
        for i in 0..10u8 {
            insert.execute(params![vec![i * 20; 16], i64::from(i), if i % 2 == 0 { 100 } else { 900 }]).unwrap();
        }
        conn.execute("UPDATE key_sweep SET after = ?1", [vec![100u8; 16]]).unwrap();
        assert_eq!(prune_keys(&conn, 500).unwrap(), 5);
        let left: Vec<i64> = conn
            .prepare("SELECT event_id FROM processed_keys ORDER BY digest")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, [1, 3, 5, 7, 9]);
        let after: Vec<u8> = conn.query_row("SELECT after FROM key_sweep", [], |r| r.get(0)).unwrap();
        assert_eq!(after, vec![100u8; 16]);
    }

    #[test]
    fn a_sweep_pass_outpaces_the_keys_that_came_since_the_last() {
        assert_eq!(sweep_batches(0), MAX_BATCHES);
        assert_eq!(sweep_batches(-5), MAX_BATCHES, "events pruned meanwhile");
        assert_eq!(sweep_batches(300_000), 120, "5,000 events a second for a minute: 600,000 keys swept");
        assert_eq!(sweep_batches(10_000_000), MAX_SWEEP_BATCHES);
    }
}
