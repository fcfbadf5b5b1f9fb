//! The host API scripts call. These doc comments are the reference of `scripts/README.md`.
//!
//! Every path is relative to the data directory and cannot leave it. Calls do not write at
//! once: they record effects, which land in the data directory once the journal holds them
//! (before the request is acknowledged). Errors become script errors (the request fails with
//! the protocol's failure reply).

use rhai::plugin::*;

use super::cells::{self, Cells, cell, row};
use super::outbound::{catalog, http_output, json_of, mqtt_output, option, payload};
use crate::output::Output;
use crate::store::{Effect, safe_relative_path};

use super::host::HostCall;

type Res<T> = Result<T, Box<EvalAltResult>>;

fn call(ctx: &NativeCallContext) -> Res<HostCall> {
    ctx.tag()
        .and_then(|t| t.clone().try_cast::<HostCall>())
        .ok_or_else(|| "host functions are only available while handling an event".into())
}

fn record(ctx: &NativeCallContext, effect: Effect) -> Res<()> {
    let host = call(ctx)?;
    safe_relative_path(effect.path()).map_err(|e| e.to_string())?;
    host.recorder().effect(effect);
    Ok(())
}

fn send(ctx: &NativeCallContext, output: Output) -> Res<()> {
    let host = call(ctx)?;
    host.recorder().output(output);
    Ok(())
}

fn append_row(
    ctx: &NativeCallContext,
    path: &str,
    header: Option<&rhai::Array>,
    values: &rhai::Array,
    mode: Cells,
) -> Res<()> {
    let header = header.map(|h| row(h, mode));
    record(ctx, Effect::Append { path: path.into(), header, bytes: row(values, mode) })
}

/// The values of `map` under the names in `header`, in that order (`""` for a missing one).
fn append_map(ctx: &NativeCallContext, path: &str, header: &rhai::Array, map: &rhai::Map, mode: Cells) -> Res<()> {
    let cells: Vec<String> = header
        .iter()
        .map(|name| {
            let value = match name.read_lock::<ImmutableString>() {
                Some(name) => map.get(name.as_str()),
                None => map.get(name.to_string().as_str()),
            };
            value.map(cell).unwrap_or_default()
        })
        .collect();
    let header = Some(row(header, mode));
    record(ctx, Effect::Append { path: path.into(), header, bytes: cells::record(cells, mode) })
}

fn log_line(host: &HostCall, level: tracing::Level, message: &str) {
    match level {
        tracing::Level::WARN => tracing::warn!(protocol = %host.protocol, "script: {message}"),
        _ => tracing::info!(protocol = %host.protocol, "script: {message}"),
    }
    host.recorder().log(message.to_owned());
}

#[export_module]
pub mod host_api {
    /// Appends one CSV row (RFC 4180 quoting, CRLF line end) to `path`. A cell starting with
    /// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` unless it is a
    /// number (`-12.5` stays), so no spreadsheet runs it as a formula (`append_csv_raw`
    /// writes cells as they are).
    ///
    /// ```rhai
    /// append_csv("ai-on-the-edge/home/webhook_log.csv", [event.data.name, event.data.value]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn append_csv(ctx: NativeCallContext, path: &str, values: rhai::Array) -> Res<()> {
        append_row(&ctx, path, None, &values, Cells::Neutralised)
    }

    /// Appends one CSV row, writing `header` first when the file is new or empty (formulas
    /// neutralised in both).
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
        append_row(&ctx, path, Some(&header), &values, Cells::Neutralised)
    }

    /// Appends one CSV row of the values `row` (a map) holds under the names in `header`, in
    /// that order (a name the map lacks is an empty cell), writing `header` first when the
    /// file is new or empty (formulas neutralised). A CSV row's event is written back in its
    /// column order with:
    ///
    /// ```rhai
    /// append_csv("wattmon/mac.csv", event.meta.columns, event.data);
    /// ```
    #[rhai_fn(name = "append_csv", return_raw)]
    pub fn append_csv_from_map(ctx: NativeCallContext, path: &str, header: rhai::Array, row: rhai::Map) -> Res<()> {
        append_map(&ctx, path, &header, &row, Cells::Neutralised)
    }

    /// `append_csv` with every cell written as it is, formulas included: only for files no
    /// one opens in a spreadsheet, or whose cells the script has checked. The same three
    /// forms: `(path, values)`, `(path, header, values)`, `(path, header, map)`.
    ///
    /// ```rhai
    /// append_csv_raw("exports/formulas.csv", ["=SUM(A1:A3)"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn append_csv_raw(ctx: NativeCallContext, path: &str, values: rhai::Array) -> Res<()> {
        append_row(&ctx, path, None, &values, Cells::Raw)
    }

    #[rhai_fn(name = "append_csv_raw", return_raw)]
    pub fn append_csv_raw_with_header(
        ctx: NativeCallContext,
        path: &str,
        header: rhai::Array,
        values: rhai::Array,
    ) -> Res<()> {
        append_row(&ctx, path, Some(&header), &values, Cells::Raw)
    }

    #[rhai_fn(name = "append_csv_raw", return_raw)]
    pub fn append_csv_raw_from_map(ctx: NativeCallContext, path: &str, header: rhai::Array, row: rhai::Map) -> Res<()> {
        append_map(&ctx, path, &header, &row, Cells::Raw)
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
        let blob = call(&ctx)?.recorder().blob().ok_or("this event has no binary body")?;
        record(&ctx, Effect::Write { path: path.into(), bytes: blob.to_vec() })
    }

    /// Calls the native plugin configured as `[plugins.<name>]` with `value` and returns its
    /// result. A plugin error fails the event.
    ///
    /// ```rhai
    /// let q = plugin("quality", #{ meter: event.data.name, value: event.data.value, time: event.data.timestampLong });
    /// if q.status != "ok" { log_warn(q.message); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn plugin(ctx: NativeCallContext, name: &str, value: Dynamic) -> Res<Dynamic> {
        let host = call(&ctx)?;
        let input = json_of(&value)?;
        let out = host.ext.plugins.call(name, &input).map_err(|e| e.to_string())?;
        rhai::serde::to_dynamic(out)
    }

    /// Inserts one row into a table declared under `[outputs.sql.tables.<table>]` (the
    /// embedded SQLite database, or PostgreSQL when `[outputs.sql] url` is set). Keys are
    /// column names; numbers sent as text are converted for numeric columns, `""` is NULL.
    ///
    /// ```rhai
    /// sql_insert("readings", #{ meter: event.data.name, value: event.data.value, time: event.data.timestampLong });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn sql_insert(ctx: NativeCallContext, table: &str, row: rhai::Map) -> Res<()> {
        let host = call(&ctx)?;
        let row = match json_of(&Dynamic::from_map(row))? {
            serde_json::Value::Object(map) => map,
            _ => return Err("sql_insert: the row must be a map".into()),
        };
        catalog(&host)?.check_row(table, &row).map_err(|e| e.to_string())?;
        send(&ctx, Output::Sql { table: table.to_owned(), row })
    }

    /// Publishes `payload` (text as is, anything else as JSON) to `topic` on the broker of
    /// `[outputs.mqtt]`, QoS 1, not retained.
    ///
    /// ```rhai
    /// mqtt_publish(`meters/${event.data.name}`, event.data.value);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn mqtt_publish(ctx: NativeCallContext, topic: &str, payload: Dynamic) -> Res<()> {
        let output = mqtt_output(&call(&ctx)?, topic, &payload, &rhai::Map::new())?;
        send(&ctx, output)
    }

    /// Publishes with options `qos` (0 or 1) and `retain` (true/false).
    ///
    /// ```rhai
    /// mqtt_publish("meters/water", event.data, #{ qos: 0, retain: true });
    /// ```
    #[rhai_fn(name = "mqtt_publish", return_raw)]
    pub fn mqtt_publish_with(ctx: NativeCallContext, topic: &str, payload: Dynamic, options: rhai::Map) -> Res<()> {
        let output = mqtt_output(&call(&ctx)?, topic, &payload, &options)?;
        send(&ctx, output)
    }

    /// Makes a reading appear in Home Assistant as a sensor (MQTT discovery): publishes the
    /// sensor's retained discovery config to `<prefix>/sensor/hookyard/<id>/config` and
    /// `value` (retained) to `hookyard/<id>/state`. Options: `unit`, `device_class`,
    /// `state_class` (default `total_increasing` when a unit is given), `icon`, `device`
    /// (the device name shown in Home Assistant, default `hookyard`).
    ///
    /// ```rhai
    /// ha_sensor(`water_${safe_name(event.data.name)}`, "Water meter", event.data.value,
    ///           #{ unit: "m³", device_class: "water" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ha_sensor(ctx: NativeCallContext, id: &str, name: &str, value: Dynamic, options: rhai::Map) -> Res<()> {
        let host = call(&ctx)?;
        let catalog = catalog(&host)?;
        if !catalog.mqtt {
            return Err("ha_sensor: no broker is configured ([outputs.mqtt])".into());
        }
        let id = safe_name(id).replace([':', '.'], "_");
        let text = |key: &str| option(&options, key).map(|v| v.to_string());
        let state_topic = format!("hookyard/{id}/state");
        let mut config = serde_json::json!({
            "name": name,
            "unique_id": format!("hookyard_{id}"),
            "object_id": format!("hookyard_{id}"),
            "state_topic": state_topic,
            "device": { "identifiers": [format!("hookyard_{}", text("device").unwrap_or_else(|| "hookyard".into()))],
                        "name": text("device").unwrap_or_else(|| "hookyard".into()),
                        "manufacturer": "hookyard" },
        });
        for (key, field) in [("unit", "unit_of_measurement"), ("device_class", "device_class"), ("icon", "icon")] {
            if let Some(v) = text(key) {
                config[field] = v.into();
            }
        }
        match text("state_class") {
            Some(v) => config["state_class"] = v.into(),
            None if text("unit").is_some() => config["state_class"] = "total_increasing".into(),
            None => {}
        }
        let prefix = &catalog.discovery_prefix;
        let config_topic = format!("{prefix}/sensor/hookyard/{id}/config");
        let config_bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
        send(&ctx, Output::Mqtt { topic: config_topic, payload: config_bytes, qos: 1, retain: true })?;
        let (state, _) = payload(&value)?;
        send(&ctx, Output::Mqtt { topic: state_topic, payload: state, qos: 1, retain: true })
    }

    /// POSTs `body` (text as `text/plain`, anything else as JSON) to `url`, with the
    /// `[outputs.http]` timeout and retries. A final failure (or a 4xx answer) fails the event.
    ///
    /// ```rhai
    /// http_post("http://127.0.0.1:8123/api/webhook/meter", event.data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn http_post(ctx: NativeCallContext, url: &str, body: Dynamic) -> Res<()> {
        send(&ctx, http_output(url, &body, &rhai::Map::new())?)
    }

    /// POSTs with options: `timeout_ms`, `retries`, `headers` (a map), `content_type`.
    ///
    /// ```rhai
    /// http_post("https://example.org/hook", event.data, #{ timeout_ms: 2000, retries: 3, headers: #{ "X-Token": "…" } });
    /// ```
    #[rhai_fn(name = "http_post", return_raw)]
    pub fn http_post_with(ctx: NativeCallContext, url: &str, body: Dynamic, options: rhai::Map) -> Res<()> {
        send(&ctx, http_output(url, &body, &options)?)
    }

    /// In `fn on_events(events)`: the current event is done. What was recorded since the
    /// previous call (or the start) belongs to it and is kept even when a later event fails;
    /// the next calls record for the next event. An error raised after k calls fails event k
    /// (the reply names it), and events k+1… are not processed. Calling it more often than
    /// there are events is an error; on return, events not yet marked are done (the work
    /// recorded since the last mark belongs to the first of them). In `on_event` it is not
    /// needed (each call is one event) and is an error.
    ///
    /// ```rhai
    /// fn on_events(events) {
    ///     for event in events {
    ///         append_json("gridx/events.jsonl", event.data);
    ///         event_done();
    ///     }
    /// }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn event_done(ctx: NativeCallContext) -> Res<()> {
        let host = call(&ctx)?;
        let mut recorder = host.recorder();
        if !recorder.batch {
            return Err("event_done belongs in fn on_events(events); each on_event call is one event".into());
        }
        if recorder.all_closed() {
            return Err("event_done was called once more than there are events".into());
        }
        recorder.close();
        Ok(())
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

    /// Turns any text into a safe file name: letters, digits, `.`, `_` and `-` are kept,
    /// everything else (`:` too, awkward on SMB and Windows shares) becomes `_`; a leading
    /// `.` becomes `_` too.
    ///
    /// ```rhai
    /// let file = `wattmon/${safe_name(event.source)}.csv`;
    /// ```
    pub fn safe_name(text: &str) -> String {
        let mut out: String = text
            .chars()
            .take(128)
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
            .collect();
        if out.starts_with('.') || out.is_empty() {
            out.replace_range(0..out.len().min(1), "_");
        }
        out
    }

    /// The first 8 hex digits of the SHA-256 of `value`: text as its bytes, a list as the
    /// CSV row of its items (so a CSV header names its own file), anything else as its text.
    ///
    /// ```rhai
    /// let file = `wattmon/${safe_name(event.source)}-${short_digest(event.meta.columns)}.csv`;
    /// ```
    pub fn short_digest(value: Dynamic) -> String {
        cells::short_digest(&value)
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
