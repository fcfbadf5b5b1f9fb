//! Building the one Rhai engine with its limits, and calling `on_event` under a deadline.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, Scope};

use super::api::{HostCall, host_api};
use crate::config::ScriptLimits;
use crate::event::Event;

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
) -> Result<(), String> {
    let mut value = rhai::serde::to_dynamic(event).map_err(|e| e.to_string())?;
    if !plugins.is_empty() {
        let notes: serde_json::Map<String, serde_json::Value> = plugins.into_iter().collect();
        let notes = rhai::serde::to_dynamic(notes).map_err(|e| e.to_string())?;
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

fn describe(error: EvalAltResult) -> String {
    match error {
        EvalAltResult::ErrorTerminated(reason, pos) => format!("{} ({pos})", reason),
        EvalAltResult::ErrorTooManyOperations(pos) => {
            format!("the script ran into its operation limit ({pos})")
        }
        EvalAltResult::ErrorRuntime(value, pos) => format!("script threw: {value} ({pos})"),
        other => other.to_string(),
    }
}
