//! The management API's parameter types that take only some values, so the document says
//! which: a point in time (RFC 3339 or Unix milliseconds, with its pattern), the event and
//! log statuses (enums). A value outside them is refused by poem-openapi with a 400 naming the parameter.

use std::borrow::Cow;

use poem_openapi::Enum;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde_json::Value;

use crate::event::parse_time;
use crate::store::journal::Status;

/// What a time parameter admits: Unix milliseconds, or an RFC 3339 date and time with its
/// offset (`Z` or `±hh:mm`).
pub const TIME_PATTERN: &str = "^(-?[0-9]{1,15}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])\
                                T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?\
                                (Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$";

/// A point in time, as Unix milliseconds; written as RFC 3339 or Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(pub i64);

impl Type for Time {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("string");
        schema.description = Some("RFC 3339 (`2026-11-29T12:00:00Z`) or Unix milliseconds");
        schema.pattern = Some(TIME_PATTERN.to_owned());
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromParameter for Time {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        parse_time(value).map(Time).map_err(ParseError::custom)
    }
}

impl ParseFromJSON for Time {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(text) => Self::parse_from_parameter(&text),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Time {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.to_string()))
    }
}

/// What became of an event.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum EventStatus {
    Processed,
    Failed,
    Duplicate,
    Superseded,
}

impl From<EventStatus> for Status {
    fn from(s: EventStatus) -> Self {
        match s {
            EventStatus::Processed => Status::Processed,
            EventStatus::Failed => Status::Failed,
            EventStatus::Duplicate => Status::Duplicate,
            EventStatus::Superseded => Status::Superseded,
        }
    }
}

/// A line of the log: what became of an event, or a refused request.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum LogStatus {
    Processed,
    Failed,
    Duplicate,
    Superseded,
    Rejected,
}

impl LogStatus {
    /// The event status it selects (none for `rejected`).
    pub fn event(self) -> Option<Status> {
        match self {
            LogStatus::Processed => Some(Status::Processed),
            LogStatus::Failed => Some(Status::Failed),
            LogStatus::Duplicate => Some(Status::Duplicate),
            LogStatus::Superseded => Some(Status::Superseded),
            LogStatus::Rejected => None,
        }
    }
}

/// The events a replay may select.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum ReplayStatus {
    Processed,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_rfc3339_or_unix_milliseconds() {
        assert_eq!(Time::parse_from_parameter("1795910400000").ok(), Some(Time(1_795_910_400_000)));
        assert_eq!(Time::parse_from_parameter("2026-11-29T00:00:00Z").ok(), Some(Time(1_795_910_400_000)));
        assert!(Time::parse_from_parameter("yesterday").is_err());
        let pattern = serde_json::json!({ "type": "string", "pattern": TIME_PATTERN });
        for admitted in ["0", "-5", "2026-11-29T00:00:00Z", "2026-11-29T01:00:00.5+01:00"] {
            assert!(jsonschema::is_valid(&pattern, &admitted.into()), "{admitted}");
            assert!(Time::parse_from_parameter(admitted).is_ok(), "{admitted}");
        }
        assert!(!jsonschema::is_valid(&pattern, &"2026-11-29 00:00:00".into()));
    }
}
