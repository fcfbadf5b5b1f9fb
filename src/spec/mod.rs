//! Loading the protocol specs and turning each operation into what the server needs.
//!
//! Every `*.yaml` in the spec directory (or, with none configured, the specs built into the
//! binary) is one protocol named after the file stem. For each operation the loader reads
//! the route, the `x-hookyard-…` building blocks and the request schemas, and compiles the
//! validators once. Problems are collected, not stopped at, so `hookyard check` can list all.

pub mod embedded;
pub mod ext;
mod operation;
pub mod readings;
pub mod schema;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::Config;

pub use operation::{OperationSpec, QueryParam};

/// A problem in one spec file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SpecError {
    pub file: String,
    pub message: String,
}

/// One protocol: its document as written, and its compiled operations.
pub struct ProtocolSpec {
    pub name: String,
    /// The YAML text exactly as written (served at `/openapi/<name>.yaml`).
    pub source_text: String,
    /// The same document as JSON (served at `/openapi/<name>.json`).
    pub document: Value,
    pub operations: Vec<OperationSpec>,
}

/// Every loaded protocol, sorted by name.
pub struct Registry {
    pub protocols: Vec<ProtocolSpec>,
}

impl Registry {
    /// Loads the specs of `dir`, or the built-in ones when `dir` is `None`.
    pub fn load(dir: Option<&Path>) -> Result<Self, Vec<SpecError>> {
        let sources = match dir {
            Some(dir) => read_dir(dir).map_err(|e| vec![e])?,
            None => embedded::SPECS.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(),
        };
        let mut protocols = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in sources {
            match ProtocolSpec::parse(&name, text) {
                Ok(p) => protocols.push(p),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if protocols.is_empty() && errors.is_empty() {
            errors.push(SpecError { file: display(dir), message: "no protocol specs (*.yaml) found".into() });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        protocols.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { protocols })
    }

    pub fn get(&self, name: &str) -> Option<&ProtocolSpec> {
        self.protocols.iter().find(|p| p.name == name)
    }

    /// The invariant between freshness and dedup: an event still fresh must still be
    /// remembered, so every accepted event is either fresh and deduplicated or refused. The
    /// dedup window is the journal's retention (`[journal] max_age_days`, unset: forever);
    /// each protocol whose longest `x-hookyard-freshness` window is longer is one problem.
    pub fn dedup_window_problems(&self, config: &Config) -> Vec<String> {
        let Some(days) = config.journal.max_age_days else { return Vec::new() };
        let place = config.lines.place(&["journal".to_owned(), "max_age_days".to_owned()]);
        let mut problems = Vec::new();
        for protocol in &self.protocols {
            let longest =
                protocol.operations.iter().filter_map(|o| o.freshness.as_ref()).map(|f| f.max_age_seconds).max();
            let Some(window) = longest.filter(|w| (*w as f64) > days * 86_400.0) else { continue };
            problems.push(format!(
                "{place}: {days} days is shorter than the freshness window of {} ({}, x-hookyard-freshness): \
                 an event older than the dedup window but still fresh would be processed again; \
                 keep the journal at least {}",
                protocol.name,
                crate::event::span(window),
                crate::event::span(window),
            ));
        }
        problems
    }
}

fn display(dir: Option<&Path>) -> String {
    dir.map(|d| d.display().to_string()).unwrap_or_else(|| "built-in specs".into())
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, SpecError> {
    let err = |message: String| SpecError { file: dir.display().to_string(), message };
    let entries = std::fs::read_dir(dir).map_err(|e| err(format!("cannot read directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let text = std::fs::read_to_string(&p).map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
            Ok((name, text))
        })
        .collect()
}

impl ProtocolSpec {
    /// Parses one spec document named `name` (the file stem).
    pub fn parse(name: &str, text: String) -> Result<Self, Vec<SpecError>> {
        let file = format!("spec/{name}.yaml");
        let fail = |message: String| vec![SpecError { file: file.clone(), message }];
        if !is_protocol_name(name) {
            return Err(fail("a protocol name must be lowercase letters, digits and '-'".into()));
        }
        let document: Value = serde_yaml::from_str(&text).map_err(|e| fail(format!("not valid YAML: {e}")))?;
        if !document.get("openapi").and_then(Value::as_str).is_some_and(|v| v.starts_with("3.")) {
            return Err(fail("not an OpenAPI 3 document (no `openapi: 3.x`)".into()));
        }
        let mut operations = operation::build_all(name, &document).map_err(|msgs| {
            msgs.into_iter().map(|message| SpecError { file: file.clone(), message }).collect::<Vec<_>>()
        })?;
        if operations.is_empty() {
            return Err(fail("no operations under `paths`".into()));
        }
        let digest = version(&text);
        operations.iter_mut().for_each(|op| op.digest = digest.clone());
        Ok(Self { name: name.to_owned(), source_text: text, document, operations })
    }
}

pub fn is_protocol_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// The version of a spec document as the journal records it: the first 16 hex digits of the
/// SHA-256 of its text.
pub fn version(text: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))[..16].to_owned()
}
