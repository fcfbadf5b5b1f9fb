//! Building the one Rhai engine with its limits, and calling `on_event` or `on_events` within
//! an operation and time budget.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope};

use super::api::host_api;
use super::host::HostCall;
use crate::config::ScriptLimits;
use crate::event::Event;

/// Why `on_event` or `on_events` did not complete.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The event (or a plugin's notes) could not be handed to the script.
    #[error("{0}")]
    Convert(String),
    /// The deadline passed (the reason says so).
    #[error("{reason} ({pos})")]
    Terminated { reason: String, pos: Position },
    #[error("the script ran into its operation limit ({pos})")]
    Operations { pos: Position },
    /// The script called `throw`.
    #[error("script threw: {value} ({pos})")]
    Threw { value: String, pos: Position },
    /// Any other runtime error (a missing function, a type mismatch, a failed host call, …).
    #[error("{0}")]
    Runtime(String),
}

/// The operation and time budget of one call: a per-event limit times its events.
#[derive(Clone, Copy)]
pub struct Budget {
    pub operations: u64,
    pub time: Duration,
}

impl Budget {
    /// This budget for `events` events.
    pub fn times(self, events: usize) -> Self {
        let n = events.max(1);
        Self { operations: self.operations.saturating_mul(n as u64), time: self.time.saturating_mul(n as u32) }
    }
}

/// The reason given when a call runs past its operations (Rhai's own limit is per engine,
/// and a batch call may run more than one event's worth).
const OUT_OF_OPERATIONS: &str = "the script ran into its operation limit";

thread_local! {
    /// When the call running on this thread must be done, and its operation budget.
    static LIMITS: Cell<(Option<Instant>, u64)> = const { Cell::new((None, u64::MAX)) };
}

/// Builds the engine: limits, no module imports, the host API. The operation limit is
/// enforced per call (see [`Budget`]).
pub fn build(limits: &ScriptLimits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.register_global_module(rhai::exported_module!(host_api).into());
    engine.on_print(|text| tracing::info!("script print: {text}"));
    engine.on_debug(|text, _, pos| tracing::debug!("script debug at {pos}: {text}"));
    engine.on_progress(|ops| {
        let (deadline, max_ops) = LIMITS.with(Cell::get);
        if ops > max_ops {
            return Some(Dynamic::from(OUT_OF_OPERATIONS));
        }
        if ops % 256 != 0 {
            return None;
        }
        let late = deadline.is_some_and(|t| Instant::now() >= t);
        late.then(|| Dynamic::from("the script ran past its time limit"))
    });
    engine
}

/// The event as the script sees it; the results of handler `plugins` are added as
/// `event.plugins.<name>`.
pub fn event_value(event: &Event, plugins: Vec<(String, serde_json::Value)>) -> Result<Dynamic, EngineError> {
    let convert = |e: Box<EvalAltResult>| EngineError::Convert(e.to_string());
    let mut value = rhai::serde::to_dynamic(event).map_err(convert)?;
    if !plugins.is_empty() {
        let notes: serde_json::Map<String, serde_json::Value> = plugins.into_iter().collect();
        let notes = rhai::serde::to_dynamic(notes).map_err(convert)?;
        if let Some(mut map) = value.write_lock::<rhai::Map>() {
            map.insert("plugins".into(), notes);
        }
    }
    Ok(value)
}

/// Calls the script's function `name` with `arg` (`on_event` with one event, `on_events`
/// with an array of them) and `host` as the call tag, within `budget`.
pub fn call(
    engine: &Engine,
    ast: &AST,
    name: &str,
    arg: Dynamic,
    host: HostCall,
    budget: Budget,
) -> Result<(), EngineError> {
    LIMITS.with(|l| l.set((Some(Instant::now() + budget.time), budget.operations)));
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(true).with_tag(host);
    let result = engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, name, (arg,));
    LIMITS.with(|l| l.set((None, u64::MAX)));
    result.map(|_| ()).map_err(|e| describe(*e))
}

fn describe(error: EvalAltResult) -> EngineError {
    match error {
        EvalAltResult::ErrorTerminated(reason, pos) if reason.to_string() == OUT_OF_OPERATIONS => {
            EngineError::Operations { pos }
        }
        EvalAltResult::ErrorTerminated(reason, pos) => EngineError::Terminated { reason: reason.to_string(), pos },
        EvalAltResult::ErrorTooManyOperations(pos) => EngineError::Operations { pos },
        EvalAltResult::ErrorRuntime(value, pos) => EngineError::Threw { value: value.to_string(), pos },
        other => EngineError::Runtime(other.to_string()),
    }
}
