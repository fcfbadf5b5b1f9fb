//! The console's sessions in memory: bounded in number, expiring after `[admin]
//! session_hours`, each kept by the SHA-256 digest of its random 32-byte cookie value (a
//! memory dump names no usable cookie) with the CSRF token its state-changing requests must
//! repeat; and the `hookyard_session` cookie as a security scheme of the management API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use poem::http::header;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use rand::RngExt;
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE: &str = "hookyard_session";
/// The header a cookie-authenticated state-changing request repeats the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at most; past it the one closest to expiring is dropped.
const MAX_SESSIONS: usize = 1_000;

/// One logged-in browser.
#[derive(Clone)]
pub struct Session {
    /// What state-changing requests repeat in `X-CSRF-Token`.
    pub csrf: String,
    /// When it ends, as Unix milliseconds.
    pub expires_ms: i64,
    expires: Instant,
}

/// The open sessions, by the digest of their cookie value.
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
    lifetime: Duration,
}

impl Sessions {
    pub fn new(hours: u64) -> Self {
        Self { open: Mutex::default(), lifetime: Duration::from_secs(hours.saturating_mul(3600)) }
    }

    /// How long a new session lasts, in seconds (the cookie's `Max-Age`).
    pub fn max_age(&self) -> u64 {
        self.lifetime.as_secs()
    }

    /// Opens a session: its cookie value (shown once, never kept) and the session.
    pub fn open(&self, now: Instant) -> (String, Session) {
        let id = random_hex();
        let expires_ms = unix_ms().saturating_add(self.lifetime.as_millis() as i64);
        let session = Session { csrf: random_hex(), expires_ms, expires: now + self.lifetime };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(soonest) = open.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            open.remove(&soonest);
        }
        open.insert(digest(&id), session.clone());
        (id, session)
    }

    /// The session of cookie value `id`, while it has not expired.
    pub fn find(&self, id: &str, now: Instant) -> Option<Session> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&digest(id)).filter(|s| s.expires > now).cloned()
    }

    /// Ends the session of cookie value `id`.
    pub fn close(&self, id: &str) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest(id));
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// The `hookyard_session` cookie's value in `req`, if it has one.
pub fn cookie_value(req: &poem::Request) -> Option<&str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE).then_some(value.trim_matches('"')))
}

/// The session cookie, as a security scheme of the management API.
pub struct SessionCookie(pub String);

impl<'a> ApiExtractor<'a> for SessionCookie {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            "SessionCookie",
            MetaSecurityScheme {
                ty: "apiKey",
                description: Some("The console's session cookie (`POST /api/session`)."),
                name: Some(COOKIE),
                key_in: Some("cookie"),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["SessionCookie"]
    }

    async fn from_request(
        req: &'a poem::Request,
        _body: &mut poem::RequestBody,
        _opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        cookie_value(req).map(|v| Self(v.to_owned())).ok_or_else(|| poem_openapi::error::AuthorizationError.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires() {
        let sessions = Sessions::new(12);
        let now = Instant::now();
        let (id, session) = sessions.open(now);
        assert_eq!(id.len(), 64);
        assert_eq!(sessions.find(&id, now).map(|s| s.csrf), Some(session.csrf));
        assert!(sessions.find(&id, now + Duration::from_secs(12 * 3600 + 1)).is_none());
        assert!(sessions.find("0000", now).is_none());
        sessions.close(&id);
        assert!(sessions.find(&id, now).is_none());
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let sessions = Sessions::new(1);
        let now = Instant::now();
        let first = sessions.open(now).0;
        for i in 1..=MAX_SESSIONS as u64 {
            sessions.open(now + Duration::from_millis(i));
        }
        assert!(sessions.find(&first, now).is_none());
        assert_eq!(sessions.open.lock().unwrap().len(), MAX_SESSIONS);
    }
}
