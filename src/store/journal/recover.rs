//! Start-up repair: redo the effects committed after the last checkpoint.
//!
//! Every file those effects touch is first cut back to the length recorded for it (its
//! length at the checkpoint, or before its first later write; removed if it did not exist),
//! then the effects are applied again in commit order and a checkpoint is taken. Whatever
//! part of them had reached the file before the crash is thereby written exactly once.

use std::collections::BTreeSet;

use rusqlite::{Connection, params};

use super::JournalError;
use crate::store::{DataDir, Effect};

/// Redoes unchekpointed effects; returns how many were applied.
pub fn redo(conn: &mut Connection, data: &DataDir) -> Result<usize, JournalError> {
    let checkpoint: i64 = conn.query_row("SELECT effect_id FROM checkpoint WHERE id = 1", [], |r| r.get(0))?;
    let effects = pending(conn, checkpoint)?;
    if effects.is_empty() {
        return Ok(0);
    }
    let store = |e: crate::store::StoreError| JournalError::Store(e.to_string());
    let paths: BTreeSet<String> = effects.iter().map(|(_, e)| e.path().to_owned()).collect();
    for path in &paths {
        let recorded: Option<i64> =
            conn.query_row("SELECT length FROM file_state WHERE path = ?1", params![path], |r| r.get(0)).ok();
        let length = match recorded {
            Some(l) if l >= 0 => Some(l as u64),
            Some(_) => None,
            None => data.length(path).map_err(store)?,
        };
        data.restore_length(path, length).map_err(store)?;
    }
    for (_, effect) in &effects {
        data.apply(effect).map_err(store)?;
    }
    data.sync(&paths).map_err(|e| JournalError::Store(e.to_string()))?;
    let tx = conn.transaction()?;
    for path in &paths {
        let length = data.length(path).map_err(store)?;
        tx.execute(
            "INSERT OR REPLACE INTO file_state (path, length) VALUES (?1, ?2)",
            params![path, length.map(|l| l as i64).unwrap_or(-1)],
        )?;
    }
    let last = effects.last().map(|(id, _)| *id).unwrap_or(checkpoint);
    tx.execute("UPDATE checkpoint SET effect_id = ?1 WHERE id = 1", params![last])?;
    tx.commit()?;
    Ok(effects.len())
}

fn pending(conn: &Connection, after: i64) -> rusqlite::Result<Vec<(i64, Effect)>> {
    let mut stmt = conn.prepare("SELECT id, path, kind, header, bytes FROM effects WHERE id > ?1 ORDER BY id")?;
    let rows = stmt.query_map(params![after], |r| {
        Ok((r.get::<_, i64>(0)?, Effect::from_parts(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
    })?;
    rows.collect()
}
