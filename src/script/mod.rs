//! The Rhai host: one engine with limits, one compiled script per protocol, live reload.
//!
//! Each protocol's events go to `fn on_event(event)` in `scripts/<protocol>.rhai`. The
//! engine is built once; scripts compile once and are swapped when their file changes (a
//! script that no longer compiles is reported and the previous one keeps running). Limits:
//! operations, call depth, string/array/map sizes, and a wall-clock cap per event; `import`
//! resolves nothing. Runs are synchronous: call them from a blocking thread.

pub mod api;
mod cells;
mod engine;
mod host;
mod outbound;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rhai::{AST, Engine};

use crate::config::ScriptLimits;
use crate::event::Event;
use crate::store::Effect;

use crate::output::Output;
pub use host::{Extensions, HostCall};

/// A script that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ScriptError {
    pub file: String,
    pub message: String,
}

/// What failed an event: its script, a handler plugin run before the script, or the
/// delivery of its outputs. Shown in replies as `script error`, `plugin <name> failed`,
/// `output failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Script,
    Plugin { name: String },
    Output,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Script => f.write_str("script error"),
            Self::Plugin { name } => write!(f, "plugin {name} failed"),
            Self::Output => f.write_str("output failed"),
        }
    }
}

/// Processing of one event failed. Displays as `plugin quality failed at event 0` (what a
/// reply may say); `message` is the full error the journal and the log keep.
#[derive(Debug, thiserror::Error)]
#[error("{kind} at event {index}")]
pub struct RunFailure {
    pub index: usize,
    pub kind: FailureKind,
    /// The event's error, naming what failed: `plugin quality failed: …`, `script threw: …`,
    /// `output failed: …`.
    pub message: String,
}

/// What a run did: how many events succeeded before any failure, what they asked to be
/// written, and what was logged. Effects of the failing event are dropped, so a failure
/// never half-writes.
pub struct RunReport {
    pub processed: usize,
    pub failure: Option<RunFailure>,
    /// Log lines, one list per event run (in order).
    pub logs: Vec<Vec<String>>,
    pub effects: Vec<Effect>,
    /// Outputs (SQL rows, MQTT messages, HTTP calls), one list per processed event.
    pub outputs: Vec<Vec<Output>>,
    /// How many of `effects` the first n+1 processed events made.
    pub effect_ends: Vec<usize>,
}

impl RunReport {
    /// Nothing ran.
    pub fn empty() -> Self {
        Self {
            processed: 0,
            failure: None,
            logs: Vec::new(),
            effects: Vec::new(),
            outputs: Vec::new(),
            effect_ends: Vec::new(),
        }
    }

    /// Keeps only the first `n` processed events (their outputs could not all be delivered):
    /// event `n` failed with `message`, and the effects of the later ones are dropped.
    pub fn cut_at(&mut self, n: usize, message: String) {
        if n >= self.processed {
            return;
        }
        let keep = if n == 0 { 0 } else { self.effect_ends[n - 1] };
        self.effects.truncate(keep);
        self.effect_ends.truncate(n);
        self.outputs.truncate(n);
        self.processed = n;
        self.failure = Some(RunFailure { index: n, kind: FailureKind::Output, message });
    }
}

struct Loaded {
    source: String,
    ast: Arc<AST>,
}

/// The compiled scripts of every protocol.
pub struct ScriptHost {
    engine: Engine,
    dir: Option<PathBuf>,
    scripts: RwLock<HashMap<String, Loaded>>,
    /// Last source that failed to compile, per protocol (so a broken edit is reported once).
    broken: Mutex<HashMap<String, String>>,
    timeout: Duration,
    ext: Arc<Extensions>,
}

impl ScriptHost {
    /// Compiles the script of every protocol in `protocols`, from `dir` or the built-ins.
    pub fn load(
        dir: Option<&Path>,
        protocols: &[String],
        limits: &ScriptLimits,
        ext: Arc<Extensions>,
    ) -> Result<Self, Vec<ScriptError>> {
        let engine = engine::build(limits);
        let mut scripts = HashMap::new();
        let mut errors = Vec::new();
        for name in protocols {
            let result =
                read_source(dir, name).and_then(|source| compile(&engine, name, &source).map(|ast| (source, ast)));
            match result {
                Ok((source, ast)) => {
                    scripts.insert(name.clone(), Loaded { source, ast: Arc::new(ast) });
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let timeout = Duration::from_millis(limits.timeout_ms.max(1));
        Ok(Self {
            engine,
            dir: dir.map(Path::to_owned),
            scripts: RwLock::new(scripts),
            broken: Mutex::default(),
            timeout,
            ext,
        })
    }

    /// Re-reads every script file; swaps in those that changed and compile. Returns what was
    /// reloaded and what failed (by protocol). A file changed back to the running version
    /// is no longer broken.
    pub fn poll(&self) -> (Vec<String>, Vec<(String, ScriptError)>) {
        let Some(dir) = &self.dir else {
            return (Vec::new(), Vec::new());
        };
        let names: Vec<String> = self.read_scripts().keys().cloned().collect();
        let (mut reloaded, mut failed) = (Vec::new(), Vec::new());
        for name in names {
            let Ok(source) = read_source(Some(dir), &name) else {
                continue;
            };
            let mut broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
            if self.read_scripts().get(&name).is_some_and(|l| l.source == source) {
                broken.remove(&name);
                continue;
            }
            if broken.get(&name) == Some(&source) {
                continue;
            }
            match compile(&self.engine, &name, &source) {
                Ok(ast) => {
                    broken.remove(&name);
                    let mut scripts = self.scripts.write().unwrap_or_else(|e| e.into_inner());
                    scripts.insert(name.clone(), Loaded { source, ast: Arc::new(ast) });
                    reloaded.push(name);
                }
                Err(e) => {
                    broken.insert(name.clone(), source);
                    failed.push((name, e));
                }
            }
        }
        (reloaded, failed)
    }

    /// Protocols whose script file does not compile (an older version runs).
    pub fn broken(&self) -> Vec<String> {
        self.broken.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    fn read_scripts(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Loaded>> {
        self.scripts.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `events` to the protocol's script, in order, stopping at the first failure.
    pub fn run(&self, protocol: &str, events: &[&Event]) -> RunReport {
        let ast = self.read_scripts().get(protocol).map(|l| l.ast.clone());
        let effects = Arc::new(Mutex::new(Vec::new()));
        let mut logs = Vec::with_capacity(events.len());
        let mut processed = 0;
        let mut failure = None;
        let mut kept = 0;
        let mut outputs = Vec::new();
        let mut effect_ends = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sent = Arc::new(Mutex::new(Vec::new()));
            let host = HostCall {
                protocol: protocol.to_owned(),
                effects: effects.clone(),
                outputs: sent.clone(),
                logs: lines.clone(),
                blob: event.blob.clone(),
                ext: self.ext.clone(),
            };
            let result = self.run_one(protocol, ast.as_deref(), event, host);
            logs.push(std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner())));
            let mut recorded = effects.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(()) => {
                    processed += 1;
                    kept = recorded.len();
                    outputs.push(std::mem::take(&mut *sent.lock().unwrap_or_else(|e| e.into_inner())));
                    effect_ends.push(kept);
                }
                Err((kind, message)) => {
                    recorded.truncate(kept);
                    failure = Some(RunFailure { index: i, kind, message });
                    break;
                }
            }
        }
        let effects = std::mem::take(&mut *effects.lock().unwrap_or_else(|e| e.into_inner()));
        RunReport { processed, failure, logs, effects, outputs, effect_ends }
    }

    /// The handler plugins of the event's operation, then the script.
    fn run_one(
        &self,
        protocol: &str,
        ast: Option<&AST>,
        event: &Event,
        host: HostCall,
    ) -> Result<(), (FailureKind, String)> {
        let notes = self
            .ext
            .plugins
            .handle(event)
            .map_err(|e| (FailureKind::Plugin { name: e.plugin().to_owned() }, e.to_string()))?;
        let Some(ast) = ast else {
            return Err((FailureKind::Script, format!("no script is loaded for protocol {protocol}")));
        };
        engine::call_on_event(&self.engine, ast, event, notes, host, self.timeout)
            .map_err(|e| (FailureKind::Script, e.to_string()))
    }
}

fn script_file(dir: Option<&Path>, name: &str) -> String {
    match dir {
        Some(d) => d.join(format!("{name}.rhai")).display().to_string(),
        None => format!("built-in scripts/{name}.rhai"),
    }
}

fn read_source(dir: Option<&Path>, name: &str) -> Result<String, ScriptError> {
    let file = script_file(dir, name);
    match dir {
        Some(d) => std::fs::read_to_string(d.join(format!("{name}.rhai")))
            .map_err(|e| ScriptError { file, message: format!("cannot read: {e}") }),
        None => crate::spec::embedded::SCRIPTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.to_string())
            .ok_or_else(|| ScriptError { file, message: "there is no built-in script for this protocol".into() }),
    }
}

fn compile(engine: &Engine, name: &str, source: &str) -> Result<AST, ScriptError> {
    let file = format!("scripts/{name}.rhai");
    let ast = engine.compile(source).map_err(|e| ScriptError { file: file.clone(), message: e.to_string() })?;
    if !ast.iter_functions().any(|f| f.name == "on_event" && f.params.len() == 1) {
        return Err(ScriptError { file, message: "defines no `fn on_event(event)`".into() });
    }
    Ok(ast)
}
