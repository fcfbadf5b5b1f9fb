//! What scripts send beyond the data directory, checked while the script runs: MQTT
//! publishes and HTTP posts built from a script's values and options, and the outputs
//! catalog those calls need.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult};

use super::host::HostCall;
use crate::output::{Catalog, Output};

type Res<T> = Result<T, Box<EvalAltResult>>;

pub(super) fn catalog(host: &HostCall) -> Res<Arc<Catalog>> {
    host.ext.catalog.clone().ok_or_else(|| "outputs are not available here".into())
}

pub(super) fn json_of(value: &Dynamic) -> Res<serde_json::Value> {
    rhai::serde::from_dynamic(value)
}

/// Text stays text; anything else becomes compact JSON.
pub(super) fn payload(value: &Dynamic) -> Res<(Vec<u8>, &'static str)> {
    if value.is_string() {
        return Ok((value.clone().into_string()?.into_bytes(), "text/plain; charset=utf-8"));
    }
    let json = json_of(value)?;
    Ok((serde_json::to_vec(&json).map_err(|e| e.to_string())?, "application/json"))
}

pub(super) fn option<'a>(options: &'a rhai::Map, name: &str) -> Option<&'a Dynamic> {
    options.get(name).filter(|v| !v.is_unit())
}

pub(super) fn int_option(options: &rhai::Map, name: &str) -> Res<Option<i64>> {
    match option(options, name) {
        None => Ok(None),
        Some(v) => v.as_int().map(Some).map_err(|_| format!("option {name} must be an integer").into()),
    }
}

pub(super) fn mqtt_output(host: &HostCall, topic: &str, value: &Dynamic, options: &rhai::Map) -> Res<Output> {
    if !catalog(host)?.mqtt {
        return Err("mqtt_publish: no broker is configured ([outputs.mqtt])".into());
    }
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(format!("mqtt_publish: {topic:?} is not a topic to publish to").into());
    }
    let qos = int_option(options, "qos")?.unwrap_or(1);
    if !(0..=1).contains(&qos) {
        return Err("mqtt_publish: qos must be 0 or 1".into());
    }
    let retain = match option(options, "retain") {
        None => false,
        Some(v) => v.as_bool().map_err(|_| "mqtt_publish: retain must be true or false")?,
    };
    let (payload, _) = payload(value)?;
    Ok(Output::Mqtt { topic: topic.to_owned(), payload, qos: qos as u8, retain })
}

pub(super) fn http_output(url: &str, value: &Dynamic, options: &rhai::Map) -> Res<Output> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("http_post: {url:?} is not an http:// or https:// URL").into());
    }
    let (body, content_type) = payload(value)?;
    let mut headers = Vec::new();
    if let Some(h) = option(options, "headers") {
        let map = h.clone().try_cast::<rhai::Map>().ok_or("http_post: headers must be a map")?;
        for (name, value) in map {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let timeout_ms = int_option(options, "timeout_ms")?.map(|n| n.max(1) as u64);
    let retries = int_option(options, "retries")?.map(|n| n.clamp(0, 10) as u32);
    let content_type = match option(options, "content_type") {
        Some(c) => c.to_string(),
        None => content_type.to_owned(),
    };
    Ok(Output::Http { url: url.to_owned(), body, content_type, headers, timeout_ms, retries })
}
