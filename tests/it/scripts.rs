//! Scripts: failures fail the request (not the server), limits, live reload, path safety.

use std::time::{Duration, Instant};

use crate::helpers::{Setup, TestApp, eventually, files_below, gridx_ping, gridx_signature, spawn_app, spawn_with};

const SECRET: &str = "whsec_test";
const GRIDX: &str =
    "[protocols.gridx]\nsecrets = [\"whsec_test\"]\n[protocols.wattsense]\nauth = { type = \"none\" }\n";

async fn post_ping(app: &TestApp, n: u64) -> (u16, String) {
    let body = ping(n);
    let sig = gridx_signature(SECRET, body.as_bytes());
    let res = app.client.post(app.url("/gridx/events")).header("X-Signature", sig).body(body).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn ping(n: u64) -> String {
    gridx_ping(n, &format!("m{n}"))
}

#[tokio::test]
async fn a_runaway_script_fails_its_request_and_the_server_keeps_serving() {
    let looping = "fn on_event(event) { let n = 0; loop { n += 1; } }";
    let app = spawn_with(Setup { config: GRIDX, scripts: vec![("gridx.rhai", looping)], ..Setup::default() }).await;
    let started = Instant::now();
    let (status, reply) = post_ping(&app, 1).await;
    assert_eq!(status, 503, "{reply}");
    assert!(reply.contains("script error"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    // Wattsense still works while gridX's script is broken.
    let res = app.client.post(app.url("/wattsense/events")).body(r#"{"a":1}"#).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_slow_script_is_stopped_by_the_wall_clock_cap() {
    // Few operations, but each one slow: only the time limit can stop it.
    let slow = "fn on_event(event) { let s = \"x\"; for i in 0..1000000 { s = `${s}`; } }";
    let setup =
        Setup { config: GRIDX, scripts: vec![("gridx.rhai", slow)], script_timeout_ms: Some(200), ..Setup::default() };
    let app = spawn_with(setup).await;
    let started = Instant::now();
    assert_eq!(post_ping(&app, 1).await.0, 503);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_throwing_script_stores_nothing_and_the_retry_after_a_fix_stores_once() {
    let throwing = r#"fn on_event(event) { throw "storage is full"; }"#;
    let app = spawn_with(Setup { config: GRIDX, scripts: vec![("gridx.rhai", throwing)], ..Setup::default() }).await;
    assert_eq!(post_ping(&app, 7).await.0, 503);
    std::fs::write(
        app.scripts().join("gridx.rhai"),
        "fn on_event(event) { append_json(\"gridx/events.jsonl\", event.data); }",
    )
    .unwrap();
    // The sender retries the same event until the fixed script is picked up.
    assert!(eventually(5, async || post_ping(&app, 7).await.0 == 204).await, "the retry after the fix is stored");
    assert_eq!(
        app.lines("gridx/events.jsonl"),
        vec![serde_json::from_str::<serde_json::Value>(&ping(7)).unwrap().to_string()]
    );
    assert_eq!(post_ping(&app, 7).await.0, 204);
    assert_eq!(app.lines("gridx/events.jsonl").len(), 1, "a duplicate after success is not processed");
}

#[tokio::test]
async fn append_csv_takes_a_map_row_in_the_header_order() {
    let script = r#"fn on_event(event) { append_csv("gridx/rows.csv", ["type", "missing", "id"], event.data); }"#;
    let app = spawn_with(Setup { config: GRIDX, scripts: vec![("gridx.rhai", script)], ..Setup::default() }).await;
    assert_eq!(post_ping(&app, 3).await.0, 204);
    assert_eq!(post_ping(&app, 4).await.0, 204);
    let id = |n| serde_json::from_str::<serde_json::Value>(&ping(n)).unwrap()["id"].as_str().unwrap().to_owned();
    let written = std::fs::read_to_string(app.data().join("gridx/rows.csv")).unwrap();
    assert_eq!(written, format!("type,missing,id\r\nping,,{}\r\nping,,{}\r\n", id(3), id(4)));
}

#[tokio::test]
async fn an_edited_script_takes_effect_without_a_restart() {
    let app = spawn_app(GRIDX).await;
    assert_eq!(post_ping(&app, 1).await.0, 204);
    let edited =
        r#"fn on_event(event) { append_json("gridx/edited.jsonl", #{ id: event.data.id, at: event.received_at }); }"#;
    std::fs::write(app.scripts().join("gridx.rhai"), edited).unwrap();
    let mut n = 2;
    let picked_up = eventually(5, async || {
        n += 1;
        post_ping(&app, n).await;
        !app.read("gridx/edited.jsonl").is_empty()
    })
    .await;
    assert!(picked_up, "the edit was not picked up within 5 s");
}

#[tokio::test]
async fn a_script_that_no_longer_compiles_leaves_the_previous_one_running() {
    let app = spawn_app(GRIDX).await;
    let running = std::fs::read_to_string(app.scripts().join("gridx.rhai")).unwrap();
    std::fs::write(app.scripts().join("gridx.rhai"), "fn on_event(event) { this is not rhai").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(post_ping(&app, 1).await.0, 204);
    assert_eq!(app.lines("gridx/events.jsonl").len(), 1);
    // /healthz says so while it lasts, naming the protocol and the file...
    let degraded = eventually(5, async || app.get_json("/healthz").await["status"] == "degraded");
    assert!(degraded.await, "{}", app.get_json("/healthz").await);
    let health = app.get_json("/healthz").await;
    let problem = health["problems"][0].as_str().unwrap_or_default().to_owned();
    assert!(problem.starts_with("gridx: script change not applied: ") && problem.contains("gridx.rhai"), "{health}");
    // ...and is ok again once the file is back to a version that runs.
    std::fs::write(app.scripts().join("gridx.rhai"), running).unwrap();
    let ok = eventually(5, async || app.get_json("/healthz").await["status"] == "ok");
    assert!(ok.await, "{}", app.get_json("/healthz").await);
    assert_eq!(app.get_json("/healthz").await["problems"], serde_json::json!([]));
}

#[tokio::test]
async fn a_script_cannot_write_outside_the_data_directory() {
    let escaping = r#"fn on_event(event) { append_json(`wattsense/${event.data.deviceId}.jsonl`, event.data); }"#;
    let app =
        spawn_with(Setup { config: GRIDX, scripts: vec![("wattsense.rhai", escaping)], ..Setup::default() }).await;
    for device in ["../../escaped", "/etc/escaped", "..", ".hidden", "a\\..\\b"] {
        let body = serde_json::json!({"deviceId": device, "property": "p", "timestamp": 1, "payload": 1}).to_string();
        let res = app.client.post(app.url("/wattsense/values")).body(body).send().await.unwrap();
        assert_eq!(res.status(), 500, "{device}");
    }
    assert!(files_below(app.root.path()).iter().all(|f| !f.contains("escaped")), "{:?}", files_below(app.root.path()));
    assert!(!app.data().join(".hidden.jsonl").exists());
}

#[tokio::test]
async fn import_of_files_is_disabled() {
    let importing = r#"import "../../etc/passwd" as p; fn on_event(event) { }"#;
    let app = spawn_with(Setup { config: GRIDX, scripts: vec![("gridx.rhai", importing)], ..Setup::default() }).await;
    assert_eq!(post_ping(&app, 1).await.0, 204, "a top-level import is never evaluated");
    let in_fn = r#"fn on_event(event) { import "gridx" as g; }"#;
    std::fs::write(app.scripts().join("gridx.rhai"), in_fn).unwrap();
    let mut n = 1;
    let refused = eventually(5, async || {
        n += 1;
        post_ping(&app, n).await.0 == 503
    });
    assert!(refused.await, "an import inside the handler must fail the request");
}

#[tokio::test]
async fn the_example_in_the_scripts_readme_works_as_documented() {
    let readme = std::fs::read_to_string(format!("{}/scripts/README.md", crate::helpers::REPO)).unwrap();
    let example = readme.rsplit("```rhai\n").next().unwrap().split("```").next().unwrap().to_owned();
    let setup = Setup {
        config: "[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n",
        scripts: vec![("ai-on-the-edge.rhai", &example)],
        ..Setup::default()
    };
    let app = spawn_with(setup).await;
    let body = crate::helpers::read_fixture("ai-on-the-edge/body_rate_too_high.json");
    let res =
        app.client.post(app.url("/ai-on-the-edge/webhook")).header("APIKEY", "k").body(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let files = files_below(&app.data().join("ai-on-the-edge/home"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".csv") && files[0].len() == "2026-01-01.csv".len(), "{files:?}");
    let text = std::fs::read_to_string(app.data().join("ai-on-the-edge/home").join(&files[0])).unwrap();
    assert_eq!(text, "time,name,value\r\n1723196684,main,\r\n");
}
