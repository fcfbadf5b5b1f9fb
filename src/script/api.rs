//! The host API scripts call. These doc comments are the reference of `scripts/README.md`.
//!
//! Every path is relative to the data directory and cannot leave it; every write lands on
//! disk before the request is acknowledged. Errors become script errors (the request fails
//! with the protocol's failure reply).

use std::sync::{Arc, Mutex};

use rhai::plugin::*;

use crate::store::{DataDir, Touched};

/// Per-request state the host functions reach through the call tag.
#[derive(Clone)]
pub struct HostCall {
    pub(super) data: Arc<DataDir>,
    pub(super) protocol: String,
    pub(super) touched: Arc<Mutex<Touched>>,
    pub(super) logs: Arc<Mutex<Vec<String>>>,
    pub(super) blob: Option<bytes::Bytes>,
}

type Res<T> = Result<T, Box<EvalAltResult>>;

fn call(ctx: &NativeCallContext) -> Res<HostCall> {
    ctx.tag()
        .and_then(|t| t.clone().try_cast::<HostCall>())
        .ok_or_else(|| "host functions are only available while handling an event".into())
}

fn with_touched<T>(
    host: &HostCall,
    f: impl FnOnce(&DataDir, &mut Touched) -> Result<T, crate::store::StoreError>,
) -> Res<T> {
    let mut touched = host.touched.lock().unwrap_or_else(|e| e.into_inner());
    f(&host.data, &mut touched).map_err(|e| e.to_string().into())
}

fn cell(value: &Dynamic) -> String {
    if value.is_unit() {
        String::new()
    } else {
        value.to_string()
    }
}

fn cells(row: &rhai::Array) -> Vec<String> {
    row.iter().map(cell).collect()
}

fn log_line(host: &HostCall, level: tracing::Level, message: &str) {
    match level {
        tracing::Level::WARN => tracing::warn!(protocol = %host.protocol, "script: {message}"),
        _ => tracing::info!(protocol = %host.protocol, "script: {message}"),
    }
    host.logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(message.to_owned());
}

#[export_module]
pub mod host_api {
    /// Appends one CSV row (RFC 4180 quoting, CRLF line end) to `path`.
    ///
    /// ```rhai
    /// append_csv("ai-on-the-edge/home/webhook_log.csv", [event.data.name, event.data.value]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn append_csv(ctx: NativeCallContext, path: &str, row: rhai::Array) -> Res<()> {
        let host = call(&ctx)?;
        with_touched(&host, |d, t| d.append_csv(path, None, &cells(&row), t))
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
        row: rhai::Array,
    ) -> Res<()> {
        let host = call(&ctx)?;
        with_touched(&host, |d, t| {
            d.append_csv(path, Some(&cells(&header)), &cells(&row), t)
        })
    }

    /// Appends `value` as one line of compact JSON to `path` (JSON Lines).
    ///
    /// ```rhai
    /// append_json("gridx/events.jsonl", event.data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn append_json(ctx: NativeCallContext, path: &str, value: Dynamic) -> Res<()> {
        let host = call(&ctx)?;
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        let mut line = serde_json::to_vec(&json).map_err(|e| e.to_string())?;
        line.push(b'\n');
        with_touched(&host, |d, t| d.append(path, &line, t))
    }

    /// Writes `text` to `path`, replacing the file (written to a temporary file, then renamed).
    ///
    /// ```rhai
    /// write_file("wattsense/last-value.json", to_json(event.data));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_file(ctx: NativeCallContext, path: &str, text: &str) -> Res<()> {
        let host = call(&ctx)?;
        with_touched(&host, |d, t| d.write(path, text.as_bytes(), t))
    }

    /// Writes the binary body of the current event (an uploaded image) to `path`.
    ///
    /// ```rhai
    /// write_blob(`ai-on-the-edge/${event.source}/${event.meta.timestamp}.jpg`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_blob(ctx: NativeCallContext, path: &str) -> Res<()> {
        let host = call(&ctx)?;
        let blob = host.blob.clone().ok_or("this event has no binary body")?;
        with_touched(&host, |d, t| d.write(path, &blob, t))
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
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
                    c
                } else {
                    '_'
                }
            })
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
