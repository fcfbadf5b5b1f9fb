//! Who sent a request: API keys, HMAC signatures, form checksums, basic/bearer/static headers,
//! URL tokens.
//!
//! A component is a spec block plus the protocol's settings, built once into a [`Checker`].
//! Checking is pure: `(headers, raw body, form fields)` → the sender's identity or a reason.
//! Secrets are compared in constant time and never appear in a reason.

mod form_checks;
mod hmac;
mod keys;
mod settings;

use poem::http::HeaderMap;

pub use self::hmac::{HmacVerifier, SignatureError};
pub use keys::{ApiKeys, HeaderAuth};
pub use settings::{AuthConfigError, check_protocols, credential_need};

use crate::config::ProtocolSettings;
use crate::form::Form;
use crate::spec::ext::{AuthBlock, Reject, SourceSpelling};

/// What a check sees of a request.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub form: Option<&'a Form>,
    /// The URL's query pairs.
    pub query: &'a [(String, String)],
}

/// A refused request: the reason (safe to show the client) and how to answer.
#[derive(Debug)]
pub struct Refusal {
    pub reason: String,
    pub reject: Reject,
}

enum Kind {
    ApiKey { header: String, keys: ApiKeys },
    Hmac(HmacVerifier),
    Integrity(Option<HmacVerifier>),
    Header(HeaderAuth),
    FormChecksum { field: String, over: String, required: bool },
    FormSource { field: String, allowed: Option<Vec<String>>, spelling: Option<SourceSpelling> },
    QueryToken(keys::QueryToken),
}

/// One built check of an operation.
pub struct Checker {
    kind: Kind,
    reject: Reject,
}

impl Checker {
    /// Builds the check a spec block describes, reading its secrets from `settings`.
    pub fn build(block: &AuthBlock, settings: &ProtocolSettings) -> Result<Self, AuthConfigError> {
        settings::build(block, settings)
    }

    /// What this check verifies, for the journal (`hmac X-Signature`).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::ApiKey { header, .. } => format!("api key in {header}"),
            Kind::Hmac(v) => format!("HMAC signature in {}", v.header),
            Kind::Integrity(None) => "integrity check (none configured)".into(),
            Kind::Integrity(Some(v)) => format!("integrity HMAC in {}", v.header),
            Kind::Header(HeaderAuth::None) => "authentication (none configured)".into(),
            Kind::Header(HeaderAuth::Basic { .. }) => "basic authentication".into(),
            Kind::Header(HeaderAuth::Bearer { .. }) => "bearer token".into(),
            Kind::Header(HeaderAuth::Static { name, .. }) => format!("static header {name}"),
            Kind::FormChecksum { field, over, .. } => format!("{field} checksum of {over}"),
            Kind::QueryToken(t) => format!("token in query parameter {}", t.parameter),
            Kind::FormSource { field, allowed, .. } => match allowed {
                Some(_) => format!("{field} in the allowed list"),
                None => format!("{field} present (no allowed list)"),
            },
        }
    }

    /// The header carrying a signature, worth keeping in the journal (never a credential).
    pub fn signature_header(&self) -> Option<&str> {
        match &self.kind {
            Kind::Hmac(v) | Kind::Integrity(Some(v)) => Some(&v.header),
            _ => None,
        }
    }

    /// The spec block this check was built from (`hmac`, `api-key-header`, …).
    pub fn block(&self) -> &'static str {
        match &self.kind {
            Kind::ApiKey { .. } => "api-key-header",
            Kind::Hmac(_) => "hmac",
            Kind::Integrity(_) => "configured-integrity",
            Kind::Header(_) => "configured-auth",
            Kind::FormChecksum { .. } => "form-checksum",
            Kind::FormSource { .. } => "form-source",
            Kind::QueryToken(_) => "query-token",
        }
    }

    /// The header or query parameter this check reads a credential from (never to be kept).
    pub fn secret_name(&self) -> Option<&str> {
        match &self.kind {
            Kind::ApiKey { header, .. } => Some(header),
            Kind::Hmac(v) | Kind::Integrity(Some(v)) => Some(&v.header),
            Kind::Header(HeaderAuth::Static { name, .. }) => Some(name),
            Kind::QueryToken(t) => Some(&t.parameter),
            _ => None,
        }
    }

    /// Whether the check's credential travels in the URL's query (a token parameter).
    pub fn reads_query(&self) -> bool {
        matches!(self.kind, Kind::QueryToken(_))
    }

    /// Whether the check reads the body (a signature, a form field); the others read only
    /// headers (or the URL's query), so they can run before the body is read.
    pub fn needs_body(&self) -> bool {
        matches!(
            self.kind,
            Kind::Hmac(_) | Kind::Integrity(Some(_)) | Kind::FormChecksum { .. } | Kind::FormSource { .. }
        )
    }

    /// Whether passing the check proves a credential (an API key, basic, bearer, a static
    /// header, a signature, a required URL token); "none configured" and form fields prove
    /// nothing.
    pub fn authenticates(&self) -> bool {
        match &self.kind {
            Kind::ApiKey { .. } | Kind::Hmac(_) | Kind::Integrity(Some(_)) => true,
            // An optional token proves nothing when it is left out.
            Kind::QueryToken(t) => t.required,
            Kind::Header(auth) => !matches!(auth, HeaderAuth::None),
            Kind::Integrity(None) | Kind::FormChecksum { .. } | Kind::FormSource { .. } => false,
        }
    }

    /// Runs the check; `Ok(Some(name))` when it establishes who the sender is.
    pub fn check(&self, req: &Request<'_>) -> Result<Option<String>, Refusal> {
        self.run(req).map_err(|reason| Refusal { reason, reject: self.reject.clone() })
    }

    fn run(&self, req: &Request<'_>) -> Result<Option<String>, String> {
        let header = |name: &str| req.headers.get(name).map(|v| v.as_bytes());
        match &self.kind {
            Kind::ApiKey { header: name, keys } => {
                keys.tenant(header(name)).map(Some).ok_or_else(|| "Invalid API key".into())
            }
            Kind::Hmac(v) => v.verify(header(&v.header), req.body).map(|_| None).map_err(|e| e.to_string()),
            Kind::Integrity(None) => Ok(None),
            Kind::Integrity(Some(v)) => {
                v.verify(header(&v.header), req.body).map(|_| None).map_err(|e| format!("integrity check failed: {e}"))
            }
            Kind::Header(auth) => auth.check(req.headers),
            Kind::FormChecksum { field, over, required } => {
                form_checks::checksum(req.form, field, over, *required).map(|_| None).map_err(|e| e.to_string())
            }
            Kind::FormSource { field, allowed, spelling } => {
                form_checks::source(req.form, field, allowed.as_deref(), *spelling).map(Some).map_err(|e| e.to_string())
            }
            Kind::QueryToken(t) => t.check(req.query).map(|_| None).map_err(|e| e.to_string()),
        }
    }
}

/// Runs every check in order; the last identity established names the sender.
pub fn check_all(checkers: &[Checker], req: &Request<'_>) -> Result<String, Refusal> {
    let mut source = String::new();
    for c in checkers {
        if let Some(name) = c.check(req)? {
            source = name;
        }
    }
    Ok(source)
}
