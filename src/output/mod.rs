//! Outputs: places scripts send data beyond the data directory — SQL tables (embedded SQLite
//! or PostgreSQL), an MQTT broker, other HTTP endpoints.
//!
//! Host calls (`sql_insert`, `mqtt_publish`, `ha_sensor`, `http_post`) record an [`Output`]
//! per event, like file effects. After the script run and *before* the journal commit, the
//! request's outputs are delivered from the request's own task: first every SQL row of the
//! request in one transaction, then MQTT messages and HTTP calls in script order. An output
//! that fails makes its event fail (and the events after it in the request): the sender gets
//! the protocol's failure reply and retries, and the journal keeps the event for replay. A
//! slow output holds up only the requests that use it (each request delivers its own; the
//! journal writer never waits for an output).
//!
//! Delivery is at least once for MQTT and HTTP (a retry after a crash between delivery and
//! commit sends again). SQL rows of an event with an idempotency key are written exactly
//! once: the key is recorded in `hookyard_applied` in the same transaction, and a
//! transaction whose keys are all recorded already is skipped.

mod columns;
pub mod health;
mod http;
mod mqtt;
mod sql;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use columns::{ColumnError, ColumnType};
pub use http::HttpError;
pub use mqtt::MqttError;
pub use sql::{SqlError, SqlUrl};

/// Why an output could not be declared, checked or delivered.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A declared table cannot be used (`[outputs.sql.tables.<table>]`).
    #[error("[outputs.sql.tables.{table}]: {source}")]
    Table { table: String, source: ColumnError },
    /// A declared column cannot be used.
    #[error("[outputs.sql.tables.{table}] {column}: {source}")]
    Column { table: String, column: String, source: ColumnError },
    /// A script's `sql_insert` row does not fit the declared table.
    #[error("sql_insert: {0}")]
    Row(SqlError),
    /// The SQL output could not be opened at start-up.
    #[error("{0}")]
    OpenSql(SqlError),
    /// The HTTP client could not be built at start-up.
    #[error("{0}")]
    OpenHttp(HttpError),
    #[error("output failed: {0}")]
    Sql(#[from] SqlError),
    #[error("output failed: {0}")]
    Mqtt(#[from] MqttError),
    #[error("output failed: {0}")]
    Http(#[from] HttpError),
}

impl OutputError {
    /// Which output it concerns, for a metrics label: `sql`, `mqtt` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Table { .. } | Self::Column { .. } | Self::Row(_) | Self::OpenSql(_) | Self::Sql(_) => "sql",
            Self::Mqtt(_) => "mqtt",
            Self::OpenHttp(_) | Self::Http(_) => "http",
        }
    }
}

/// One thing a script asked to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Insert `row` into `table` (columns as declared in the config).
    Sql { table: String, row: Map<String, Value> },
    /// Publish `payload` on `topic`.
    Mqtt { topic: String, payload: Vec<u8>, qos: u8, retain: bool },
    /// POST `body` to `url`.
    Http {
        url: String,
        body: Vec<u8>,
        content_type: String,
        headers: Vec<(String, String)>,
        timeout_ms: Option<u64>,
        retries: Option<u32>,
    },
}

impl Output {
    /// One line for the event's log (kept in the journal).
    pub fn describe(&self) -> String {
        match self {
            Output::Sql { table, row } => format!("sql: 1 row into {table} ({} columns)", row.len()),
            Output::Mqtt { topic, payload, qos, retain } => {
                format!(
                    "mqtt: {} bytes to {topic} (qos {qos}{})",
                    payload.len(),
                    if *retain { ", retained" } else { "" }
                )
            }
            Output::Http { url, body, .. } => format!("http: POST {} bytes to {}", body.len(), redact_url(url)),
        }
    }
}

/// A URL without its user-info part (which may hold a password).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// `[outputs]` in the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSettings {
    pub sql: SqlSettings,
    pub mqtt: Option<MqttSettings>,
    pub http: HttpSettings,
}

/// `[outputs.sql]`: where `sql_insert` writes and which tables exist.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlSettings {
    /// `postgres://user:password@host/db`; empty = the embedded SQLite database.
    pub url: Option<crate::secret::Secret>,
    /// The embedded database file, relative to the data directory.
    pub sqlite_file: Option<String>,
    /// `[outputs.sql.tables.<table>] <column> = "text" | "integer" | "real" | "boolean" | "json" | "timestamp"`.
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
}

/// `[outputs.mqtt]`: the broker `mqtt_publish` and `ha_sensor` use.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<crate::secret::Secret>,
    /// How long a publish may take (until the broker acknowledges QoS 1).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Home Assistant's MQTT discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_client_id() -> String {
    "hookyard".into()
}
fn default_timeout() -> u64 {
    5_000
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}

/// `[outputs.http]`: defaults of `http_post`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub timeout_ms: u64,
    /// Attempts after the first one, for connection errors, timeouts, 429 and 5xx.
    pub retries: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { timeout_ms: 5_000, retries: 2 }
    }
}

/// What scripts may send to: checked while the script runs, so a mistake names the call.
#[derive(Default)]
pub struct Catalog {
    pub tables: BTreeMap<String, BTreeMap<String, ColumnType>>,
    pub mqtt: bool,
    pub discovery_prefix: String,
}

impl Catalog {
    /// Checks the declared tables and columns.
    pub fn from_settings(settings: &OutputSettings) -> Result<Self, OutputError> {
        let mut tables = BTreeMap::new();
        for (table, columns) in &settings.sql.tables {
            columns::check_identifier(table).map_err(|source| OutputError::Table { table: table.clone(), source })?;
            let mut typed = BTreeMap::new();
            for (column, kind) in columns {
                let refused = |source| OutputError::Column { table: table.clone(), column: column.clone(), source };
                columns::check_identifier(column).map_err(refused)?;
                typed.insert(column.clone(), kind.parse::<ColumnType>().map_err(refused)?);
            }
            tables.insert(table.clone(), typed);
        }
        Ok(Self {
            tables,
            mqtt: settings.mqtt.is_some(),
            discovery_prefix: settings.mqtt.as_ref().map(|m| m.discovery_prefix.clone()).unwrap_or_default(),
        })
    }

    /// Checks `row` against the declared table.
    pub fn check_row(&self, table: &str, row: &Map<String, Value>) -> Result<(), OutputError> {
        sql::converted(self, table, row).map(|_| ()).map_err(OutputError::Row)
    }
}

/// The configured outputs, ready to deliver.
pub struct Outputs {
    pub catalog: Arc<Catalog>,
    /// Deliveries and failures per output since start.
    pub health: health::OutputHealth,
    sql: sql::Sql,
    mqtt: Option<mqtt::Mqtt>,
    http: http::Http,
}

/// Outcome of delivering one request's outputs.
pub struct Delivery {
    /// Events (positions in the list given) whose outputs all went out, from the start.
    pub delivered: usize,
    /// Why the next event's outputs failed.
    pub failure: Option<OutputError>,
    /// Log lines per event.
    pub logs: Vec<Vec<String>>,
}

impl Outputs {
    /// Connects the SQL output (creating declared tables) and starts the MQTT client (which
    /// connects in the background). Needs a Tokio runtime.
    pub fn open(settings: &OutputSettings, data_dir: &Path, catalog: Arc<Catalog>) -> Result<Self, OutputError> {
        let url = match &settings.sql.url {
            Some(url) if !url.0.is_empty() => SqlUrl::Postgres(url.0.clone()),
            _ => SqlUrl::Sqlite(data_dir.join(settings.sql.sqlite_file.as_deref().unwrap_or("hookyard.db"))),
        };
        let sql = sql::Sql::open(url, &catalog.tables).map_err(OutputError::OpenSql)?;
        let http = http::Http::new(&settings.http).map_err(OutputError::OpenHttp)?;
        let mqtt = settings.mqtt.as_ref().map(mqtt::Mqtt::start);
        Ok(Self { catalog, health: health::OutputHealth::default(), sql, mqtt, http })
    }

    /// Delivers the outputs of a request's processed events (in order), each given with its
    /// idempotency key (SQL rows of a keyed event are written once).
    pub async fn deliver(&self, events: &[(Option<String>, Vec<Output>)]) -> Delivery {
        let mut logs: Vec<Vec<String>> =
            events.iter().map(|(_, outs)| outs.iter().map(Output::describe).collect()).collect();
        let first_sql = events.iter().position(|(_, outs)| outs.iter().any(|o| matches!(o, Output::Sql { .. })));
        let mut limit = events.len();
        let mut failure = None;
        if let Some(first) = first_sql {
            let batch: Vec<sql::EventRows> = events
                .iter()
                .map(|(key, outs)| {
                    let rows = outs
                        .iter()
                        .filter_map(|o| match o {
                            Output::Sql { table, row } => Some((table.clone(), row.clone())),
                            _ => None,
                        })
                        .collect();
                    (key.clone(), rows)
                })
                .collect();
            let inserted = self.sql.insert(self.catalog.clone(), batch).await;
            self.tally("sql", inserted.as_ref().err().map(ToString::to_string));
            match inserted {
                Ok(skipped) if skipped > 0 => {
                    logs[first].push(format!("sql: {skipped} event(s) already stored earlier; not inserted again"))
                }
                Ok(_) => {}
                Err(e) => {
                    limit = first;
                    failure = Some(OutputError::Sql(e));
                }
            }
        }
        for (n, (_, outs)) in events.iter().enumerate().take(limit) {
            for out in outs.iter().filter(|o| !matches!(o, Output::Sql { .. })) {
                let sent = self.send(out).await;
                let kind = if matches!(out, Output::Mqtt { .. }) { "mqtt" } else { "http" };
                self.tally(kind, sent.as_ref().err().map(ToString::to_string));
                if let Err(e) = sent {
                    return Delivery { delivered: n, failure: Some(e), logs };
                }
            }
        }
        Delivery { delivered: limit, failure, logs }
    }

    /// Counts one delivery of `kind`: out, or failed with `error`.
    fn tally(&self, kind: &str, error: Option<String>) {
        match error {
            None => self.health.delivered(kind),
            Some(e) => self.health.failed(kind, &e, crate::activity::now_ms()),
        }
    }

    /// Sends one MQTT or HTTP output (SQL rows go out together, before).
    async fn send(&self, out: &Output) -> Result<(), OutputError> {
        match out {
            Output::Sql { .. } => Ok(()),
            Output::Mqtt { topic, payload, qos, retain } => match &self.mqtt {
                Some(m) => Ok(m.publish(topic, payload.clone(), *qos, *retain).await?),
                None => Err(MqttError::NotConfigured.into()),
            },
            Output::Http { .. } => Ok(self.http.post(out).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings(columns: &[(&str, &str)]) -> OutputSettings {
        let mut settings = OutputSettings::default();
        let columns = columns.iter().map(|(c, t)| (c.to_string(), t.to_string())).collect();
        settings.sql.tables.insert("readings".into(), columns);
        settings
    }

    #[test]
    fn declaration_mistakes_name_the_table_and_column() {
        let err = Catalog::from_settings(&settings(&[("value", "float")])).err().unwrap();
        assert_eq!(
            err.to_string(),
            r#"[outputs.sql.tables.readings] value: unknown column type "float" (use text, integer, real, boolean, json or timestamp)"#
        );
        assert_eq!(err.kind(), "sql");
        let err = Catalog::from_settings(&settings(&[("1st", "text")])).err().unwrap();
        assert!(matches!(&err, OutputError::Column { column, .. } if column == "1st"), "{err}");
    }

    #[test]
    fn rows_that_do_not_fit_are_refused_with_their_reason() {
        let catalog = Catalog::from_settings(&settings(&[("value", "real")])).unwrap();
        let row = |v: Value| json!({ "value": v }).as_object().unwrap().clone();
        assert!(catalog.check_row("readings", &row(json!("1.5"))).is_ok());
        let err = catalog.check_row("readings", &row(json!("34x"))).unwrap_err();
        assert_eq!(err.to_string(), r#"sql_insert: readings.value: "34x" is not a number"#);
        let other = json!({ "volts": 1 }).as_object().unwrap().clone();
        let err = catalog.check_row("readings", &other).unwrap_err();
        assert_eq!(err.to_string(), r#"sql_insert: table readings has no column "volts""#);
        let err = catalog.check_row("nowhere", &row(json!(1))).unwrap_err();
        assert_eq!(err.to_string(), r#"sql_insert: no table "nowhere" is declared ([outputs.sql.tables.nowhere])"#);
    }

    #[tokio::test]
    async fn a_delivery_failure_carries_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = Outputs::open(&OutputSettings::default(), dir.path(), Arc::default()).unwrap();
        let mqtt = Output::Mqtt { topic: "meters/x".into(), payload: b"1".to_vec(), qos: 0, retain: false };
        let http = Output::Http {
            url: "ftp://example.org/".into(),
            body: Vec::new(),
            content_type: "text/plain".into(),
            headers: Vec::new(),
            timeout_ms: None,
            retries: None,
        };
        let delivery = outputs.deliver(&[(None, Vec::new()), (None, vec![mqtt])]).await;
        assert_eq!(delivery.delivered, 1, "the first event had nothing to send");
        let failure = delivery.failure.unwrap();
        assert_eq!(
            (failure.kind(), failure.to_string().as_str()),
            ("mqtt", "output failed: mqtt: no broker is configured ([outputs.mqtt])")
        );
        let sql = Output::Sql { table: "readings".into(), row: Map::new() };
        let failure = outputs.deliver(&[(None, vec![sql])]).await.failure.unwrap();
        assert_eq!(failure.kind(), "sql");
        assert_eq!(failure.to_string(), "output failed: sql: no tables are declared ([outputs.sql.tables.…])");
        let failure = outputs.deliver(&[(None, vec![http])]).await.failure.unwrap();
        assert_eq!(failure.kind(), "http");
        assert!(matches!(failure, OutputError::Http(HttpError::Request { .. })), "not retried: {failure}");
        assert!(failure.to_string().starts_with("output failed: http: ftp://example.org/: "), "{failure}");
    }
}
