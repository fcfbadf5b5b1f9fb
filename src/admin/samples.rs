//! The "send test request" samples: one small request per shipped protocol, made fresh (a new
//! id, the current time), and signed as its spec's blocks ask with the protocol's configured
//! credentials (an API key header, an HMAC over the body, the URL token and the form's MD5,
//! basic/bearer/header auth and the optional integrity HMAC). Pure: the clock and the id are
//! passed in.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::{Sha256, Sha512};

use crate::config::ProtocolSettings;
use crate::spec::OperationSpec;
use crate::spec::ext::{AuthBlock, DigestEncoding, HmacAlgorithm};

/// Why no test request could be made.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("there is no sample request for the protocol {0}")]
    Unknown(String),
    #[error("the spec of {protocol} has no operation {operation}")]
    NoOperation { protocol: String, operation: &'static str },
    #[error("[protocols.{protocol}] {key} holds no credential a test request can use")]
    Credential { protocol: String, key: String },
}

/// A sample body, before signing.
pub enum Body {
    Json(String),
    /// Form fields, sent urlencoded (checksum fields are filled in when signing).
    Form(Vec<(String, String)>),
}

/// The sample of one protocol: which operation it goes to, and its body.
pub struct Sample {
    pub operation: &'static str,
    pub body: Body,
}

/// A request ready to send.
#[derive(Debug)]
pub struct Signed {
    pub path_and_query: String,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The marker every sample carries, so its events can be told apart in the data.
pub const MARK: &str = "hookyard-test";

/// The sample of `protocol` at `now_ms`, with `id` as its fresh identifier.
pub fn sample(protocol: &str, now_ms: i64, id: u128) -> Result<Sample, SampleError> {
    let (operation, body) = match protocol {
        "gridx" => ("events", Body::Json(gridx(now_ms, id))),
        "ai-on-the-edge" => ("readings", Body::Json(ai_on_the_edge(now_ms))),
        "wattmon" => ("export", Body::Form(wattmon(now_ms))),
        "wattsense" => ("values", Body::Json(wattsense(now_ms))),
        other => return Err(SampleError::Unknown(other.to_owned())),
    };
    Ok(Sample { operation, body })
}

/// A UUID (version 4 layout) from `id`.
fn uuid(id: u128) -> String {
    let id = (id & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{id:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn gridx(now_ms: i64, id: u128) -> String {
    serde_json::json!({
        "id": uuid(id),
        "time": crate::event::rfc3339_millis(now_ms),
        "specVersion": "1.0",
        "source": format!("/{MARK}"),
        "type": "ping",
        "data": { "message": "test request from the hookyard console" },
    })
    .to_string()
}

fn ai_on_the_edge(now_ms: i64) -> String {
    let seconds = now_ms / 1000;
    serde_json::json!([{
        "timestamp": crate::event::rfc3339_millis(now_ms),
        "timestampLong": seconds.to_string(),
        "name": MARK,
        "rawValue": "1.0",
        "value": "1.0",
        "preValue": "",
        "rate": "",
        "changeAbsolute": "",
        "error": "no error",
    }])
    .to_string()
}

fn wattmon(now_ms: i64) -> Vec<(String, String)> {
    let time = crate::event::rfc3339_millis(now_ms);
    let time = time.get(..19).unwrap_or_default().replace('T', " ");
    // A documentation MAC address (RFC 7042), unless the allow-list names the senders.
    let csv = format!("Time,Test\n{time},1\n");
    vec![("key".into(), "00-00-5e-00-53-01".into()), ("data".into(), csv)]
}

fn wattsense(now_ms: i64) -> String {
    serde_json::json!({
        "deviceId": MARK,
        "property": "test",
        "timestamp": now_ms,
        "payload": 1,
    })
    .to_string()
}

/// `body` as a request to `op`, signed as its blocks ask.
pub fn sign(op: &OperationSpec, settings: &ProtocolSettings, body: Body) -> Result<Signed, SampleError> {
    let missing = |key: &str| SampleError::Credential { protocol: op.protocol.clone(), key: key.to_owned() };
    let (content_type, body) = match body {
        Body::Json(text) => ("application/json", text.into_bytes()),
        Body::Form(fields) => ("application/x-www-form-urlencoded", form(op, settings, fields)),
    };
    let mut signed = Signed { path_and_query: op.path.clone(), content_type, headers: Vec::new(), body };
    for block in &op.auth {
        sign_block(block, settings, &mut signed).ok_or_else(|| missing(credential_key(block)))?;
    }
    Ok(signed)
}

fn credential_key(block: &AuthBlock) -> &str {
    match block {
        AuthBlock::ApiKeyHeader { keys: key, .. }
        | AuthBlock::Hmac { secrets: key, .. }
        | AuthBlock::QueryToken { token: key, .. }
        | AuthBlock::ConfiguredAuth { config: key, .. }
        | AuthBlock::ConfiguredIntegrity { config: key, .. }
        | AuthBlock::FormChecksum { field: key, .. }
        | AuthBlock::FormSource { field: key, .. } => key,
    }
}

/// The form fields urlencoded, the sender taken from the allow-list when there is one and
/// every checksum field filled in.
fn form(op: &OperationSpec, settings: &ProtocolSettings, mut fields: Vec<(String, String)>) -> Vec<u8> {
    for block in &op.auth {
        match block {
            AuthBlock::FormSource { field, allowed: Some(key), .. } => {
                let first = settings.get(key).and_then(first_text);
                if let (Some(first), Some(slot)) = (first, fields.iter_mut().find(|(name, _)| name == field)) {
                    slot.1 = first;
                }
            }
            AuthBlock::FormChecksum { field, over, .. } => {
                let data = fields.iter().find(|(name, _)| name == over).map(|(_, v)| v.clone()).unwrap_or_default();
                fields.retain(|(name, _)| name != field);
                fields.push((field.clone(), hex::encode(Md5::digest(data.as_bytes()))));
            }
            _ => {}
        }
    }
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish().into_bytes()
}

/// A string, or the first string of a list.
fn first_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Array(items) => items.iter().find_map(first_text),
        _ => None,
    }
}

/// Adds what `block` checks to `req`; `None` when its credential is missing.
fn sign_block(block: &AuthBlock, settings: &ProtocolSettings, req: &mut Signed) -> Option<()> {
    match block {
        AuthBlock::ApiKeyHeader { header, keys, .. } => {
            let key = settings.get(keys)?.as_table()?.keys().next()?.clone();
            req.headers.push((header.clone(), key));
        }
        AuthBlock::Hmac { header, prefix, algorithm, encoding, secrets, .. } => {
            let secret = first_text(settings.get(secrets)?)?;
            let digest = digest(*algorithm, *encoding, secret.as_bytes(), &req.body);
            req.headers.push((header.clone(), format!("{prefix}{digest}")));
        }
        AuthBlock::QueryToken { parameter, token, .. } => {
            let token = first_text(settings.get(token)?)?;
            let query = form_urlencoded::Serializer::new(String::new()).append_pair(parameter, &token).finish();
            req.path_and_query = format!("{}?{query}", req.path_and_query);
        }
        AuthBlock::ConfiguredAuth { config, .. } => configured_auth(settings.get(config)?, req)?,
        AuthBlock::ConfiguredIntegrity { config, .. } => {
            if let Some(table) = settings.get(config) {
                integrity(table, req)?;
            }
        }
        AuthBlock::FormChecksum { .. } | AuthBlock::FormSource { .. } => {}
    }
    Some(())
}

fn configured_auth(table: &toml::Value, req: &mut Signed) -> Option<()> {
    let field = |name: &str| table.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    match field("type")?.as_str() {
        "none" => {}
        "basic" => {
            let pair = format!("{}:{}", field("username")?, field("password")?);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            req.headers.push(("Authorization".into(), format!("Basic {encoded}")));
        }
        "bearer" => req.headers.push(("Authorization".into(), format!("Bearer {}", field("token")?))),
        "header" => req.headers.push((field("name")?, field("value")?)),
        _ => return None,
    }
    Some(())
}

fn integrity(table: &toml::Value, req: &mut Signed) -> Option<()> {
    let field = |name: &str| table.get(name).and_then(|v| v.as_str());
    let algorithm = match field("algorithm")? {
        "hmac-sha256" => HmacAlgorithm::HmacSha256,
        "hmac-sha512" => HmacAlgorithm::HmacSha512,
        _ => return None,
    };
    let encoding = match field("encoding").unwrap_or("hex") {
        "base64" => DigestEncoding::Base64,
        _ => DigestEncoding::Hex,
    };
    let digest = digest(algorithm, encoding, field("secret")?.as_bytes(), &req.body);
    req.headers.push((field("header")?.to_owned(), format!("{}{digest}", field("prefix").unwrap_or(""))));
    Some(())
}

fn digest(algorithm: HmacAlgorithm, encoding: DigestEncoding, secret: &[u8], body: &[u8]) -> String {
    let bytes = match algorithm {
        HmacAlgorithm::HmacSha256 => mac::<Hmac<Sha256>>(secret, body),
        HmacAlgorithm::HmacSha512 => mac::<Hmac<Sha512>>(secret, body),
    };
    match encoding {
        DigestEncoding::Hex => hex::encode(bytes),
        DigestEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

fn mac<M: Mac + KeyInit>(secret: &[u8], body: &[u8]) -> Vec<u8> {
    match <M as KeyInit>::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(body);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_has_the_version_4_layout() {
        let id = uuid(u128::MAX);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(&id[19..20], "b");
        assert_eq!(uuid(0), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn every_shipped_protocol_has_a_sample_and_others_none() {
        for protocol in ["gridx", "ai-on-the-edge", "wattmon", "wattsense"] {
            assert!(sample(protocol, 1_790_000_000_000, 7).is_ok(), "{protocol}");
        }
        assert!(matches!(sample("other", 0, 0), Err(SampleError::Unknown(_))));
    }
}
