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

/// What consecutive events of one request share (their protocol, operation, sender and
/// receive time, and meta values such as a CSV block's column list), made into script values
/// once and handed to each event as a clone: a string's clone is a reference count, not a
/// copy. The values are the same as made afresh; a script changing one changes its own copy.
#[derive(Default)]
pub struct Shared<'e> {
    /// protocol, operation, source, received_at.
    texts: [Option<(&'e str, Dynamic)>; 4],
    /// The last event's meta values, by key.
    meta: Vec<(&'e str, &'e serde_json::Value, Dynamic)>,
}

impl<'e> Shared<'e> {
    /// The event as the script sees it; the results of handler `plugins` are added as
    /// `event.plugins.<name>`.
    pub fn event_value(&mut self, event: &'e Event, plugins: Vec<(String, serde_json::Value)>) -> Dynamic {
        // Built directly rather than through `rhai::serde::to_dynamic`: the same values (an
        // integer that fits `INT` stays one, a larger one becomes a float, as rhai's
        // serializer does), at a fraction of the cost for a many-row request.
        let mut map = rhai::Map::new();
        map.insert("protocol".into(), self.text(0, &event.protocol));
        map.insert("operation".into(), self.text(1, &event.operation));
        map.insert("source".into(), self.text(2, &event.source));
        map.insert("received_at".into(), self.text(3, &event.received_at));
        map.insert("received_ms".into(), Dynamic::from_int(event.received_ms));
        map.insert("index".into(), unsigned(event.index as u64));
        map.insert("data".into(), json_value(&event.data));
        map.insert("meta".into(), self.meta(&event.meta));
        if !plugins.is_empty() {
            let notes = plugins.iter().map(|(name, note)| (name.as_str().into(), json_value(note))).collect();
            map.insert("plugins".into(), Dynamic::from_map(notes));
        }
        Dynamic::from_map(map)
    }

    fn text(&mut self, slot: usize, text: &'e str) -> Dynamic {
        match &self.texts[slot] {
            Some((last, value)) if *last == text => value.clone(),
            _ => {
                let value: Dynamic = text.into();
                self.texts[slot] = Some((text, value.clone()));
                value
            }
        }
    }

    fn meta(&mut self, meta: &'e serde_json::Map<String, serde_json::Value>) -> Dynamic {
        let mut map = rhai::Map::new();
        for (key, value) in meta {
            let dynamic = match self.meta.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, last, dynamic)) if *last == value => dynamic.clone(),
                Some((_, last, dynamic)) => {
                    (*last, *dynamic) = (value, json_value(value));
                    dynamic.clone()
                }
                None => {
                    let dynamic = json_value(value);
                    self.meta.push((key, value, dynamic.clone()));
                    dynamic
                }
            };
            map.insert(key.as_str().into(), dynamic);
        }
        Dynamic::from_map(map)
    }
}

/// A JSON value as the script sees it.
fn json_value(value: &serde_json::Value) -> Dynamic {
    use serde_json::Value;
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => unsigned(u),
            (None, Some(i)) => Dynamic::from_int(i),
            _ => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => Dynamic::from_array(items.iter().map(json_value).collect()),
        Value::Object(map) => json_map(map),
    }
}

fn json_map(map: &serde_json::Map<String, serde_json::Value>) -> Dynamic {
    Dynamic::from_map(map.iter().map(|(k, v)| (k.as_str().into(), json_value(v))).collect())
}

/// An unsigned integer as rhai's serializer makes it: an `INT` when it fits, else a float.
fn unsigned(u: u64) -> Dynamic {
    i64::try_from(u).map_or_else(|_| Dynamic::from_float(u as f64), Dynamic::from_int)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The map handed to scripts is the one rhai's own serializer would make, value for value
    /// and type for type (integers that fit, large ones as floats, null as unit).
    #[test]
    fn an_event_reaches_the_script_as_rhai_serde_would_make_it() {
        let data = serde_json::json!({
            "value": 12.5, "count": 7, "negative": -3, "huge": u64::MAX, "flag": true,
            "none": null, "text": "a \"quoted\" ü", "list": [1, 2.0, "x", [], {}],
            "nested": {"b": {"c": [null, false]}, "a": 0}
        });
        let mut meta = serde_json::Map::new();
        meta.insert("columns".into(), serde_json::json!(["time", "value"]));
        let event = Event {
            protocol: "wattmon".into(),
            operation: "export".into(),
            source: "00:04:A3:00:00:01".into(),
            received_at: "2026-12-02T01:00:00.000Z".into(),
            received_ms: 1_796_173_200_000,
            index: 3,
            data,
            meta,
            blob: None,
        };
        let plugins = vec![("geo".to_owned(), serde_json::json!({"lat": 47.1, "ok": true}))];
        let direct = Shared::default().event_value(&event, plugins.clone());
        let mut expected = rhai::serde::to_dynamic(&event).unwrap();
        let notes: serde_json::Map<String, serde_json::Value> = plugins.into_iter().collect();
        expected.write_lock::<rhai::Map>().unwrap().insert("plugins".into(), rhai::serde::to_dynamic(notes).unwrap());
        assert_eq!(format!("{direct:?}"), format!("{expected:?}"));
        let map = direct.cast::<rhai::Map>();
        assert!(map["data"].clone().cast::<rhai::Map>()["huge"].is_float());
        assert!(map["data"].clone().cast::<rhai::Map>()["count"].is_int());
        assert!(map["index"].is_int());
    }

    /// Values shared by consecutive events are handed on, changed ones made afresh: each
    /// event's map is the one it would get on its own, whatever came before it.
    #[test]
    fn shared_values_follow_each_event() {
        let event = |source: &str, columns: serde_json::Value, timestamp: &str| {
            let mut meta = serde_json::Map::new();
            meta.insert("columns".into(), columns);
            meta.insert("timestamp".into(), timestamp.into());
            Event {
                protocol: "wattmon".into(),
                operation: "export".into(),
                source: source.into(),
                received_at: "2026-12-02T01:00:00.000Z".into(),
                received_ms: 1_796_173_200_000,
                index: 0,
                data: serde_json::json!({"Timestamp": timestamp}),
                meta,
                blob: None,
            }
        };
        let events = [
            event("a", serde_json::json!(["Timestamp", "V"]), "1"),
            event("a", serde_json::json!(["Timestamp", "V"]), "2"),
            event("b", serde_json::json!(["Timestamp", "W"]), "2"),
            event("b", serde_json::json!(["Timestamp", "V"]), "3"),
        ];
        let mut shared = Shared::default();
        for e in &events {
            let alone = Shared::default().event_value(e, Vec::new());
            assert_eq!(format!("{:?}", shared.event_value(e, Vec::new())), format!("{alone:?}"));
        }
        let map = shared.event_value(&events[3], Vec::new()).cast::<rhai::Map>();
        let meta = map["meta"].clone().cast::<rhai::Map>();
        assert_eq!(meta["columns"].clone().cast::<rhai::Array>()[1].clone().cast::<rhai::ImmutableString>(), "V");
        assert_eq!(meta["timestamp"].clone().cast::<rhai::ImmutableString>(), "3");
        assert_eq!(map["source"].clone().cast::<rhai::ImmutableString>(), "b");
    }
}
