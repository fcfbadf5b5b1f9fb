//! The console's log-in through the real server: the session cookie, its CSRF and `Origin`
//! checks, log-out, the lockout on wrong tokens, and the console's pages and files (refused
//! without a session, their security headers, the page that says how to turn it on).

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n";

/// A client that follows no redirects (so a 303 is seen as it is).
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Logs in: (`hookyard_session=<id>` for a Cookie header, the CSRF token, the Set-Cookie line).
pub async fn log_in(app: &TestApp) -> (String, String, String) {
    let res = app.client.post(app.url("/api/session")).json(&json!({ "token": "adm1n" })).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let set_cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    (pair, body["csrf_token"].as_str().unwrap().to_owned(), set_cookie)
}

async fn status_and_message(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["message"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn logging_in_sets_a_strict_http_only_cookie_that_works_for_reading() {
    let app = spawn_app(CONFIG).await;
    let (cookie, csrf, set_cookie) = log_in(&app).await;
    assert!(cookie.starts_with("hookyard_session=") && cookie.len() == "hookyard_session=".len() + 64, "{cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP gets no Secure cookie: {set_cookie}");
    assert_eq!(csrf.len(), 64);

    let res = app.client.get(app.url("/api/session")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["csrf_token"], csrf.as_str());
    assert!(info["expires_at"].as_str().unwrap().ends_with('Z'), "{info}");
    let res = app.client.get(app.url("/api/events")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200, "the cookie stands in for the bearer token on GET");
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn the_cookie_is_secure_when_a_trusted_proxy_says_the_request_came_over_https() {
    let app =
        spawn_app("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[admin]\ntoken = \"adm1n\"\nsession_hours = 2\n")
            .await;
    let log_in = |proto: &'static str| {
        app.client.post(app.url("/api/session")).header("X-Forwarded-Proto", proto).json(&json!({ "token": "adm1n" }))
    };
    let res = log_in("https").send().await.unwrap();
    let set_cookie = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.ends_with("; Max-Age=7200; Secure"), "{set_cookie}");
    let res = log_in("http").send().await.unwrap();
    assert!(!res.headers()[SET_COOKIE].to_str().unwrap().contains("Secure"));
}

#[tokio::test]
async fn a_state_changing_call_with_the_cookie_needs_the_csrf_token_and_a_matching_origin() {
    let app = spawn_app(CONFIG).await;
    let (cookie, csrf, _) = log_in(&app).await;
    let replay = || app.client.post(app.url("/api/replay")).header(COOKIE, &cookie).json(&json!({}));

    let (status, message) = status_and_message(replay().send().await.unwrap()).await;
    assert_eq!((status, message.as_str()), (403, "csrf check failed: the X-CSRF-Token header is missing or wrong"));
    let (status, _) = status_and_message(replay().header("X-CSRF-Token", "0".repeat(64)).send().await.unwrap()).await;
    assert_eq!(status, 403);
    let res = replay().header("X-CSRF-Token", &csrf).header("Origin", "http://evil.example").send().await.unwrap();
    let (status, message) = status_and_message(res).await;
    assert_eq!((status, message.as_str()), (403, "origin check failed: the Origin header is not this server"));

    let origin = format!("http://{}", app.addr);
    let res = replay().header("X-CSRF-Token", &csrf).header("Origin", origin).send().await.unwrap();
    assert_eq!(res.status(), 200, "the right token from this origin passes");
    let res = replay().header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(res.status(), 200, "a request without Origin (not a browser's cross-site one) passes");
    // The bearer token needs no CSRF token: it is not sent by a browser on its own.
    let res = app.client.post(app.url("/api/replay")).bearer_auth("adm1n").json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_unknown_or_logged_out_cookie_is_refused() {
    let app = spawn_app(CONFIG).await;
    let unknown = format!("hookyard_session={}", "ab".repeat(32));
    for path in ["/api/session", "/api/events"] {
        let res = app.client.get(app.url(path)).header(COOKIE, &unknown).send().await.unwrap();
        let (status, message) = status_and_message(res).await;
        assert_eq!((status, message.as_str()), (401, "the session is unknown or has expired: log in again"), "{path}");
    }
    assert_eq!(app.client.get(app.url("/api/session")).send().await.unwrap().status(), 401);

    let (cookie, csrf, _) = log_in(&app).await;
    let res = app.client.delete(app.url("/api/session")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(res.status(), 403, "log-out is state-changing: it needs the CSRF token");
    let res =
        app.client.delete(app.url("/api/session")).header(COOKIE, &cookie).header("X-CSRF-Token", &csrf).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), 204);
    let cleared = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("hookyard_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    for path in ["/api/session", "/api/events"] {
        let res = app.client.get(app.url(path)).header(COOKIE, &cookie).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path} after log-out");
    }
}

#[tokio::test]
async fn wrong_tokens_at_log_in_are_refused_then_locked_out() {
    let app = spawn_app(CONFIG).await;
    let attempt = || app.client.post(app.url("/api/session")).json(&json!({ "token": "guess" })).send();
    let (status, message) = status_and_message(attempt().await.unwrap()).await;
    assert_eq!((status, message.as_str()), (401, "invalid admin token"));
    for _ in 1..10 {
        assert_eq!(attempt().await.unwrap().status(), 401);
    }
    let res = attempt().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    // Even the right token waits now, as on the API.
    let res = app.client.post(app.url("/api/session")).json(&json!({ "token": "adm1n" })).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_page_without_the_cookie_redirects_to_the_log_in_form() {
    let app = spawn_app(CONFIG).await;
    let client = plain_client();
    for (path, back) in [
        ("/console/", "%2Fconsole%2F"),
        ("/console/log?status=failed", "%2Fconsole%2Flog%3Fstatus%3Dfailed"),
        ("/console/requests/1", "%2Fconsole%2Frequests%2F1"),
        ("/console/meters/x", "%2Fconsole%2Fmeters%2Fx"),
        ("/console/health", "%2Fconsole%2Fhealth"),
        ("/console/setup", "%2Fconsole%2Fsetup"),
    ] {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(res.headers()[LOCATION], format!("/console/login?next={back}").as_str(), "{path}");
        let res = client.get(app.url(path)).header(COOKIE, format!("hookyard_session={}", "0".repeat(64)));
        assert_eq!(res.send().await.unwrap().status(), 303, "{path} with an unknown cookie");
    }
    let res = client.get(app.url("/console")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()[LOCATION].to_str().unwrap()), (308, "/console/"));

    let (cookie, _, _) = log_in(&app).await;
    let res = client.get(app.url("/console/log")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'; script-src 'self';"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/static/app.js">"#), "{html}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style");
    let res = client.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains(r#"type="password""#));
    assert_eq!(client.get(app.url("/console/nothing")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn static_files_are_embedded_typed_and_revalidated() {
    let app = spawn_app(CONFIG).await;
    for (path, content_type) in [
        ("/console/static/app.js", "text/javascript; charset=utf-8"),
        ("/console/static/console.css", "text/css; charset=utf-8"),
        ("/console/static/vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], content_type, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-cache");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let tag = res.headers()["etag"].to_str().unwrap().to_owned();
        let on_disk = std::fs::read(format!("{}/src/console/assets/{}", crate::helpers::REPO, &path[16..])).unwrap();
        assert_eq!(res.bytes().await.unwrap(), on_disk, "{path}");
        let again = app.client.get(app.url(path)).header("If-None-Match", &tag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    assert_eq!(app.client.get(app.url("/console/static/nope.js")).send().await.unwrap().status(), 404);
    assert_eq!(app.client.post(app.url("/console/log")).send().await.unwrap().status(), 405);
}

#[tokio::test]
async fn without_a_token_the_console_says_how_to_turn_it_on() {
    let app = spawn_app("").await;
    let res = plain_client().get(app.url("/console/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("[admin]") && html.contains("HOOKYARD_ADMIN_TOKEN"), "{html}");
    let res = app.client.post(app.url("/api/session")).json(&json!({ "token": "x" })).send().await.unwrap();
    assert_eq!(res.status(), 404, "no log-in without a token");
}
