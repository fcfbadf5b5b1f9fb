//! Validating a verified request and splitting it into Events, as its spec's blocks say.
//!
//! Pure: works on bytes already read and verified; the receive time comes in with `origin`.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::event::{Event, Origin};
use crate::form::Form;
use crate::spec::OperationSpec;
use crate::spec::ext::Split;

/// The verified parts of a request.
pub struct Input<'a> {
    pub body: Bytes,
    pub form: Option<&'a Form>,
    pub query: &'a [(String, String)],
    pub content_type: Option<&'a str>,
}

/// Events, plus the unknown discriminator value when the body had one.
pub struct Parsed {
    pub events: Vec<Event>,
    pub unknown_type: Option<String>,
}

/// Validates `input` against `op` and splits it; `Err` lists every violation.
pub fn split(op: &OperationSpec, origin: &Origin, input: Input<'_>) -> Result<Parsed, Vec<String>> {
    let query = validate_query(op, input.query)?;
    match &op.split {
        Split::Whole | Split::EachElement | Split::OneOrMany => json_events(op, origin, &input.body, query),
        Split::CsvRows { field } => csv_events(op, origin, input.form, field, query),
        Split::Blob { magic } => blob_event(origin, input.body, magic.as_deref(), query, input.content_type),
    }
}

/// Refuses the request when any event's time lies outside the operation's freshness window
/// (`x-hookyard-freshness`) around `received_ms`: an old capture replayed after its key left
/// the dedup window must not be processed again.
pub fn check_freshness(op: &OperationSpec, events: &[Event], received_ms: i64) -> Result<(), Vec<String>> {
    let Some(rule) = &op.freshness else { return Ok(()) };
    let mut problems: Vec<String> = Vec::new();
    for problem in events.iter().filter_map(|e| e.check_freshness(rule, received_ms).err()) {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

fn validate_query(op: &OperationSpec, query: &[(String, String)]) -> Result<Map<String, Value>, Vec<String>> {
    let mut meta = Map::new();
    let mut problems = Vec::new();
    for param in &op.query {
        match query.iter().find(|(k, _)| *k == param.name) {
            None if param.required => problems.push(format!("query parameter {}: required", param.name)),
            None => {}
            Some((_, v)) => {
                let value = Value::String(v.clone());
                for p in param.check.validate(&value).violations {
                    let detail = p.strip_prefix("/: ").unwrap_or(&p);
                    problems.push(format!("query parameter {}: {detail}", param.name));
                }
                meta.insert(param.name.clone(), value);
            }
        }
    }
    if problems.is_empty() { Ok(meta) } else { Err(problems) }
}

fn json_events(
    op: &OperationSpec,
    origin: &Origin,
    body: &[u8],
    meta: Map<String, Value>,
) -> Result<Parsed, Vec<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(vec!["body: empty (a JSON document is required)".into()]);
    }
    let value: Value = super::json::parse(body).map_err(|e| vec![format!("body: not valid JSON ({e})")])?;
    let mut unknown_type = None;
    if let Some(check) = &op.body_check {
        let verdict = check.validate(&value);
        if !verdict.violations.is_empty() {
            return Err(verdict.violations);
        }
        unknown_type = verdict.unknown_type;
    }
    let items = match (&op.split, value) {
        (Split::EachElement, Value::Array(items)) | (Split::OneOrMany, Value::Array(items)) => items,
        (Split::EachElement, _) => return Err(vec!["/: must be a JSON array".into()]),
        (_, single) => vec![single],
    };
    let at = origin.received_at();
    let events = items.into_iter().enumerate().map(|(i, data)| origin.event_at(&at, i, data, meta.clone())).collect();
    Ok(Parsed { events, unknown_type })
}

fn csv_events(
    op: &OperationSpec,
    origin: &Origin,
    form: Option<&Form>,
    field: &str,
    mut meta: Map<String, Value>,
) -> Result<Parsed, Vec<String>> {
    let form = form.ok_or_else(|| vec!["body: not a form".to_string()])?;
    if let Some(check) = &op.body_check {
        let verdict = check.validate(&form.to_json());
        if !verdict.violations.is_empty() {
            return Err(verdict.violations);
        }
    }
    let text = form.get(field).ok_or_else(|| vec![format!("/{field}: required")])?;
    let mut rows = parse_csv(text).map_err(|e| vec![format!("/{field}: {e}")])?.into_iter();
    let header = rows.next().ok_or_else(|| vec![format!("/{field}: no header row")])?;
    meta.insert("columns".into(), Value::Array(header.iter().cloned().map(Value::String).collect()));
    let at = origin.received_at();
    let events = rows
        .enumerate()
        .map(|(i, row)| {
            let mut meta = meta.clone();
            meta.insert("timestamp".into(), Value::String(row[0].clone()));
            let data: Map<String, Value> = header.iter().cloned().zip(row.into_iter().map(Value::String)).collect();
            origin.event_at(&at, i, Value::Object(data), meta)
        })
        .collect();
    Ok(Parsed { events, unknown_type: None })
}

/// Parses CSV with a header row; every row must have the header's number of fields.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut rows: Vec<Vec<String>> = Vec::new();
    // One record read into again and again: no allocation of its own per row.
    let mut record = csv::StringRecord::new();
    for n in 0.. {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(format!("CSV row {} is malformed ({e})", n + 1)),
        }
        let row: Vec<String> = record.iter().map(str::to_owned).collect();
        if let Some(header) = rows.first()
            && row.len() != header.len()
        {
            return Err(format!("CSV row {} has {} fields, the header has {}", n + 1, row.len(), header.len()));
        }
        rows.push(row);
    }
    if let Some(header) = rows.first() {
        if header.iter().any(|h| h.trim().is_empty()) {
            return Err("the CSV header has an empty column name".into());
        }
        let mut names: Vec<&String> = header.iter().collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("the CSV header names a column twice".into());
        }
    }
    Ok(rows)
}

fn blob_event(
    origin: &Origin,
    body: Bytes,
    magic: Option<&str>,
    mut meta: Map<String, Value>,
    content_type: Option<&str>,
) -> Result<Parsed, Vec<String>> {
    if body.is_empty() {
        return Err(vec!["body: empty (binary content is required)".into()]);
    }
    if let Some(prefix) = magic.and_then(|m| hex::decode(m).ok())
        && !body.starts_with(&prefix)
    {
        return Err(vec![format!(
            "body: does not start with the bytes {} this upload must have",
            magic.unwrap_or_default()
        )]);
    }
    meta.insert("size".into(), Value::from(body.len()));
    meta.insert("sha256".into(), Value::String(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))));
    meta.insert("content_type".into(), Value::String(content_type.unwrap_or_default().to_owned()));
    let mut event = origin.event(0, Value::Object(Map::new()), meta);
    event.blob = Some(body);
    Ok(Parsed { events: vec![event], unknown_type: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_must_match_the_header() {
        assert_eq!(parse_csv("t,V\r\n1,2\r\n").unwrap(), vec![vec!["t", "V"], vec!["1", "2"]]);
        assert_eq!(parse_csv("t,V\n1,2,3\n").unwrap_err(), "CSV row 2 has 3 fields, the header has 2");
        assert!(parse_csv("t,t\n1,2\n").is_err());
        assert!(parse_csv("").unwrap().is_empty());
    }
}
