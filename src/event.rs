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

use crate::spec::ext::{Freshness, Idempotency};

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
        self.event_at(&self.received_at(), index, data, meta)
    }

    /// The receive time as events show it (`received_at`).
    pub fn received_at(&self) -> String {
        rfc3339_millis(self.received_ms)
    }

    /// As [`Origin::event`], with the receive time formatted once per request
    /// ([`Origin::received_at`]) rather than once per event.
    pub fn event_at(&self, received_at: &str, index: usize, data: Value, meta: Map<String, Value>) -> Event {
        Event {
            protocol: self.protocol.clone(),
            operation: self.operation.clone(),
            source: self.source.clone(),
            received_at: received_at.to_owned(),
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
                let key = match key.contains('~') {
                    true => Cow::Owned(key.replace("~1", "/").replace("~0", "~")),
                    false => Cow::Borrowed(key),
                };
                self.meta.get(key.as_ref())?.pointer(deeper).map(Cow::Borrowed)
            }
            _ => None,
        }
    }

    /// The idempotency key made of the values at `spec.key` (JSON pointers into this event's
    /// [`Event::to_json`] form) and, with `spec.digest`, `sha256:<hex>` of the compact JSON
    /// of the value there; `None` when the spec names nothing or any value is missing or empty.
    pub fn idempotency_key(&self, spec: &Idempotency) -> Option<String> {
        if spec.key.is_empty() && spec.digest.is_none() {
            return None;
        }
        let mut parts = Vec::with_capacity(spec.key.len() + 3);
        parts.push(self.protocol.clone());
        parts.push(self.operation.clone());
        for pointer in &spec.key {
            let part = match self.pointer(pointer)?.as_ref() {
                Value::String(s) if s.is_empty() => return None,
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            parts.push(part);
        }
        if let Some(pointer) = &spec.digest {
            let value = self.pointer(pointer)?;
            let text = serde_json::to_vec(value.as_ref()).ok()?;
            parts.push(format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&text))));
        }
        Some(serde_json::to_string(&parts).unwrap_or_default())
    }

    /// Whether the time at `rule.time` (a pointer into `data`) lies inside the window around
    /// `received_ms`; `Err` names the pointer and the reason, as the sender reads it.
    pub fn check_freshness(&self, rule: &Freshness, received_ms: i64) -> Result<(), String> {
        let at = &rule.time;
        let ms = match self.data.pointer(at) {
            Some(Value::String(text)) => parse_time(text).map_err(|e| format!("{at}: {e}"))?,
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{at}: not a time in milliseconds"))?,
            _ => return Err(format!("{at}: required (the event's time tells whether it is fresh)")),
        };
        let max_age = rule.max_age_seconds.saturating_mul(1000).min(i64::MAX as u64) as i64;
        let ahead = rule.ahead_seconds.saturating_mul(1000).min(i64::MAX as u64) as i64;
        if ms < received_ms.saturating_sub(max_age) {
            return Err(format!("{at}: the event is older than {}", span(rule.max_age_seconds)));
        }
        if ms > received_ms.saturating_add(ahead) {
            return Err(format!("{at}: the event is more than {} in the future", span(rule.ahead_seconds)));
        }
        Ok(())
    }
}

/// `604800` → `7 days`, `300` → `5 minutes`: the largest unit that divides the span.
pub fn span(seconds: u64) -> String {
    let (n, unit) = match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
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
        let keyed = |key: &[&str], digest: Option<&str>| {
            let spec = Idempotency { key: key.iter().map(|k| k.to_string()).collect(), digest: digest.map(Into::into) };
            e.idempotency_key(&spec)
        };
        let key = keyed(&["/source", "/meta/timestamp"], None).unwrap();
        assert_eq!(key, r#"["wattmon","export","00:04:A3:12:34:56","2025-09-01 12:00"]"#);
        assert_eq!(keyed(&["/data/missing"], None), None);
        assert_eq!(keyed(&[], None), None);
        let digest = keyed(&[], Some("/data")).unwrap();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(br#"{"V":"1"}"#));
        assert_eq!(digest, format!(r#"["wattmon","export","sha256:{sha}"]"#));
        let mut other = e.clone();
        other.data = json!({"V": "2"});
        let spec = Idempotency { key: Vec::new(), digest: Some("/data".into()) };
        assert_ne!(other.idempotency_key(&spec), Some(digest));
    }

    #[test]
    fn freshness_refuses_old_and_far_future_times_naming_the_pointer() {
        let rule = Freshness { time: "/time".into(), max_age_seconds: 7 * 86_400, ahead_seconds: 300 };
        let now = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let at = |time: Value| origin().event(0, json!({ "time": time }), Map::new()).check_freshness(&rule, now);
        assert_eq!(at(json!("2025-12-26T00:00:00Z")), Ok(()));
        assert_eq!(at(json!("2025-12-24T23:59:59Z")), Err("/time: the event is older than 7 days".into()));
        assert_eq!(at(json!("2026-01-01T00:04:00Z")), Ok(()));
        assert_eq!(at(json!(now + 301_000)), Err("/time: the event is more than 5 minutes in the future".into()));
        assert!(at(json!("soon")).unwrap_err().starts_with("/time: \"soon\" is neither"));
        assert_eq!(at(Value::Null), Err("/time: required (the event's time tells whether it is fresh)".into()));
        assert_eq!((span(86_400), span(7_200), span(90)), ("1 day".into(), "2 hours".into(), "90 seconds".into()));
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
