//! The SQL output: declared tables in the embedded SQLite database or in PostgreSQL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::Catalog;
use super::columns::{ColumnError, ColumnType, SqlValue};

/// Why the SQL output refused a row or could not write it.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("no table {0:?} is declared ([outputs.sql.tables.{0}])")]
    NoTable(String),
    #[error("table {table} has no column {column:?}")]
    NoColumn { table: String, column: String },
    /// A value refused for one column.
    #[error("{table}.{column}: {source}")]
    Column { table: String, column: String, source: ColumnError },
    #[error("sql: no tables are declared ([outputs.sql.tables.…])")]
    NoTables,
    #[error("sql output: cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("sql output: the PostgreSQL url is not valid: {0}")]
    Url(postgres::Error),
    #[error("sql (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("sql (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    #[error("sql (PostgreSQL): cannot connect: {0}")]
    Connect(#[from] r2d2::Error),
    #[error("sql (SQLite): {statement}: {source}")]
    CreateSqlite { statement: String, source: rusqlite::Error },
    #[error("sql (PostgreSQL): {statement}: {source}")]
    CreatePostgres { statement: String, source: postgres::Error },
    #[error("sql (SQLite): insert into {table}: {source}")]
    InsertSqlite { table: String, source: rusqlite::Error },
    #[error("sql (PostgreSQL): insert into {table}: {source}")]
    InsertPostgres { table: String, source: postgres::Error },
    /// The blocking task that talks to the database panicked or was cancelled.
    #[error("sql: stopped unexpectedly ({0})")]
    Stopped(#[from] tokio::task::JoinError),
}

/// Where the tables live.
#[derive(Clone, Debug)]
pub enum SqlUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

fn create_statements(tables: &BTreeMap<String, BTreeMap<String, ColumnType>>, postgres: bool) -> Vec<String> {
    let mut out = vec![if postgres {
        "CREATE TABLE IF NOT EXISTS hookyard_applied (key TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())".to_owned()
    } else {
        "CREATE TABLE IF NOT EXISTS hookyard_applied (key TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))".to_owned()
    }];
    for (table, columns) in tables {
        let id = if postgres { "id BIGSERIAL PRIMARY KEY" } else { "id INTEGER PRIMARY KEY AUTOINCREMENT" };
        let cols: Vec<String> = columns
            .iter()
            .map(|(c, t)| format!("\"{c}\" {}", if postgres { t.postgres() } else { t.sqlite() }))
            .collect();
        out.push(format!("CREATE TABLE IF NOT EXISTS \"{table}\" ({id}, {})", cols.join(", ")));
    }
    out
}

fn insert_statement(table: &str, columns: &[&String], postgres: bool) -> String {
    let names: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let marks: Vec<String> =
        (1..=columns.len()).map(|i| if postgres { format!("${i}") } else { format!("?{i}") }).collect();
    if columns.is_empty() {
        return format!("INSERT INTO \"{table}\" DEFAULT VALUES");
    }
    format!("INSERT INTO \"{table}\" ({}) VALUES ({})", names.join(", "), marks.join(", "))
}

/// Rows of one event (with its idempotency key).
pub type EventRows = (Option<String>, Vec<(String, Map<String, Value>)>);

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(r2d2::Pool<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>),
}

pub struct Sql {
    backend: Option<Arc<Backend>>,
    /// CREATE TABLE statements, run until they succeed once (PostgreSQL may be down at start).
    creates: Arc<Vec<String>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Sql {
    /// Connects and creates the declared tables (nothing is opened when none are declared).
    /// A PostgreSQL server that is down at start-up is not fatal: the tables are created by
    /// the first insert that reaches it.
    pub fn open(url: SqlUrl, tables: &BTreeMap<String, BTreeMap<String, ColumnType>>) -> Result<Self, SqlError> {
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if tables.is_empty() {
            return Ok(Self { backend: None, creates: Arc::default(), ready });
        }
        let (backend, creates) = match url {
            SqlUrl::Sqlite(path) => {
                let conn = match rusqlite::Connection::open(&path) {
                    Ok(conn) => conn,
                    Err(source) => return Err(SqlError::Open { path, source }),
                };
                conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;")?;
                (Backend::Sqlite(Mutex::new(conn)), create_statements(tables, false))
            }
            SqlUrl::Postgres(url) => {
                let config: postgres::Config = url.parse().map_err(SqlError::Url)?;
                let manager = r2d2_postgres::PostgresConnectionManager::new(config, postgres::NoTls);
                let pool = r2d2::Pool::builder()
                    .max_size(8)
                    .min_idle(Some(0))
                    .connection_timeout(std::time::Duration::from_secs(5))
                    .build_unchecked(manager);
                (Backend::Postgres(pool), create_statements(tables, true))
            }
        };
        let postgres = matches!(backend, Backend::Postgres(_));
        let (backend, creates) = (Arc::new(backend), Arc::new(creates));
        let sql = Self { backend: Some(backend.clone()), creates: creates.clone(), ready: ready.clone() };
        if !postgres {
            ensure_tables(&backend, &creates, &ready)?;
            return Ok(sql);
        }
        // The synchronous PostgreSQL client must not run on an async thread: create the
        // tables from a thread of its own.
        std::thread::spawn(move || {
            if let Err(e) = ensure_tables(&backend, &creates, &ready) {
                tracing::warn!(error = %e, "sql output: PostgreSQL is not reachable yet; tables will be created on first use");
            }
        });
        Ok(sql)
    }

    /// Inserts every event's rows in one transaction; returns how many events were skipped
    /// because their key was applied before.
    pub async fn insert(&self, catalog: Arc<Catalog>, events: Vec<EventRows>) -> Result<usize, SqlError> {
        let Some(backend) = self.backend.clone() else {
            return Err(SqlError::NoTables);
        };
        let (creates, ready) = (self.creates.clone(), self.ready.clone());
        tokio::task::spawn_blocking(move || -> Result<usize, SqlError> {
            ensure_tables(&backend, &creates, &ready)?;
            match &*backend {
                Backend::Sqlite(conn) => {
                    let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                    insert_sqlite(&mut conn, &catalog, &events)
                }
                Backend::Postgres(pool) => {
                    let mut client = pool.get()?;
                    insert_postgres(&mut client, &catalog, &events)
                }
            }
        })
        .await?
    }
}

impl Drop for Sql {
    fn drop(&mut self) {
        // Closing PostgreSQL connections blocks: never on an async thread.
        if let Some(backend) = self.backend.take() {
            let _ = std::thread::Builder::new().name("sql-close".into()).spawn(move || drop(backend));
        }
    }
}

fn ensure_tables(backend: &Backend, creates: &[String], ready: &std::sync::atomic::AtomicBool) -> Result<(), SqlError> {
    use std::sync::atomic::Ordering;
    if ready.load(Ordering::Acquire) {
        return Ok(());
    }
    match backend {
        Backend::Sqlite(conn) => {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            for statement in creates {
                conn.execute(statement, [])
                    .map_err(|source| SqlError::CreateSqlite { statement: statement.clone(), source })?;
            }
        }
        Backend::Postgres(pool) => {
            let mut client = pool.get()?;
            let mut tx = client.transaction()?;
            // Concurrent CREATE TABLE IF NOT EXISTS can collide (other threads, other
            // instances): one at a time.
            tx.execute("SELECT pg_advisory_xact_lock(726172001)", &[])?;
            for statement in creates {
                tx.batch_execute(statement)
                    .map_err(|source| SqlError::CreatePostgres { statement: statement.clone(), source })?;
            }
            tx.commit()?;
        }
    }
    ready.store(true, Ordering::Release);
    Ok(())
}

/// What `hookyard_applied` records for an event: its key and the tables it writes to (so a
/// replay after the script gained a table fills the new table).
fn marker(key: Option<&str>, rows: &[(String, Map<String, Value>)]) -> Option<String> {
    let mut tables: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    key.map(|k| format!("{k} -> {}", tables.join(",")))
}

/// The row's column names and values converted for their declared types.
pub fn converted<'a>(
    catalog: &Catalog,
    table: &str,
    row: &'a Map<String, Value>,
) -> Result<(Vec<&'a String>, Vec<SqlValue>), SqlError> {
    let columns = catalog.tables.get(table).ok_or_else(|| SqlError::NoTable(table.to_owned()))?;
    if let Some(column) = row.keys().find(|c| !columns.contains_key(*c)) {
        return Err(SqlError::NoColumn { table: table.to_owned(), column: column.clone() });
    }
    let mut names = Vec::with_capacity(row.len());
    let mut values = Vec::with_capacity(row.len());
    for (name, value) in row {
        let refused = |source| SqlError::Column { table: table.to_owned(), column: name.clone(), source };
        names.push(name);
        values.push(columns[name].convert(value).map_err(refused)?);
    }
    Ok((names, values))
}

/// The two things one transaction does, on either database.
trait RowSink {
    /// Records `marker` in `hookyard_applied`; false when it was recorded before.
    fn mark(&mut self, marker: &str) -> Result<bool, SqlError>;
    fn insert(&mut self, table: &str, names: &[&String], values: Vec<SqlValue>) -> Result<(), SqlError>;
}

/// Writes every event's rows into `sink` (one transaction, committed by the caller); returns
/// how many events were skipped as written before.
fn write_events(sink: &mut impl RowSink, catalog: &Catalog, events: &[EventRows]) -> Result<usize, SqlError> {
    let mut skipped = 0;
    for (key, rows) in events.iter().filter(|(_, rows)| !rows.is_empty()) {
        if let Some(marker) = marker(key.as_deref(), rows)
            && !sink.mark(&marker)?
        {
            skipped += 1;
            continue;
        }
        for (table, row) in rows {
            let (names, values) = converted(catalog, table, row)?;
            sink.insert(table, &names, values)?;
        }
    }
    Ok(skipped)
}

impl RowSink for rusqlite::Transaction<'_> {
    fn mark(&mut self, marker: &str) -> Result<bool, SqlError> {
        let sql = "INSERT INTO hookyard_applied (key) VALUES (?1) ON CONFLICT DO NOTHING";
        Ok(self.execute(sql, [marker])? > 0)
    }

    fn insert(&mut self, table: &str, names: &[&String], values: Vec<SqlValue>) -> Result<(), SqlError> {
        use rusqlite::types::Value as V;
        let params = values.into_iter().map(|v| match v {
            SqlValue::Null => V::Null,
            SqlValue::Text(s) => V::Text(s),
            SqlValue::Int(n) => V::Integer(n),
            SqlValue::Real(f) => V::Real(f),
            SqlValue::Bool(b) => V::Integer(b as i64),
            SqlValue::Json(j) => V::Text(j.to_string()),
            SqlValue::Time(t) => V::Text(crate::event::rfc3339_millis((t.unix_timestamp_nanos() / 1_000_000) as i64)),
        });
        let refused = |source| SqlError::InsertSqlite { table: table.to_owned(), source };
        let mut stmt = self.prepare_cached(&insert_statement(table, names, false)).map_err(refused)?;
        stmt.execute(rusqlite::params_from_iter(params)).map(|_| ()).map_err(refused)
    }
}

impl RowSink for postgres::Transaction<'_> {
    fn mark(&mut self, marker: &str) -> Result<bool, SqlError> {
        let sql = "INSERT INTO hookyard_applied (key) VALUES ($1) ON CONFLICT DO NOTHING";
        Ok(self.execute(sql, &[&marker])? > 0)
    }

    fn insert(&mut self, table: &str, names: &[&String], values: Vec<SqlValue>) -> Result<(), SqlError> {
        use postgres::types::ToSql;
        let params: Vec<Box<dyn ToSql + Sync>> = values
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync> {
                match v {
                    SqlValue::Null => Box::new(Option::<String>::None),
                    SqlValue::Text(s) => Box::new(s),
                    SqlValue::Int(n) => Box::new(n),
                    SqlValue::Real(f) => Box::new(f),
                    SqlValue::Bool(b) => Box::new(b),
                    SqlValue::Json(j) => Box::new(j),
                    SqlValue::Time(t) => Box::new(t),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
        let refused = |source| SqlError::InsertPostgres { table: table.to_owned(), source };
        let stmt = self.prepare(&insert_statement(table, names, true)).map_err(refused)?;
        self.execute(&stmt, &refs).map(|_| ()).map_err(refused)
    }
}

fn insert_sqlite(conn: &mut rusqlite::Connection, catalog: &Catalog, events: &[EventRows]) -> Result<usize, SqlError> {
    let mut tx = conn.transaction()?;
    let skipped = write_events(&mut tx, catalog, events)?;
    tx.commit()?;
    Ok(skipped)
}

fn insert_postgres(client: &mut postgres::Client, catalog: &Catalog, events: &[EventRows]) -> Result<usize, SqlError> {
    let mut tx = client.transaction()?;
    let skipped = write_events(&mut tx, catalog, events)?;
    tx.commit()?;
    Ok(skipped)
}
