//! One operation of a spec: route, building blocks and compiled validators.

use poem::http::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ext::{AuthBlock, BodyKind, Idempotency, ReplySpec, Split, UnknownType};
use super::schema::Check;

const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

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
    pub idempotency: Vec<String>,
    /// Validator of the JSON body, or of the form fields as an object of strings.
    pub body_check: Option<Check>,
    /// Media types the request body may be sent as (lowercase); any when empty.
    pub media_types: Vec<String>,
    pub query: Vec<QueryParam>,
}

/// Builds every operation of `document`, or every problem found.
pub fn build_all(protocol: &str, document: &Value) -> Result<Vec<OperationSpec>, Vec<String>> {
    let components = document.get("components").cloned().unwrap_or_else(|| json!({}));
    let root_reply = document.get("x-hookyard-reply");
    let root_limit = document.get("x-hookyard-body-limit");
    let mut ops = Vec::new();
    let mut errors = Vec::new();
    let Some(paths) = document.get("paths").and_then(Value::as_object) else {
        return Err(vec!["no `paths` object".into()]);
    };
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let ctx = Ctx { protocol, path, method, item, op, components: &components, root_reply, root_limit };
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
}

impl Ctx<'_> {
    fn build(&self) -> Result<OperationSpec, String> {
        if !self.path.starts_with('/') || self.path.contains('{') {
            return Err("paths must be literal and start with '/' (path parameters are not supported)".into());
        }
        let operation_id = self.op.get("operationId").and_then(Value::as_str).ok_or("missing operationId")?;
        let auth: Vec<AuthBlock> = ext(self.op.get("x-hookyard-auth"), "x-hookyard-auth")?.unwrap_or_default();
        let split: Split =
            ext(self.op.get("x-hookyard-events"), "x-hookyard-events")?.ok_or("missing x-hookyard-events")?;
        let reply: ReplySpec = ext(self.op.get("x-hookyard-reply").or(self.root_reply), "x-hookyard-reply")?
            .ok_or("missing x-hookyard-reply (on the operation or the document)")?;
        let body_limit: Option<usize> =
            ext(self.op.get("x-hookyard-body-limit").or(self.root_limit), "x-hookyard-body-limit")?;
        let idempotency: Option<Idempotency> = ext(self.op.get("x-hookyard-idempotency"), "x-hookyard-idempotency")?;
        let unknown: Option<UnknownType> = ext(self.op.get("x-hookyard-unknown-type"), "x-hookyard-unknown-type")?;
        let body_check = self.body_check(split.body_kind(), unknown.as_ref().map(|u| u.schema.as_str()))?;
        Ok(OperationSpec {
            protocol: self.protocol.to_owned(),
            path: self.path.to_owned(),
            method: self.method.to_uppercase().parse().map_err(|_| "bad method")?,
            operation_id: operation_id.to_owned(),
            auth,
            split,
            reply,
            body_limit: body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
            idempotency: idempotency.map(|i| i.key).unwrap_or_default(),
            body_check,
            media_types: self.media_types(),
            query: self.query_params()?,
        })
    }

    fn body_check(&self, kind: BodyKind, unknown: Option<&str>) -> Result<Option<Check>, String> {
        let Some(content) = self.request_body().and_then(|b| b.get("content")).and_then(Value::as_object) else {
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
        Check::build(schema, self.components, unknown).map(Some).map_err(|e| e.0)
    }

    fn media_types(&self) -> Vec<String> {
        let content = self.request_body().and_then(|b| b.get("content")).and_then(Value::as_object);
        content.map(|c| c.keys().map(|k| k.to_ascii_lowercase()).collect()).unwrap_or_default()
    }

    fn request_body(&self) -> Option<&Value> {
        let body = self.op.get("requestBody")?;
        match body.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/")) {
            Some(pointer) => self.components.pointer(&format!("/{pointer}")),
            None => Some(body),
        }
    }

    fn query_params(&self) -> Result<Vec<QueryParam>, String> {
        let declared = [self.item.get("parameters"), self.op.get("parameters")];
        let mut out = Vec::new();
        for param in declared.into_iter().flatten().filter_map(Value::as_array).flatten() {
            let param = match param.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/")) {
                Some(pointer) => self.components.pointer(&format!("/{pointer}")).ok_or("unresolved parameter $ref")?,
                None => param,
            };
            if param.get("in").and_then(Value::as_str) != Some("query") {
                continue;
            }
            let name = param.get("name").and_then(Value::as_str).ok_or("query parameter without a name")?;
            let schema = param.get("schema").cloned().unwrap_or_else(|| json!({}));
            out.push(QueryParam {
                name: name.to_owned(),
                required: param.get("required").and_then(Value::as_bool).unwrap_or(false),
                check: Check::build(&schema, self.components, None).map_err(|e| e.0)?,
            });
        }
        Ok(out)
    }
}

fn ext<T: DeserializeOwned>(value: Option<&Value>, name: &str) -> Result<Option<T>, String> {
    value.map(|v| serde_json::from_value(v.clone()).map_err(|e| format!("{name}: {e}"))).transpose()
}
