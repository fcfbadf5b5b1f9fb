//! Start-up repair: redo the effects committed after the last checkpoint.
//!
//! Every file those effects touch is first cut back to the length recorded for it (its
//! length at the checkpoint, or before its first later write; removed if it did not exist),
//! then the effects are applied again in commit order and a checkpoint is taken. Whatever
//! part of them had reached the file before the crash is thereby written exactly once. As at
//! any checkpoint, the redone effects' bytes then leave the journal (offset, size and digest
//! stay).

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::JournalError;
use super::texts::EFFECT_PATH;
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
    let mut placed = Vec::with_capacity(effects.len());
    for (id, effect) in &effects {
        data.apply(effect)?;
        placed.push((*id, placed_at(data, effect)?));
    }
    data.sync(&paths).map_err(JournalError::Sync)?;
    let tx = conn.transaction()?;
    for ((id, effect), (_, at)) in effects.iter().zip(&placed) {
        drop_bytes(&tx, *id, *at, effect.parts().2)?;
    }
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

/// Where the bytes of `effect`, just applied, begin in its file: they are its last bytes.
fn placed_at(data: &DataDir, effect: &Effect) -> Result<u64, JournalError> {
    match effect {
        Effect::Write { .. } => Ok(0),
        Effect::Append { path, bytes, .. } => {
            Ok(data.length(path)?.unwrap_or_default().saturating_sub(bytes.len() as u64))
        }
    }
}

/// A redone effect's bytes leave the journal as at a checkpoint (its row keeps where they are).
fn drop_bytes(tx: &rusqlite::Transaction<'_>, id: i64, at: u64, bytes: &[u8]) -> rusqlite::Result<()> {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    tx.execute(
        "UPDATE effects SET at = ?2, size = ?3, digest = ?4, header = NULL, bytes = x'' WHERE id = ?1",
        params![id, at as i64, bytes.len() as i64, &digest[..16]],
    )?;
    tx.execute("DELETE FROM effect_bytes WHERE id = ?1", params![id])?;
    Ok(())
}

fn pending(conn: &Connection, after: i64) -> rusqlite::Result<Vec<(i64, Effect)>> {
    // Bytes wait in `effect_bytes` until their checkpoint (in `effects` in older journals).
    let mut stmt = conn.prepare(&format!(
        "SELECT e.id, {EFFECT_PATH}, e.kind, COALESCE(b.header, e.header), COALESCE(b.bytes, e.bytes)
         FROM effects e LEFT JOIN effect_bytes b ON b.id = e.id WHERE e.id > ?1 ORDER BY e.id"
    ))?;
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

    /// A crash between the commit and the checkpoint: the effect's bytes wait in
    /// `effect_bytes`; the redo writes them once, then drops them and records where they are.
    #[test]
    fn a_redone_effect_is_written_once_and_its_bytes_leave_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let mut conn = super::super::schema::open(&dir.path().join("journal.db")).unwrap();
        std::fs::write(dir.path().join("out.csv"), "a\nb").unwrap(); // half of "b\n" made it
        conn.execute_batch(
            "INSERT INTO file_state (path, length) VALUES ('out.csv', 2);
             INSERT INTO effects (request_id, path, kind, header, bytes, size) VALUES (1, 'out.csv', 0, NULL, x'', 2);
             INSERT INTO effect_bytes (id, header, bytes) VALUES (1, NULL, x'620a');",
        )
        .unwrap();
        assert_eq!(redo(&mut conn, &data).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(dir.path().join("out.csv")).unwrap(), "a\nb\n", "written exactly once");
        let waiting: i64 = conn.query_row("SELECT COUNT(*) FROM effect_bytes", [], |r| r.get(0)).unwrap();
        assert_eq!(waiting, 0);
        let shown = super::super::written::written(&conn, &data, 1).unwrap();
        assert_eq!((shown[0].at, shown[0].bytes.as_deref()), (Some(2), Some(&b"b\n"[..])));
        assert_eq!(redo(&mut conn, &data).unwrap(), 0, "nothing is redone twice");
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
