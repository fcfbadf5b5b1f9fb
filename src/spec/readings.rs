//! `x-hookyard-readings`: which fields of an operation's events make a meter reading.
//!
//! A block names the series (a list of parts: JSON pointers into the event's JSON form,
//! constants, and with `each-member` the member's name `*`), the value (one pointer, or every
//! numeric member of an object), the time, the unit, counter or gauge, and optionally the
//! device's own status text; `image: true` says the event's raw body is the last image of
//! every series of its source. The block is checked when the spec loads (a malformed one is
//! an [`OperationError`](super::OperationError)); [`ReadingsSpec::extract`] turns one event
//! into its readings. Pure: no I/O, no clock (an event without a time takes its receive time).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::event::Event;

/// Why an `x-hookyard-readings` block cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadingsError {
    #[error("{0}")]
    Shape(serde_json::Error),
    #[error("`series` must name at least one part")]
    NoSeries,
    #[error("`{0}` is required unless the block only says `image: true`")]
    Missing(&'static str),
    #[error("exactly one of `value` and `each-member` must say where the value is")]
    Values,
    #[error("`{field}`: {text:?} is not a JSON pointer (it must start with '/')")]
    Pointer { field: &'static str, text: String },
    #[error("`series`: the part \"*\" (the member's name) needs `each-member`")]
    Star,
}

/// Counter (cumulative, e.g. a water meter's total) or gauge (a level, e.g. a temperature).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// How a time field is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TimeFormat {
    /// RFC 3339, `2025-09-01 12:00:00` (read as UTC), or a number: Unix seconds below
    /// 10^11, Unix milliseconds above.
    #[default]
    Auto,
    UnixSeconds,
    UnixMs,
    Rfc3339,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TimeBlock {
    at: String,
    #[serde(default)]
    format: TimeFormat,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct EachMemberBlock {
    of: String,
    #[serde(default)]
    except: Vec<String>,
}

/// The block as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Block {
    series: Option<Vec<String>>,
    value: Option<String>,
    each_member: Option<EachMemberBlock>,
    time: Option<TimeBlock>,
    unit: Option<String>,
    kind: Option<Kind>,
    status: Option<String>,
    ok_status: Option<Vec<String>>,
    #[serde(default)]
    image: bool,
}

/// One part of a series name or unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Pointer(String),
    Text(String),
    /// The member's name, with `each-member`.
    Member,
}

impl Part {
    fn parse(text: &str) -> Self {
        match text {
            "*" => Part::Member,
            t if t.starts_with('/') => Part::Pointer(t.to_owned()),
            t => Part::Text(t.to_owned()),
        }
    }
}

/// Where a reading's value is.
#[derive(Clone, Debug)]
pub enum Values {
    /// One value per event.
    One(String),
    /// Every numeric member of the object at `of` is a value of its own series.
    EachMember { of: String, except: Vec<String> },
}

/// What makes a reading of an event.
#[derive(Clone, Debug)]
pub struct SeriesSpec {
    pub name: Vec<Part>,
    pub values: Values,
    pub time: Option<(String, TimeFormat)>,
    pub unit: Option<Part>,
    pub kind: Kind,
    pub status: Option<String>,
    /// Status texts that mean "no error" (default: empty and `no error`).
    pub ok_status: Vec<String>,
}

/// A checked `x-hookyard-readings` block.
#[derive(Clone, Debug)]
pub struct ReadingsSpec {
    pub series: Option<SeriesSpec>,
    /// The event's raw body is the last image of every series of its source.
    pub image: bool,
}

/// One reading of one series, as an event yields it.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub name: String,
    pub unit: Option<String>,
    pub kind: Kind,
    pub ms: i64,
    /// `None` on an error round (the device sent no value).
    pub value: Option<f64>,
    /// The device's error text; `None` when it said all is well.
    pub status: Option<String>,
}

fn pointer(field: &'static str, text: String) -> Result<String, ReadingsError> {
    if text.starts_with('/') { Ok(text) } else { Err(ReadingsError::Pointer { field, text }) }
}

impl ReadingsSpec {
    /// Checks the block's JSON form.
    pub fn parse(value: &Value) -> Result<Self, ReadingsError> {
        let block: Block = serde_json::from_value(value.clone()).map_err(ReadingsError::Shape)?;
        let image = block.image;
        let series = match (&block.series, image) {
            (None, true) if block.value.is_none() && block.each_member.is_none() => None,
            _ => Some(series(block)?),
        };
        Ok(Self { series, image })
    }
}

fn series(block: Block) -> Result<SeriesSpec, ReadingsError> {
    let name: Vec<Part> =
        block.series.ok_or(ReadingsError::Missing("series"))?.iter().map(|t| Part::parse(t)).collect();
    if name.is_empty() {
        return Err(ReadingsError::NoSeries);
    }
    let values = match (block.value, block.each_member) {
        (Some(v), None) => Values::One(pointer("value", v)?),
        (None, Some(m)) => Values::EachMember { of: pointer("each-member.of", m.of)?, except: m.except },
        _ => return Err(ReadingsError::Values),
    };
    if matches!(values, Values::One(_)) && name.contains(&Part::Member) {
        return Err(ReadingsError::Star);
    }
    let time = block.time.map(|t| Ok::<_, ReadingsError>((pointer("time.at", t.at)?, t.format))).transpose()?;
    Ok(SeriesSpec {
        name,
        values,
        time,
        unit: block.unit.as_deref().map(Part::parse),
        kind: block.kind.ok_or(ReadingsError::Missing("kind"))?,
        status: block.status.map(|s| pointer("status", s)).transpose()?,
        ok_status: block.ok_status.unwrap_or_else(|| vec![String::new(), "no error".into()]),
    })
}

/// The member names `except` leaves out: an entry is a member's name, or a JSON pointer
/// (`/meta/columns/0`: Wattmon's first column, its timestamp) to the name.
fn excepted<'e>(event: &'e Event, except: &'e [String]) -> Vec<Cow<'e, str>> {
    except
        .iter()
        .filter_map(|e| match e.strip_prefix('/') {
            Some(_) => match event.pointer(e)? {
                Cow::Borrowed(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
                Cow::Owned(Value::String(s)) => Some(Cow::Owned(s)),
                _ => None,
            },
            None => Some(Cow::Borrowed(e.as_str())),
        })
        .collect()
}

impl SeriesSpec {
    /// The readings of `event`: none when its series name or time cannot be made, or when
    /// it has neither a numeric value nor an error text.
    pub fn extract(&self, event: &Event) -> Vec<Reading> {
        let Some(ms) = self.time_of(event) else { return Vec::new() };
        let status = self.status_of(event);
        let members: Vec<(Option<&str>, Option<f64>)>;
        let of;
        match &self.values {
            Values::One(at) => members = vec![(None, event.pointer(at).and_then(|v| number(&v)))],
            Values::EachMember { of: at, except } => {
                of = event.pointer(at);
                let except = excepted(event, except);
                members = match of.as_deref() {
                    Some(Value::Object(map)) => map
                        .iter()
                        .filter(|(k, _)| !except.iter().any(|e| e == k.as_str()))
                        .filter_map(|(k, v)| number(v).map(|n| (Some(k.as_str()), Some(n))))
                        .collect(),
                    _ => Vec::new(),
                };
            }
        }
        // The parts that do not name the member are the same for every member: made once.
        let Some(name) = self.name.iter().map(|p| fixed(event, p)).collect::<Option<Vec<_>>>() else {
            return Vec::new();
        };
        let unit = self.unit.as_ref().map(|p| fixed(event, p));
        members
            .into_iter()
            .filter(|(_, value)| value.is_some() || status.is_some())
            .filter_map(|(member, value)| {
                let name = name.iter().map(|p| p.with(member)).collect::<Option<String>>()?;
                let unit = unit.as_ref().and_then(|u| u.as_ref()?.with(member).map(str::to_owned));
                Some(Reading { name, unit, kind: self.kind, ms, value, status: status.clone() })
            })
            .collect()
    }

    fn time_of(&self, event: &Event) -> Option<i64> {
        let Some((at, format)) = &self.time else { return Some(event.received_ms) };
        time(event.pointer(at)?.as_ref(), *format).filter(|ms| (0..=LATEST_MS).contains(ms))
    }

    fn status_of(&self, event: &Event) -> Option<String> {
        let value = event.pointer(self.status.as_deref()?)?;
        let text = match value.as_ref() {
            Value::String(s) => s.trim().to_owned(),
            Value::Null => return None,
            other => other.to_string(),
        };
        (!self.ok_status.iter().any(|ok| ok.eq_ignore_ascii_case(&text))).then_some(text)
    }
}

/// A part's text for one event: fixed, or the member's name (filled in per member).
enum Fixed<'e> {
    Text(Cow<'e, str>),
    Member,
}

impl Fixed<'_> {
    fn with<'a>(&'a self, member: Option<&'a str>) -> Option<&'a str> {
        match self {
            Fixed::Text(t) => Some(t),
            Fixed::Member => member,
        }
    }
}

/// A part's text: a constant, the member's name, or the string or number at a pointer;
/// `None` when the pointer finds neither.
fn fixed<'e>(event: &'e Event, part: &'e Part) -> Option<Fixed<'e>> {
    let text = match part {
        Part::Text(t) => Cow::Borrowed(t.as_str()),
        Part::Member => return Some(Fixed::Member),
        Part::Pointer(p) => match event.pointer(p)? {
            Cow::Borrowed(Value::String(s)) if !s.is_empty() => Cow::Borrowed(s.as_str()),
            Cow::Owned(Value::String(s)) if !s.is_empty() => Cow::Owned(s),
            v => match v.as_ref() {
                Value::Number(n) => Cow::Owned(n.to_string()),
                _ => return None,
            },
        },
    };
    Some(Fixed::Text(text))
}

/// A finite number, or a string holding one (`"345.4264"`, a decimal comma `"3,5"`).
pub fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(n) => n,
                Err(_) if s.matches(',').count() == 1 && !s.contains('.') => s.replace(',', ".").parse().ok()?,
                Err(_) => return None,
            }
        }
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// 9999-12-31T23:59:59.999Z: a reading's time lies between 1970 and this (a time outside is
/// no reading).
const LATEST_MS: i64 = 253_402_300_799_999;

/// A time in Unix milliseconds, as `format` reads it.
fn time(value: &Value, format: TimeFormat) -> Option<i64> {
    let numeric = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    };
    match (numeric, format) {
        (Some(n), TimeFormat::UnixSeconds) => Some((n * 1000.0) as i64),
        (Some(n), TimeFormat::UnixMs) => Some(n as i64),
        (Some(n), TimeFormat::Auto) => Some(if n < 1e11 { (n * 1000.0) as i64 } else { n as i64 }),
        (None, TimeFormat::Rfc3339 | TimeFormat::Auto) => date_time(value.as_str()?, format),
        _ => None,
    }
}

fn date_time(text: &str, format: TimeFormat) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    if format != TimeFormat::Auto {
        return None;
    }
    let plain = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = time::PrimitiveDateTime::parse(text.trim(), &plain).ok()?.assume_utc();
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::Origin;

    fn event(data: Value, meta: Value) -> Event {
        let origin =
            Origin { protocol: "p".into(), operation: "o".into(), source: "ferienhaus".into(), received_ms: 7 };
        origin.event(0, data, meta.as_object().cloned().unwrap_or_default())
    }

    fn spec(block: Value) -> SeriesSpec {
        ReadingsSpec::parse(&block).unwrap().series.unwrap()
    }

    #[test]
    fn a_reading_takes_its_name_value_time_and_error_text_from_the_event() {
        let s = spec(json!({
            "series": ["/source", " / ", "/data/name"], "value": "/data/value", "kind": "counter",
            "time": { "at": "/data/t", "format": "unix-seconds" }, "status": "/data/error", "unit": "m³",
        }));
        let ok = s.extract(&event(
            json!({ "name": "main", "value": "345.4264", "t": "1723196684", "error": "no error" }),
            json!({}),
        ));
        assert_eq!(
            ok,
            [Reading {
                name: "ferienhaus / main".into(),
                unit: Some("m³".into()),
                kind: Kind::Counter,
                ms: 1_723_196_684_000,
                value: Some(345.4264),
                status: None
            }]
        );
        let error =
            s.extract(&event(json!({ "name": "main", "value": "", "t": "1", "error": "Rate too high" }), json!({})));
        assert_eq!((error[0].value, error[0].status.as_deref()), (None, Some("Rate too high")));
        assert!(s.extract(&event(json!({ "name": "main", "value": "", "t": "1", "error": "" }), json!({}))).is_empty());
        let far = event(json!({ "name": "main", "value": "1", "t": "99999999999999999999" }), json!({}));
        assert!(s.extract(&far).is_empty(), "a time past the year 9999 is no reading");
    }

    #[test]
    fn each_numeric_member_is_a_series_of_its_own() {
        let s = spec(json!({ "series": ["/source", " / ", "*"], "each-member": { "of": "/data" }, "kind": "gauge",
            "time": { "at": "/meta/timestamp" } }));
        let got = s.extract(&event(
            json!({ "Time": "2025-09-01 12:01:00", "Voltage": "52.0", "Current": "3,5", "Note": "x" }),
            json!({ "timestamp": "2025-09-01 12:01:00" }),
        ));
        let got: Vec<(&str, Option<f64>, i64)> = got.iter().map(|r| (r.name.as_str(), r.value, r.ms)).collect();
        assert_eq!(
            got,
            [
                ("ferienhaus / Current", Some(3.5), 1_756_728_060_000),
                ("ferienhaus / Voltage", Some(52.0), 1_756_728_060_000)
            ]
        );
    }

    #[test]
    fn a_member_named_by_a_pointer_in_except_is_no_series() {
        let s = spec(json!({ "series": ["/source", " / ", "*"],
            "each-member": { "of": "/data", "except": ["/meta/columns/0", "Note"] }, "kind": "gauge",
            "time": { "at": "/meta/timestamp" } }));
        // A device logging Unix seconds in its first column: a number, but the time, not a reading.
        let got = s.extract(&event(
            json!({ "Epoch": "1756728060", "Voltage": "52.0", "Note": "7" }),
            json!({ "timestamp": "1756728060", "columns": ["Epoch", "Voltage", "Note"] }),
        ));
        let got: Vec<(&str, Option<f64>, i64)> = got.iter().map(|r| (r.name.as_str(), r.value, r.ms)).collect();
        assert_eq!(got, [("ferienhaus / Voltage", Some(52.0), 1_756_728_060_000)]);
    }

    #[test]
    fn malformed_blocks_are_refused_with_what_is_wrong() {
        let err = |block: Value| ReadingsSpec::parse(&block).unwrap_err().to_string();
        assert_eq!(
            err(json!({ "series": ["/a"], "kind": "gauge" })),
            "exactly one of `value` and `each-member` must say where the value is"
        );
        assert_eq!(
            err(json!({ "series": ["/a"], "value": "data/v", "kind": "gauge" })),
            "`value`: \"data/v\" is not a JSON pointer (it must start with '/')"
        );
        assert_eq!(
            err(json!({ "series": ["/a"], "value": "/v" })),
            "`kind` is required unless the block only says `image: true`"
        );
        assert_eq!(
            err(json!({ "series": ["*"], "value": "/v", "kind": "gauge" })),
            "`series`: the part \"*\" (the member's name) needs `each-member`"
        );
        assert!(
            err(json!({ "series": ["/a"], "value": "/v", "kind": "meter" })).starts_with("unknown variant `meter`")
        );
        assert!(ReadingsSpec::parse(&json!({ "image": true })).unwrap().series.is_none());
    }
}
