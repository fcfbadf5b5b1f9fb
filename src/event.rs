//! The Event: the one type scripts, plugins and stores see.
//!
//! Every accepted request becomes one or more Events (a reading, a CSV row, a platform
//! event, an image). The serialized form below is a documented contract
//! (`scripts/README.md`): scripts receive exactly these fields. No I/O and no clock here:
//! the receive time is passed in.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A value that should have been a time is not one.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{text:?} is neither RFC 3339 nor Unix milliseconds ({source})")]
    Time { text: String, source: time::error::Parse },
}

/// One unit of data handed to a protocol's script.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Protocol name, the stem of its spec file (`gridx`).
    pub protocol: String,
    /// The spec operation that received it (its `operationId`, e.g. `readings`).
    pub operation: String,
    /// Who sent it, as established by the auth blocks: the tenant of an API key, the Wattmon
    /// `key`, or `""` when the protocol has no notion of a sender.
    pub source: String,
    /// When the request was received, RFC 3339 UTC with milliseconds.
    pub received_at: String,
    /// Receive time as Unix epoch milliseconds.
    pub received_ms: i64,
    /// Position of this event within its request, from 0.
    pub index: usize,
    /// The payload: a reading object, a platform event, a CSV row as `{column: value}`, or
    /// `{}` for a binary upload.
    pub data: Value,
    /// Framing details: query parameters, CSV column order, blob size and content type.
    pub meta: Map<String, Value>,
    /// The raw bytes of a binary upload (an image); not part of the JSON form.
    #[serde(skip)]
    pub blob: Option<Bytes>,
}

/// What every event of one request shares.
#[derive(Clone, Debug)]
pub struct Origin {
    pub protocol: String,
    pub operation: String,
    pub source: String,
    pub received_ms: i64,
}

impl Origin {
    /// Builds the `index`-th event of this request.
    pub fn event(&self, index: usize, data: Value, meta: Map<String, Value>) -> Event {
        Event {
            protocol: self.protocol.clone(),
            operation: self.operation.clone(),
            source: self.source.clone(),
            received_at: rfc3339_millis(self.received_ms),
            received_ms: self.received_ms,
            index,
            data,
            meta,
            blob: None,
        }
    }
}

impl Event {
    /// The event as JSON (the form scripts and idempotency keys see).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The event's JSON form as text (what the journal keeps), written without building the
    /// [`Event::to_json`] tree first.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The value at a JSON pointer into this event's [`Event::to_json`] form, read from the
    /// fields directly (no copy of the payload).
    pub fn pointer(&self, pointer: &str) -> Option<Cow<'_, Value>> {
        let (field, tail) = split_token(pointer)?;
        let owned = |v: Value| tail.is_empty().then_some(Cow::Owned(v));
        match field {
            "protocol" => owned(Value::from(self.protocol.as_str())),
            "operation" => owned(Value::from(self.operation.as_str())),
            "source" => owned(Value::from(self.source.as_str())),
            "received_at" => owned(Value::from(self.received_at.as_str())),
            "received_ms" => owned(Value::from(self.received_ms)),
            "index" => owned(Value::from(self.index)),
            "data" => self.data.pointer(tail).map(Cow::Borrowed),
            "meta" => {
                let Some((key, deeper)) = split_token(tail) else {
                    return Some(Cow::Owned(Value::Object(self.meta.clone())));
                };
                self.meta.get(&key.replace("~1", "/").replace("~0", "~"))?.pointer(deeper).map(Cow::Borrowed)
            }
            _ => None,
        }
    }

    /// The idempotency key made of the values at `pointers` (JSON pointers into this event's
    /// [`Event::to_json`] form), or `None` when any of them is missing or empty.
    pub fn idempotency_key(&self, pointers: &[String]) -> Option<String> {
        if pointers.is_empty() {
            return None;
        }
        let mut parts = Vec::with_capacity(pointers.len() + 2);
        parts.push(self.protocol.clone());
        parts.push(self.operation.clone());
        for pointer in pointers {
            let part = match self.pointer(pointer)?.as_ref() {
                Value::String(s) if s.is_empty() => return None,
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            parts.push(part);
        }
        Some(serde_json::to_string(&parts).unwrap_or_default())
    }
}

/// `/first/rest` → (`first`, `/rest`); `/first` → (`first`, ``); `None` without a leading `/`.
fn split_token(pointer: &str) -> Option<(&str, &str)> {
    let rest = pointer.strip_prefix('/')?;
    Some(rest.find('/').map_or((rest, ""), |at| rest.split_at(at)))
}

/// `2026-01-01T00:00:00Z` or `1767225600000` → Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, EventError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|source| EventError::Time { text: text.to_owned(), source })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Formats Unix milliseconds as `2025-09-01T12:00:00.000Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return String::new();
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin {
        Origin {
            protocol: "wattmon".into(),
            operation: "export".into(),
            source: "00:04:A3:12:34:56".into(),
            received_ms: 1_756_728_000_123,
        }
    }

    #[test]
    fn times_are_rfc3339_or_unix_milliseconds() {
        assert_eq!(parse_time("1767225600000").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap(), 1_767_225_600_000);
        let err = parse_time("yesterday").unwrap_err().to_string();
        assert!(err.starts_with("\"yesterday\" is neither RFC 3339 nor Unix milliseconds ("), "{err}");
    }

    #[test]
    fn received_at_is_rfc3339_with_millis() {
        let e = origin().event(0, json!({}), Map::new());
        assert_eq!(e.received_at, "2025-09-01T12:00:00.123Z");
    }

    #[test]
    fn idempotency_key_joins_protocol_operation_and_pointed_values() {
        let mut meta = Map::new();
        meta.insert("timestamp".into(), json!("2025-09-01 12:00"));
        let e = origin().event(3, json!({"V": "1"}), meta);
        let key = e.idempotency_key(&["/source".into(), "/meta/timestamp".into()]).unwrap();
        assert_eq!(key, r#"["wattmon","export","00:04:A3:12:34:56","2025-09-01 12:00"]"#);
        assert_eq!(e.idempotency_key(&["/data/missing".into()]), None);
        assert_eq!(e.idempotency_key(&[]), None);
    }

    /// Reading a pointer from the fields agrees with reading it from the JSON form.
    #[test]
    fn pointer_agrees_with_the_json_form() {
        let mut meta = Map::new();
        meta.insert("a/b~c".into(), json!({"x": [1, {"y": "z"}]}));
        meta.insert("columns".into(), json!(["V", "I"]));
        let e = origin().event(3, json!({"V": "1", "nested": {"list": [true, null, 2.5]}, "": 0, "t~/": "odd"}), meta);
        let json = e.to_json();
        for p in [
            "/protocol",
            "/operation",
            "/source",
            "/received_at",
            "/received_ms",
            "/index",
            "/data",
            "/data/V",
            "/data/nested/list/2",
            "/data/nested/list/1",
            "/data/",
            "/data/t~0~1",
            "/data/missing",
            "/meta",
            "/meta/columns/1",
            "/meta/a~1b~0c/x/1/y",
            "/meta/missing",
            "/protocol/x",
            "/index/0",
            "/blob",
            "/",
            "",
            "data",
        ] {
            let expected = json.pointer(p).cloned().filter(|_| !p.is_empty());
            assert_eq!(e.pointer(p).map(|v| v.into_owned()), expected, "pointer {p:?}");
        }
        assert_eq!(serde_json::from_str::<Value>(&e.to_json_string()).unwrap(), json);
    }
}
