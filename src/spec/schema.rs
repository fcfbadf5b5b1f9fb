//! Request validators built from a spec's OpenAPI 3.0 schemas (JSON Schema underneath).
//!
//! OpenAPI 3.0 schemas are turned into JSON Schema (draft 4 plus formats) by rewriting
//! `nullable`, and validated with the `jsonschema` crate with format checks on. A `oneOf`
//! with a `discriminator` mapping is validated against the one mapped schema, so errors name
//! the real field (`/data/gatewayID: required`) instead of "matches none of oneOf".
//! Pure: no I/O, no clock.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};

/// A schema could not be turned into a validator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// One compiled schema, or a discriminated family of them.
pub enum Check {
    Single(jsonschema::Validator),
    Discriminated {
        property: String,
        /// Values mapped to the same schema share its validator.
        mapping: HashMap<String, Arc<jsonschema::Validator>>,
        /// For values the mapping lacks; `None` rejects them.
        fallback: Option<jsonschema::Validator>,
    },
}

/// The outcome of validating one instance.
pub struct Verdict {
    pub violations: Vec<String>,
    /// Set when the discriminator value was not in the mapping (and the fallback accepted).
    pub unknown_type: Option<String>,
}

impl Check {
    /// Builds a check for `schema` (which may `$ref` into `components`) of a document.
    pub fn build(schema: &Value, components: &Value, unknown: Option<&str>) -> Result<Self, SchemaError> {
        let resolved = resolve_ref(schema, components);
        if let Some((property, mapping)) = discriminator(resolved) {
            let mut by_target: HashMap<&Value, Arc<jsonschema::Validator>> = HashMap::new();
            let mut compiled = HashMap::new();
            for (value, target) in &mapping {
                let validator = match by_target.get(target) {
                    Some(v) => v.clone(),
                    None => {
                        let v = Arc::new(compile(&json!({"$ref": target}), components)?);
                        by_target.insert(target, v.clone());
                        v
                    }
                };
                compiled.insert(value.clone(), validator);
            }
            let fallback = unknown.map(|r| compile(&json!({"$ref": r}), components)).transpose()?;
            return Ok(Check::Discriminated { property, mapping: compiled, fallback });
        }
        Ok(Check::Single(compile(schema, components)?))
    }

    pub fn validate(&self, instance: &Value) -> Verdict {
        match self {
            Check::Single(v) => Verdict { violations: violations(v, instance), unknown_type: None },
            Check::Discriminated { property, mapping, fallback } => {
                let Some(kind) = instance.get(property).and_then(Value::as_str) else {
                    let msg = match instance.get(property) {
                        None if instance.is_object() => format!("/{property}: required"),
                        None => format!("/: {} is not of type \"object\"", short(instance)),
                        Some(v) => format!("/{property}: {} is not of type \"string\"", short(v)),
                    };
                    return Verdict { violations: vec![msg], unknown_type: None };
                };
                match (mapping.get(kind), fallback) {
                    (Some(v), _) => Verdict { violations: violations(v, instance), unknown_type: None },
                    (None, Some(v)) => {
                        Verdict { violations: violations(v, instance), unknown_type: Some(kind.to_owned()) }
                    }
                    (None, None) => {
                        Verdict { violations: vec![format!("/{property}: unknown value {kind:?}")], unknown_type: None }
                    }
                }
            }
        }
    }
}

/// Every violation once, in the validator's order. The same one can be reported from two
/// places that are not next to each other: under `allOf`, gridX's envelope and the
/// type-specific schema both require `data` to be an object, with the envelope's other
/// errors in between.
fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    let errors: Vec<jsonschema::ValidationError<'_>> = validator.iter_errors(instance).collect();
    let mut out: Vec<String> = Vec::new();
    for error in errors.iter().filter(|e| !narrowed(e, &errors)) {
        for message in describe(error) {
            if !out.contains(&message) {
                out.push(message);
            }
        }
    }
    out
}

/// An `enum` violation that another one at the same path narrows (its options a strict
/// subset): under `allOf`, a gridX per-type path allows one of the values its type schema
/// lists, and "not one of appliance/create" says all that "not one of the five" says.
fn narrowed(error: &jsonschema::ValidationError<'_>, all: &[jsonschema::ValidationError<'_>]) -> bool {
    let ValidationErrorKind::Enum { options } = error.kind() else { return false };
    let Some(wide) = options.as_array() else { return false };
    all.iter().any(|other| match other.kind() {
        ValidationErrorKind::Enum { options } if other.instance_path().as_str() == error.instance_path().as_str() => {
            options
                .as_array()
                .is_some_and(|narrow| narrow.len() < wide.len() && narrow.iter().all(|v| wide.contains(v)))
        }
        _ => false,
    })
}

/// `"/data/gatewayID: required"`, `"/type: \"x\" is not one of [...]"`. A failed `oneOf` or
/// `anyOf` is described by the branch that fits best: one whose type matches the instance,
/// with the fewest errors.
fn describe(error: &jsonschema::ValidationError<'_>) -> Vec<String> {
    let path = error.instance_path().as_str();
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map(str::to_owned).unwrap_or_else(|| property.to_string());
            return vec![format!("{path}/{}: required", escape_pointer(&name))];
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            let fits = |branch: &&Vec<jsonschema::ValidationError<'static>>| {
                !branch
                    .iter()
                    .any(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }) && e.instance_path().as_str() == path)
            };
            if let Some(best) = context.iter().filter(fits).min_by_key(|b| b.len()) {
                return best.iter().flat_map(|e| describe(e)).collect();
            }
        }
        _ => {}
    }
    vec![plain(error)]
}

fn plain(error: &jsonschema::ValidationError<'_>) -> String {
    let path = error.instance_path().as_str();
    let path = if path.is_empty() { "/" } else { path };
    let mut message = error.to_string();
    if message.len() > 300 {
        let cut = message.floor_char_boundary(300);
        message.truncate(cut);
        message.push('…');
    }
    format!("{path}: {message}")
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 60 { format!("{}…", &text[..text.floor_char_boundary(60)]) } else { text }
}

/// The validator's root: the schema under `allOf` and the document's schemas under
/// `definitions` (with every `#/components/schemas/` reference pointed there). Not under
/// `components`: the validator keeps a copy of every keyword it does not know as an
/// annotation, which made each validator hold the whole document (9 MB for gridX's 20).
fn compile(schema: &Value, components: &Value) -> Result<jsonschema::Validator, SchemaError> {
    let mut root = Map::new();
    root.insert("allOf".into(), Value::Array(vec![openapi_to_json_schema(schema)]));
    if let Some(schemas) = components.get("schemas") {
        root.insert("definitions".into(), openapi_to_json_schema(schemas));
    }
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .with_format("uuid", is_uuid)
        .build(&Value::Object(root))
        .map_err(|e| SchemaError(format!("invalid schema: {e}")))
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn resolve_ref<'a>(schema: &'a Value, components: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/")) {
        Some(pointer) => components.pointer(&format!("/{pointer}")).unwrap_or(schema),
        None => schema,
    }
}

fn discriminator(schema: &Value) -> Option<(String, Map<String, Value>)> {
    let d = schema.get("discriminator")?;
    let property = d.get("propertyName")?.as_str()?.to_owned();
    let mapping = d.get("mapping")?.as_object()?.clone();
    Some((property, mapping))
}

/// Rewrites OpenAPI 3.0 `nullable: true` into JSON Schema type unions and
/// `#/components/schemas/` references into `#/definitions/` ones, recursively.
pub fn openapi_to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map.iter().map(|(k, v)| (k.clone(), openapi_to_json_schema(v))).collect();
            if out.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            if let Some(Value::String(target)) = out.get_mut("$ref")
                && let Some(rest) = target.strip_prefix("#/components/schemas/")
            {
                *target = format!("#/definitions/{rest}");
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(openapi_to_json_schema).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components() -> Value {
        json!({"schemas": {
            "Base": {"type": "object", "required": ["id", "type", "data"],
                     "properties": {"id": {"type": "string", "format": "uuid"},
                                    "type": {"type": "string"}, "data": {"type": "object"}}},
            "Ping": {"allOf": [{"$ref": "#/components/schemas/Base"},
                      {"properties": {"type": {"enum": ["ping"]},
                                      "data": {"type": "object", "required": ["message"],
                                               "properties": {"message": {"type": "string", "nullable": true}}}}}]},
            "Any": {"oneOf": [{"$ref": "#/components/schemas/Ping"}],
                    "discriminator": {"propertyName": "type", "mapping": {"ping": "#/components/schemas/Ping"}}}
        }})
    }

    fn check() -> Check {
        let c = components();
        Check::build(&json!({"$ref": "#/components/schemas/Any"}), &c, Some("#/components/schemas/Base")).unwrap()
    }

    #[test]
    fn names_the_missing_field_with_its_path() {
        let v = check().validate(&json!({"id": "8bb71fef-9cb5-4054-89c3-d4aeac5489a7", "type": "ping", "data": {}}));
        assert_eq!(v.violations, vec!["/data/message: required"]);
    }

    #[test]
    fn bad_uuid_and_nullable_are_handled() {
        let v = check().validate(&json!({"id": "nope", "type": "ping", "data": {"message": null}}));
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert!(v.violations[0].starts_with("/id: "), "{:?}", v.violations);
    }

    #[test]
    fn values_mapped_to_one_schema_share_its_validator() {
        let mut c = components();
        c["schemas"]["Any"]["discriminator"]["mapping"]["pong"] = json!("#/components/schemas/Ping");
        let check = Check::build(&json!({"$ref": "#/components/schemas/Any"}), &c, None).unwrap();
        let Check::Discriminated { mapping, .. } = &check else { panic!("not discriminated") };
        assert!(Arc::ptr_eq(&mapping["ping"], &mapping["pong"]));
        let v = check.validate(&json!({"id": "8bb71fef-9cb5-4054-89c3-d4aeac5489a7", "type": "pong", "data": {}}));
        assert_eq!(v.violations, vec!["/data/message: required", "/type: \"pong\" is not one of \"ping\""]);
    }

    #[test]
    fn references_into_components_resolve_under_definitions() {
        let converted = openapi_to_json_schema(&json!({"$ref": "#/components/schemas/Ping/properties/data"}));
        assert_eq!(converted, json!({"$ref": "#/definitions/Ping/properties/data"}));
        let check = Check::build(&json!({"$ref": "#/components/schemas/Ping"}), &components(), None).unwrap();
        let v = check
            .validate(&json!({"id": "8bb71fef-9cb5-4054-89c3-d4aeac5489a7", "type": "ping", "data": {"message": 3}}));
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert!(v.violations[0].starts_with("/data/message: "), "{:?}", v.violations);
    }

    #[test]
    fn a_violation_reported_by_two_schemas_is_listed_once() {
        // Base and Ping both say `data` is an object; Base's `id` error comes between them.
        let v = check().validate(&json!({"id": "nope", "type": "ping", "data": "x"}));
        assert_eq!(v.violations, vec![r#"/data: "x" is not of type "object""#, r#"/id: "nope" is not a "uuid""#]);
    }

    #[test]
    fn an_enum_narrowed_by_another_schema_is_reported_by_the_narrower_one() {
        let schema = json!({"allOf": [{"properties": {"type": {"enum": ["a", "b", "c"]}}},
                                      {"properties": {"type": {"enum": ["a"]}}}]});
        let check = Check::build(&schema, &json!({}), None).unwrap();
        assert_eq!(check.validate(&json!({"type": "z"})).violations, vec![r#"/type: "z" is not one of "a""#]);
        assert_eq!(check.validate(&json!({"type": "b"})).violations, vec![r#"/type: "b" is not one of "a""#]);
    }

    #[test]
    fn unknown_discriminator_values_fall_back_to_the_envelope() {
        let ok = json!({"id": "8bb71fef-9cb5-4054-89c3-d4aeac5489a7", "type": "new/thing", "data": {}});
        let v = check().validate(&ok);
        assert!(v.violations.is_empty());
        assert_eq!(v.unknown_type.as_deref(), Some("new/thing"));
        let v = check().validate(&json!({"data": {}}));
        assert_eq!(v.violations, vec!["/type: required"]);
    }
}
