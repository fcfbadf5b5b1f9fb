//! What a request wrote, for the inspector: each effect's path, kind, place and digest, and
//! its bytes — from the journal until the checkpoint that made them durable drops them, then
//! read back from the data file at their offset while the file still holds them (the digest
//! says so).

use std::io::{Read, Seek, SeekFrom};

use rusqlite::{Connection, params};

use super::JournalError;
use super::texts::EFFECT_PATH;
use crate::store::{DataDir, Effect};

/// One effect of a request, as the inspector shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub path: String,
    /// `append` or `write`.
    pub kind: &'static str,
    /// Where the bytes begin in the file (after a header written first); `None` until the
    /// offset is recorded (by the next batch's transaction, or the checkpoint), and for
    /// effects journaled before offsets were kept.
    pub at: Option<u64>,
    pub size: u64,
    /// The first 16 bytes of the bytes' SHA-256, hex (once the offset is recorded).
    pub digest: Option<String>,
    /// The bytes, or `None` when the file no longer holds them (cut, rewritten, removed).
    pub bytes: Option<Vec<u8>>,
}

impl Written {
    /// A one-line description (as [`Effect::describe`], or saying the bytes are gone).
    pub fn describe(&self) -> String {
        match (&self.bytes, self.kind) {
            (Some(bytes), "write") => Effect::Write { path: self.path.clone(), bytes: bytes.clone() }.describe(),
            (Some(bytes), _) => {
                Effect::Append { path: self.path.clone(), header: None, bytes: bytes.clone() }.describe()
            }
            (None, kind) => format!(
                "{kind} {} bytes to {} at offset {} (the file no longer holds them)",
                self.size,
                self.path,
                self.at.unwrap_or_default()
            ),
        }
    }
}

type Row = (String, i64, Vec<u8>, bool, Option<i64>, Option<i64>, Option<Vec<u8>>);

/// The effects of request `request_id`, in order, with their bytes where they can be had.
pub fn written(conn: &Connection, data: &DataDir, request_id: i64) -> Result<Vec<Written>, JournalError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EFFECT_PATH}, e.kind, COALESCE(b.bytes, e.bytes), b.id IS NOT NULL, e.at, e.size, e.digest
             FROM effects e LEFT JOIN effect_bytes b ON b.id = e.id WHERE e.request_id = ?1 ORDER BY e.id"
    ))?;
    let rows = stmt.query_map(params![request_id], |r| -> rusqlite::Result<Row> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (path, kind, bytes, waiting, at, size, digest) = row?;
        let kind = if kind == 1 { "write" } else { "append" };
        let written = match (at, size, digest) {
            (Some(at), Some(size), Some(digest)) => {
                // Placed but not yet checkpointed: the journal still has the bytes.
                let bytes = if waiting { Some(bytes) } else { read_back(data, &path, at as u64, size as u64, &digest) };
                Written { path, kind, at: Some(at as u64), size: size as u64, digest: Some(hex::encode(digest)), bytes }
            }
            _ => Written { path, kind, at: None, size: bytes.len() as u64, digest: None, bytes: Some(bytes) },
        };
        out.push(written);
    }
    Ok(out)
}

/// The `size` bytes at `at` of `path`, when their digest is still `digest`.
fn read_back(data: &DataDir, path: &str, at: u64, size: u64, digest: &[u8]) -> Option<Vec<u8>> {
    let full = data.resolve(path).ok()?;
    let mut file = std::fs::File::open(full).ok()?;
    file.seek(SeekFrom::Start(at)).ok()?;
    let mut bytes = Vec::with_capacity(size.min(1 << 24) as usize);
    file.take(size).read_to_end(&mut bytes).ok()?;
    let actual = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
    (bytes.len() as u64 == size && actual[..digest.len().min(32)] == *digest).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal in `dir` holding one effect of request 1 (`kind` 0: append, 1: write) with its
    /// place and the digest of `bytes`, and a file `path` holding `file`.
    fn one_effect(
        dir: &std::path::Path,
        path: &str,
        kind: i64,
        at: i64,
        bytes: &[u8],
        file: &str,
    ) -> (Connection, DataDir) {
        let data = DataDir::open(dir).unwrap();
        let conn = super::super::schema::open(&dir.join("journal.db")).unwrap();
        std::fs::write(dir.join(path), file).unwrap();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
        conn.execute(
            "INSERT INTO effects (id, request_id, path, kind, bytes, at, size, digest) VALUES (1, 1, ?1, ?2, x'', ?3, ?4, ?5)",
            params![path, kind, at, bytes.len() as i64, &digest[..16]],
        )
        .unwrap();
        (conn, data)
    }

    #[test]
    fn checkpointed_bytes_are_read_back_while_the_file_still_holds_them() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, data) = one_effect(dir.path(), "out.csv", 0, 2, b"row\n", "h\nrow\n");
        let shown = written(&conn, &data, 1).unwrap();
        assert_eq!(shown[0].bytes.as_deref(), Some(&b"row\n"[..]));
        assert_eq!(shown[0].describe(), "append 4 bytes to out.csv: row");
        std::fs::write(dir.path().join("out.csv"), "h\nrox\n").unwrap();
        let shown = written(&conn, &data, 1).unwrap();
        assert_eq!(shown[0].bytes, None);
        assert_eq!(shown[0].describe(), "append 4 bytes to out.csv at offset 2 (the file no longer holds them)");
    }

    /// The next batch recorded the offset, the checkpoint has not dropped the bytes yet, and a
    /// later whole-file write replaced the file: the journal's copy is shown.
    #[test]
    fn bytes_not_yet_checkpointed_come_from_the_journal_even_with_their_offset_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, data) = one_effect(dir.path(), "image.jpg", 1, 0, b"older", "newer");
        conn.execute("INSERT INTO effect_bytes (id, header, bytes) VALUES (1, NULL, CAST('older' AS BLOB))", [])
            .unwrap();
        let shown = written(&conn, &data, 1).unwrap();
        assert_eq!(shown[0].bytes.as_deref(), Some(&b"older"[..]));
        assert_eq!(shown[0].at, Some(0));
        conn.execute("DELETE FROM effect_bytes", []).unwrap();
        let shown = written(&conn, &data, 1).unwrap();
        assert_eq!(shown[0].bytes, None, "checkpointed, and the file no longer holds them");
    }
}
