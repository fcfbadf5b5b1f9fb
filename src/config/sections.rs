//! The sections of the config file as serde structs, and the value checks serde cannot say.
//!
//! Each struct refuses unknown keys; values that cannot be right (a zero limit, an address
//! that does not parse, an empty token) are refused while reading. Settings of other rooms
//! (`[journal]`, `[outputs]`, `[plugins]`) are their own structs; their values are checked
//! here after reading, with the same key paths.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::problems::Problem;
use super::tls::TlsSettings;
use crate::output::{ColumnType, OutputSettings};
use crate::plugin::PluginSettings;
use crate::secret::Secret;
use crate::store::journal::Retention;

/// Limits applied to every script run.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptLimits {
    #[serde(deserialize_with = "not_zero")]
    pub max_operations: u64,
    #[serde(deserialize_with = "not_zero")]
    pub max_call_levels: usize,
    #[serde(deserialize_with = "not_zero")]
    pub max_string_size: usize,
    #[serde(deserialize_with = "not_zero")]
    pub max_array_size: usize,
    #[serde(deserialize_with = "not_zero")]
    pub max_map_size: usize,
    /// Wall-clock cap per event, in milliseconds.
    #[serde(deserialize_with = "not_zero")]
    pub timeout_ms: u64,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_string_size: 4 * 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 10_000,
            timeout_ms: 1_000,
        }
    }
}

/// Limits on connections, slow clients and bodies in memory (`[server]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Open connections at most; further clients wait in the kernel's backlog.
    #[serde(deserialize_with = "not_zero")]
    pub max_connections: usize,
    /// Open connections from one address at most; more are closed at once (trusted proxies
    /// are exempt).
    #[serde(deserialize_with = "not_zero")]
    pub max_connections_per_client: usize,
    /// A request head (request line and headers) must arrive within this time.
    #[serde(deserialize_with = "not_zero")]
    pub header_timeout_ms: u64,
    /// A request body must arrive within this time, with no pause longer than a third of it.
    #[serde(deserialize_with = "not_zero")]
    pub body_timeout_ms: u64,
    /// After a grace period, a body slower than this on average is cut with 408 (0 = off).
    pub min_body_rate_bytes_per_s: u64,
    /// Bytes of bodies read before their sender is known (signature and form checks) held
    /// in memory at once, over all requests; past it a request waits briefly, then gets the
    /// protocol's retryable reply.
    #[serde(deserialize_with = "not_zero")]
    pub body_budget_bytes: usize,
    /// Keep-alive connections with no traffic for this long are closed.
    #[serde(deserialize_with = "not_zero")]
    pub idle_timeout_ms: u64,
    /// Failed credential attempts one client address may make within a minute before it is
    /// refused for a minute (429); 0 turns the lockout off.
    pub max_failed_attempts: u32,
    /// Cleartext HTTP/2 (h2c, by prior knowledge); off: such a connection is closed.
    pub http2: bool,
    /// Concurrent streams on one HTTP/2 connection at most.
    #[serde(deserialize_with = "not_zero")]
    pub http2_max_streams: u32,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    #[serde(deserialize_with = "proxy_ranges")]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_client: 128,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            min_body_rate_bytes_per_s: 1024,
            body_budget_bytes: 16 * 1024 * 1024,
            idle_timeout_ms: 15_000,
            http2: false,
            http2_max_streams: 32,
            trusted_proxies: Vec::new(),
            max_failed_attempts: 10,
        }
    }
}

/// The management API (`/api/…`), `/metrics` and the console; disabled when no token is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token the management API and `/metrics` require.
    #[serde(deserialize_with = "non_empty_secret")]
    pub token: Option<Secret>,
    /// How long a console log-in lasts, in hours.
    #[serde(deserialize_with = "not_zero")]
    pub session_hours: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { token: None, session_hours: 12 }
    }
}

/// The settings table of one protocol (`[protocols.<name>]`). Which keys it may hold is up
/// to the protocol's spec (its building blocks name them), so it is checked where the specs
/// are known. Values may be secrets, so `Debug` prints only the keys.
#[derive(Clone, Default, Deserialize)]
pub struct ProtocolSettings(pub toml::Table);

impl fmt::Debug for ProtocolSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ProtocolSettings {
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        self.0.get(key)
    }
}

/// The file as written (every section optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default, deserialize_with = "listen_address")]
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub spec_dir: Option<PathBuf>,
    pub scripts_dir: Option<PathBuf>,
    pub reload_interval_ms: Option<u64>,
    #[serde(default)]
    pub scripts: ScriptLimits,
    #[serde(default)]
    pub server: ServerLimits,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub journal: Retention,
    #[serde(default)]
    pub protocols: BTreeMap<String, ProtocolSettings>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
    #[serde(default)]
    pub outputs: OutputSettings,
    pub tls: Option<TlsSettings>,
}

fn not_zero<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default + PartialEq,
{
    let value = T::deserialize(deserializer)?;
    if value == T::default() {
        return Err(serde::de::Error::custom("must be at least 1 (0 would stop everything)"));
    }
    Ok(value)
}

fn non_empty_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    let secret = Secret::deserialize(deserializer)?;
    if secret.0.is_empty() {
        return Err(serde::de::Error::custom("must not be empty (leave the key out to switch this off)"));
    }
    Ok(Some(secret))
}

/// `["10.0.0.0/8", "192.0.2.7"]`: ranges, or single addresses.
fn proxy_ranges<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    let parse = |text: &String| {
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an address or a range like 10.0.0.0/8")))
    };
    texts.iter().map(parse).collect()
}

fn listen_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    super::values::parse_listen(&text).map(Some).map_err(serde::de::Error::custom)
}

/// Values of other rooms' settings that read fine but cannot be right.
pub(super) fn check_values(file: &FileConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut refuse = |path: &[&str], message: &str| {
        problems.push(Problem { path: path.iter().map(|s| s.to_string()).collect(), message: message.to_owned() });
    };
    let j = &file.journal;
    let rejected_days = Some(j.rejected_retention_days);
    for (key, value) in
        [("max_age_days", j.max_age_days), ("max_size_mb", j.max_size_mb), ("rejected_retention_days", rejected_days)]
    {
        if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
            refuse(&["journal", key], "must be 0 or more");
        }
    }
    if !j.readings_retention_days.is_finite() || j.readings_retention_days < 0.0 {
        refuse(&["journal", "readings_retention_days"], "must be 0 or more");
    }
    if j.prune_interval_ms == 0 {
        refuse(&["journal", "prune_interval_ms"], "must be at least 1");
    }
    if !j.min_free_disk_mb.is_finite() || j.min_free_disk_mb < 0.0 {
        refuse(&["journal", "min_free_disk_mb"], "must be 0 or more");
    }
    if !j.wal_restart_mb.is_finite() || j.wal_restart_mb <= 0.0 {
        refuse(&["journal", "wal_restart_mb"], "must be more than 0");
    }
    if let Some(mqtt) = &file.outputs.mqtt {
        if mqtt.host.is_empty() {
            refuse(&["outputs", "mqtt", "host"], "must not be empty");
        }
        if mqtt.port == 0 {
            refuse(&["outputs", "mqtt", "port"], "must be a port from 1 to 65535");
        }
        if mqtt.timeout_ms == 0 {
            refuse(&["outputs", "mqtt", "timeout_ms"], "must be at least 1");
        }
    }
    if file.outputs.http.timeout_ms == 0 {
        refuse(&["outputs", "http", "timeout_ms"], "must be at least 1");
    }
    for (table, columns) in &file.outputs.sql.tables {
        for (column, kind) in columns {
            if kind.parse::<ColumnType>().is_err() {
                let message = format!("{kind:?} is not one of text, integer, real, boolean, json, timestamp");
                refuse(&["outputs", "sql", "tables", table, column], &message);
            }
        }
    }
    if let Some(tls) = &file.tls {
        problems.extend(super::tls::check(tls));
    }
    problems
}
