//! One operation of a spec: route, building blocks and compiled validators.

use poem::http::Method;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::ext::{AuthBlock, BodyKind, Freshness, Idempotency, ReplySpec, SchemePolicy, Split, UnknownType};
use super::readings::{ReadingsError, ReadingsSpec};
use super::schema::{Check, SchemaError};

const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// Why one operation of a spec cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("paths must be literal and start with '/' (path parameters are not supported)")]
    Path,
    /// A member the operation (or the document) must have.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An `x-hookyard-…` extension that does not say what it must.
    #[error("{name}: {source}")]
    Extension { name: &'static str, source: serde_json::Error },
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error("bad method")]
    Method,
    /// A `$ref` that does not point into the document's `components`.
    #[error("unresolved $ref {0:?}")]
    Ref(String),
    /// A member of the wrong JSON type (it would otherwise be skipped unseen).
    #[error("{0} must be {1}")]
    Shape(&'static str, &'static str),
    #[error("query parameter without a name")]
    ParameterName,
    #[error("query parameter {0}: `required` must be true or false")]
    ParameterRequired(String),
    #[error("x-hookyard-readings: {0}")]
    Readings(#[from] ReadingsError),
}

/// A query parameter the operation declares.
pub struct QueryParam {
    pub name: String,
    pub required: bool,
    pub check: Check,
}

/// Everything the server needs to serve one operation.
pub struct OperationSpec {
    pub protocol: String,
    pub path: String,
    pub method: Method,
    pub operation_id: String,
    pub auth: Vec<AuthBlock>,
    pub split: Split,
    pub reply: ReplySpec,
    pub body_limit: usize,
    pub idempotency: Idempotency,
    /// How old an event may be (`x-hookyard-freshness`); any age when absent.
    pub freshness: Option<Freshness>,
    /// Validator of the JSON body, or of the form fields as an object of strings.
    pub body_check: Option<Check>,
    /// Media types the request body may be sent as (lowercase); any when empty.
    pub media_types: Vec<String>,
    pub query: Vec<QueryParam>,
    /// `x-hookyard-scheme` (operation, else document; default `any`).
    pub scheme: SchemePolicy,
    /// Which event fields make meter readings (`x-hookyard-readings`); none when absent.
    pub readings: Option<ReadingsSpec>,
    /// Which version of its spec document this is: the first 16 hex digits of the SHA-256
    /// of the document's text. The journal records it per request (a body's split into
    /// events is the same for the same version).
    pub digest: String,
}

/// Builds every operation of `document`, or every problem found.
pub fn build_all(protocol: &str, document: &Value) -> Result<Vec<OperationSpec>, Vec<String>> {
    let components = document.get("components").cloned().unwrap_or_else(|| json!({}));
    let root_reply = document.get("x-hookyard-reply");
    let root_limit = document.get("x-hookyard-body-limit");
    let root_scheme = document.get("x-hookyard-scheme");
    let mut ops = Vec::new();
    let mut errors = Vec::new();
    let Some(paths) = document.get("paths").and_then(Value::as_object) else {
        return Err(vec!["no `paths` object".into()]);
    };
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let ctx =
                Ctx { protocol, path, method, item, op, components: &components, root_reply, root_limit, root_scheme };
            match ctx.build() {
                Ok(spec) => ops.push(spec),
                Err(e) => errors.push(format!("{} {path}: {e}", method.to_uppercase())),
            }
        }
    }
    if errors.is_empty() { Ok(ops) } else { Err(errors) }
}

struct Ctx<'a> {
    protocol: &'a str,
    path: &'a str,
    method: &'a str,
    item: &'a Value,
    op: &'a Value,
    components: &'a Value,
    root_reply: Option<&'a Value>,
    root_limit: Option<&'a Value>,
    root_scheme: Option<&'a Value>,
}

impl Ctx<'_> {
    fn build(&self) -> Result<OperationSpec, OperationError> {
        if !self.path.starts_with('/') || self.path.contains('{') {
            return Err(OperationError::Path);
        }
        let operation_id =
            self.op.get("operationId").and_then(Value::as_str).ok_or(OperationError::Missing("operationId"))?;
        let auth: Vec<AuthBlock> = ext(self.op.get("x-hookyard-auth"), "x-hookyard-auth")?.unwrap_or_default();
        let split: Split = ext(self.op.get("x-hookyard-events"), "x-hookyard-events")?
            .ok_or(OperationError::Missing("x-hookyard-events"))?;
        let reply: ReplySpec = ext(self.op.get("x-hookyard-reply").or(self.root_reply), "x-hookyard-reply")?
            .ok_or(OperationError::Missing("x-hookyard-reply (on the operation or the document)"))?;
        let body_limit: Option<usize> =
            ext(self.op.get("x-hookyard-body-limit").or(self.root_limit), "x-hookyard-body-limit")?;
        let idempotency: Option<Idempotency> = ext(self.op.get("x-hookyard-idempotency"), "x-hookyard-idempotency")?;
        let freshness: Option<Freshness> = ext(self.op.get("x-hookyard-freshness"), "x-hookyard-freshness")?;
        let unknown: Option<UnknownType> = ext(self.op.get("x-hookyard-unknown-type"), "x-hookyard-unknown-type")?;
        let scheme: Option<SchemePolicy> =
            ext(self.op.get("x-hookyard-scheme").or(self.root_scheme), "x-hookyard-scheme")?;
        let readings = self.op.get("x-hookyard-readings").map(ReadingsSpec::parse).transpose()?;
        let content = self.request_content()?;
        let body_check = self.body_check(content, split.body_kind(), unknown.as_ref().map(|u| u.schema.as_str()))?;
        Ok(OperationSpec {
            protocol: self.protocol.to_owned(),
            path: self.path.to_owned(),
            method: self.method.to_uppercase().parse().map_err(|_| OperationError::Method)?,
            operation_id: operation_id.to_owned(),
            auth,
            split,
            reply,
            body_limit: body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
            idempotency: idempotency.unwrap_or_default(),
            freshness,
            body_check,
            media_types: media_types(content),
            query: self.query_params()?,
            scheme: scheme.unwrap_or_default(),
            readings,
            digest: String::new(),
        })
    }

    fn body_check(
        &self,
        content: Option<&Map<String, Value>>,
        kind: BodyKind,
        unknown: Option<&str>,
    ) -> Result<Option<Check>, OperationError> {
        let Some(content) = content else {
            return Ok(None);
        };
        let wanted = |media: &str| match kind {
            BodyKind::Json => media.contains("json"),
            BodyKind::Form => media == "application/x-www-form-urlencoded" || media == "multipart/form-data",
            BodyKind::Binary => false,
        };
        let Some(schema) = content.iter().find(|(m, _)| wanted(m)).and_then(|(_, c)| c.get("schema")) else {
            return Ok(None);
        };
        Ok(Some(Check::build(schema, self.components, unknown)?))
    }

    /// The request body's `content` map (its `$ref` followed), if the operation has one.
    fn request_content(&self) -> Result<Option<&Map<String, Value>>, OperationError> {
        let Some(body) = self.op.get("requestBody") else {
            return Ok(None);
        };
        match self.resolve(body)?.get("content") {
            None => Ok(None),
            Some(content) => content
                .as_object()
                .map(Some)
                .ok_or(OperationError::Shape("requestBody content", "a map of media types")),
        }
    }

    /// `value` itself, or what its `$ref` points to; a `$ref` that points nowhere is an
    /// error (ignoring it would serve the operation without its schema).
    fn resolve<'v>(&'v self, value: &'v Value) -> Result<&'v Value, OperationError> {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return Ok(value);
        };
        reference
            .strip_prefix("#/components/")
            .and_then(|pointer| self.components.pointer(&format!("/{pointer}")))
            .ok_or_else(|| OperationError::Ref(reference.to_owned()))
    }

    fn query_params(&self) -> Result<Vec<QueryParam>, OperationError> {
        let mut declared = Vec::new();
        for list in [self.item.get("parameters"), self.op.get("parameters")].into_iter().flatten() {
            declared.extend(list.as_array().ok_or(OperationError::Shape("parameters", "a list"))?);
        }
        let mut out = Vec::new();
        for param in declared {
            let param = self.resolve(param)?;
            if param.get("in").and_then(Value::as_str) != Some("query") {
                continue;
            }
            let name = param.get("name").and_then(Value::as_str).ok_or(OperationError::ParameterName)?;
            let schema = param.get("schema").cloned().unwrap_or_else(|| json!({}));
            out.push(QueryParam {
                name: name.to_owned(),
                required: required(param, name)?,
                check: Check::build(&schema, self.components, None)?,
            });
        }
        Ok(out)
    }
}

fn media_types(content: Option<&Map<String, Value>>) -> Vec<String> {
    content.map(|c| c.keys().map(|k| k.to_ascii_lowercase()).collect()).unwrap_or_default()
}

/// A parameter's `required` (absent means false; anything but a boolean is refused).
fn required(param: &Value, name: &str) -> Result<bool, OperationError> {
    match param.get("required") {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| OperationError::ParameterRequired(name.to_owned())),
    }
}

fn ext<T: DeserializeOwned>(value: Option<&Value>, name: &'static str) -> Result<Option<T>, OperationError> {
    value
        .map(|v| serde_json::from_value(v.clone()).map_err(|source| OperationError::Extension { name, source }))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(operation: Value) -> Value {
        json!({
            "x-hookyard-reply": { "style": "text" },
            "paths": { "/acme/push": { "post": operation } },
            "components": { "requestBodies": { "Push": { "content": { "application/json": { "schema": { "type": "object" } } } } } },
        })
    }

    fn operation(extra: Value) -> Value {
        let mut op = json!({ "operationId": "push", "x-hookyard-events": { "split": "whole" } });
        op.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        op
    }

    fn errors(extra: Value) -> Vec<String> {
        build_all("acme", &document(operation(extra))).err().unwrap_or_default()
    }

    #[test]
    fn a_request_body_ref_is_followed_and_one_that_points_nowhere_is_refused() {
        let ops = build_all(
            "acme",
            &document(operation(json!({ "requestBody": { "$ref": "#/components/requestBodies/Push" } }))),
        );
        let ops = ops.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(ops[0].body_check.is_some(), "the schema behind the $ref validates the body");
        assert_eq!(ops[0].media_types, vec!["application/json"]);
        let missing = errors(json!({ "requestBody": { "$ref": "#/components/requestBodies/Gone" } }));
        assert_eq!(missing, vec![r##"POST /acme/push: unresolved $ref "#/components/requestBodies/Gone""##]);
        let shapeless = errors(json!({ "requestBody": { "content": [] } }));
        assert_eq!(shapeless, vec!["POST /acme/push: requestBody content must be a map of media types"]);
        let outside = errors(json!({ "requestBody": { "$ref": "other.yaml#/Push" } }));
        assert_eq!(outside, vec![r#"POST /acme/push: unresolved $ref "other.yaml#/Push""#]);
    }

    #[test]
    fn query_parameters_must_say_plainly_whether_they_are_required() {
        let param =
            |required: Value| json!({ "parameters": [{ "in": "query", "name": "meter", "required": required }] });
        let ops = build_all("acme", &document(operation(param(json!(true))))).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(ops[0].query[0].required);
        assert_eq!(
            errors(param(json!("yes"))),
            vec!["POST /acme/push: query parameter meter: `required` must be true or false"]
        );
        assert_eq!(
            errors(json!({ "parameters": { "meter": {} } })),
            vec!["POST /acme/push: parameters must be a list"]
        );
        let unresolved = json!({ "parameters": [{ "$ref": "#/components/parameters/Meter" }] });
        assert_eq!(errors(unresolved), vec![r##"POST /acme/push: unresolved $ref "#/components/parameters/Meter""##]);
    }

    #[test]
    fn missing_and_malformed_extensions_are_named() {
        let mut op = operation(json!({}));
        op.as_object_mut().unwrap().remove("x-hookyard-events");
        let missing = build_all("acme", &document(op)).err().unwrap_or_default();
        assert_eq!(missing, vec!["POST /acme/push: missing x-hookyard-events"]);
        let malformed = errors(json!({ "x-hookyard-body-limit": "big" }));
        assert!(malformed[0].starts_with("POST /acme/push: x-hookyard-body-limit: invalid type"), "{malformed:?}");
    }
}
