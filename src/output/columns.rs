//! Declared column types, names, and script values converted for their columns.
//!
//! No I/O: this is what `sql_insert` checks while the script runs and what the SQL output
//! converts before it writes.

use std::str::FromStr;

use serde_json::Value;
use time::OffsetDateTime;

/// A column type, a name or a value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    #[error("unknown column type {0:?} (use text, integer, real, boolean, json or timestamp)")]
    Type(String),
    #[error("{0:?} is not a usable name (letters, digits, _; not hookyard_…)")]
    Name(String),
    /// A script value that does not fit its column (`expected` says what would).
    #[error("{value} is not {expected}")]
    Value { value: Value, expected: &'static str },
}

/// A declared column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Integer,
    Real,
    Boolean,
    Json,
    Timestamp,
}

impl FromStr for ColumnType {
    type Err = ColumnError;
    fn from_str(s: &str) -> Result<Self, ColumnError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "text" => Self::Text,
            "integer" => Self::Integer,
            "real" => Self::Real,
            "boolean" => Self::Boolean,
            "json" => Self::Json,
            "timestamp" => Self::Timestamp,
            other => return Err(ColumnError::Type(other.to_owned())),
        })
    }
}

/// A value converted for its column.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    Json(Value),
    Time(OffsetDateTime),
}

impl ColumnType {
    pub(super) fn sqlite(self) -> &'static str {
        match self {
            Self::Text | Self::Json | Self::Timestamp => "TEXT",
            Self::Integer | Self::Boolean => "INTEGER",
            Self::Real => "REAL",
        }
    }

    pub(super) fn postgres(self) -> &'static str {
        match self {
            Self::Text => "TEXT",
            Self::Integer => "BIGINT",
            Self::Real => "DOUBLE PRECISION",
            Self::Boolean => "BOOLEAN",
            Self::Json => "JSONB",
            Self::Timestamp => "TIMESTAMPTZ",
        }
    }

    /// Converts a script value for this column. Numbers given as text (as meters send them)
    /// are accepted; an empty text is NULL for every type but `text`.
    pub fn convert(self, value: &Value) -> Result<SqlValue, ColumnError> {
        let blank = matches!(value, Value::String(s) if s.trim().is_empty());
        if value.is_null() || (blank && self != Self::Text) {
            return Ok(SqlValue::Null);
        }
        let refuse = |expected| ColumnError::Value { value: value.clone(), expected };
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            other => other.to_string(),
        };
        match self {
            Self::Text => Ok(SqlValue::Text(match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })),
            Self::Json => Ok(SqlValue::Json(value.clone())),
            Self::Integer => match text.parse::<i64>() {
                Ok(n) => Ok(SqlValue::Int(n)),
                Err(_) => match text.parse::<f64>() {
                    Ok(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(SqlValue::Int(f as i64)),
                    _ => Err(refuse("an integer")),
                },
            },
            Self::Real => {
                text.parse::<f64>().ok().filter(|f| f.is_finite()).map(SqlValue::Real).ok_or_else(|| refuse("a number"))
            }
            Self::Boolean => match text.as_str() {
                "true" | "1" => Ok(SqlValue::Bool(true)),
                "false" | "0" => Ok(SqlValue::Bool(false)),
                _ => Err(refuse("a boolean")),
            },
            Self::Timestamp => parse_time(&text)
                .map(SqlValue::Time)
                .ok_or_else(|| refuse("a time (RFC 3339 text, or seconds/milliseconds since 1970)")),
        }
    }
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    if let Ok(n) = text.parse::<f64>() {
        // `NaN` and `inf` parse as numbers too: they are not times (NaN would be 1970).
        let ms = if n.abs() >= 1e11 { n } else { n * 1000.0 };
        let nanos = ms.is_finite().then(|| (ms as i128).checked_mul(1_000_000)).flatten()?;
        return OffsetDateTime::from_unix_timestamp_nanos(nanos).ok();
    }
    OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| OffsetDateTime::parse(text, &Iso8601::DEFAULT).ok())
}

/// Table and column names: letters, digits and `_`, not starting with a digit, ≤ 63 bytes.
pub fn check_identifier(name: &str) -> Result<(), ColumnError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.to_ascii_lowercase().starts_with("hookyard_");
    if ok { Ok(()) } else { Err(ColumnError::Name(name.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meter_values_given_as_text_convert() {
        assert_eq!(ColumnType::Real.convert(&json!("123.456")).unwrap(), SqlValue::Real(123.456));
        assert_eq!(ColumnType::Real.convert(&json!("")).unwrap(), SqlValue::Null);
        assert_eq!(ColumnType::Integer.convert(&json!("1725194400")).unwrap(), SqlValue::Int(1_725_194_400));
        assert_eq!(ColumnType::Text.convert(&json!("")).unwrap(), SqlValue::Text(String::new()));
        let err = ColumnType::Real.convert(&json!("12,5")).unwrap_err();
        assert!(matches!(err, ColumnError::Value { expected: "a number", .. }), "{err}");
        assert_eq!(err.to_string(), r#""12,5" is not a number"#);
        let t = ColumnType::Timestamp.convert(&json!("1725194400")).unwrap();
        assert_eq!(t, SqlValue::Time(OffsetDateTime::from_unix_timestamp(1_725_194_400).unwrap()));
        assert!(matches!(ColumnType::Timestamp.convert(&json!("2024-08-09T11:44:44+02:00")), Ok(SqlValue::Time(_))));
        for not_a_time in ["NaN", "inf", "1e300", "-1e40"] {
            let err = ColumnType::Timestamp.convert(&json!(not_a_time)).unwrap_err();
            assert!(
                err.to_string().ends_with("is not a time (RFC 3339 text, or seconds/milliseconds since 1970)"),
                "{err}"
            );
        }
    }

    #[test]
    fn identifiers_cannot_inject_sql() {
        assert!(check_identifier("readings").is_ok());
        for bad in ["", "1abc", "a b", "a\"b", "x;drop", "hookyard_applied"] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }
}
