//! Texts many requests share, kept once: a request's `verification` (which checks it passed,
//! the same words for every request of an operation) and its kept `headers` (content type,
//! user agent, credential headers by name: a few sets per sender) are rows of
//! `request_texts`, as is the path of each file effects append to (`effects.path_id`; a
//! whole-file write, often to a path of its own, keeps it on its row). A request's shape —
//! the spec version that split it, the client address, and the ids of those two texts, the
//! same for every request of a sender — is a row of `request_shapes`, and the request keeps
//! its id (`requests.shape_id`; the text columns stay empty). Headers that name a multipart
//! boundary are the request's own and stay on its row. Rows of older journals keep their
//! texts (or their text ids, from version 4): [`SPEC`], [`CLIENT`], [`VERIFICATION`],
//! [`HEADERS`] and [`EFFECT_PATH`] read every form.

use rusqlite::{OptionalExtension, Transaction, params};

/// The table of shared texts (created with the journal's others).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS request_texts (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS request_shapes (
    id INTEGER PRIMARY KEY,
    spec TEXT NOT NULL,
    client TEXT NOT NULL,
    verification_id INTEGER NOT NULL,
    headers_id INTEGER NOT NULL,
    UNIQUE (spec, client, verification_id, headers_id)
);
";

/// The spec version of the request row `r`, as SQL.
pub const SPEC: &str = "COALESCE((SELECT s.spec FROM request_shapes s WHERE s.id = r.shape_id), r.spec)";

/// The client address of the request row `r`, as SQL.
pub const CLIENT: &str = "COALESCE((SELECT s.client FROM request_shapes s WHERE s.id = r.shape_id), r.client)";

/// The verification text of the request row `r`, as SQL.
pub const VERIFICATION: &str = "COALESCE((SELECT t.text FROM request_shapes s JOIN request_texts t \
     ON t.id = s.verification_id WHERE s.id = r.shape_id), \
     (SELECT t.text FROM request_texts t WHERE t.id = r.verification_id), r.verification)";

/// The kept headers (JSON) of the request row `r`, as SQL.
pub const HEADERS: &str = "COALESCE((SELECT t.text FROM request_shapes s JOIN request_texts t \
     ON t.id = s.headers_id WHERE s.id = r.shape_id), \
     (SELECT t.text FROM request_texts t WHERE t.id = r.headers_id), r.headers)";

/// The file path of the effects row `e`, as SQL.
pub const EFFECT_PATH: &str = "COALESCE((SELECT t.text FROM request_texts t WHERE t.id = e.path_id), e.path)";

/// What a request shares with the others of its sender: the spec version, the client
/// address, and the ids of its verification text and kept headers (0: on its row).
pub struct Shape<'a> {
    pub spec: &'a str,
    pub client: &'a str,
    pub verification_id: i64,
    pub headers_id: i64,
}

/// The id of `shape` in `request_shapes`, added when it is new (in the writer's transaction).
pub fn shape(tx: &Transaction<'_>, shape: &Shape<'_>) -> rusqlite::Result<i64> {
    let key = params![shape.spec, shape.client, shape.verification_id, shape.headers_id];
    let found = tx
        .prepare_cached(
            "SELECT id FROM request_shapes WHERE spec = ?1 AND client = ?2 AND verification_id = ?3 AND headers_id = ?4",
        )?
        .query_row(key, |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    tx.prepare_cached(
        "INSERT INTO request_shapes (spec, client, verification_id, headers_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(key)?;
    Ok(tx.last_insert_rowid())
}

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
            "CREATE TABLE requests (id INTEGER PRIMARY KEY, verification TEXT NOT NULL, verification_id INTEGER, spec TEXT,
                 shape_id INTEGER);
             INSERT INTO requests VALUES (1, 'passed: old words', NULL, '', NULL);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        let first = intern(&tx, "passed: HMAC").unwrap();
        assert_eq!(intern(&tx, "passed: HMAC").unwrap(), first);
        assert_ne!(intern(&tx, "passed: API key").unwrap(), first);
        tx.execute("INSERT INTO requests VALUES (2, '', ?1, '', NULL)", [first]).unwrap();
        let shape = Shape { spec: "5eed", client: "127.0.0.1", verification_id: first, headers_id: 0 };
        let shape_id = super::shape(&tx, &shape).unwrap();
        assert_eq!(super::shape(&tx, &shape).unwrap(), shape_id, "a shape is kept once");
        tx.execute("INSERT INTO requests VALUES (3, '', NULL, '', ?1)", [shape_id]).unwrap();
        let read: Vec<String> = tx
            .prepare(&format!("SELECT {VERIFICATION} FROM requests r ORDER BY id"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read, ["passed: old words", "passed: HMAC", "passed: HMAC"]);
        let spec: String =
            tx.query_row(&format!("SELECT {SPEC} FROM requests r WHERE id = 3"), [], |r| r.get(0)).unwrap();
        assert_eq!(spec, "5eed");
        assert_eq!(tx.query_row("SELECT COUNT(*) FROM request_texts", [], |r| r.get::<_, i64>(0)).unwrap(), 2);
    }

    #[test]
    fn headers_that_name_a_multipart_boundary_stay_on_their_row() {
        assert!(shared_headers(r#"[["content-type","application/json"],["x-signature",""]]"#));
        assert!(!shared_headers(r#"[["content-type","multipart/form-data; boundary=----x1"]]"#));
    }
}
