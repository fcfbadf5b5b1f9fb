//! What the setup page tells a user about a protocol's checks, read from its spec blocks and
//! its `[protocols.<name>]` settings: the header names to set, which credential is needed and
//! whether it is configured, notes for checks that are not headers — and, revealed only on
//! request, the credentials' values. Pure: no I/O.

use crate::config::ProtocolSettings;
use crate::spec::ext::{AuthBlock, DigestEncoding, HmacAlgorithm};

/// The credential a block needs, never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialNeed {
    /// api-key, hmac-secret, url-token, basic, bearer, header or none.
    pub kind: String,
    /// `[protocols.<name>] <config_key>`.
    pub config_key: String,
    /// Set in the config (or generated and kept in the credentials file).
    pub configured: bool,
}

/// The `type` of a `configured-auth` table (`none` when it is missing or unreadable).
fn auth_type(settings: &ProtocolSettings, key: &str) -> String {
    settings.get(key).and_then(|v| v.get("type")).and_then(|t| t.as_str()).unwrap_or("none").to_owned()
}

fn text<'a>(settings: &'a ProtocolSettings, key: &str, field: &str) -> Option<&'a str> {
    settings.get(key).and_then(|v| v.get(field)).and_then(|t| t.as_str())
}

/// The request headers `block` reads.
pub fn headers(block: &AuthBlock, settings: &ProtocolSettings) -> Vec<String> {
    match block {
        AuthBlock::ApiKeyHeader { header, .. } | AuthBlock::Hmac { header, .. } => vec![header.clone()],
        AuthBlock::ConfiguredAuth { config, .. } => match auth_type(settings, config).as_str() {
            "basic" | "bearer" => vec!["Authorization".into()],
            "header" => text(settings, config, "name").map(str::to_owned).into_iter().collect(),
            _ => Vec::new(),
        },
        AuthBlock::ConfiguredIntegrity { config, .. } => {
            text(settings, config, "header").map(str::to_owned).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// The credential `block` checks, if it checks one.
pub fn credential(block: &AuthBlock, settings: &ProtocolSettings) -> Option<CredentialNeed> {
    let (kind, key) = match block {
        AuthBlock::ApiKeyHeader { keys, .. } => ("api-key".to_owned(), keys),
        AuthBlock::Hmac { secrets, .. } => ("hmac-secret".to_owned(), secrets),
        AuthBlock::QueryToken { token, .. } => ("url-token".to_owned(), token),
        AuthBlock::ConfiguredAuth { config, .. } => (auth_type(settings, config), config),
        AuthBlock::ConfiguredIntegrity { config, .. } if settings.get(config).is_some() => {
            ("hmac-secret".to_owned(), config)
        }
        _ => return None,
    };
    Some(CredentialNeed { kind, config_key: key.clone(), configured: settings.get(key).is_some() })
}

/// A sentence for each check that is not a plain header.
pub fn note(block: &AuthBlock, settings: &ProtocolSettings) -> Option<String> {
    Some(match block {
        AuthBlock::Hmac { header, prefix, algorithm, encoding, secrets, .. } => {
            let algorithm = match algorithm {
                HmacAlgorithm::HmacSha256 => "HMAC-SHA256",
                HmacAlgorithm::HmacSha512 => "HMAC-SHA512",
            };
            let encoding = match encoding {
                DigestEncoding::Hex => "hex",
                DigestEncoding::Base64 => "base64",
            };
            format!("{header}: {prefix}<{algorithm} of the raw body, {encoding}> under a secret of `{secrets}`")
        }
        AuthBlock::QueryToken { parameter, .. } => {
            format!("the URL carries ?{parameter}=<token>; the token is shown with the credentials")
        }
        AuthBlock::FormChecksum { field, over, .. } => format!("the form field `{field}` carries the MD5 of `{over}`"),
        AuthBlock::FormSource { field, allowed, .. } => match allowed.as_deref().and_then(|k| settings.get(k)) {
            Some(_) => format!("the form field `{field}` names the sender; only the allowed ones are taken"),
            None => format!("the form field `{field}` names the sender"),
        },
        AuthBlock::ConfiguredIntegrity { config, .. } if settings.get(config).is_some() => {
            "an HMAC of the raw body is required as configured in `integrity`".to_owned()
        }
        _ => return None,
    })
}

/// The values of the credentials `block` checks, as `(name, value)`: one row per API key
/// (named with its tenant), per secret, per field of an auth table.
pub fn revealed(block: &AuthBlock, settings: &ProtocolSettings) -> Vec<(String, String)> {
    let Some(need) = credential(block, settings) else { return Vec::new() };
    let Some(value) = settings.get(&need.config_key) else { return Vec::new() };
    let mut out = Vec::new();
    match (block, value) {
        (AuthBlock::ApiKeyHeader { keys, .. }, toml::Value::Table(table)) => {
            for (key, tenant) in table {
                out.push((format!("{keys} ({})", tenant.as_str().unwrap_or_default()), key.clone()));
            }
        }
        _ => flatten(&need.config_key, value, &mut out),
    }
    out
}

fn flatten(name: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::String(s) => out.push((name.to_owned(), s.clone())),
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{name}[{i}]"), item, out);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table {
                flatten(&format!("{name}.{key}"), item, out);
            }
        }
        other => out.push((name.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ext::Reject;

    fn settings(text: &str) -> ProtocolSettings {
        ProtocolSettings(toml::from_str(text).unwrap())
    }

    #[test]
    fn configured_auth_names_its_header_and_kind_and_reveals_its_fields() {
        let block = AuthBlock::ConfiguredAuth { config: "auth".into(), reject: Reject::default() };
        let s = settings("auth = { type = \"header\", name = \"X-Api-Key\", value = \"v1\" }");
        assert_eq!(headers(&block, &s), ["X-Api-Key"]);
        let need = credential(&block, &s).unwrap();
        assert_eq!((need.kind.as_str(), need.config_key.as_str(), need.configured), ("header", "auth", true));
        let shown = revealed(&block, &s);
        assert!(shown.contains(&("auth.value".into(), "v1".into())), "{shown:?}");
        assert_eq!(headers(&block, &settings("")), Vec::<String>::new());
        assert!(!credential(&block, &settings("")).unwrap().configured);
    }

    #[test]
    fn api_keys_are_revealed_with_their_tenant() {
        let block =
            AuthBlock::ApiKeyHeader { header: "APIKEY".into(), keys: "api_keys".into(), reject: Reject::default() };
        let s = settings("api_keys = { \"k1\" = \"home\" }");
        assert_eq!(revealed(&block, &s), [("api_keys (home)".to_owned(), "k1".to_owned())]);
        assert_eq!(headers(&block, &s), ["APIKEY"]);
    }
}
