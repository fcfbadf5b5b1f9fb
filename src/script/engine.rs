//! Building the one Rhai engine with its limits, and calling `on_event` under a deadline.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, Position, Scope};

use super::api::host_api;
use super::host::HostCall;
use crate::config::ScriptLimits;
use crate::event::Event;

/// Why `on_event` did not complete.
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

thread_local! {
    /// When the event being handled on this thread must be done.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Builds the engine: limits, no module imports, the host API.
pub fn build(limits: &ScriptLimits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
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
        if ops % 256 != 0 {
            return None;
        }
        let late = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t));
        late.then(|| Dynamic::from("the script ran past its time limit"))
    });
    engine
}

/// Calls `on_event(event)` with `host` as the call tag, under the per-event deadline. The
/// results of handler `plugins` are added as `event.plugins.<name>`.
pub fn call_on_event(
    engine: &Engine,
    ast: &AST,
    event: &Event,
    plugins: Vec<(String, serde_json::Value)>,
    host: HostCall,
    timeout: Duration,
) -> Result<(), EngineError> {
    let convert = |e: Box<EvalAltResult>| EngineError::Convert(e.to_string());
    let mut value = rhai::serde::to_dynamic(event).map_err(convert)?;
    if !plugins.is_empty() {
        let notes: serde_json::Map<String, serde_json::Value> = plugins.into_iter().collect();
        let notes = rhai::serde::to_dynamic(notes).map_err(convert)?;
        if let Some(mut map) = value.write_lock::<rhai::Map>() {
            map.insert("plugins".into(), notes);
        }
    }
    DEADLINE.with(|d| d.set(Some(Instant::now() + timeout)));
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(true).with_tag(host);
    let result = engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, "on_event", (value,));
    DEADLINE.with(|d| d.set(None));
    result.map(|_| ()).map_err(|e| describe(*e))
}

fn describe(error: EvalAltResult) -> EngineError {
    match error {
        EvalAltResult::ErrorTerminated(reason, pos) => EngineError::Terminated { reason: reason.to_string(), pos },
        EvalAltResult::ErrorTooManyOperations(pos) => EngineError::Operations { pos },
        EvalAltResult::ErrorRuntime(value, pos) => EngineError::Threw { value: value.to_string(), pos },
        other => EngineError::Runtime(other.to_string()),
    }
}
