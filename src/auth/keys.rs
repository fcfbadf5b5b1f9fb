//! API keys mapped to tenants, the configurable header auth (none, basic, bearer, static),
//! and a token carried in a query parameter of the URL.
//!
//! Keys are compared as SHA-256 digests in constant time, so neither their content nor their
//! length leaks through timing.

use base64::Engine as _;
use poem::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn ct_equal(a: &[u8], b: &[u8]) -> bool {
    bool::from(digest(a).ct_eq(&digest(b)))
}

/// Configured API keys, each with the tenant it stands for.
pub struct ApiKeys {
    entries: Vec<([u8; 32], String)>,
}

impl ApiKeys {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { entries: pairs.into_iter().map(|(k, t)| (digest(k.as_bytes()), t)).collect() }
    }

    /// The tenant of `presented`, checking every key so timing does not tell which matched.
    pub fn tenant(&self, presented: Option<&[u8]>) -> Option<String> {
        let presented = digest(presented?);
        let mut found = None;
        for (key, tenant) in &self.entries {
            if bool::from(key.ct_eq(&presented)) {
                found = Some(tenant.clone());
            }
        }
        found
    }
}

/// Why a query token was refused (the sender reads it; the token itself is never in it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the {0} query parameter is missing (the URL must end in ?{0}=<token>)")]
    Missing(String),
    #[error("wrong {0}")]
    Wrong(String),
}

/// A token the URL must carry in query parameter `parameter` (`?token=…`).
pub struct QueryToken {
    pub parameter: String,
    digest: [u8; 32],
    /// When false, a URL without the parameter passes (a wrong token never does).
    pub required: bool,
}

impl QueryToken {
    pub fn new(parameter: String, token: &str, required: bool) -> Self {
        Self { parameter, digest: digest(token.as_bytes()), required }
    }

    /// Checks the request's query pairs (the first pair of that name counts).
    pub fn check(&self, query: &[(String, String)]) -> Result<(), TokenError> {
        let Some((_, given)) = query.iter().find(|(name, _)| *name == self.parameter) else {
            return if self.required { Err(TokenError::Missing(self.parameter.clone())) } else { Ok(()) };
        };
        if bool::from(digest(given.as_bytes()).ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(TokenError::Wrong(self.parameter.clone()))
        }
    }
}

/// Header-carried credentials chosen in the config.
pub enum HeaderAuth {
    None,
    Basic { username: String, password: String },
    Bearer { token: String },
    Static { name: String, value: String },
}

impl HeaderAuth {
    /// Checks the request's headers; Basic auth names the user as the sender.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<String>, String> {
        let authorization = headers.get("authorization").map(|v| v.as_bytes());
        match self {
            HeaderAuth::None => Ok(None),
            HeaderAuth::Basic { username, password } => {
                let given = authorization.ok_or("Authorization header is missing")?;
                let expected = format!("{username}:{password}");
                let decoded = strip_scheme(given, "basic")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim_ascii()).ok())
                    .ok_or("Authorization header is not Basic credentials")?;
                if ct_equal(&decoded, expected.as_bytes()) {
                    Ok(Some(username.clone()))
                } else {
                    Err("invalid credentials".into())
                }
            }
            HeaderAuth::Bearer { token } => {
                let given = authorization.ok_or("Authorization header is missing")?;
                let presented = strip_scheme(given, "bearer").ok_or("Authorization header is not a Bearer token")?;
                if ct_equal(presented.trim_ascii(), token.as_bytes()) {
                    Ok(None)
                } else {
                    Err("invalid bearer token".into())
                }
            }
            HeaderAuth::Static { name, value } => {
                let given = headers.get(name.as_str()).ok_or_else(|| format!("{name} header is missing"))?;
                if ct_equal(given.as_bytes(), value.as_bytes()) {
                    Ok(None)
                } else {
                    Err(format!("{name} header is wrong"))
                }
            }
        }
    }
}

fn strip_scheme<'a>(value: &'a [u8], scheme: &str) -> Option<&'a [u8]> {
    let (head, rest) = value.split_at_checked(scheme.len())?;
    (head.eq_ignore_ascii_case(scheme.as_bytes()) && rest.first() == Some(&b' ')).then(|| &rest[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_maps_to_its_tenant_and_nothing_else_does() {
        let keys = ApiKeys::new([("s3cr3tKey".into(), "vacation-home".into())]);
        assert_eq!(keys.tenant(Some(b"s3cr3tKey")).as_deref(), Some("vacation-home"));
        assert_eq!(keys.tenant(Some(b"s3cr3tKe")), None);
        assert_eq!(keys.tenant(Some(b"")), None);
        assert_eq!(keys.tenant(None), None);
    }

    #[test]
    fn a_query_token_must_match_and_may_be_optional() {
        let pair = |v: &str| vec![("token".to_string(), v.to_string())];
        let strict = QueryToken::new("token".into(), "t0k3n", true);
        assert_eq!(strict.check(&pair("t0k3n")), Ok(()));
        assert_eq!(strict.check(&pair("t0k3")), Err(TokenError::Wrong("token".into())));
        assert_eq!(strict.check(&[]), Err(TokenError::Missing("token".into())));
        let lenient = QueryToken::new("token".into(), "t0k3n", false);
        assert_eq!(lenient.check(&[]), Ok(()));
        assert!(lenient.check(&pair("nope")).is_err());
    }

    #[test]
    fn basic_and_bearer_check_the_authorization_header() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        let basic = HeaderAuth::Basic { username: "user".into(), password: "pass".into() };
        assert_eq!(basic.check(&h), Ok(Some("user".into())));
        let bearer = HeaderAuth::Bearer { token: "t0ken".into() };
        assert!(bearer.check(&h).is_err());
        h.insert("authorization", "bearer t0ken".parse().unwrap());
        assert_eq!(bearer.check(&h), Ok(None));
    }
}
