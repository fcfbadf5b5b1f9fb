//! Console sessions: logging in with the admin token sets the `hookyard_session` cookie
//! (HttpOnly, SameSite=Strict, `Secure` over HTTPS), which then stands in for the bearer
//! token. Sessions live in memory, bounded in number, and expire after `[admin]
//! session_hours`; the server keeps only the SHA-256 digest of each random 32-byte id, so a
//! memory dump names no usable cookie. A session carries a CSRF token that every
//! state-changing request made with the cookie must repeat in `X-CSRF-Token`.

use std::time::Instant;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::guard::{AdminError, Shared, check_session, check_token, enabled};
use super::sessions::{COOKIE, Session, SessionCookie};
use crate::event::rfc3339_millis;

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
        let session = check_session(state, &auth.0, req)?;
        Ok(Json((&session).into()))
    }

    /// Log out: ends the session and clears the cookie (`X-CSRF-Token` required).
    #[oai(path = "/api/session", method = "delete")]
    async fn log_out(&self, req: &poem::Request, auth: SessionCookie) -> Result<Closed, AdminError> {
        let state = enabled(&self.state)?;
        check_session(state, &auth.0, req)?;
        state.sessions.close(&auth.0);
        Ok(Closed::Ok(set_cookie("", 0, state.came_over_https(req))))
    }
}
