//! The console in a real headless Chromium (Debian `chromium`, driven over WebDriver by
//! `chromedriver` from `chromium-driver`, which each test starts on a free port): log-in, the
//! live log receiving an event without a reload, the inspector, replay and dry-run diff, a
//! meter page, a rejected request, the other pages, and log-out. Every page's screenshot is
//! saved under `target/console-screenshots/`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{
    Setup, TestApp, ai_reading, gridx_ping, gridx_signature, post_ai, post_gridx, read_fixture, spawn_with,
};

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n\
                      [protocols.gridx]\nsecrets = [\"s\"]\n";

const SCRIPT: &str = r#"
fn on_event(event) {
    log(`got ${event.data.data.message}`);
    append_json("gridx/events.jsonl", event.data.data);
}
"#;

/// The same handler, changed: what a dry run then shows as a diff.
const CHANGED_SCRIPT: &str = r#"
fn on_event(event) {
    append_json("gridx/events.jsonl", #{ message: event.data.data.message, checked: true });
}
"#;

async fn spawn() -> TestApp {
    spawn_with(Setup { config: CONFIG, scripts: vec![("gridx.rhai", SCRIPT)], ..Setup::default() }).await
}

/// Readings of meter `main` every two hours for three days, the last one two hours ago;
/// returns the first one's time (Unix seconds).
pub(crate) async fn seed_three_days(app: &TestApp) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let start = now - 3 * 86_400;
    for i in 0..36u64 {
        let reading = ai_reading("main", &format!("{:.3}", 100.0 + i as f64 * 0.5), start + i * 7200);
        assert_eq!(post_ai(app, reading).await.0, 200);
    }
    start
}

async fn bearer_json(app: &TestApp, path: &str) -> Value {
    let res = app.client.get(app.url(path)).bearer_auth("adm1n").send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn log_in_watch_an_event_arrive_inspect_replay_dry_run_and_log_out() {
    let app = spawn().await;
    let b = Browser::start().await;
    b.goto(&app.url("/console/log")).await;
    assert!(b.url().await.ends_with("/console/login?next=%2Fconsole%2Flog"), "{}", b.url().await);
    b.shot("login").await;
    b.log_in("adm1n").await;
    assert!(b.url().await.ends_with("/console/log"));
    b.until("document.querySelector('#live-indicator').textContent === 'live'").await;
    b.js("window.notReloaded = true; return true").await;

    let body = gridx_ping(1, "hello");
    assert_eq!(post_gridx(&app.client, &app.url(""), "s", body.clone()).await.unwrap(), 204);
    b.until("[...document.querySelectorAll('#log-table tbody tr')].some(r => r.textContent.includes('gridx'))").await;
    assert_eq!(b.js("return window.notReloaded === true").await, json!(true), "the entry came without a reload");
    b.shot("log").await;

    b.click("#log-table tbody tr a").await;
    b.until("document.querySelector('#headers') !== null").await;
    let headers = b.text("#headers").await;
    assert!(headers.contains("x-signature") && headers.contains("••••"), "{headers}");
    assert!(!headers.contains("sha512="), "the signature value is masked: {headers}");
    assert_eq!(b.text("#raw-body").await, body);
    b.shot("inspector").await;

    b.click("#replay").await;
    b.until("document.querySelector('#action-result').textContent.includes('processed')").await;
    std::fs::write(app.scripts().join("gridx.rhai"), CHANGED_SCRIPT).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    b.click("#dry-run").await;
    b.until("document.querySelector('#action-result .diff .add') !== null").await;
    let diff = b.text("#action-result .diff").await;
    assert!(diff.contains(r#""checked":true"#) && diff.contains(r#"{"message":"hello"}"#), "{diff}");
    b.shot("dry-run").await;
    b.click("#curl-button").await;
    b.until("document.querySelector('#curl') !== null").await;
    let curl = b.text("#curl").await;
    assert!(
        curl.starts_with("curl")
            && curl.contains("/gridx/events")
            && !curl.contains(&gridx_signature("s", body.as_bytes())),
        "{curl}"
    );
    let fixture = b.js("return document.querySelector('#fixture').getAttribute('href')").await;
    let res = app.client.get(app.url(fixture.as_str().unwrap())).bearer_auth("adm1n").send().await.unwrap();
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));

    let cookie = b.session_cookie().await.expect("logged in: the session cookie is set");
    b.click("#logout").await;
    b.until("location.pathname === '/console/login'").await;
    b.goto(&app.url("/console/log")).await;
    assert!(b.url().await.contains("/console/login"), "after log-out a page asks for the token again");
    let res = app.client.get(app.url("/api/session")).header("Cookie", format!("hookyard_session={cookie}"));
    assert_eq!(res.send().await.unwrap().status(), 401, "the session ended on the server too");
    b.close().await;
}

#[tokio::test]
async fn a_meter_page_draws_its_plot_consumption_per_day_and_the_last_image() {
    let app = spawn().await;
    let start = seed_three_days(&app).await;
    let last = start + 35 * 7200;
    let res = app.client.put(app.url(&format!("/ai-on-the-edge/webhook?timestamp={last}"))).header("APIKEY", "k");
    let res = res.header("Content-Type", "image/jpeg").body(read_fixture("ai-on-the-edge/meter.jpg")).send().await;
    assert!(res.unwrap().status().is_success());
    let series = bearer_json(&app, "/api/series").await;
    let id = series[0]["id"].as_str().expect("a series from the readings").to_owned();

    let b = Browser::start().await;
    b.goto(&app.url("/console/meters")).await;
    b.log_in("adm1n").await;
    b.until("document.querySelector('#series-table') !== null").await;
    assert!(b.text("#series-table").await.contains("home / main"));
    b.shot("meters").await;
    b.click("#series-table a").await;
    b.until(&format!("location.pathname === '/console/meters/{id}'")).await;
    b.until("document.querySelector('#plot canvas') !== null && document.querySelector('#daily-table') !== null").await;
    let inked = b.js(INKED_PIXELS).await.as_u64().unwrap_or(0);
    assert!(inked > 500, "the plot is drawn ({inked} pixels)");
    assert!(b.text("#plot-note").await.starts_with("36 of 36 readings"), "{}", b.text("#plot-note").await);
    let days = b.js("return document.querySelectorAll('#daily-table tbody tr').length").await.as_u64().unwrap();
    assert!(days >= 3, "consumption per day: {days} rows");
    assert_eq!(b.js("return !!document.querySelector('#daily canvas')").await, json!(true), "the daily bars are drawn");
    b.until("document.querySelector('#last-image').complete").await;
    assert!(b.js("return document.querySelector('#last-image').naturalWidth").await.as_u64().unwrap() > 0);
    b.tall_shot("meter", 1280).await;
    b.close().await;
}

const ROWS: &str = "document.querySelectorAll('#log-table tbody tr').length";

#[tokio::test]
async fn the_live_log_pages_stably_keeps_its_filters_in_the_url_and_fits_a_phone() {
    let app = spawn().await;
    for n in 1..=60 {
        assert_eq!(post_gridx(&app.client, &app.url(""), "s", gridx_ping(n, "m")).await.unwrap(), 204);
    }
    let b = Browser::start().await;
    b.goto(&app.url("/console/log?protocol=gridx")).await;
    b.log_in("adm1n").await;
    b.until(&format!("{ROWS} === 50 && !document.querySelector('#older').hidden")).await;
    b.until("document.querySelector('#live-indicator').textContent === 'live'").await;
    assert_eq!(post_gridx(&app.client, &app.url(""), "s", gridx_ping(61, "m")).await.unwrap(), 204);
    b.until(&format!("{ROWS} === 51")).await;
    b.click("#older").await;
    b.until(&format!("{ROWS} === 61 && document.querySelector('#older').hidden")).await;
    let ids = b.js("return [...document.querySelectorAll('#log-table tbody tr')].map(r => r.cells[4].textContent.split(' ')[0])").await;
    let mut ids: Vec<String> = serde_json::from_value(ids).unwrap();
    assert_eq!(ids[0], "#61", "the new entry is on top");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 61, "older pages neither repeat nor skip an entry");

    b.type_into("#f-source", "nobody").await;
    b.click("#log-filters button[type=submit]").await;
    b.until("location.search === '?protocol=gridx&source=nobody' && document.querySelector('#log-empty') !== null")
        .await;
    b.goto(&app.url("/console/log?protocol=gridx&source=nobody")).await;
    b.until("document.querySelector('#f-source').value === 'nobody' && document.querySelector('#f-protocol').value === 'gridx'").await;

    b.resize(400, 860).await;
    b.goto(&app.url("/console/log?protocol=gridx")).await;
    b.until(&format!("{ROWS} === 50 && window.innerWidth < 720")).await;
    assert_eq!(b.js("return getComputedStyle(document.querySelector('#nav')).display").await, json!("none"));
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth && \
                document.querySelector('#log-table').scrollWidth > document.querySelector('#log-table').clientWidth";
    assert_eq!(b.js(fits).await, json!(true), "the page fits the phone; the table scrolls inside it");
    b.shot("log-phone").await;
    b.click(".nav-burger").await;
    b.until("getComputedStyle(document.querySelector('#nav')).display === 'flex'").await;
    b.shot("nav-phone").await;
    b.close().await;
}

#[tokio::test]
async fn with_a_dark_system_setting_the_pages_are_dark() {
    let app = spawn().await;
    assert_eq!(post_gridx(&app.client, &app.url(""), "s", gridx_ping(1, "m")).await.unwrap(), 204);
    let b = Browser::start_with(&["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]).await;
    b.goto(&app.url("/console/health")).await;
    assert_eq!(b.js("return matchMedia('(prefers-color-scheme: dark)').matches").await, json!(true));
    assert_eq!(b.js("return getComputedStyle(document.body).backgroundColor").await, json!("rgb(20, 24, 22)"));
    b.shot("login-dark").await;
    b.log_in("adm1n").await;
    b.until("document.querySelector('#sources') !== null && document.querySelector('#stats canvas') !== null").await;
    assert_eq!(
        b.js("return getComputedStyle(document.querySelector('.card')).backgroundColor").await,
        json!("rgb(29, 35, 32)")
    );
    b.shot("health-dark").await;
    b.close().await;
}

/// The number of non-transparent pixels of the value plot's canvas.
const INKED_PIXELS: &str = "const c = document.querySelector('#plot canvas'); \
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;";

#[tokio::test]
async fn a_rejected_request_shows_its_reason_and_the_other_pages_draw() {
    let app = spawn().await;
    let res = app.client.post(app.url("/gridx/events")).header("X-Signature", "sha512=00").body(gridx_ping(7, "x"));
    assert_eq!(res.send().await.unwrap().status(), 401);
    assert_eq!(post_gridx(&app.client, &app.url(""), "s", gridx_ping(8, "fine")).await.unwrap(), 204);

    let b = Browser::start().await;
    b.goto(&app.url("/console/log?status=rejected")).await;
    b.log_in("adm1n").await;
    b.until("document.querySelectorAll('#log-table tbody tr').length === 1").await;
    b.click("#log-table tbody tr a").await;
    b.until("document.querySelector('#reason') !== null").await;
    let reason = b.text("#reason").await;
    assert!(reason.starts_with("hmac: "), "{reason}");
    b.shot("rejected").await;

    b.goto(&app.url("/console/replay?protocol=gridx")).await;
    b.click("#count").await;
    b.until("document.querySelector('#confirm-replay') !== null").await;
    assert_eq!(b.text("#confirm-replay").await, "Replay 1 events");
    b.click("#confirm-replay").await;
    b.until("document.querySelector('#replay-out h2')?.textContent === 'Replayed'").await;
    assert!(b.text("#replay-summary").await.contains("1 processed"));
    b.shot("replay").await;

    b.goto(&app.url("/console/health")).await;
    b.until("document.querySelector('#sources') !== null && document.querySelector('#stats canvas') !== null").await;
    assert!(b.text("#sources").await.contains("gridx"));
    b.shot("health").await;

    b.goto(&app.url("/console/setup")).await;
    b.until("document.querySelector('[data-protocol=gridx] .send-test') !== null").await;
    b.click("[data-protocol=gridx] .send-test").await;
    b.until("document.querySelector('[data-protocol=gridx] .test-log-link') !== null").await;
    b.type_into("[data-protocol=gridx] .reveal-form input", "adm1n").await;
    b.click("[data-protocol=gridx] .reveal-form button").await;
    b.until("document.querySelector('[data-protocol=gridx] .revealed') !== null").await;
    assert!(b.text("[data-protocol=gridx] .revealed").await.contains("secrets"));
    b.shot("setup").await;
    b.click("[data-protocol=gridx] .test-log-link").await;
    b.until("document.querySelectorAll('#log-table tbody tr').length > 0").await;
    b.close().await;
}
