//! Start-up repair: redo the effects committed after the last checkpoint.
//!
//! Every file those effects touch is first cut back to the length recorded for it (its
//! length at the checkpoint, or before its first later write; removed if it did not exist),
//! then the effects are applied again in commit order and a checkpoint is taken. Whatever
//! part of them had reached the file before the crash is thereby written exactly once.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::JournalError;
use crate::store::{DataDir, Effect};

/// Redoes unchekpointed effects; returns how many were applied.
pub fn redo(conn: &mut Connection, data: &DataDir) -> Result<usize, JournalError> {
    let checkpoint: i64 = conn.query_row("SELECT effect_id FROM checkpoint WHERE id = 1", [], |r| r.get(0))?;
    let effects = pending(conn, checkpoint)?;
    if effects.is_empty() {
        return Ok(0);
    }
    let paths: BTreeSet<String> = effects.iter().map(|(_, e)| e.path().to_owned()).collect();
    for path in &paths {
        let recorded: Option<i64> =
            conn.query_row("SELECT length FROM file_state WHERE path = ?1", params![path], |r| r.get(0)).optional()?;
        let length = match recorded {
            Some(l) if l >= 0 => Some(l as u64),
            Some(_) => None,
            None => data.length(path)?,
        };
        data.restore_length(path, length)?;
    }
    for (_, effect) in &effects {
        data.apply(effect)?;
    }
    data.sync(&paths).map_err(JournalError::Sync)?;
    let tx = conn.transaction()?;
    for path in &paths {
        let length = data.length(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_with_one_pending_append(dir: &std::path::Path) -> (Connection, DataDir) {
        let data = DataDir::open(dir).unwrap();
        let conn = super::super::schema::open(&dir.join("journal.db")).unwrap();
        // At the checkpoint the file held "a\n"; the effect appending "b\n" was committed
        // after it and had reached the file before the crash.
        std::fs::write(dir.join("out.csv"), "a\nb\n").unwrap();
        conn.execute_batch(
            "INSERT INTO file_state (path, length) VALUES ('out.csv', 2);
             INSERT INTO effects (request_id, path, kind, header, bytes) VALUES (1, 'out.csv', 0, NULL, x'620a');",
        )
        .unwrap();
        (conn, data)
    }

    #[test]
    fn a_failing_read_of_the_recorded_length_stops_the_redo_instead_of_writing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, data) = journal_with_one_pending_append(dir.path());
        conn.execute_batch("ALTER TABLE file_state RENAME TO file_state_unreadable").unwrap();
        assert!(redo(&mut conn, &data).is_err(), "a read error must not pass for 'no length recorded'");
        assert_eq!(std::fs::read_to_string(dir.path().join("out.csv")).unwrap(), "a\nb\n", "the file is untouched");

        conn.execute_batch("ALTER TABLE file_state_unreadable RENAME TO file_state").unwrap();
        assert_eq!(redo(&mut conn, &data).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(dir.path().join("out.csv")).unwrap(), "a\nb\n", "written exactly once");
    }
}
