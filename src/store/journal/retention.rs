//! Retention: pruning old requests from the journal, only ones fully done.
//!
//! A request may go when every event of it is `processed`, `duplicate` or `superseded` (never
//! a `failed` one, which still waits for a retry or a replay) and all its effects are
//! checkpointed. By age: requests received before `max_age_days` ago. By size: the oldest
//! such requests until the journal's used pages fit `max_size_mb`. Processed keys are
//! pruned by age only, between the writer's turns: in `processed_keys` by the key sweep
//! (`sweep.rs`), in the recent tier and the runs as soon as their oldest key is past the
//! window (`tiers.rs`): the dedup window is `max_age_days` even when the
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
    /// The write-ahead log starts again from its beginning once it holds this much (its pages
    /// copied into the database by the checkpointer thread, `wal.rs`).
    pub wal_restart_mb: f64,
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
            wal_restart_mb: 32.0,
        }
    }
}

const BATCH: i64 = 1000;
/// At most this many batches per pruning pass, so the writer is never held for long.
const MAX_BATCHES: usize = 20;

const DONE: &str = "NOT EXISTS (SELECT 1 FROM events e WHERE e.request_id = r.id AND e.status = 'failed')
     AND NOT EXISTS (SELECT 1 FROM effects f WHERE f.request_id = r.id
                     AND f.id > (SELECT effect_id FROM checkpoint WHERE id = 1))
     AND NOT EXISTS (SELECT 1 FROM series_images i WHERE i.request_id = r.id)";

/// One pruning pass; returns how many requests were removed.
pub fn prune(conn: &mut Connection, rules: &Retention, now_ms: i64) -> rusqlite::Result<usize> {
    let mut removed = 0;
    let rejected_cutoff = now_ms - (rules.rejected_retention_days * 86_400_000.0) as i64;
    let refused = super::rejected::prune(conn, rejected_cutoff)?;
    if refused > 0 {
        tracing::info!(rejected = refused, "journal retention pruned old refused requests");
    }
    if let Some(days) = rules.max_age_days {
        let cutoff = now_ms - (days * 86_400_000.0) as i64;
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
}
