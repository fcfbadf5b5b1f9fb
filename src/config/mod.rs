//! The one typed configuration, loaded once at start-up and passed explicitly.
//!
//! Layers, lowest first: embedded defaults, the TOML file (`hookyard.toml` in the working
//! directory when present, or `--config FILE`), then `HOOKYARD_LISTEN` / `HOOKYARD_DATA_DIR`
//! from the environment. Any string in the file may be `${ENV_VAR}`. Every mistake is refused
//! at load with its key path and line (`sections.rs` says what each section holds; the
//! `[protocols.<name>]` tables are checked against the specs' building blocks in `App::build`,
//! with the line index kept here in [`Config::lines`]).

pub mod credentials;
mod env;
mod lines;
mod problems;
mod sections;
pub mod tls;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::output::OutputSettings;
use crate::plugin::PluginSettings;
use crate::store::journal::Retention;

pub use crate::secret::Secret;
pub use credentials::{CredentialsReport, fill_missing_credentials};
pub use lines::KeyLines;
pub use problems::{Problem, Quote, from_value, suggest, unknown};
pub use sections::{AdminSettings, ProtocolSettings, ScriptLimits, ServerLimits};
pub use tls::{CertSource, TlsSettings};

use sections::FileConfig;

/// Errors while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{place}: not valid TOML: {message}")]
    Syntax { place: String, message: String },
    /// Every problem found, one per line (`hookyard.toml line 7: [server] …: …`).
    #[error("{}", .0.join("\n"))]
    Problems(Vec<String>),
    #[error("config: {0}")]
    Invalid(String),
    #[error("cannot store generated credentials in {path}: {source}")]
    Credentials { path: PathBuf, source: std::io::Error },
}

impl ConfigError {
    /// A TOML syntax error in `text` (the file `file`), with its line and column.
    pub fn syntax(file: &str, text: &str, error: &toml::de::Error) -> Self {
        let (line, column) = lines::position(text, error.span().map_or(0, |s| s.start));
        Self::Syntax { place: format!("{file} line {line}, column {column}"), message: error.message().to_owned() }
    }
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
    /// `[tls]`: HTTPS (off unless the section sets `listen`).
    pub tls: TlsSettings,
    /// The line of every key of the file, to name it in a problem found later.
    pub lines: KeyLines,
    /// The wall clock of receive times and retention (not a file setting: tests move it).
    pub clock: crate::clock::Clock,
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
            tls: TlsSettings::default(),
            lines: KeyLines::default(),
            clock: crate::clock::Clock::system(),
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
        Self::parse(&path.display().to_string(), &text, |k| std::env::var(k).ok())
    }

    /// Parses TOML text, expanding `${VAR}` with `lookup`.
    pub fn from_toml(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse("config", text, lookup)
    }

    /// Parses `text` (called `file` in messages): syntax, then `${VAR}`, then the sections.
    fn parse(file: &str, text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lines = KeyLines::build(file, text).map_err(|e| ConfigError::syntax(file, text, &e))?;
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::syntax(file, text, &e))?;
        env::expand_table(&mut table, &lookup).map_err(|e| {
            let problem =
                format!("{}: environment variable {} is referenced but not set", lines.place(&e.path), e.name);
            ConfigError::Problems(vec![problem])
        })?;
        let file = read_sections(table, &lines)?;
        Ok(Self::from_sections(file, lines))
    }

    /// The defaults with what the file sets.
    fn from_sections(file: FileConfig, lines: KeyLines) -> Self {
        let mut config = Self::defaults();
        config.listen = file.listen.unwrap_or(config.listen);
        config.data_dir = file.data_dir.unwrap_or(config.data_dir);
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
        config.tls = file.tls.unwrap_or_default();
        config.lines = lines;
        config
    }

    fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = lookup("HOOKYARD_LISTEN") {
            self.listen =
                values::parse_listen(&listen).map_err(|e| ConfigError::Invalid(format!("HOOKYARD_LISTEN: {e}")))?;
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

/// At most this many problems are looked for in one file (one per section).
const MAX_PROBLEMS: usize = 20;

/// Reads the sections; on a problem, the section at fault is set aside and the rest read
/// again, so that one run names one problem in each section that has one.
fn read_sections(mut table: toml::Table, lines: &KeyLines) -> Result<FileConfig, ConfigError> {
    let mut problems = Vec::new();
    let file = loop {
        match from_value::<FileConfig>(toml::Value::Table(table.clone()), Quote::Values) {
            Ok(file) => break Some(file),
            Err(problem) => {
                let section = problem.path.first().cloned();
                problems.push(format!("{}: {}", lines.place(&problem.path), problem.message));
                if section.and_then(|s| table.remove(&s)).is_none() || problems.len() >= MAX_PROBLEMS {
                    break None;
                }
            }
        }
    };
    if let Some(file) = &file {
        problems
            .extend(sections::check_values(file).iter().map(|p| format!("{}: {}", lines.place(&p.path), p.message)));
    }
    match file {
        Some(file) if problems.is_empty() => Ok(file),
        _ => Err(ConfigError::Problems(problems)),
    }
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
        assert_eq!(
            err.to_string(),
            "config line 7: [protocols.gridx] secrets[0]: environment variable GRIDX_SECRET is referenced but not set"
        );
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::from_toml(text, |_| None) {
            Err(ConfigError::Problems(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn section_mistakes_name_key_line_and_a_suggestion() {
        let found = problems("listen = \"127.0.0.1:1\"\n[server]\nmax_conections = 5\n");
        assert_eq!(found, ["config line 3: [server] max_conections: unknown key (did you mean max_connections?)"]);
        let found = problems("[server]\n\nmax_connections = \"lots\"\n");
        assert_eq!(
            found,
            [
                r#"config line 3: [server] max_connections: expected a whole number (0 or more), found the string "lots""#
            ]
        );
        let found = problems("[sever]\nmax_connections = 5\n");
        assert_eq!(found, ["config line 1: [sever]: unknown key (did you mean server?)"]);
    }

    #[test]
    fn values_that_cannot_be_right_are_refused_and_every_section_is_looked_at() {
        let text = "listen = \"localhost\"\n[scripts]\ntimeout_ms = 0\n[journal]\nmax_age_days = -1\n\
                    [admin]\ntoken = \"\"\n[outputs.sql.tables.t]\nv = \"float\"\n";
        let found = problems(text);
        assert!(
            found.contains(&r#"config line 1: listen: "localhost" is not an address like 127.0.0.1:8080"#.into()),
            "{found:?}"
        );
        assert!(
            found.contains(&"config line 3: [scripts] timeout_ms: must be at least 1 (0 would stop everything)".into()),
            "{found:?}"
        );
        assert!(found.iter().any(|p| p.starts_with("config line 7: [admin] token: must not be empty")), "{found:?}");
        assert!(found.contains(&"config line 5: [journal] max_age_days: must be 0 or more".into()), "{found:?}");
        let column = r#"config line 9: [outputs.sql.tables.t] v: "float" is not one of text, integer, real, boolean, json, timestamp"#;
        assert!(found.contains(&column.into()), "{found:?}");
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = Config::from_toml("listen = \"x\"\n[server]\nmax_connections = \n", |_| None).unwrap_err();
        assert!(err.to_string().starts_with("config line 3, column 19: not valid TOML: "), "{err}");
    }

    #[test]
    fn a_protocol_table_written_as_a_value_is_refused_without_quoting_it() {
        let found = problems("[protocols]\ngridx = \"whsec_mine\"\n");
        assert_eq!(found, ["config line 2: [protocols] gridx: expected a table, found a string"]);
    }

    #[test]
    fn a_numeric_secret_is_refused_without_being_printed() {
        let found = problems("[admin]\ntoken = 12345678\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("config line 2: [admin] token: expected a string"), "{found:?}");
        assert!(!found[0].contains("12345678"), "{found:?}");
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
