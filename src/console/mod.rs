//! The console at `/console/`: static pages built into the binary, drawn by small scripts
//! that read the management API (every figure comes from a JSON endpoint in the Swagger UI).
//!
//! A page without a valid session cookie is answered with a redirect (303) to the log-in
//! form; without an `[admin] token` configured every page says how to turn the console on.
//! Every answer carries a strict `Content-Security-Policy` (no inline script, nothing from
//! another origin) and `X-Frame-Options: DENY`; pages are never cached, static files are
//! revalidated by `ETag`.

mod assets;

use std::time::Instant;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, Request, Response};

use crate::admin::Shared;
use crate::admin::sessions::cookie_value;

/// What the console's pages may load and do: only this server's own files and API.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// Top-level pages (`/console/<page>`, and the pages below `requests/`, `rejected/` and
/// `meters/`) that need a session.
const PAGES: &[&str] = &["", "log", "requests", "rejected", "replay", "meters", "health", "setup"];

/// The console's endpoint (nested at `/console`), reading sessions from the management state.
pub fn endpoint(state: Shared) -> Console {
    Console { state }
}

/// Serves the console's pages and files.
pub struct Console {
    state: Shared,
}

impl Endpoint for Console {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let mut response = self.answer(&req);
        secure_headers(&mut response);
        Ok(response)
    }
}

impl Console {
    fn answer(&self, req: &Request) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "the console only answers GET");
        }
        let path = req.original_uri().path();
        let Some(rest) = path.strip_prefix("/console/") else {
            return redirect(StatusCode::PERMANENT_REDIRECT, "/console/");
        };
        if let Some(name) = rest.strip_prefix("static/") {
            return static_file(req, name);
        }
        if rest == "login" {
            return page(if self.state.is_some() { assets::LOGIN } else { assets::DISABLED });
        }
        let first = rest.split('/').next().unwrap_or_default();
        if !PAGES.contains(&first) {
            return plain(StatusCode::NOT_FOUND, "no such console page");
        }
        match self.state.as_ref() {
            None => page(assets::DISABLED),
            Some(state) if cookie_value(req).and_then(|id| state.sessions.find(id, Instant::now())).is_some() => {
                page(assets::APP)
            }
            Some(_) => redirect(StatusCode::SEE_OTHER, &login_url(req)),
        }
    }
}

/// The log-in form's URL, with where to go back to afterwards.
fn login_url(req: &Request) -> String {
    let back = req.original_uri().path_and_query().map_or("/console/", |p| p.as_str());
    format!("/console/login?next={}", utf8_percent_encode(back, NON_ALPHANUMERIC))
}

fn static_file(req: &Request, name: &str) -> Response {
    let Some((asset, tag)) = assets::find(name) else {
        return plain(StatusCode::NOT_FOUND, "no such file");
    };
    let builder = Response::builder().header(header::ETAG, tag).header(header::CACHE_CONTROL, "no-cache");
    if req.header(header::IF_NONE_MATCH).is_some_and(|given| given.split(',').any(|t| t.trim() == tag)) {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder.content_type(asset.content_type).body(asset.bytes)
}

fn page(html: &'static str) -> Response {
    Response::builder().content_type("text/html; charset=utf-8").header(header::CACHE_CONTROL, "no-store").body(html)
}

fn redirect(status: StatusCode, to: &str) -> Response {
    Response::builder().status(status).header(header::LOCATION, to).header(header::CACHE_CONTROL, "no-store").finish()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    Response::builder().status(status).content_type("text/plain; charset=utf-8").body(text)
}

fn secure_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}
