//! Building checkers from spec blocks and the protocol's config table.
//!
//! Config errors name the protocol key and what shape it must have, never its value.

use super::keys::{ApiKeys, HeaderAuth};
use super::{Checker, HmacVerifier, Kind};
use crate::config::ProtocolSettings;
use crate::config::credentials::CredentialKind;
use crate::spec::ext::{AuthBlock, DigestEncoding, HmacAlgorithm};

/// A protocol's settings do not fit what its spec's auth block needs.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AuthConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: &str, message: impl Into<String>) -> AuthConfigError {
    AuthConfigError { key: key.to_owned(), message: message.into() }
}

/// The credential a block needs generated when its config key is missing.
pub fn credential_need(block: &AuthBlock) -> Option<(String, CredentialKind)> {
    match block {
        AuthBlock::ApiKeyHeader { keys, .. } => Some((keys.clone(), CredentialKind::ApiKeyTable)),
        AuthBlock::Hmac { secrets, .. } => Some((secrets.clone(), CredentialKind::SecretList)),
        AuthBlock::ConfiguredAuth { config, .. } => Some((config.clone(), CredentialKind::BearerAuth)),
        _ => None,
    }
}

pub(super) fn build(block: &AuthBlock, s: &ProtocolSettings) -> Result<Checker, AuthConfigError> {
    let (kind, reject) = match block {
        AuthBlock::ApiKeyHeader { header, keys, reject } => {
            (Kind::ApiKey { header: header.clone(), keys: api_keys(s, keys)? }, reject)
        }
        AuthBlock::Hmac { header, prefix, algorithm, encoding, multiple, secrets, reject } => {
            let secrets = string_list(s, secrets)?.ok_or_else(|| bad(secrets, "must be set"))?;
            let v = HmacVerifier {
                header: header.clone(),
                prefix: prefix.clone(),
                algorithm: *algorithm,
                encoding: *encoding,
                multiple: *multiple,
                secrets: secrets.into_iter().map(String::into_bytes).collect(),
            };
            (Kind::Hmac(v), reject)
        }
        AuthBlock::FormChecksum { field, over, required, reject } => {
            let required = match required {
                Some(key) => {
                    s.get(key).map(|v| v.as_bool().ok_or_else(|| bad(key, "must be true or false"))).transpose()?
                }
                None => None,
            };
            (
                Kind::FormChecksum { field: field.clone(), over: over.clone(), required: required.unwrap_or(false) },
                reject,
            )
        }
        AuthBlock::FormSource { field, allowed, reject } => {
            let allowed = allowed.as_deref().map(|k| string_list(s, k)).transpose()?.flatten();
            (Kind::FormSource { field: field.clone(), allowed }, reject)
        }
        AuthBlock::ConfiguredAuth { config, reject } => (Kind::Header(header_auth(s, config)?), reject),
        AuthBlock::ConfiguredIntegrity { config, reject } => (Kind::Integrity(integrity(s, config)?), reject),
    };
    Ok(Checker { kind, reject: reject.clone() })
}

fn api_keys(s: &ProtocolSettings, key: &str) -> Result<ApiKeys, AuthConfigError> {
    let table =
        s.get(key).and_then(|v| v.as_table()).ok_or_else(|| bad(key, "must be a table of \"key\" = \"tenant\""))?;
    let mut pairs = Vec::new();
    for (k, tenant) in table {
        let tenant = tenant.as_str().ok_or_else(|| bad(key, "every tenant must be a string"))?;
        if !is_safe_name(tenant) {
            return Err(bad(
                key,
                format!("tenant {tenant:?} must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'"),
            ));
        }
        if k.is_empty() {
            return Err(bad(key, "an API key must not be empty"));
        }
        pairs.push((k.clone(), tenant.to_owned()));
    }
    Ok(ApiKeys::new(pairs))
}

/// A name that is safe as one path component inside the data directory.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn string_list(s: &ProtocolSettings, key: &str) -> Result<Option<Vec<String>>, AuthConfigError> {
    let Some(value) = s.get(key) else {
        return Ok(None);
    };
    let list = match value {
        toml::Value::String(one) => vec![one.clone()],
        toml::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| bad(key, "must be a list of strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(key, "must be a string or a list of strings")),
    };
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err(bad(key, "must hold at least one non-empty value"));
    }
    Ok(Some(list))
}

fn field<'a>(t: &'a toml::Table, key: &str, name: &str) -> Result<&'a str, AuthConfigError> {
    t.get(name)
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(key, format!("needs a non-empty `{name}`")))
}

fn header_auth(s: &ProtocolSettings, key: &str) -> Result<HeaderAuth, AuthConfigError> {
    let t = s.get(key).and_then(|v| v.as_table()).ok_or_else(|| bad(key, "must be a table with a `type`"))?;
    Ok(match field(t, key, "type")? {
        "none" => HeaderAuth::None,
        "basic" => HeaderAuth::Basic {
            username: field(t, key, "username")?.into(),
            password: field(t, key, "password")?.into(),
        },
        "bearer" => HeaderAuth::Bearer { token: field(t, key, "token")?.into() },
        "header" => HeaderAuth::Static {
            name: field(t, key, "name")?.to_ascii_lowercase(),
            value: field(t, key, "value")?.into(),
        },
        other => {
            return Err(bad(key, format!("type {other:?} is not one of none, basic, bearer, header")));
        }
    })
}

fn integrity(s: &ProtocolSettings, key: &str) -> Result<Option<HmacVerifier>, AuthConfigError> {
    let Some(value) = s.get(key) else {
        return Ok(None);
    };
    let t = value.as_table().ok_or_else(|| bad(key, "must be a table"))?;
    let algorithm = match field(t, key, "algorithm")? {
        "hmac-sha256" => HmacAlgorithm::HmacSha256,
        "hmac-sha512" => HmacAlgorithm::HmacSha512,
        other => {
            return Err(bad(key, format!("algorithm {other:?} is not hmac-sha256 or hmac-sha512")));
        }
    };
    let encoding = match t.get("encoding").and_then(|v| v.as_str()).unwrap_or("hex") {
        "hex" => DigestEncoding::Hex,
        "base64" => DigestEncoding::Base64,
        other => return Err(bad(key, format!("encoding {other:?} is not hex or base64"))),
    };
    let prefix = t.get("prefix").and_then(|v| v.as_str()).unwrap_or_default();
    Ok(Some(HmacVerifier {
        header: field(t, key, "header")?.to_owned(),
        prefix: prefix.to_owned(),
        algorithm,
        encoding,
        multiple: false,
        secrets: vec![field(t, key, "secret")?.as_bytes().to_vec()],
    }))
}
