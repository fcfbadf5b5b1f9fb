//! Who may call the management API: the admin token (as a bearer token), checked in
//! constant time, with failed attempts counted per client address (`lockout`), or a console
//! session's cookie (`session.rs`: CSRF and `Origin` checked on state-changing calls). Every
//! protected endpoint takes an [`AdminAuth`] and calls [`guard`]; the error type and its
//! helpers live here so each API of the management service shares them.

use std::sync::Arc;
use std::time::Instant;

use poem::http::header;
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, SecurityScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::sessions::{CSRF_HEADER, Session, SessionCookie, Sessions};
use crate::ingest::Pipeline;
use crate::tls::HttpsGate;

/// How a management call proves it may: the admin token as `Authorization: Bearer <token>`,
/// or the console's session cookie.
#[derive(SecurityScheme)]
pub enum AdminAuth {
    Bearer(BearerToken),
    Session(SessionCookie),
}

/// The admin token, as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct BearerToken(Bearer);

/// What the management API needs from the running server.
pub struct AdminState {
    pub token_digest: [u8; 32],
    pub pipeline: Arc<Pipeline>,
    /// Journaled events are derived again from their bodies through these.
    pub splits: Arc<crate::ingest::Splits>,
    /// The console's logged-in browsers.
    pub sessions: Sessions,
    /// How HTTPS is recognised (`None`: only the request's own scheme tells).
    pub https: Option<Arc<HttpsGate>>,
}

impl AdminState {
    /// Whether `req` came over HTTPS (directly, or as a trusted proxy says).
    pub fn came_over_https(&self, req: &poem::Request) -> bool {
        match &self.https {
            Some(gate) => gate.came_over_https(req),
            None => *req.scheme() == poem::http::uri::Scheme::HTTPS,
        }
    }
}

/// A message explaining a refusal.
#[derive(Object)]
pub struct ApiMessage {
    pub message: String,
}

/// Why a management call was refused.
#[derive(ApiResponse)]
pub enum AdminError {
    /// The bearer token is missing or wrong, or the session is unknown or has expired.
    #[oai(status = 401)]
    Unauthorized(Json<ApiMessage>),
    /// A session's state-changing call failed its CSRF or `Origin` check.
    #[oai(status = 403)]
    Forbidden(Json<ApiMessage>),
    /// The management API is disabled (no admin token configured), or there is no such event.
    #[oai(status = 404)]
    NotFound(Json<ApiMessage>),
    /// A parameter is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ApiMessage>),
    /// A call that takes a JSON body was sent none, or one of another type than
    /// `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ApiMessage>),
    /// Too many wrong tokens from this address: retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyAttempts(Json<ApiMessage>, #[oai(header = "Retry-After")] u64),
    /// The journal could not be read.
    #[oai(status = 500)]
    Internal(Json<ApiMessage>),
}

/// The JSON body of a refusal.
pub fn message(text: impl Into<String>) -> Json<ApiMessage> {
    Json(ApiMessage { message: text.into() })
}

/// A journal read failed: logged, and answered 500 without the details.
pub fn internal(e: impl std::fmt::Display) -> AdminError {
    tracing::error!(error = %e, "management API could not read the journal");
    AdminError::Internal(message("the journal could not be read"))
}

/// The management state every API of the service shares (`None`: disabled).
pub type Shared = Arc<Option<AdminState>>;

/// The state, unless the management API is disabled (no admin token configured).
pub fn enabled(state: &Shared) -> Result<&AdminState, AdminError> {
    state
        .as_ref()
        .as_ref()
        .ok_or_else(|| AdminError::NotFound(message("the management API is disabled: set [admin] token")))
}

/// The state, when `auth` is right and its sender is not refused for failing too often.
pub fn guard<'a>(state: &'a Shared, auth: &AdminAuth, req: &poem::Request) -> Result<&'a AdminState, AdminError> {
    let state = enabled(state)?;
    match auth {
        AdminAuth::Bearer(bearer) => check_token(state, &bearer.0.token, req)?,
        AdminAuth::Session(cookie) => drop(check_session(state, &cookie.0, req)?),
    }
    Ok(state)
}

/// Whether `token` is the admin token, counting a wrong one against the sender's address.
pub fn check_token(state: &AdminState, token: &str, req: &poem::Request) -> Result<(), AdminError> {
    check_token_with(state, &state.pipeline.lockout, token, req)
}

/// [`check_token`], with failed attempts counted by `lockout` (a check of its own, such as
/// the token entered again to reveal credentials, which a later right token must not reset).
pub fn check_token_with(
    state: &AdminState,
    lockout: &crate::lockout::Lockout,
    token: &str,
    req: &poem::Request,
) -> Result<(), AdminError> {
    let ip = req.remote_addr().as_socket_addr().map(|a| a.ip());
    if let Some(wait) = lockout.refused(ip, std::time::Instant::now()) {
        let text = format!("too many wrong tokens from this address; retry in {wait} s");
        return Err(AdminError::TooManyAttempts(message(text), wait));
    }
    let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if bool::from(given.ct_eq(&state.token_digest)) {
        lockout.succeeded(ip);
        return Ok(());
    }
    let client = ip.map(|ip| ip.to_string()).unwrap_or_default();
    let refused = lockout.failed(ip, std::time::Instant::now());
    tracing::warn!(%client, path = %req.uri().path(), refused, "management API: invalid admin token");
    Err(AdminError::Unauthorized(message("invalid admin token")))
}

/// The session behind `req`'s cookie, when it is valid for this request: not expired, and
/// for a state-changing method, the CSRF token repeated and the `Origin` (when sent) this host.
pub fn check_session(state: &AdminState, id: &str, req: &poem::Request) -> Result<Session, AdminError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_must_name_the_host() {
        assert!(same_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_host("https://Hooks.example", "hooks.example"));
        assert!(!same_host("https://evil.example", "hooks.example"));
        assert!(!same_host("null", "hooks.example"));
        assert!(!same_host("http://hooks.example", ""));
    }
}
