//! A hookyard plugin that checks meter readings for plausibility and annotates them.
//!
//! Meters count up. This plugin remembers the last good reading of each meter and classifies
//! every new one:
//!
//! | status | meaning |
//! |---|---|
//! | `first` | no earlier reading of this meter is known (since the server started) |
//! | `ok` | the counter went up (or stayed) at a plausible rate |
//! | `rollover` | the counter went down, but `rollover` is set and wrapping around (less than half a turn) explains it |
//! | `negative` | the counter went down: a misread digit or a replaced meter |
//! | `spike` | the counter went up faster than `max_rate_per_hour` |
//! | `out_of_order` | the reading is older than the last good one |
//! | `no_value` | the reading carries no number (an error round of the meter reader) |
//!
//! Only `first`, `ok` and `rollover` become the new reference; a misread does not poison
//! the check of the readings after it.
//!
//! Input, when a script calls `plugin("quality", #{ meter, value, time, rollover, max_rate_per_hour })`:
//! `value` a number or numeric string; `time` seconds or milliseconds since 1970 (number or
//! numeric string) or an RFC 3339 / ISO 8601 text. As an event handler the plugin gets
//! `{"event": …, "options": …}` and reads meter, value and time from the event with JSON
//! pointers (`options.meter`: a list of pointers joined with `/`, default
//! `["/source", "/data/name"]`; `options.value`, default `/data/value`; `options.time`,
//! default `/data/timestampLong`), which fit AI-on-the-edge-device readings: configure it with
//! `handles = ["ai-on-the-edge/readings"]` (the device's images carry no reading).
//!
//! Output: `{meter, value, time_ms, status, consumption, rate_per_hour, previous, message}`.
//! The memory lives in the server process: it starts empty after a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
struct Reading {
    value: f64,
    time_ms: i64,
}

static LAST_GOOD: Mutex<Option<HashMap<String, Reading>>> = Mutex::new(None);

fn check(input: Value) -> Result<Value, String> {
    let query = Query::from_input(&input)?;
    let mut memory = LAST_GOOD.lock().unwrap_or_else(|e| e.into_inner());
    let memory = memory.get_or_insert_with(HashMap::new);
    let previous = memory.get(&query.meter).copied();
    let verdict = classify(&query, previous);
    if let (Some(value), Some(time_ms)) = (query.value, query.time_ms)
        && matches!(verdict.status, "first" | "ok" | "rollover")
    {
        memory.insert(query.meter.clone(), Reading { value, time_ms });
    }
    Ok(json!({
        "meter": query.meter,
        "value": query.value,
        "time_ms": query.time_ms,
        "status": verdict.status,
        "consumption": verdict.consumption,
        "rate_per_hour": verdict.rate_per_hour,
        "previous": previous.map(|p| json!({"value": p.value, "time_ms": p.time_ms})),
        "message": verdict.message,
    }))
}

hookyard_plugin_api::export_plugin!("quality", check);

struct Query {
    meter: String,
    value: Option<f64>,
    time_ms: Option<i64>,
    rollover: Option<f64>,
    max_rate_per_hour: Option<f64>,
}

impl Query {
    fn from_input(input: &Value) -> Result<Self, String> {
        match input.get("event") {
            Some(event) => {
                let empty = json!({});
                let options = input.get("options").unwrap_or(&empty);
                let meter_pointers: Vec<String> = match options.get("meter") {
                    None => vec!["/source".into(), "/data/name".into()],
                    Some(Value::String(p)) => vec![p.clone()],
                    Some(Value::Array(ps)) => ps.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect(),
                    Some(_) => return Err("options.meter must be a JSON pointer or a list of them".into()),
                };
                let pointer =
                    |name: &str, default: &str| options.get(name).and_then(Value::as_str).unwrap_or(default).to_owned();
                let parts: Vec<String> = meter_pointers
                    .iter()
                    .map(|p| event.pointer(p).map(text).ok_or_else(|| format!("event has no {p} (meter)")))
                    .collect::<Result<_, _>>()?;
                let value_at = pointer("value", "/data/value");
                let time_at = pointer("time", "/data/timestampLong");
                Ok(Self {
                    meter: parts.join("/"),
                    value: number(event.pointer(&value_at)).map_err(|e| format!("{value_at}: {e}"))?,
                    time_ms: time_ms(event.pointer(&time_at)).map_err(|e| format!("{time_at}: {e}"))?,
                    rollover: options.get("rollover").and_then(Value::as_f64),
                    max_rate_per_hour: options.get("max_rate_per_hour").and_then(Value::as_f64),
                })
            }
            None => {
                let meter = input.get("meter").map(text).ok_or("meter: required")?;
                Ok(Self {
                    meter,
                    value: number(input.get("value")).map_err(|e| format!("value: {e}"))?,
                    time_ms: time_ms(input.get("time")).map_err(|e| format!("time: {e}"))?,
                    rollover: input.get("rollover").and_then(Value::as_f64),
                    max_rate_per_hour: input.get("max_rate_per_hour").and_then(Value::as_f64),
                })
            }
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A number, a numeric string, or nothing (absent, null, empty string).
fn number(value: Option<&Value>) -> Result<Option<f64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| format!("{s:?} is not a number")),
        Some(other) => Err(format!("{other} is not a number")),
    }
}

/// Milliseconds since 1970 from seconds/milliseconds (number or numeric text) or RFC 3339.
fn time_ms(value: Option<&Value>) -> Result<Option<i64>, String> {
    let from_number = |n: f64| if n.abs() >= 1e11 { n as i64 } else { (n * 1000.0) as i64 };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(from_number)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            if let Ok(n) = s.trim().parse::<f64>() {
                return Ok(Some(from_number(n)));
            }
            let parsed = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .or_else(|_| time::OffsetDateTime::parse(s, &time::format_description::well_known::Iso8601::DEFAULT))
                .map_err(|_| format!("{s:?} is neither a Unix time nor an RFC 3339 time"))?;
            Ok(Some((parsed.unix_timestamp_nanos() / 1_000_000) as i64))
        }
        Some(other) => Err(format!("{other} is not a time")),
    }
}

struct Verdict {
    status: &'static str,
    consumption: Option<f64>,
    rate_per_hour: Option<f64>,
    message: String,
}

fn classify(query: &Query, previous: Option<Reading>) -> Verdict {
    let verdict =
        |status, consumption, rate_per_hour, message: String| Verdict { status, consumption, rate_per_hour, message };
    let (Some(value), Some(time_ms)) = (query.value, query.time_ms) else {
        return verdict("no_value", None, None, "the reading has no value or no time".into());
    };
    let Some(prev) = previous else {
        return verdict("first", None, None, "first reading of this meter".into());
    };
    if time_ms < prev.time_ms {
        return verdict("out_of_order", None, None, format!("older than the last good reading ({} ms)", prev.time_ms));
    }
    let hours = (time_ms - prev.time_ms) as f64 / 3_600_000.0;
    let rate = |consumption: f64| if hours > 0.0 { Some(consumption / hours) } else { None };
    let (status, consumption) = if value >= prev.value {
        ("ok", value - prev.value)
    } else if let Some(limit) = query.rollover.filter(|l| *l > prev.value && *l - prev.value + value < *l / 2.0) {
        // Wrapping around explains the drop only if it means less than half a turn.
        ("rollover", limit - prev.value + value)
    } else {
        let drop = prev.value - value;
        return verdict(
            "negative",
            Some(-drop),
            rate(-drop),
            format!("counter went down by {drop} (from {} to {value})", prev.value),
        );
    };
    let rate_per_hour = rate(consumption);
    if let (Some(max), Some(r)) = (query.max_rate_per_hour, rate_per_hour)
        && r > max
    {
        return verdict("spike", Some(consumption), rate_per_hour, format!("{r:.3} per hour is above {max}"));
    }
    if let (Some(_), None) = (query.max_rate_per_hour, rate_per_hour)
        && consumption > 0.0
    {
        return verdict("spike", Some(consumption), None, "the counter moved with no time passing".into());
    }
    let message = if status == "rollover" { "the counter wrapped around".into() } else { String::new() };
    verdict(status, Some(consumption), rate_per_hour, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(meter: &str, value: &str, time: i64, extra: Value) -> Value {
        let mut input = json!({"meter": meter, "value": value, "time": time});
        if let Value::Object(extra) = extra {
            input.as_object_mut().unwrap().extend(extra);
        }
        check(input).unwrap()
    }

    #[test]
    fn classifies_a_meter_history() {
        let m = "unit-test-history";
        let limits = json!({"rollover": 100000.0, "max_rate_per_hour": 10.0});
        assert_eq!(run(m, "99990", 1_000, limits.clone())["status"], "first");
        let ok = run(m, "99995", 3_600, limits.clone());
        assert_eq!((ok["status"].as_str(), ok["consumption"].as_f64()), (Some("ok"), Some(5.0)));
        let wrap = run(m, "3", 7_200, limits.clone());
        assert_eq!((wrap["status"].as_str(), wrap["consumption"].as_f64()), (Some("rollover"), Some(8.0)));
        let spike = run(m, "503", 10_800, limits.clone());
        assert_eq!(spike["status"], "spike");
        assert_eq!(spike["rate_per_hour"].as_f64(), Some(500.0));
        // The spike did not become the reference: the next plausible reading is ok.
        assert_eq!(run(m, "6", 14_400, limits.clone())["consumption"].as_f64(), Some(3.0));
        let neg = run(m, "2", 18_000, json!({}));
        assert_eq!((neg["status"].as_str(), neg["consumption"].as_f64()), (Some("negative"), Some(-4.0)));
        assert_eq!(run(m, "7", 100, json!({}))["status"], "out_of_order");
        assert_eq!(run(m, "", 20_000, json!({}))["status"], "no_value");
    }

    #[test]
    fn reads_events_through_pointers_and_names_bad_fields() {
        let event = json!({"source": "home", "data": {"name": "main", "value": "12.5", "timestampLong": "1725194400"}});
        let out = check(json!({"event": event})).unwrap();
        assert_eq!(out["meter"], "home/main");
        assert_eq!(out["time_ms"], 1_725_194_400_000i64);
        let bad = json!({"event": {"source": "home", "data": {"name": "x", "value": "1O.5"}}});
        assert_eq!(check(bad).unwrap_err(), "/data/value: \"1O.5\" is not a number");
        assert_eq!(check(json!({"value": 1})).unwrap_err(), "meter: required");
        let iso = check(json!({"meter": "iso", "value": 1, "time": "2024-08-09T11:44:44+02:00"})).unwrap();
        assert_eq!(iso["time_ms"], 1_723_196_684_000i64);
    }
}
