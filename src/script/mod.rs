//! The Rhai host: one engine with limits, one compiled script per protocol, live reload.
//!
//! Each protocol's events go to `scripts/<protocol>.rhai`: to `fn on_events(events)`, all of
//! a request's events in one call, when the script defines it, else to `fn on_event(event)`
//! one by one (`run.rs`). The engine is built once; scripts compile once and are swapped
//! when their file changes (a script that no longer compiles is reported and the previous
//! one keeps running). Limits: operations, call depth, string/array/map sizes, and a
//! wall-clock cap per event (a batch call gets the budget of all its events); `import`
//! resolves nothing. Runs are synchronous: call them from a blocking thread.

pub mod api;
mod cells;
mod engine;
mod host;
mod outbound;
mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rhai::{AST, Engine};

use crate::config::ScriptLimits;
use crate::store::Effect;

use crate::output::Output;
use engine::Budget;
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
    /// The script defines `fn on_events(events)`: a request's events go in one call.
    batch: bool,
    /// Small runs in a row that took at most [`SLOW_RUN`], since this version was loaded.
    fast_runs: AtomicU32,
}

impl Loaded {
    fn new(source: String, ast: AST) -> Self {
        let batch = defines(&ast, "on_events");
        Self { source, ast: Arc::new(ast), batch, fast_runs: AtomicU32::new(0) }
    }
}

/// A small run longer than this is slow.
pub const SLOW_RUN: Duration = Duration::from_millis(2);

/// Fast small runs in a row after which a script has proved fast.
pub const FAST_STREAK: u32 = 64;

/// The compiled scripts of every protocol.
pub struct ScriptHost {
    engine: Engine,
    dir: Option<PathBuf>,
    scripts: RwLock<HashMap<String, Loaded>>,
    /// Last source that failed to compile, per protocol (so a broken edit is reported once).
    broken: Mutex<HashMap<String, String>>,
    /// Operations and time per event.
    budget: Budget,
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
                    scripts.insert(name.clone(), Loaded::new(source, ast));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let budget =
            Budget { operations: limits.max_operations, time: Duration::from_millis(limits.timeout_ms.max(1)) };
        Ok(Self {
            engine,
            dir: dir.map(Path::to_owned),
            scripts: RwLock::new(scripts),
            broken: Mutex::default(),
            budget,
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
                    scripts.insert(name.clone(), Loaded::new(source, ast));
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

    /// Whether `protocol`'s script has proved fast: its last [`FAST_STREAK`] small runs
    /// (since it was loaded) took at most [`SLOW_RUN`] each.
    pub fn proven_fast(&self, protocol: &str) -> bool {
        self.read_scripts().get(protocol).is_some_and(|l| l.fast_runs.load(Ordering::Relaxed) >= FAST_STREAK)
    }

    /// A small run of `protocol`'s script took `took`: one more fast run, or none in a row.
    pub fn timed(&self, protocol: &str, took: Duration) {
        if let Some(loaded) = self.read_scripts().get(protocol) {
            if took <= SLOW_RUN {
                let _ = loaded.fast_runs.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
            } else {
                loaded.fast_runs.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Protocols whose script file does not compile (an older version runs).
    pub fn broken(&self) -> Vec<String> {
        self.broken.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    fn read_scripts(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Loaded>> {
        self.scripts.read().unwrap_or_else(|e| e.into_inner())
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
    if !defines(&ast, "on_event") && !defines(&ast, "on_events") {
        return Err(ScriptError {
            file,
            message: "defines neither `fn on_event(event)` nor `fn on_events(events)`".into(),
        });
    }
    Ok(ast)
}

/// Whether the script defines `name` with one parameter.
fn defines(ast: &AST, name: &str) -> bool {
    ast.iter_functions().any(|f| f.name == name && f.params.len() == 1)
}
