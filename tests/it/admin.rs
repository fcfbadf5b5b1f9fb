//! The management API over the journal, and `/metrics`, behind the admin token.

use serde_json::{Value, json};

use crate::helpers::{Setup, TestApp, eventually, gridx_ping as ping, post_gridx, spawn_app, spawn_with};

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n\
                      [protocols.gridx]\nsecrets = [\"s\"]\n";

const SCRIPT: &str = r#"
fn on_event(event) {
    log(`got ${event.data.data.message}`);
    if event.data.data.message == "bad" { throw "cannot handle bad"; }
    append_json("gridx/events.jsonl", event.data);
}
"#;

async fn post_ping(app: &TestApp, body: String) -> u16 {
    post_gridx(&app.client, &format!("http://{}", app.addr), "s", body).await.unwrap()
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth("adm1n");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_a_token_the_management_api_and_metrics_are_disabled() {
    let app = spawn_app("").await;
    let res = app.client.get(app.url("/api/events")).bearer_auth("anything").send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["message"], "the management API is disabled: set [admin] token");
    // Without any Authorization header too: nothing behind the token exists.
    let res = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["message"], "the management API is disabled: set [admin] token");
    assert_eq!(app.client.post(app.url("/api/replay")).json(&json!({})).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused() {
    let app = spawn_app(CONFIG).await;
    assert_eq!(app.client.get(app.url("/api/events")).send().await.unwrap().status(), 401);
    let res = app.client.get(app.url("/api/events")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(app.client.get(app.url("/metrics")).bearer_auth("nope").send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn list_show_and_replay_journaled_events() {
    let app = spawn_with(Setup { config: CONFIG, scripts: vec![("gridx.rhai", SCRIPT)], ..Setup::default() }).await;
    assert_eq!(post_ping(&app, ping(1, "fine")).await, 204);
    assert_eq!(post_ping(&app, ping(2, "bad")).await, 503);
    assert_eq!(post_ping(&app, ping(1, "fine")).await, 204);

    let (status, all) = admin(&app, "GET", "/api/events?protocol=gridx", None).await;
    assert_eq!(status, 200);
    let statuses: Vec<&str> = all.as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["processed", "failed", "duplicate"]);
    let (_, failed) = admin(&app, "GET", "/api/events?status=failed", None).await;
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let failed_id = failed[0]["id"].as_i64().unwrap();
    assert_eq!(failed[0]["error"], "script threw: cannot handle bad (line 4, position 43)");

    let (status, detail) = admin(&app, "GET", &format!("/api/events/{failed_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(detail["body_text"], ping(2, "bad"));
    assert_eq!(detail["verification"], "passed: HMAC signature in X-Signature");
    assert!(detail["headers"].as_array().unwrap().iter().any(|h| h["name"] == "x-signature"), "{detail}");
    assert_eq!(detail["data"]["data"]["message"], "bad");
    assert_eq!(detail["logs"], json!(["got bad"]));
    let (_, first) = admin(&app, "GET", &format!("/api/events/{}", all[0]["id"]), None).await;
    assert_eq!(first["effects"][0]["kind"], "append", "{first}");
    assert_eq!(first["effects"][0]["path"], "gridx/events.jsonl", "{first}");
    assert_eq!(admin(&app, "GET", "/api/events/99999", None).await.0, 404);

    // Fix the script, then replay the failed event through the API.
    std::fs::write(
        app.scripts().join("gridx.rhai"),
        "fn on_event(event) { append_json(\"gridx/events.jsonl\", event.data); }",
    )
    .unwrap();
    let path = format!("/api/events/{failed_id}/replay");
    assert!(
        eventually(5, async || admin(&app, "POST", &path, None).await.1["outcome"] == "processed").await,
        "the replay succeeds once the fixed script is loaded"
    );
    assert_eq!(app.lines("gridx/events.jsonl").len(), 2);
    assert_eq!(post_ping(&app, ping(2, "bad")).await, 204, "the sender's retry is now a duplicate");
    assert_eq!(app.lines("gridx/events.jsonl").len(), 2);
    let (_, summary) = admin(&app, "POST", "/api/replay", Some(json!({"failed": true}))).await;
    assert_eq!((summary["processed"].as_u64(), summary["failed"].as_u64()), (Some(0), Some(0)), "{summary}");
    let (status, bad) = admin(&app, "GET", "/api/events?since=yesterday", None).await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test]
async fn metrics_count_requests_events_and_script_time() {
    let app = spawn_app(CONFIG).await;
    assert_eq!(post_ping(&app, ping(1, "x")).await, 204);
    assert_eq!(post_ping(&app, ping(1, "x")).await, 204);
    assert_eq!(app.client.post(app.url("/gridx/events")).body("{}").send().await.unwrap().status(), 401);
    let res = app.client.get(app.url("/metrics")).bearer_auth("adm1n").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    for expected in [
        r#"hookyard_requests_total{protocol="gridx",route="/gridx/events",outcome="accepted"} 2"#,
        r#"hookyard_requests_total{protocol="gridx",route="/gridx/events",outcome="unauthorized"} 1"#,
        r#"hookyard_events_total{protocol="gridx",outcome="processed"} 1"#,
        r#"hookyard_events_total{protocol="gridx",outcome="duplicate"} 1"#,
        r#"hookyard_script_seconds_count{protocol="gridx"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    let journal: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hookyard_journal_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(journal > 0, "{text}");
}

#[tokio::test]
async fn metrics_count_failures_by_kind() {
    let app = spawn_with(Setup { config: CONFIG, scripts: vec![("gridx.rhai", SCRIPT)], ..Setup::default() }).await;
    assert_eq!(post_ping(&app, ping(7, "bad")).await, 503);
    let res = app.client.get(app.url("/metrics")).bearer_auth("adm1n").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = res.text().await.unwrap();
    let expected = r#"hookyard_failures_total{protocol="gridx",kind="script"} 1"#;
    assert!(text.contains(expected), "missing {expected} in\n{text}");
    let help = text.lines().find(|l| l.starts_with("# HELP hookyard_failures")).unwrap_or_default();
    assert!(help.contains("could not be processed"), "{text}");
}
