//! `/metrics` as Prometheus tooling reads it: after one request of each protocol, every
//! family has samples and `promtool check metrics` finds nothing to report.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{TestApp, fixture_text, fresh_gridx, gridx_signature, read_fixture, spawn_app};

const CONFIG: &str = r#"
[admin]
token = "adm1n"
[protocols.ai-on-the-edge]
api_keys = { "s3cr3tKey" = "home" }
[protocols.gridx]
secrets = ["s"]
[protocols.wattmon]
require_token = false
[protocols.wattsense]
auth = { type = "none" }
"#;

/// POSTs a fixture file to `path` with `headers`; the status.
async fn post(app: &TestApp, path: &str, fixture: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = app.client.post(app.url(path)).body(read_fixture(fixture));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// One accepted request of each protocol, and one refused.
async fn one_request_of_each_protocol(app: &TestApp) {
    let json = ("Content-Type", "application/json");
    let event = fresh_gridx(fixture_text("gridx/examples.jsonl").lines().next().unwrap());
    let signature = gridx_signature("s", event.as_bytes());
    let res = app.client.post(app.url("/gridx/events")).header("X-Signature", signature).body(event).send().await;
    assert_eq!(res.unwrap().status(), 204);
    let key = ("APIKEY", "s3cr3tKey");
    assert_eq!(post(app, "/ai-on-the-edge/webhook", "ai-on-the-edge/body_ok_single.json", &[json, key]).await, 200);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    assert_eq!(post(app, "/wattmon/export", "wattmon/urlencoded-md5.body", &[form]).await, 200);
    assert_eq!(post(app, "/wattsense/values", "wattsense/values.json", &[json]).await, 200);
    assert_eq!(post(app, "/ai-on-the-edge/webhook", "ai-on-the-edge/body_ok_single.json", &[json]).await, 403);
}

async fn scrape(app: &TestApp, accept: Option<&str>) -> (String, String) {
    let mut req = app.client.get(app.url("/metrics")).bearer_auth("adm1n");
    if let Some(accept) = accept {
        req = req.header("Accept", accept);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, res.text().await.unwrap())
}

/// `promtool check metrics` over `text`: (success, everything it printed).
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool cannot run ({e}): install it (Debian package prometheus; tools/services.sh does)")
        });
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

#[tokio::test]
async fn promtool_accepts_the_metrics_after_one_request_of_each_protocol() {
    let app = spawn_app(CONFIG).await;
    one_request_of_each_protocol(&app).await;
    let (content_type, text) = scrape(&app, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for protocol in ["ai-on-the-edge", "gridx", "wattmon", "wattsense"] {
        let sample = format!("hookyard_events_total{{protocol=\"{protocol}\",outcome=\"processed\"}}");
        assert!(text.contains(&sample), "no {sample} in\n{text}");
    }
    for family in
        ["hookyard_requests_total", "hookyard_events_total", "hookyard_script_seconds", "hookyard_journal_bytes"]
    {
        assert!(text.contains(&format!("# HELP {family} ")), "no HELP for {family} in\n{text}");
        assert!(text.lines().any(|l| l.starts_with(family) && !l.ends_with(" 0")), "no sample of {family} in\n{text}");
    }
    let (clean, printed) = promtool_check(&text);
    assert!(clean && printed.trim().is_empty(), "promtool check metrics:\n{printed}\nover\n{text}");
}

#[tokio::test]
async fn a_scraper_asking_for_openmetrics_gets_it_with_units() {
    let app = spawn_app(CONFIG).await;
    one_request_of_each_protocol(&app).await;
    let accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let (content_type, text) = scrape(&app, Some(accept)).await;
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(text.contains("# TYPE hookyard_requests counter\n"), "{text}");
    assert!(text.contains("# UNIT hookyard_script_seconds seconds\n"), "{text}");
    assert!(text.contains("# UNIT hookyard_journal_bytes bytes\n"), "{text}");
    assert!(text.contains(r#"hookyard_requests_total{protocol="ai-on-the-edge",route="/ai-on-the-edge/webhook",outcome="unauthorized"} 1"#), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}
