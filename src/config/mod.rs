//! The one typed configuration, loaded once at start-up and passed explicitly.
//!
//! Layers, lowest first: embedded defaults, the TOML file (`hookyard.toml` in the working
//! directory when present, or `--config FILE`), then `HOOKYARD_LISTEN` / `HOOKYARD_DATA_DIR`
//! from the environment. Any string in the file may be `${ENV_VAR}`. Protocol tables are kept
//! as free-form settings: the spec of each protocol names which keys its building blocks read.

pub mod credentials;
mod env;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::output::OutputSettings;
use crate::plugin::PluginSettings;
use crate::store::journal::Retention;

pub use credentials::{CredentialsReport, fill_missing_credentials};

/// Errors while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: environment variable {0} is referenced but not set")]
    MissingEnv(String),
    #[error("config: {0}")]
    Invalid(String),
    #[error("cannot store generated credentials in {path}: {source}")]
    Credentials { path: PathBuf, source: std::io::Error },
}

/// Limits applied to every script run.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// Wall-clock cap per event, in milliseconds.
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

/// Limits on connections and slow clients.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Open connections at most; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// A request head (request line and headers) must arrive within this time.
    pub header_timeout_ms: u64,
    /// A request body must arrive within this time, with no pause longer than a third of it.
    pub body_timeout_ms: u64,
    /// Keep-alive connections with no traffic for this long are closed.
    pub idle_timeout_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self { max_connections: 1024, header_timeout_ms: 10_000, body_timeout_ms: 30_000, idle_timeout_ms: 60_000 }
    }
}

/// A secret string: `Debug` never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The management API (`/api/…`) and `/metrics`; disabled when no token is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token the management API and `/metrics` require.
    pub token: Option<Secret>,
}

/// The settings table of one protocol (`[protocols.<name>]`). Values may be secrets, so
/// `Debug` prints only the keys.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    spec_dir: Option<PathBuf>,
    scripts_dir: Option<PathBuf>,
    reload_interval_ms: Option<u64>,
    #[serde(default)]
    scripts: ScriptLimits,
    #[serde(default)]
    server: ServerLimits,
    #[serde(default)]
    admin: AdminSettings,
    #[serde(default)]
    journal: Retention,
    #[serde(default)]
    protocols: BTreeMap<String, ProtocolSettings>,
    #[serde(default)]
    plugins: BTreeMap<String, PluginSettings>,
    #[serde(default)]
    outputs: OutputSettings,
}

/// The whole configuration of one hookyard process.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where specs are read from; `None` = the specs built into the binary.
    pub spec_dir: Option<PathBuf>,
    /// Where scripts are read from; `None` = the scripts built into the binary.
    pub scripts_dir: Option<PathBuf>,
    pub reload_interval: Duration,
    pub script_limits: ScriptLimits,
    pub server_limits: ServerLimits,
    pub admin: AdminSettings,
    pub journal: Retention,
    pub protocols: BTreeMap<String, ProtocolSettings>,
    /// `[plugins.<name>]`: native plugins to load.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// `[outputs]`: SQL, MQTT and HTTP outputs of scripts.
    pub outputs: OutputSettings,
}

impl Config {
    /// Embedded defaults: loopback, `./data`, and `./spec` / `./scripts` when they exist.
    pub fn defaults() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            spec_dir: existing_dir("spec"),
            scripts_dir: existing_dir("scripts"),
            reload_interval: Duration::from_millis(500),
            script_limits: ScriptLimits::default(),
            server_limits: ServerLimits::default(),
            admin: AdminSettings::default(),
            journal: Retention::default(),
            protocols: BTreeMap::new(),
            plugins: BTreeMap::new(),
            outputs: OutputSettings::default(),
        }
    }

    /// Loads `path`, or `hookyard.toml` when it exists, or the defaults; then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let implicit = Path::new("hookyard.toml");
        let path = path.or_else(|| implicit.exists().then_some(implicit));
        let mut config = match path {
            Some(p) => Self::from_file(p)?,
            None => Self::defaults(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, |k| std::env::var(k).ok()).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses TOML text, expanding `${VAR}` with `lookup`.
    pub fn from_toml(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut value: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.message().to_owned() })?;
        env::expand_table(&mut value, &lookup)?;
        let file: FileConfig = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        let mut config = Self::defaults();
        if let Some(listen) = file.listen {
            config.listen = parse_listen(&listen)?;
        }
        if let Some(dir) = file.data_dir {
            config.data_dir = dir;
        }
        config.spec_dir = file.spec_dir.or(config.spec_dir);
        config.scripts_dir = file.scripts_dir.or(config.scripts_dir);
        if let Some(ms) = file.reload_interval_ms {
            config.reload_interval = Duration::from_millis(ms.max(50));
        }
        config.script_limits = file.scripts;
        config.server_limits = file.server;
        config.admin = file.admin;
        config.journal = file.journal;
        config.protocols = file.protocols;
        config.plugins = file.plugins;
        config.outputs = file.outputs;
        Ok(config)
    }

    fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = lookup("HOOKYARD_LISTEN") {
            self.listen = parse_listen(&listen)?;
        }
        if let Some(dir) = lookup("HOOKYARD_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(token) = lookup("HOOKYARD_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
            self.admin.token = Some(Secret(token));
        }
        Ok(())
    }

    /// The settings of one protocol (empty when the file has none).
    pub fn protocol(&self, name: &str) -> ProtocolSettings {
        self.protocols.get(name).cloned().unwrap_or_default()
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| ConfigError::Invalid(format!("listen: {text:?} is not an address like 127.0.0.1:8080")))
}

fn existing_dir(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(name);
    p.is_dir().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIEF_EXAMPLE: &str = r#"
listen = "127.0.0.1:8080"
data_dir = "data"
[protocols.ai-on-the-edge]
api_keys = { "s3cr3tKey" = "vacation-home" }
[protocols.gridx]
secrets = ["${GRIDX_SECRET}"]
[protocols.wattmon]
allowed_keys = ["00:04:A3:12:34:56"]
require_md5 = true
[protocols.wattsense]
auth = { type = "bearer", token = "t0ken" }
integrity = { header = "X-Signature", algorithm = "hmac-sha256", encoding = "hex", secret = "s3cret" }
[admin]
token = "adm1n"
"#;

    #[test]
    fn the_documented_shape_loads_and_expands_env() {
        let lookup = |k: &str| (k == "GRIDX_SECRET").then(|| "whsec_x".to_owned());
        let c = Config::from_toml(BRIEF_EXAMPLE, lookup).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        let gridx = c.protocol("gridx");
        assert_eq!(gridx.get("secrets").unwrap().as_array().unwrap()[0].as_str(), Some("whsec_x"));
        assert!(c.protocol("wattmon").get("require_md5").unwrap().as_bool().unwrap());
    }

    #[test]
    fn a_missing_env_var_is_named() {
        let err = Config::from_toml(BRIEF_EXAMPLE, |_| None).unwrap_err();
        assert_eq!(err.to_string(), "config: environment variable GRIDX_SECRET is referenced but not set");
    }

    #[test]
    fn debug_output_never_shows_secret_values() {
        let lookup = |_: &str| Some("whsec_x".to_owned());
        let c = Config::from_toml(BRIEF_EXAMPLE, lookup).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3tKey") && !shown.contains("t0ken") && !shown.contains("whsec_x"));
        assert!(!shown.contains("adm1n") && c.admin.token.is_some());
        assert!(shown.contains("api_keys"));
    }
}
