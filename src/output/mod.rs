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

mod http;
mod mqtt;
mod sql;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use sql::{ColumnType, SqlUrl};

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
    pub url: Option<crate::config::Secret>,
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
    pub password: Option<crate::config::Secret>,
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
    pub fn from_settings(settings: &OutputSettings) -> Result<Self, String> {
        let mut tables = BTreeMap::new();
        for (table, columns) in &settings.sql.tables {
            sql::check_identifier(table).map_err(|e| format!("[outputs.sql.tables.{table}]: {e}"))?;
            let mut typed = BTreeMap::new();
            for (column, kind) in columns {
                let place = format!("[outputs.sql.tables.{table}] {column}");
                sql::check_identifier(column).map_err(|e| format!("{place}: {e}"))?;
                typed.insert(column.clone(), kind.parse::<ColumnType>().map_err(|e| format!("{place}: {e}"))?);
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
    pub fn check_row(&self, table: &str, row: &Map<String, Value>) -> Result<(), String> {
        let Some(columns) = self.tables.get(table) else {
            return Err(format!("sql_insert: no table {table:?} is declared ([outputs.sql.tables.{table}])"));
        };
        if let Some(unknown) = row.keys().find(|c| !columns.contains_key(*c)) {
            return Err(format!("sql_insert: table {table} has no column {unknown:?}"));
        }
        for (column, value) in row {
            columns[column].convert(value).map_err(|e| format!("sql_insert: {table}.{column}: {e}"))?;
        }
        Ok(())
    }
}

/// The configured outputs, ready to deliver.
pub struct Outputs {
    pub catalog: Arc<Catalog>,
    sql: sql::Sql,
    mqtt: Option<mqtt::Mqtt>,
    http: http::Http,
}

/// Outcome of delivering one request's outputs.
pub struct Delivery {
    /// Events (positions in the list given) whose outputs all went out, from the start.
    pub delivered: usize,
    /// Why the next event's outputs failed.
    pub failure: Option<String>,
    /// Log lines per event.
    pub logs: Vec<Vec<String>>,
}

impl Outputs {
    /// Connects the SQL output (creating declared tables) and starts the MQTT client (which
    /// connects in the background). Needs a Tokio runtime.
    pub fn open(settings: &OutputSettings, data_dir: &Path, catalog: Arc<Catalog>) -> Result<Self, String> {
        let url = match &settings.sql.url {
            Some(url) if !url.0.is_empty() => SqlUrl::Postgres(url.0.clone()),
            _ => SqlUrl::Sqlite(data_dir.join(settings.sql.sqlite_file.as_deref().unwrap_or("hookyard.db"))),
        };
        let sql = sql::Sql::open(url, &catalog.tables)?;
        let mqtt = settings.mqtt.as_ref().map(mqtt::Mqtt::start);
        Ok(Self { catalog, sql, mqtt, http: http::Http::new(&settings.http) })
    }

    /// Delivers the outputs of a request's processed events (in order); `keys` are their
    /// idempotency keys.
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
            match self.sql.insert(self.catalog.clone(), batch).await {
                Ok(skipped) if skipped > 0 => {
                    logs[first].push(format!("sql: {skipped} event(s) already stored earlier; not inserted again"))
                }
                Ok(_) => {}
                Err(e) => {
                    limit = first;
                    failure = Some(format!("output failed: {e}"));
                }
            }
        }
        for (n, (_, outs)) in events.iter().enumerate().take(limit) {
            for out in outs {
                let result = match out {
                    Output::Sql { .. } => Ok(()),
                    Output::Mqtt { topic, payload, qos, retain } => match &self.mqtt {
                        Some(m) => m.publish(topic, payload.clone(), *qos, *retain).await,
                        None => Err("mqtt: no broker is configured ([outputs.mqtt])".into()),
                    },
                    Output::Http { .. } => self.http.post(out).await,
                };
                if let Err(e) = result {
                    return Delivery { delivered: n, failure: Some(format!("output failed: {e}")), logs };
                }
            }
        }
        Delivery { delivered: limit, failure, logs }
    }
}
