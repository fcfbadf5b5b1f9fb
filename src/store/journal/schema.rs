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
    body BLOB NOT NULL
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
    logs TEXT
);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
CREATE INDEX IF NOT EXISTS events_key ON events(idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_status ON events(status);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS keys_event ON keys(event_id);
CREATE TABLE IF NOT EXISTS effects (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    kind INTEGER NOT NULL,
    header BLOB,
    bytes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS effects_request ON effects(request_id);
CREATE TABLE IF NOT EXISTS file_state (
    path TEXT PRIMARY KEY,
    length INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    effect_id INTEGER NOT NULL
);
INSERT OR IGNORE INTO checkpoint (id, effect_id) VALUES (1, 0);
";

/// Opens the write connection, creating the tables.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a WAL checkpoint, shrink the WAL file back to at most 64 MiB.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Before the first table exists: lets retention hand freed pages back (new journals only).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Opens a connection for reading (and for replay's own writes through the writer only).
pub fn open_reader(path: &Path) -> Result<Connection, super::JournalError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}
