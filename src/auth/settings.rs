//! Building checkers from spec blocks and the protocol's config table, and checking those
//! tables against the specs at load.
//!
//! Each block reads its key of `[protocols.<name>]` as a typed serde value (an API-key table,
//! a list of secrets, an auth or integrity table). The keys a protocol's table may hold are
//! the ones its spec's blocks name; any other key, and any table of a protocol no spec
//! defines, is refused with its line. Problems name the key and what shape it must have,
//! never a value: every value of these tables may be a secret.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};

use super::keys::{ApiKeys, HeaderAuth, QueryToken};
use super::{Checker, HmacVerifier, Kind};
use crate::config::credentials::CredentialKind;
use crate::config::{self, Config, KeyLines, ProtocolSettings, Quote};
use crate::spec::ext::{AuthBlock, DigestEncoding, HmacAlgorithm, SCHEME_KEY, SchemePolicy};
use crate::spec::{ProtocolSpec, Registry};

/// A protocol's settings do not fit what its spec's auth block needs.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", dotted(.key, .path))]
pub struct AuthConfigError {
    /// The key of `[protocols.<name>]`.
    pub key: String,
    /// Where inside that key's value (empty when the value itself, or when naming the inner
    /// key would show a secret, as with API keys).
    pub path: Vec<String>,
    pub message: String,
}

fn dotted(key: &str, path: &[String]) -> String {
    path.iter()
        .fold(key.to_owned(), |out, s| if s.starts_with('[') { out + s.as_str() } else { out + "." + s.as_str() })
}

fn bad(key: &str, message: impl Into<String>) -> AuthConfigError {
    AuthConfigError { key: key.to_owned(), path: Vec::new(), message: message.into() }
}

/// The credential a block needs generated when its config key is missing.
pub fn credential_need(block: &AuthBlock) -> Option<(String, CredentialKind)> {
    match block {
        AuthBlock::ApiKeyHeader { keys, .. } => Some((keys.clone(), CredentialKind::ApiKeyTable)),
        AuthBlock::Hmac { secrets, .. } => Some((secrets.clone(), CredentialKind::SecretList)),
        AuthBlock::ConfiguredAuth { config, .. } => Some((config.clone(), CredentialKind::BearerAuth)),
        AuthBlock::QueryToken { token, .. } => Some((token.clone(), CredentialKind::Token)),
        _ => None,
    }
}

/// The `[protocols.<name>]` keys a block reads.
pub fn config_keys(block: &AuthBlock) -> Vec<&str> {
    match block {
        AuthBlock::ApiKeyHeader { keys: key, .. }
        | AuthBlock::Hmac { secrets: key, .. }
        | AuthBlock::ConfiguredAuth { config: key, .. }
        | AuthBlock::ConfiguredIntegrity { config: key, .. } => vec![key.as_str()],
        AuthBlock::FormChecksum { required: key, .. } | AuthBlock::FormSource { allowed: key, .. } => {
            key.as_deref().into_iter().collect()
        }
        AuthBlock::QueryToken { token, required, .. } => {
            std::iter::once(token.as_str()).chain(required.as_deref()).collect()
        }
    }
}

pub(super) fn build(block: &AuthBlock, s: &ProtocolSettings) -> Result<Checker, AuthConfigError> {
    let (kind, reject) = match block {
        AuthBlock::ApiKeyHeader { header, keys, reject } => {
            (Kind::ApiKey { header: header.clone(), keys: api_keys(s, keys)? }, reject)
        }
        AuthBlock::Hmac { header, prefix, algorithm, encoding, multiple, secrets, reject } => {
            let list: StringList = read(s, secrets, ShowPath::Yes)?.ok_or_else(|| bad(secrets, "must be set"))?;
            let v = HmacVerifier {
                header: header.clone(),
                prefix: prefix.clone(),
                algorithm: *algorithm,
                encoding: *encoding,
                multiple: *multiple,
                secrets: list.0.into_iter().map(String::into_bytes).collect(),
            };
            (Kind::Hmac(v), reject)
        }
        AuthBlock::FormChecksum { field, over, required, reject } => {
            let required = match required {
                Some(key) => read::<bool>(s, key, ShowPath::Yes)?.unwrap_or(false),
                None => false,
            };
            (Kind::FormChecksum { field: field.clone(), over: over.clone(), required }, reject)
        }
        AuthBlock::FormSource { field, allowed, normalize, reject } => {
            let allowed = match allowed {
                Some(key) => read::<StringList>(s, key, ShowPath::Yes)?.map(|l| l.0),
                None => None,
            };
            let allowed = allowed.map(|l| l.iter().map(|a| super::form_checks::spell(a, *normalize)).collect());
            (Kind::FormSource { field: field.clone(), allowed, spelling: *normalize }, reject)
        }
        AuthBlock::QueryToken { parameter, token, required, reject } => {
            let value: Text = read(s, token, ShowPath::Yes)?.ok_or_else(|| bad(token, "must be set"))?;
            let required = match required {
                Some(key) => read::<bool>(s, key, ShowPath::Yes)?.unwrap_or(true),
                None => true,
            };
            (Kind::QueryToken(QueryToken::new(parameter.clone(), &value.0, required)), reject)
        }
        AuthBlock::ConfiguredAuth { config, reject } => (Kind::Header(header_auth(s, config)?), reject),
        AuthBlock::ConfiguredIntegrity { config, reject } => (Kind::Integrity(integrity(s, config)?), reject),
    };
    Ok(Checker { kind, reject: reject.clone() })
}

/// Whether a problem may name the keys inside a value (not for API-key tables, whose keys
/// are the secrets).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ShowPath {
    Yes,
    No,
}

/// Reads `key` of the table as `T`; `None` when the key is not set.
fn read<T: DeserializeOwned>(s: &ProtocolSettings, key: &str, show: ShowPath) -> Result<Option<T>, AuthConfigError> {
    s.get(key).map(|value| typed(key, value.clone(), show)).transpose()
}

/// `value` (of `key`) as `T`.
fn typed<T: DeserializeOwned>(key: &str, value: toml::Value, show: ShowPath) -> Result<T, AuthConfigError> {
    config::from_value(value, Quote::Nothing).map_err(|p| AuthConfigError {
        key: key.to_owned(),
        path: if show == ShowPath::Yes { p.path } else { Vec::new() },
        message: p.message,
    })
}

/// A string that must not be empty.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Text(String);

impl TryFrom<String> for Text {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() { Err("must not be empty") } else { Ok(Self(s)) }
    }
}

/// A tenant: a name that is safe as one folder inside the data directory.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Tenant(String);

impl TryFrom<String> for Tenant {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if is_safe_name(&s) {
            return Ok(Self(s));
        }
        Err(format!("tenant {s:?} must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'"))
    }
}

/// A name that is safe as one path component inside the data directory.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn api_keys(s: &ProtocolSettings, key: &str) -> Result<ApiKeys, AuthConfigError> {
    let table: BTreeMap<String, Tenant> =
        read(s, key, ShowPath::No)?.ok_or_else(|| bad(key, "must be a table of \"key\" = \"tenant\""))?;
    if table.contains_key("") {
        return Err(bad(key, "an API key must not be empty"));
    }
    if table.is_empty() {
        return Err(bad(key, "must hold at least one \"key\" = \"tenant\""));
    }
    Ok(ApiKeys::new(table.into_iter().map(|(k, t)| (k, t.0)).collect::<Vec<_>>()))
}

/// One string or a list of them, at least one, none empty.
struct StringList(Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringListVisitor)
    }
}

struct StringListVisitor;

impl<'de> Visitor<'de> for StringListVisitor {
    type Value = StringList;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
        Text::try_from(v.to_owned()).map(|t| StringList(vec![t.0])).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
        let mut items = Vec::new();
        while let Some(Text(item)) = seq.next_element()? {
            items.push(item);
        }
        if items.is_empty() {
            return Err(de::Error::custom("must hold at least one value"));
        }
        Ok(StringList(items))
    }
}

/// `auth = { type = "none" | "basic" | "bearer" | "header", … }`: the type first, then the
/// keys of that type (read on their own, so that a problem names the key inside).
#[derive(Deserialize)]
struct AuthTable {
    #[serde(rename = "type")]
    kind: AuthType,
    #[serde(flatten)]
    rest: toml::Table,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthType {
    None,
    Basic,
    Bearer,
    Header,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoAuth {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuth {
    username: Text,
    password: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BearerAuth {
    token: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticHeader {
    name: Text,
    value: Text,
}

fn header_auth(s: &ProtocolSettings, key: &str) -> Result<HeaderAuth, AuthConfigError> {
    let table: AuthTable = read(s, key, ShowPath::Yes)?.ok_or_else(|| bad(key, "must be a table with a `type`"))?;
    let rest = toml::Value::Table(table.rest);
    Ok(match table.kind {
        AuthType::None => typed::<NoAuth>(key, rest, ShowPath::Yes).map(|_| HeaderAuth::None)?,
        AuthType::Basic => {
            let b: BasicAuth = typed(key, rest, ShowPath::Yes)?;
            HeaderAuth::Basic { username: b.username.0, password: b.password.0 }
        }
        AuthType::Bearer => HeaderAuth::Bearer { token: typed::<BearerAuth>(key, rest, ShowPath::Yes)?.token.0 },
        AuthType::Header => {
            let h: StaticHeader = typed(key, rest, ShowPath::Yes)?;
            HeaderAuth::Static { name: h.name.0.to_ascii_lowercase(), value: h.value.0 }
        }
    })
}

/// `integrity = { header, algorithm, encoding = "hex", prefix = "", secret }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrityTable {
    header: Text,
    algorithm: HmacAlgorithm,
    #[serde(default = "hex")]
    encoding: DigestEncoding,
    #[serde(default)]
    prefix: String,
    secret: Text,
}

fn hex() -> DigestEncoding {
    DigestEncoding::Hex
}

fn integrity(s: &ProtocolSettings, key: &str) -> Result<Option<HmacVerifier>, AuthConfigError> {
    Ok(read::<IntegrityTable>(s, key, ShowPath::Yes)?.map(|t| HmacVerifier {
        header: t.header.0,
        prefix: t.prefix,
        algorithm: t.algorithm,
        encoding: t.encoding,
        multiple: false,
        secrets: vec![t.secret.0.into_bytes()],
    }))
}

/// Checks every `[protocols.<name>]` table against the specs: a protocol no spec defines, a
/// key no block of its spec reads, a value that does not fit its block. Each problem names
/// its line; the refused tables and keys are taken out of `config`, so that building the
/// operations afterwards does not report them a second time.
pub fn check_protocols(config: &mut Config, registry: &Registry) -> Vec<String> {
    let Config { protocols, lines, .. } = config;
    let names: Vec<&str> = registry.protocols.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    protocols.retain(|name, settings| match registry.get(name) {
        Some(spec) => {
            problems.extend(check_protocol(spec, settings, lines));
            true
        }
        None => {
            let what = format!("there is no protocol {name}");
            let message = match config::suggest(name, names.iter().copied()) {
                Some(close) => format!("{what} (did you mean {close}?)"),
                None => format!("{what} (the specs define {})", names.join(", ")),
            };
            problems.push(place(lines, &[name], &message));
            false
        }
    });
    problems
}

fn check_protocol(spec: &ProtocolSpec, settings: &mut ProtocolSettings, lines: &KeyLines) -> Vec<String> {
    let blocks: Vec<&AuthBlock> = spec.operations.iter().flat_map(|o| &o.auth).collect();
    let mut known: Vec<&str> = blocks.iter().flat_map(|b| config_keys(b)).collect();
    // Every protocol may override its spec's `x-hookyard-scheme`.
    known.push(SCHEME_KEY);
    known.sort_unstable();
    known.dedup();
    let unknown: Vec<String> = settings.0.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect();
    let mut problems = Vec::new();
    for key in unknown {
        settings.0.remove(&key);
        problems.push(place(lines, &[&spec.name, &key], &config::unknown("unknown key", &key, &known)));
    }
    if let Some(Err(message)) = settings.get(SCHEME_KEY).map(SchemePolicy::from_setting) {
        settings.0.remove(SCHEME_KEY);
        problems.push(place(lines, &[&spec.name, SCHEME_KEY], message));
    }
    for message in check_values(&spec.name, &blocks, settings, lines) {
        if !problems.contains(&message) {
            problems.push(message);
        }
    }
    problems
}

/// Builds each block from the values that are set (a missing credential is generated later);
/// a value that does not fit is refused and taken out.
fn check_values(
    protocol: &str,
    blocks: &[&AuthBlock],
    settings: &mut ProtocolSettings,
    lines: &KeyLines,
) -> Vec<String> {
    let mut problems = Vec::new();
    for block in blocks {
        // A credential not set yet is generated later: check the block's other keys with a
        // stand-in of its shape.
        let stand_in = credential_need(block).filter(|(key, _)| settings.get(key).is_none()).map(|(key, kind)| {
            let mut with = settings.clone();
            with.0.insert(key, crate::config::credentials::placeholder(kind));
            with
        });
        if let Err(e) = build(block, stand_in.as_ref().unwrap_or(settings)) {
            settings.0.remove(&e.key);
            let mut path = vec![protocol, e.key.as_str()];
            path.extend(e.path.iter().map(String::as_str));
            problems.push(place(lines, &path, &e.message));
        }
    }
    problems
}

/// `hookyard.toml line 12: [protocols.gridx] secret: unknown key …`, for a path below `protocols`.
fn place(lines: &KeyLines, path: &[&str], message: &str) -> String {
    let mut full = vec!["protocols".to_owned()];
    full.extend(path.iter().map(|s| s.to_string()));
    format!("{}: {message}", lines.place(&full))
}
