//! Console sessions: logging in with the admin token sets the `hookyard_session` cookie
//! (HttpOnly, SameSite=Strict, `Secure` over HTTPS), which then stands in for the bearer
//! token. Sessions live in memory, bounded in number, and expire after `[admin]
//! session_hours`; the server keeps only the SHA-256 digest of each random 32-byte id, so a
//! memory dump names no usable cookie. A session carries a CSRF token that every
//! state-changing request made with the cookie must repeat in `X-CSRF-Token`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use poem::http::header;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi};
use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::guard::{AdminError, AdminState, Shared, check_token, enabled, message};
use crate::event::rfc3339_millis;

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

/// The session behind `req`'s cookie, when it is valid for this request: not expired, and
/// for a state-changing method, the CSRF token repeated and the `Origin` (when sent) this host.
pub fn check(state: &AdminState, id: &str, req: &poem::Request) -> Result<Session, AdminError> {
    let session = state
        .sessions
        .find(id, Instant::now())
        .ok_or_else(|| AdminError::Unauthorized(message("the session is unknown or has expired: log in again")))?;
    if req.method() == poem::http::Method::GET || req.method() == poem::http::Method::HEAD {
        return Ok(session);
    }
    let given = req.header(CSRF_HEADER).unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes())) {
        return Err(AdminError::Forbidden(message("csrf check failed: the X-CSRF-Token header is missing or wrong")));
    }
    if let Some(origin) = req.header(header::ORIGIN)
        && !same_host(origin, req.header(header::HOST).unwrap_or_default())
    {
        return Err(AdminError::Forbidden(message("origin check failed: the Origin header is not this server")));
    }
    Ok(session)
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (the `Host` header).
fn same_host(origin: &str, host: &str) -> bool {
    origin.split_once("://").is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host))
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

/// Log-in: the admin token.
#[derive(Object)]
pub struct LogIn {
    pub token: String,
}

/// An open session.
#[derive(Object)]
pub struct SessionInfo {
    /// Repeat it in `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
    pub expires_at: String,
    pub expires_ms: i64,
}

impl From<&Session> for SessionInfo {
    fn from(s: &Session) -> Self {
        Self { csrf_token: s.csrf.clone(), expires_at: rfc3339_millis(s.expires_ms), expires_ms: s.expires_ms }
    }
}

/// The answer of a log-in.
#[derive(ApiResponse)]
pub enum Opened {
    /// Logged in: the session cookie is set.
    #[oai(status = 200)]
    Ok(Json<SessionInfo>, #[oai(header = "Set-Cookie")] String),
}

/// The answer of a log-out.
#[derive(ApiResponse)]
pub enum Closed {
    /// Logged out: the session has ended and the cookie is cleared.
    #[oai(status = 204)]
    Ok(#[oai(header = "Set-Cookie")] String),
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// The console's log-in and log-out.
pub struct SessionApi {
    pub state: Shared,
}

#[OpenApi]
impl SessionApi {
    /// Log in with the admin token: sets the session cookie; answers the CSRF token.
    #[oai(path = "/api/session", method = "post")]
    async fn log_in(&self, req: &poem::Request, body: Json<LogIn>) -> Result<Opened, AdminError> {
        let state = enabled(&self.state)?;
        check_token(state, &body.0.token, req)?;
        let (id, session) = state.sessions.open(Instant::now());
        let secure = state.came_over_https(req);
        Ok(Opened::Ok(Json((&session).into()), set_cookie(&id, state.sessions.max_age(), secure)))
    }

    /// The current session (by its cookie): its CSRF token and when it ends.
    #[oai(path = "/api/session", method = "get")]
    async fn current(&self, req: &poem::Request, auth: SessionCookie) -> Result<Json<SessionInfo>, AdminError> {
        let state = enabled(&self.state)?;
        let session = check(state, &auth.0, req)?;
        Ok(Json((&session).into()))
    }

    /// Log out: ends the session and clears the cookie (`X-CSRF-Token` required).
    #[oai(path = "/api/session", method = "delete")]
    async fn log_out(&self, req: &poem::Request, auth: SessionCookie) -> Result<Closed, AdminError> {
        let state = enabled(&self.state)?;
        check(state, &auth.0, req)?;
        state.sessions.close(&auth.0);
        Ok(Closed::Ok(set_cookie("", 0, state.came_over_https(req))))
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

    #[test]
    fn an_origin_must_name_the_host() {
        assert!(same_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_host("https://Hooks.example", "hooks.example"));
        assert!(!same_host("https://evil.example", "hooks.example"));
        assert!(!same_host("null", "hooks.example"));
        assert!(!same_host("http://hooks.example", ""));
    }
}
