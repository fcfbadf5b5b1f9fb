//! The journal's tables, and opening connections with the durability settings.
//!
//! `journal_mode=WAL` + `synchronous=FULL`: a commit returns only after the WAL is fsynced,
//! so a committed request survives a process crash and a power loss (given a disk that
//! honours flushes).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    protocol TEXT NOT NULL,
    operation TEXT NOT NULL,
    source TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    headers TEXT NOT NULL,
    verification TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL,
    client TEXT NOT NULL DEFAULT '',
    reply_status INTEGER NOT NULL DEFAULT 200,
    method TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL DEFAULT '',
    packed INTEGER NOT NULL DEFAULT 0,
    size INTEGER,
    verification_id INTEGER,
    headers_id INTEGER,
    shape_id INTEGER
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(received_ms);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    idem_key TEXT,
    data TEXT NOT NULL,
    blob INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    error TEXT,
    logs TEXT,
    duplicate_of INTEGER
);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
CREATE INDEX IF NOT EXISTS events_failed_key ON events(idem_key) WHERE status = 'failed';
CREATE INDEX IF NOT EXISTS events_unsettled ON events(status, request_id) WHERE status != 'processed';
CREATE TABLE IF NOT EXISTS effects (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    kind INTEGER NOT NULL,
    header BLOB,
    bytes BLOB NOT NULL,
    at INTEGER,
    size INTEGER,
    digest BLOB,
    path_id INTEGER
);
CREATE INDEX IF NOT EXISTS effects_request ON effects(request_id);
CREATE TABLE IF NOT EXISTS effect_bytes (
    id INTEGER PRIMARY KEY,
    header BLOB,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS file_state (
    path TEXT PRIMARY KEY,
    length INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    effect_id INTEGER NOT NULL
);
INSERT OR IGNORE INTO checkpoint (id, effect_id) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS processed_keys (
    digest BLOB PRIMARY KEY,
    event_id INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_sweep (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    after BLOB NOT NULL,
    events_seen INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO key_sweep (id, after) VALUES (1, x'');
";

/// The journal's layout; older journals are brought up to it when opened. Version 2 added
/// `requests.client` and `events.duplicate_of` (a duplicate keeps a reference to the event
/// that processed its key instead of a copy of its data). Version 3 added
/// `requests.reply_status`, `method` and `path` (its query's secrets masked), the `rejected` table
/// and `events_unsettled` (the log's status filter for the rarer statuses; built from the events
/// on the first start) (`rejected.rs`), and keeps processed keys in `processed_keys` (the key's
/// 128-bit digest, the event that processed it, the request's receive time), looked up there
/// instead of loaded into memory, and pruned by age only; and it stores each byte once (see
/// [`migrate_payload_v3`]). Version 4 keeps the events' keys without their request's
/// protocol and operation (`keys.rs`), the requests' verification texts and headers once (`texts.rs`),
/// and drops the time index of `processed_keys`: old keys
/// are found by a sweep along the key table's own order instead ([`migrate_v4`]). Version 5
/// keeps what a request shares with its sender's others (spec version, client, verification
/// and headers) once as its shape, and each effect's path once (`texts.rs`, [`migrate_v5`]). Version 6 adds the
/// processed keys' recent tier and runs (`tiers.rs`); the keys of older journals stay in
/// `processed_keys`, the merged tier. Version 7 stores the merged tier's Bloom filter
/// (`tiers/merged.rs`); opening a journal of an older version drops a stored filter, since an
/// older hookyard merges keys without setting its bits (it is built again by a scan).
const SCHEMA_VERSION: i64 = 7;

/// Opens the write connection, creating the tables (or migrating older ones).
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    // The one writer takes the write lock when it begins (waiting for it up to the busy
    // timeout), not at its first write: a transaction that began by reading and then writes
    // fails at once ("database is locked", SQLITE_BUSY_SNAPSHOT) when its snapshot went stale.
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a WAL checkpoint, shrink the WAL file back to at most 64 MiB.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Room for every statement of a commit (requests, events, keys, texts, the readings and
    // their hours): with rusqlite's default of 16 some were prepared again in every commit.
    conn.set_prepared_statement_cache_capacity(64);
    // Before the first table exists: lets retention hand freed pages back (new journals only).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(super::readings::SCHEMA)?;
    tx.execute_batch(super::rejected::SCHEMA)?;
    tx.execute_batch(super::texts::SCHEMA)?;
    tx.execute_batch(super::tiers::SCHEMA)?;
    if version < 3 {
        add_column(&tx, "requests", "reply_status", "INTEGER NOT NULL DEFAULT 200")?;
        add_column(&tx, "requests", "method", "TEXT NOT NULL DEFAULT ''")?;
        add_column(&tx, "requests", "path", "TEXT NOT NULL DEFAULT ''")?;
    }
    if version < 2 {
        // Tables of older journals exist already, without the columns version 2 added.
        add_column(&tx, "requests", "client", "TEXT NOT NULL DEFAULT ''")?;
        add_column(&tx, "events", "duplicate_of", "INTEGER")?;
    }
    if version < 3 {
        migrate_keys_v3(&tx)?;
        migrate_payload_v3(&tx)?;
    }
    if version < 4 {
        migrate_v4(&tx)?;
    }
    if version < 5 {
        migrate_v5(&tx)?;
    }
    if version < 7 {
        tx.execute("DELETE FROM key_filter", [])?;
    }
    if version < 1 {
        // Version 0 kept processed keys in a `keys` table of their own and indexed every
        // event's key and status; the two partial indexes above answer the same questions
        // (they are built from the events on the first start) with fewer entries per event.
        tx.execute_batch(
            "DROP TABLE IF EXISTS keys; DROP INDEX IF EXISTS events_key; DROP INDEX IF EXISTS events_status;",
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(conn)
}

/// Version 3: the processed keys of the journal's events go into `processed_keys` (as
/// digests), and the partial index of processed keys on `events` that answered before goes.
fn migrate_keys_v3(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut select = tx.prepare(
        "SELECT e.idem_key, e.id, r.received_ms FROM events e JOIN requests r ON r.id = e.request_id
         WHERE e.status = 'processed' AND e.idem_key IS NOT NULL ORDER BY e.id",
    )?;
    let mut insert =
        tx.prepare("INSERT OR IGNORE INTO processed_keys (digest, event_id, received_ms) VALUES (?1, ?2, ?3)")?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        insert.execute(rusqlite::params![
            crate::store::dedup::digest(&key),
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?
        ])?;
    }
    tx.execute_batch("DROP INDEX IF EXISTS events_processed_key;")
}

/// Version 3: `requests.spec` (the digest of the spec whose split made the request's events:
/// set, the events keep no data of their own and are derived again from the body; empty,
/// they keep it, as every event of an older journal does), `requests.query` (the query
/// parameters the operation declares, which the split puts in `meta`), `requests.packed`
/// (the body is deflated: `journal::packed`), `requests.size` (the body's length as received,
/// also for a request whose body is not kept), and `effects.at`,
/// `size`, `digest` (where a checkpointed effect's bytes are in its file, how many, and the
/// first 16 bytes of their SHA-256). An effect's bytes (and header) now wait in a table of
/// their own, `effect_bytes` (created with the others), until the checkpoint that made them
/// durable deletes them: whole pages are freed and reused, where shrinking rows in place
/// would leave the effects' pages as large as before. Rows of older journals stay as they
/// are: their events keep their data and their effects their bytes.
fn migrate_payload_v3(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    add_column(tx, "requests", "spec", "TEXT NOT NULL DEFAULT ''")?;
    add_column(tx, "requests", "query", "TEXT NOT NULL DEFAULT ''")?;
    add_column(tx, "requests", "packed", "INTEGER NOT NULL DEFAULT 0")?;
    add_column(tx, "requests", "size", "INTEGER")?;
    add_column(tx, "effects", "at", "INTEGER")?;
    add_column(tx, "effects", "size", "INTEGER")?;
    add_column(tx, "effects", "digest", "BLOB")
}

/// Version 4: `requests.verification_id` and `headers_id` (new requests keep their
/// verification text and, mostly, their kept headers once, in `request_texts`: `texts.rs`;
/// older rows keep theirs), the keys of the events rows in their
/// stored form, and no time index on
/// `processed_keys` (`sweep::KeySweep` walks the table in digest order, a slice at a
/// time, so a key goes at most one sweep after its dedup window: never early). The index
/// held a copy of every key's digest and time, a third of the per-key bytes.
fn migrate_v4(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    add_column(tx, "requests", "verification_id", "INTEGER")?;
    add_column(tx, "requests", "headers_id", "INTEGER")?;
    tx.execute_batch(super::keys::MIGRATE_V4)?;
    tx.execute_batch("DROP INDEX IF EXISTS processed_keys_time;")
}

/// Version 5: `requests.shape_id` (new requests keep their spec version, client address and
/// the ids of their verification text and headers once, in `request_shapes`) and
/// `effects.path_id` (new effects keep their path once, in `request_texts`). Older rows keep
/// their texts and are read either way (`texts.rs`); nothing is rewritten.
fn migrate_v5(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    add_column(tx, "requests", "shape_id", "INTEGER")?;
    add_column(tx, "effects", "path_id", "INTEGER")
}

/// Adds `column` to `table` unless it has it.
fn add_column(tx: &rusqlite::Transaction<'_>, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let has: bool = tx.query_row(
        &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
        [column],
        |r| r.get(0),
    )?;
    if !has {
        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Opens a connection for reading (and for replay's own writes through the writer only).
pub fn open_reader(path: &Path) -> Result<Connection, super::JournalError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables and indexes of a version-0 journal (before the `keys` table went).
    const VERSION_0: &str = "
    CREATE TABLE requests (id INTEGER PRIMARY KEY, protocol TEXT NOT NULL, operation TEXT NOT NULL,
        source TEXT NOT NULL, received_ms INTEGER NOT NULL, headers TEXT NOT NULL,
        verification TEXT NOT NULL DEFAULT '', body BLOB NOT NULL);
    CREATE INDEX requests_time ON requests(received_ms);
    CREATE TABLE events (id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, idx INTEGER NOT NULL,
        idem_key TEXT, data TEXT NOT NULL, blob INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
        error TEXT, logs TEXT);
    CREATE INDEX events_request ON events(request_id);
    CREATE INDEX events_key ON events(idem_key) WHERE idem_key IS NOT NULL;
    CREATE INDEX events_status ON events(status);
    CREATE TABLE keys (key TEXT PRIMARY KEY, event_id INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX keys_event ON keys(event_id);
    INSERT INTO requests VALUES (1, 'gridx', 'events', '', 0, '[]', '', x'7B7D');
    INSERT INTO events VALUES (1, 1, 0, 'k1', '{}', 0, 'processed', NULL, NULL);
    INSERT INTO events VALUES (2, 1, 1, 'k2', '{}', 0, 'failed', 'boom', NULL);
    INSERT INTO events VALUES (3, 1, 2, 'k1', '{}', 0, 'duplicate', NULL, NULL);
    INSERT INTO keys VALUES ('k1', 1);
    ";

    fn names(conn: &Connection, kind: &str) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = ?1 ORDER BY name").unwrap();
        stmt.query_map([kind], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows: Vec<String> =
            stmt.query_map(rusqlite::params!["k", 1], |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap();
        rows.join("; ")
    }

    #[test]
    fn a_version_0_journal_is_migrated_and_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        Connection::open(&path).unwrap().execute_batch(VERSION_0).unwrap();

        let conn = open(&path).unwrap();
        assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 7);
        // Version 2's columns are there, empty for the old rows.
        let (client, original): (String, Option<i64>) = conn
            .query_row(
                "SELECT r.client, e.duplicate_of FROM events e JOIN requests r ON r.id = e.request_id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((client.as_str(), original), ("", None));
        assert!(!names(&conn, "table").contains(&"keys".to_string()));
        let indexes = names(&conn, "index");
        assert!(!indexes.contains(&"events_status".to_string()) && !indexes.contains(&"events_key".to_string()));
        let processed: Vec<(Vec<u8>, i64)> = conn
            .prepare("SELECT digest, event_id FROM processed_keys")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(processed, [(crate::store::dedup::digest("k1").to_vec(), 1)], "only the processed key, as a digest");
        assert!(!indexes.contains(&"events_processed_key".to_string()));
        drop(conn);
        // Opening again changes nothing.
        let conn = open(&path).unwrap();
        assert_eq!(conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0)).unwrap(), 3);
    }

    /// A version-2 journal (keys found through a partial index of `events`) gets its processed
    /// keys, and only those, into `processed_keys` with their request's receive time.
    #[test]
    fn a_version_2_journal_keeps_its_processed_keys_in_the_key_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        open(&path).unwrap().execute_batch(
            "DROP TABLE processed_keys;
             CREATE INDEX events_processed_key ON events(idem_key) WHERE status = 'processed' AND idem_key IS NOT NULL;
             INSERT INTO requests (id, protocol, operation, source, received_ms, headers, body) VALUES (7, 'g', 'e', '', 1234, '[]', x'');
             INSERT INTO events (id, request_id, idx, idem_key, data, status) VALUES (1, 7, 0, 'done', '{}', 'processed'),
                 (2, 7, 1, 'failed', '{}', 'failed'), (3, 7, 2, NULL, '{}', 'processed');
             PRAGMA user_version = 2;",
        )
        .unwrap();
        let conn = open(&path).unwrap();
        let keys: Vec<(Vec<u8>, i64, i64)> = conn
            .prepare("SELECT digest, event_id, received_ms FROM processed_keys")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, [(crate::store::dedup::digest("done").to_vec(), 1, 1234)]);
        assert!(!names(&conn, "index").contains(&"events_processed_key".to_string()));
    }

    /// The writer's per-event statements use the small index of failed keys and the key table.
    #[test]
    fn key_lookups_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("journal.db")).unwrap();
        let superseded = plan(
            &conn,
            "UPDATE events SET status = 'superseded' WHERE idem_key = ?1 AND status = 'failed' AND id != ?2",
        );
        assert!(superseded.contains("USING INDEX events_failed_key (idem_key=?)"), "{superseded}");
        // Asked once a transaction: a walk of the partial index, never of the events.
        let any_failed = plan(&conn, &format!("{} AND ?1 AND ?2", super::super::insert::ANY_FAILED));
        assert!(any_failed.contains("events USING COVERING INDEX events_failed_key"), "{any_failed}");
        let processed = plan(
            &conn,
            "SELECT e.id FROM processed_keys k JOIN events e ON e.id = k.event_id WHERE k.digest = ?1 AND ?2",
        );
        assert!(processed.contains("SEARCH k USING PRIMARY KEY (digest=?)"), "{processed}");
        assert!(processed.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"), "{processed}");
    }
}
