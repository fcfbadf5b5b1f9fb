//! The host API scripts call. These doc comments are the reference of `scripts/README.md`.
//!
//! Every path is relative to the data directory and cannot leave it. Calls do not write at
//! once: they record effects, which land in the data directory once the journal holds them
//! (before the request is acknowledged). Errors become script errors (the request fails with
//! the protocol's failure reply).

use std::sync::{Arc, Mutex};

use rhai::plugin::*;

use crate::store::files::csv_record;
use crate::store::{Effect, safe_relative_path};

/// Per-request state the host functions reach through the call tag.
#[derive(Clone)]
pub struct HostCall {
    pub(super) protocol: String,
    pub(super) effects: Arc<Mutex<Vec<Effect>>>,
    pub(super) logs: Arc<Mutex<Vec<String>>>,
    pub(super) blob: Option<bytes::Bytes>,
}

type Res<T> = Result<T, Box<EvalAltResult>>;

fn call(ctx: &NativeCallContext) -> Res<HostCall> {
    ctx.tag()
        .and_then(|t| t.clone().try_cast::<HostCall>())
        .ok_or_else(|| "host functions are only available while handling an event".into())
}

fn record(ctx: &NativeCallContext, effect: Effect) -> Res<()> {
    let host = call(ctx)?;
    safe_relative_path(effect.path()).map_err(|e| e.to_string())?;
    host.effects.lock().unwrap_or_else(|e| e.into_inner()).push(effect);
    Ok(())
}

fn cell(value: &Dynamic) -> String {
    if value.is_unit() { String::new() } else { value.to_string() }
}

fn row(values: &rhai::Array) -> Vec<u8> {
    csv_record(&values.iter().map(cell).collect::<Vec<_>>())
}

fn log_line(host: &HostCall, level: tracing::Level, message: &str) {
    match level {
        tracing::Level::WARN => tracing::warn!(protocol = %host.protocol, "script: {message}"),
        _ => tracing::info!(protocol = %host.protocol, "script: {message}"),
    }
    host.logs.lock().unwrap_or_else(|e| e.into_inner()).push(message.to_owned());
}

#[export_module]
pub mod host_api {
    /// Appends one CSV row (RFC 4180 quoting, CRLF line end) to `path`.
    ///
    /// ```rhai
    /// append_csv("ai-on-the-edge/home/webhook_log.csv", [event.data.name, event.data.value]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn append_csv(ctx: NativeCallContext, path: &str, values: rhai::Array) -> Res<()> {
        record(&ctx, Effect::Append { path: path.into(), header: None, bytes: row(&values) })
    }

    /// Appends one CSV row, writing `header` first when the file is new or empty.
    ///
    /// ```rhai
    /// append_csv("wattmon/mac.csv", ["time", "V"], ["2025-09-01 12:00", "12.5"]);
    /// ```
    #[rhai_fn(name = "append_csv", return_raw)]
    pub fn append_csv_with_header(
        ctx: NativeCallContext,
        path: &str,
        header: rhai::Array,
        values: rhai::Array,
    ) -> Res<()> {
        let header = Some(row(&header));
        record(&ctx, Effect::Append { path: path.into(), header, bytes: row(&values) })
    }

    /// Appends `value` as one line of compact JSON to `path` (JSON Lines).
    ///
    /// ```rhai
    /// append_json("gridx/events.jsonl", event.data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn append_json(ctx: NativeCallContext, path: &str, value: Dynamic) -> Res<()> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        let mut line = serde_json::to_vec(&json).map_err(|e| e.to_string())?;
        line.push(b'\n');
        record(&ctx, Effect::Append { path: path.into(), header: None, bytes: line })
    }

    /// Writes `text` to `path`, replacing the file (written to a temporary file, then renamed).
    ///
    /// ```rhai
    /// write_file("wattsense/last-value.json", to_json(event.data));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_file(ctx: NativeCallContext, path: &str, text: &str) -> Res<()> {
        record(&ctx, Effect::Write { path: path.into(), bytes: text.as_bytes().to_vec() })
    }

    /// Writes the binary body of the current event (an uploaded image) to `path`.
    ///
    /// ```rhai
    /// write_blob(`ai-on-the-edge/${event.source}/${event.meta.timestamp}.jpg`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_blob(ctx: NativeCallContext, path: &str) -> Res<()> {
        let blob = call(&ctx)?.blob.ok_or("this event has no binary body")?;
        record(&ctx, Effect::Write { path: path.into(), bytes: blob.to_vec() })
    }

    /// Logs a message (to the server log, tagged with the protocol).
    ///
    /// ```rhai
    /// log(`reading ${event.data.name} stored`);
    /// ```
    #[rhai_fn(name = "log", return_raw)]
    pub fn log_info(ctx: NativeCallContext, message: &str) -> Res<()> {
        log_line(&call(&ctx)?, tracing::Level::INFO, message);
        Ok(())
    }

    /// Logs a warning.
    ///
    /// ```rhai
    /// if event.data.error != "no error" { log_warn(event.data.error); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn log_warn(ctx: NativeCallContext, message: &str) -> Res<()> {
        log_line(&call(&ctx)?, tracing::Level::WARN, message);
        Ok(())
    }

    /// Turns any text into a safe file name: letters, digits, `.`, `_`, `-` and `:` are kept,
    /// everything else becomes `_`; a leading `.` becomes `_` too.
    ///
    /// ```rhai
    /// let file = `wattmon/${safe_name(event.source)}.csv`;
    /// ```
    pub fn safe_name(text: &str) -> String {
        let mut out: String = text
            .chars()
            .take(128)
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') { c } else { '_' })
            .collect();
        if out.starts_with('.') || out.is_empty() {
            out.replace_range(0..out.len().min(1), "_");
        }
        out
    }

    /// Compact JSON text of any value.
    ///
    /// ```rhai
    /// let text = to_json(event.data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn to_json(value: Dynamic) -> Res<String> {
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        serde_json::to_string(&json).map_err(|e| e.to_string().into())
    }
}
