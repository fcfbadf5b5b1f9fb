//! Loading a large history into a journal fast, for benchmarks of a long-running receiver:
//! the writer's own statements, in big transactions without an fsync per commit. Effects are
//! recorded as checkpointed (the files are not written), so a server started on the journal
//! has nothing to redo. Not for a journal a server is using: it takes the write connection.

use rusqlite::Connection;

use super::{JournalError, Submission, schema, writer};
use crate::store::DataDir;

/// A journal opened for bulk loading.
pub struct Bulk {
    conn: Connection,
}

impl Bulk {
    /// Opens (creating if needed) the journal of `data` for loading.
    pub fn open(data: &DataDir) -> Result<Self, JournalError> {
        let dir =
            data.state_dir().map_err(|source| JournalError::Io { path: data.root().join(".hookyard"), source })?;
        let conn = schema::open(&dir.join("journal.db"))?;
        // As the server's open does: a journal begun by a load has no request from before the
        // readings index to index again.
        super::backfill::start(&conn)?;
        // Keys go into the merged table alone, without the bits of its filter: a stored one
        // no longer holds every key (a load cut short leaves none; `finish` builds it again).
        conn.execute("DELETE FROM key_filter", [])?;
        // A lost load is loaded again: no fsync per transaction.
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.pragma_update(None, "cache_size", -262_144)?;
        Ok(Self { conn })
    }

    /// Records `submissions` (new requests with their events and effects) in one transaction.
    pub fn insert(&mut self, submissions: &[Submission]) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        let mut packer = super::packed::Packer::default();
        // Keys straight into the merged table: a load has no recent tier to flush.
        let mut keys = super::insert::KeyWrites::new(None);
        for s in submissions {
            writer::insert_submission(&tx, s, &mut packer, &mut keys)?;
        }
        // As after a checkpoint: the effects count as applied, their bytes leave the journal.
        tx.execute("UPDATE checkpoint SET effect_id = (SELECT COALESCE(MAX(id), 0) FROM effects) WHERE id = 1", [])?;
        tx.execute("DELETE FROM effect_bytes", [])?;
        tx.commit()?;
        Ok(())
    }

    /// Builds the merged keys' filter (`tiers/merged.rs`), then copies the WAL into the
    /// database and truncates it, as a server's shutdown leaves it.
    pub fn finish(self) -> Result<(), JournalError> {
        super::tiers::store_filter(&self.conn)?;
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(data: &DataDir) -> i64 {
        let conn = Connection::open(data.root().join(".hookyard/journal.db")).unwrap();
        conn.query_row("SELECT COUNT(*) FROM key_filter", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_load_drops_the_stored_filter_of_the_merged_keys_and_its_end_stores_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let conn = schema::open(&data.state_dir().unwrap().join("journal.db")).unwrap();
        super::super::tiers::store_filter(&conn).unwrap();
        drop(conn);
        assert_eq!(filters(&data), 1);
        let bulk = Bulk::open(&data).unwrap();
        assert_eq!(filters(&data), 0, "a load cut short leaves no filter that lacks its keys");
        bulk.finish().unwrap();
        assert_eq!(filters(&data), 1);
    }
}
