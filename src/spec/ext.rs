//! The `x-hookyard-…` extensions: what a spec says that OpenAPI cannot.
//!
//! Each extension names a built-in building block and its parameters; secrets are never in a
//! spec, only the name of the protocol config key that holds them. `x-hookyard-reply` and
//! `x-hookyard-body-limit` may sit at the document root as defaults for every operation.

use serde::Deserialize;

/// One check an operation's requests must pass (`x-hookyard-auth` is a list; all must pass).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "block", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthBlock {
    /// A header holding one of the configured keys; the key's tenant becomes the source.
    ApiKeyHeader {
        header: String,
        /// Config key of a table `{ "<key>" = "<tenant>" }`.
        keys: String,
        #[serde(default)]
        reject: Reject,
    },
    /// An HMAC over the raw body, in a header, against every configured secret.
    Hmac {
        header: String,
        #[serde(default)]
        prefix: String,
        algorithm: HmacAlgorithm,
        encoding: DigestEncoding,
        /// Whether the header may carry several comma-separated digests (secret rotation).
        #[serde(default)]
        multiple: bool,
        /// Config key of a list of secrets.
        secrets: String,
        #[serde(default)]
        reject: Reject,
    },
    /// An MD5 checksum of one form field carried in another form field.
    FormChecksum {
        field: String,
        over: String,
        /// Config key of a boolean: when true, the checksum field must be present.
        #[serde(default)]
        required: Option<String>,
        #[serde(default)]
        reject: Reject,
    },
    /// A form field naming the sender, checked against an optional allow-list.
    FormSource {
        field: String,
        /// Config key of a list of allowed values (compared case-insensitively, after the
        /// same normalisation as the field).
        #[serde(default)]
        allowed: Option<String>,
        /// How the sender's name is spelled canonically before the allow-list, the event's
        /// `source`, file names and dedup see it.
        #[serde(default)]
        normalize: Option<SourceSpelling>,
        #[serde(default)]
        reject: Reject,
    },
    /// A token in a query parameter of the URL (devices whose only setting is a URL),
    /// compared in constant time.
    QueryToken {
        /// The query parameter's name (`token`).
        parameter: String,
        /// Config key of the token (generated on first start when unset).
        token: String,
        /// Config key of a boolean: when false, a request without the parameter passes
        /// (default true).
        #[serde(default)]
        required: Option<String>,
        #[serde(default)]
        reject: Reject,
    },
    /// Auth chosen in the config table at key `config`: none, basic, bearer or a static header.
    ConfiguredAuth {
        config: String,
        #[serde(default)]
        reject: Reject,
    },
    /// An optional integrity HMAC whose header, algorithm and encoding come from the config.
    ConfiguredIntegrity {
        config: String,
        #[serde(default)]
        reject: Reject,
    },
}

/// A canonical spelling of a sender's name.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceSpelling {
    /// 12 hex digits with or without `:`, `-` or `.` separators become `aa-bb-cc-dd-ee-ff`;
    /// any other name is lowercased with `:` turned into `-`.
    Mac,
}

/// How a failed check is answered (status and message, in the operation's reply style).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Reject {
    pub status: Option<u16>,
    /// Answer with an empty body whatever the reply style (gridX: 401 with no body).
    #[serde(default)]
    pub empty_body: bool,
    /// Fixed message instead of the check's own reason.
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HmacAlgorithm {
    HmacSha256,
    HmacSha512,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DigestEncoding {
    Hex,
    Base64,
}

/// How a request body becomes events (`x-hookyard-events`).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "split", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Split {
    /// The JSON body is one event.
    Whole,
    /// The JSON body is an array; each element is one event.
    EachElement,
    /// The JSON body is one object or an array of them.
    OneOrMany,
    /// A form field holds CSV with a header row; each data row is one event
    /// `{column: value}`, its first column also in `meta.timestamp`.
    CsvRows { field: String },
    /// The raw body is one binary event; query parameters go to `meta`.
    Blob {
        /// Hex bytes the body must start with (e.g. `FFD8FF` for JPEG).
        #[serde(default)]
        magic: Option<String>,
    },
}

impl Split {
    pub fn body_kind(&self) -> BodyKind {
        match self {
            Split::Whole | Split::EachElement | Split::OneOrMany => BodyKind::Json,
            Split::CsvRows { .. } => BodyKind::Form,
            Split::Blob { .. } => BodyKind::Binary,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    Binary,
}

/// How an operation answers (`x-hookyard-reply`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReplySpec {
    pub style: ReplyStyle,
    #[serde(default = "status_200")]
    pub success_status: u16,
    /// Message of a JSON success reply; no body when absent or when the status is 204.
    #[serde(default)]
    pub success_message: Option<String>,
    #[serde(default)]
    pub statuses: Statuses,
}

/// Status per kind of failure.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Statuses {
    pub unauthorized: u16,
    pub invalid: u16,
    pub too_large: u16,
    pub failed: u16,
    pub method_not_allowed: u16,
    pub timeout: u16,
    pub unsupported_media_type: u16,
}

impl Default for Statuses {
    fn default() -> Self {
        Self {
            unauthorized: 401,
            invalid: 400,
            too_large: 413,
            failed: 500,
            method_not_allowed: 405,
            timeout: 408,
            unsupported_media_type: 415,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyStyle {
    /// `{"status": "success"|"error", "message": …, "violations": [...]}`.
    Json,
    /// Plain text `OK` or `ERROR: <reason>`.
    Text,
}

fn status_200() -> u16 {
    200
}

/// Which event fields make up the idempotency key (`x-hookyard-idempotency`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Idempotency {
    /// JSON pointers into the event's JSON form, e.g. `/source`, `/data/id`.
    #[serde(default)]
    pub key: Vec<String>,
    /// A JSON pointer into the event's JSON form (e.g. `/data`, the whole message) whose
    /// value's SHA-256 (of its compact JSON) is one more part of the key: for messages
    /// without an id, an identical resend is the same key.
    #[serde(default)]
    pub digest: Option<String>,
}

/// How old an event may be (`x-hookyard-freshness`): captures replayed after the dedup
/// window are refused instead of processed again.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Freshness {
    /// JSON pointer into the event's data to its time (RFC 3339, or Unix milliseconds).
    pub time: String,
    /// The oldest an event may be, in seconds before the receive time.
    pub max_age_seconds: u64,
    /// How far ahead of the receive time an event's time may be (clocks that run fast).
    #[serde(default = "five_minutes")]
    pub ahead_seconds: u64,
}

fn five_minutes() -> u64 {
    300
}

/// What to do with a discriminator value the spec does not map (`x-hookyard-unknown-type`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownType {
    /// `$ref` of the schema such bodies are validated against instead.
    pub schema: String,
}

/// Which schemes an operation takes (`x-hookyard-scheme`, on the operation or the document):
/// with HTTPS on, `https` refuses plain HTTP. `[protocols.<name>] scheme` overrides it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SchemePolicy {
    /// Only HTTPS (when the server has it: `[tls]`, or a trusted proxy terminating TLS).
    Https,
    /// Plain HTTP and HTTPS (devices whose firmware has no TLS).
    #[default]
    Any,
}

/// The `[protocols.<name>]` key that overrides a spec's `x-hookyard-scheme`.
pub const SCHEME_KEY: &str = "scheme";

impl SchemePolicy {
    /// The policy of a `scheme = "https" | "any"` config value.
    pub fn from_setting(value: &toml::Value) -> Result<Self, &'static str> {
        match value.as_str() {
            Some("https") => Ok(Self::Https),
            Some("any") => Ok(Self::Any),
            _ => Err("must be \"https\" or \"any\""),
        }
    }
}
