//! Texts many requests share, kept once: a request's `verification` (which checks it passed,
//! the same words for every request of an operation) and its kept `headers` (content type,
//! user agent, credential headers by name: a few sets per sender) are rows of
//! `request_texts`, and the request keeps their ids (`requests.verification_id`,
//! `headers_id`; the text columns stay empty). Headers that name a multipart boundary are
//! the request's own and stay on its row, as the texts of older journals' requests do
//! ([`VERIFICATION`] and [`HEADERS`] read both).

use rusqlite::{OptionalExtension, Transaction, params};

/// The table of shared texts (created with the journal's others).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS request_texts (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);
";

/// The verification text of the request row `r`, as SQL.
pub const VERIFICATION: &str =
    "COALESCE((SELECT t.text FROM request_texts t WHERE t.id = r.verification_id), r.verification)";

/// The kept headers (JSON) of the request row `r`, as SQL.
pub const HEADERS: &str = "COALESCE((SELECT t.text FROM request_texts t WHERE t.id = r.headers_id), r.headers)";

/// Whether a request's headers (as JSON) are worth sharing: not when they name a multipart
/// boundary, which is new with every request.
fn shared_headers(headers: &str) -> bool {
    !headers.contains("boundary=")
}

/// The id of a request's `headers` (as JSON) in `request_texts`, or `None` when they stay on
/// its row ([`shared_headers`]).
pub fn headers(tx: &Transaction<'_>, headers: &str) -> rusqlite::Result<Option<i64>> {
    shared_headers(headers).then(|| intern(tx, headers)).transpose()
}

/// The id of `text` in `request_texts`, added when it is new (in the writer's transaction:
/// a rolled-back commit takes the new row with it).
pub fn intern(tx: &Transaction<'_>, text: &str) -> rusqlite::Result<i64> {
    let found = tx
        .prepare_cached("SELECT id FROM request_texts WHERE text = ?1")?
        .query_row(params![text], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    tx.prepare_cached("INSERT INTO request_texts (text) VALUES (?1)")?.execute(params![text])?;
    Ok(tx.last_insert_rowid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_kept_once_and_old_rows_keep_theirs() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY, verification TEXT NOT NULL, verification_id INTEGER);
             INSERT INTO requests VALUES (1, 'passed: old words', NULL);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        let first = intern(&tx, "passed: HMAC").unwrap();
        assert_eq!(intern(&tx, "passed: HMAC").unwrap(), first);
        assert_ne!(intern(&tx, "passed: API key").unwrap(), first);
        tx.execute("INSERT INTO requests VALUES (2, '', ?1)", [first]).unwrap();
        let read: Vec<String> = tx
            .prepare(&format!("SELECT {VERIFICATION} FROM requests r ORDER BY id"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read, ["passed: old words", "passed: HMAC"]);
        assert_eq!(tx.query_row("SELECT COUNT(*) FROM request_texts", [], |r| r.get::<_, i64>(0)).unwrap(), 2);
    }

    #[test]
    fn headers_that_name_a_multipart_boundary_stay_on_their_row() {
        assert!(shared_headers(r#"[["content-type","application/json"],["x-signature",""]]"#));
        assert!(!shared_headers(r#"[["content-type","multipart/form-data; boundary=----x1"]]"#));
    }
}
