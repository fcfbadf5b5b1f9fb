//! The health and setup views' API through the real server: requests per protocol over time,
//! sources last seen (the API and the Prometheus gauge, seeded from the journal at start-up),
//! outputs and the journal, each protocol's setup, revealing credentials and the test request.

use serde_json::{Value, json};

use crate::helpers::{Setup, TestApp, ai_reading, eventually, gridx_ping as ping, post_gridx, spawn_app, spawn_with};

const TOKEN: &str = "console-admin-token";
const AI_KEY: &str = "ai-key-5f1c9a";
const GRIDX_SECRET: &str = "gridx-secret-7d2e4b";

fn config() -> String {
    format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[protocols.ai-on-the-edge]\napi_keys = {{ \"{AI_KEY}\" = \"home\" }}\n\
         [protocols.gridx]\nsecrets = [\"{GRIDX_SECRET}\"]\n"
    )
}

const FAILING_GRIDX: &str = r#"
fn on_event(event) {
    if event.data.data.message == "bad" { throw "cannot handle bad"; }
}
"#;

async fn call(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_ai(app: &TestApp, body: String) -> u16 {
    let req = app.client.post(app.url("/ai-on-the-edge/webhook")).header("APIKEY", AI_KEY);
    req.header("Content-Type", "application/json").body(body).send().await.unwrap().status().as_u16()
}

fn protocol<'a>(all: &'a Value, name: &str) -> &'a Value {
    all.as_array().unwrap().iter().find(|p| p["protocol"] == name).unwrap_or_else(|| panic!("no {name} in {all}"))
}

#[tokio::test]
async fn stats_count_accepted_rejected_and_failed_requests_per_protocol() {
    let config = config();
    let app =
        spawn_with(Setup { config: &config, scripts: vec![("gridx.rhai", FAILING_GRIDX)], ..Setup::default() }).await;
    let base = format!("http://{}", app.addr);
    assert_eq!(post_gridx(&app.client, &base, GRIDX_SECRET, ping(1, "fine")).await.unwrap(), 204);
    assert_eq!(post_gridx(&app.client, &base, GRIDX_SECRET, ping(2, "fine")).await.unwrap(), 204);
    assert_eq!(post_gridx(&app.client, &base, GRIDX_SECRET, ping(3, "bad")).await.unwrap(), 503);
    assert_eq!(post_gridx(&app.client, &base, "wrong-secret", ping(4, "fine")).await.unwrap(), 401);

    for window in ["hour", "day"] {
        let (status, stats) = call(&app, "GET", &format!("/api/stats?window={window}"), None).await;
        assert_eq!(status, 200, "{stats}");
        let gridx = protocol(&stats["protocols"], "gridx");
        assert_eq!(gridx["totals"], json!({"accepted": 2, "rejected": 1, "failed": 1}), "{window}: {gridx}");
        let buckets = gridx["buckets"].as_array().unwrap();
        let (count, seconds) = if window == "hour" { (60, 60) } else { (96, 900) };
        assert_eq!((buckets.len(), stats["bucket_seconds"].as_u64()), (count, Some(seconds)));
        let last = &buckets[count - 1];
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let start = last["start_ms"].as_i64().unwrap();
        assert!(start <= now && now < start + seconds as i64 * 1000, "the last bucket holds now: {last}");
        let quiet = protocol(&stats["protocols"], "wattmon");
        assert_eq!(quiet["totals"], json!({"accepted": 0, "rejected": 0, "failed": 0}));
    }
    let (status, _) = call(&app, "GET", "/api/stats?window=week", None).await;
    assert_eq!(status, 400);
    let (status, journal) = call(&app, "GET", "/api/journal", None).await;
    assert_eq!(status, 200);
    assert_eq!((journal["requests"].as_u64(), journal["events"].as_u64()), (Some(3), Some(3)), "{journal}");
    assert_eq!(journal["rejected"], 1);
    assert!(journal["bytes"].as_u64().unwrap() > 0);
    assert_eq!(journal["retention"]["days"], 30.0);
    assert!(journal["oldest_at"].as_str().unwrap().ends_with('Z'), "{journal}");
}

#[tokio::test]
async fn the_last_seen_gauge_and_sources_follow_journaled_requests() {
    let app = spawn_app(&config()).await;
    assert_eq!(post_ai(&app, ai_reading("main", "1.5", 1_723_196_684)).await, 200);
    let conn = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    let received_ms: i64 = conn.query_row("SELECT received_ms FROM requests", [], |r| r.get(0)).unwrap();

    let res = app.client.get(app.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    let text = res.text().await.unwrap();
    let prefix = r#"hookyard_source_last_seen_timestamp_seconds{protocol="ai-on-the-edge",source="home"} "#;
    let value: f64 =
        text.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("{text}")).parse().unwrap();
    assert!((value - received_ms as f64 / 1000.0).abs() < 0.001, "{value} against {received_ms}");
    assert!(text.contains("# TYPE hookyard_source_last_seen_timestamp_seconds gauge"), "{text}");

    let (status, sources) = call(&app, "GET", "/api/sources", None).await;
    assert_eq!(status, 200);
    assert_eq!(sources.as_array().unwrap().len(), 1, "{sources}");
    let home = &sources[0];
    assert_eq!((home["protocol"].as_str(), home["source"].as_str()), (Some("ai-on-the-edge"), Some("home")));
    assert_eq!(home["last_seen_ms"], received_ms);
    assert_eq!((home["interval_s"].clone(), home["stale"].clone()), (Value::Null, json!(false)));
}

/// Waits until no process holds the data directory's lock.
async fn released(data: &std::path::Path) {
    for _ in 0..200 {
        let lock = std::fs::OpenOptions::new().write(true).open(data.join(".hookyard/lock")).unwrap();
        if lock.try_lock().is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the first server kept its data directory");
}

#[tokio::test]
async fn a_source_seeded_from_old_journal_requests_is_stale() {
    let data = tempfile::tempdir().unwrap();
    let config = config();
    let setup = || Setup { config: &config, data_dir: Some(data.path().to_owned()), ..Setup::default() };
    let first = spawn_with(setup()).await;
    for n in 0..3 {
        assert_eq!(post_ai(&first, ai_reading("main", "1.5", 1_723_196_684 + n)).await, 200);
    }
    drop(first);
    released(data.path()).await;
    // The readings came a minute apart, an hour ago.
    let hour_ago =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 3_600_000;
    let conn = rusqlite::Connection::open(data.path().join(".hookyard/journal.db")).unwrap();
    conn.execute("UPDATE requests SET received_ms = ?1 + (id - 1) * 60000", [hour_ago]).unwrap();
    drop(conn);

    let second = spawn_with(setup()).await;
    let seeded = eventually(5, async || {
        let (_, stats) = call(&second, "GET", "/api/stats?window=day", None).await;
        protocol(&stats["protocols"], "ai-on-the-edge")["totals"] == json!({"accepted": 3, "rejected": 0, "failed": 0})
    });
    assert!(seeded.await, "the day's chart is seeded from the journal");
    let (_, sources) = call(&second, "GET", "/api/sources", None).await;
    let home = &sources[0];
    assert_eq!(home["last_seen_ms"], hour_ago + 120_000, "{sources}");
    assert_eq!((home["interval_s"].as_f64(), home["stale"].as_bool()), (Some(60.0), Some(true)), "{home}");
    let text = second.client.get(second.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    let gauge = format!(
        "hookyard_source_last_seen_timestamp_seconds{{protocol=\"ai-on-the-edge\",source=\"home\"}} {}",
        (hour_ago + 120_000) as f64 / 1000.0
    );
    assert!(text.contains(&gauge), "missing {gauge} in\n{text}");
}

#[tokio::test]
async fn setup_names_urls_headers_and_credentials_without_their_values() {
    let app = spawn_app(&config()).await;
    let res = app.client.get(app.url("/api/setup")).bearer_auth(TOKEN).header("Host", "hooks.example.org:8080");
    let res = res.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let setup: Value = serde_json::from_str(&text).unwrap();
    let ai = protocol(&setup, "ai-on-the-edge");
    let readings = ai["operations"].as_array().unwrap().iter().find(|o| o["operation"] == "readings").unwrap();
    assert_eq!(readings["url"], "http://hooks.example.org:8080/ai-on-the-edge/webhook");
    assert_eq!(readings["method"], "POST");
    assert_eq!(readings["headers"], json!(["APIKEY"]));
    assert_eq!(readings["credential"], json!({"kind": "api-key", "config_key": "api_keys", "configured": true}));
    let gridx = &protocol(&setup, "gridx")["operations"][0];
    assert_eq!(gridx["headers"], json!(["X-Signature"]));
    let wattmon = &protocol(&setup, "wattmon")["operations"][0];
    assert_eq!(wattmon["url"], "http://hooks.example.org:8080/wattmon/export?token=<token>");
    assert_eq!(wattmon["credential"]["kind"], "url-token");
    let wattsense = &protocol(&setup, "wattsense")["operations"][0];
    assert_eq!(wattsense["headers"], json!(["Authorization"]), "a bearer token is generated: {wattsense}");
    assert!(
        protocol(&setup, "wattmon")["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("md5sum"))
    );

    // Reveal: refused with a wrong token, then every protocol's values — none of them in the setup.
    let (status, body) = call(&app, "POST", "/api/setup/gridx/reveal", Some(json!({"token": "nope"}))).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("invalid admin token")));
    let (status, revealed) = call(&app, "POST", "/api/setup/gridx/reveal", Some(json!({"token": TOKEN}))).await;
    assert_eq!(status, 200);
    assert_eq!(revealed["credentials"], json!([{"name": "secrets[0]", "value": GRIDX_SECRET}]));
    let (_, ai) = call(&app, "POST", "/api/setup/ai-on-the-edge/reveal", Some(json!({"token": TOKEN}))).await;
    assert_eq!(ai["credentials"], json!([{"name": "api_keys (home)", "value": AI_KEY}]));
    let (_, wattmon) = call(&app, "POST", "/api/setup/wattmon/reveal", Some(json!({"token": TOKEN}))).await;
    let token =
        wattmon["credentials"].as_array().unwrap().iter().find(|c| c["name"] == "token").unwrap()["value"].clone();
    let url = wattmon["credentials"].as_array().unwrap().iter().find(|c| c["name"] == "url (export)").unwrap()["value"]
        .clone();
    assert_eq!(url.as_str().unwrap(), format!("http://{}/wattmon/export?token={}", app.addr, token.as_str().unwrap()));
    for name in ["wattmon", "wattsense"] {
        let (_, generated) =
            call(&app, "POST", &format!("/api/setup/{name}/reveal"), Some(json!({"token": TOKEN}))).await;
        let values: Vec<&str> =
            generated["credentials"].as_array().unwrap().iter().map(|c| c["value"].as_str().unwrap()).collect();
        let secret = values.iter().copied().max_by_key(|v| v.len()).unwrap_or_else(|| panic!("{generated}"));
        assert!(secret.len() >= 16, "{name}: {generated}");
        assert!(!text.contains(secret), "{name}'s credential is in the setup");
    }
    assert!(!text.contains(AI_KEY) && !text.contains(GRIDX_SECRET));
    assert_eq!(call(&app, "POST", "/api/setup/nowhere/reveal", Some(json!({"token": TOKEN}))).await.0, 404);
    // Wrong tokens count towards the lockout.
    for _ in 0..10 {
        call(&app, "POST", "/api/setup/gridx/reveal", Some(json!({"token": "nope"}))).await;
    }
    assert_eq!(call(&app, "POST", "/api/setup/gridx/reveal", Some(json!({"token": TOKEN}))).await.0, 429);
}

#[tokio::test]
async fn the_test_request_of_every_protocol_is_accepted_and_journaled() {
    let app = spawn_app(&config()).await;
    for name in ["ai-on-the-edge", "gridx", "wattmon", "wattsense"] {
        let (status, outcome) = call(&app, "POST", &format!("/api/setup/{name}/test"), None).await;
        assert_eq!(status, 200, "{name}: {outcome}");
        let reply = outcome["status"].as_u64().unwrap();
        assert!((200..300).contains(&reply), "{name}: {outcome}");
        let request_id = outcome["request_id"].as_i64().unwrap_or_else(|| panic!("{name} not journaled: {outcome}"));
        let (_, events) = call(&app, "GET", &format!("/api/events?protocol={name}"), None).await;
        let events = events.as_array().unwrap();
        assert!(
            events.iter().any(|e| e["request_id"] == request_id && e["status"] == "processed"),
            "{name}: {events:?}"
        );
    }
    let (_, stats) = call(&app, "GET", "/api/stats", None).await;
    assert_eq!(protocol(&stats["protocols"], "wattsense")["totals"]["accepted"], 1);
    assert_eq!(call(&app, "POST", "/api/setup/nowhere/test", None).await.0, 404);
    let (status, outputs) = call(&app, "GET", "/api/outputs", None).await;
    assert_eq!(status, 200);
    let http = &outputs[0];
    assert_eq!(
        (outputs.as_array().unwrap().len(), http["name"].as_str(), http["kind"].as_str()),
        (1, Some("http_post"), Some("http"))
    );
    assert_eq!(
        (http["delivered"].as_u64(), http["failed"].as_u64(), &http["last_error"]),
        (Some(0), Some(0), &Value::Null)
    );
}

#[tokio::test]
async fn an_output_failure_is_counted_with_its_error_and_no_credentials() {
    let config = format!("{}[outputs.http]\nretries = 0\ntimeout_ms = 2000\n", config());
    let script =
        r#"fn on_event(event) { http_post("http://user:pw-9f3e@127.0.0.1:9/hook?token=tk-51ac", event.data); }"#;
    let app =
        spawn_with(Setup { config: &config, scripts: vec![("ai-on-the-edge.rhai", script)], ..Setup::default() }).await;
    assert_eq!(post_ai(&app, ai_reading("main", "1.5", 1_723_196_684)).await, 500, "the output failed");
    let (_, outputs) = call(&app, "GET", "/api/outputs", None).await;
    let http = &outputs[0];
    assert_eq!(
        (http["kind"].as_str(), http["delivered"].as_u64(), http["failed"].as_u64()),
        (Some("http"), Some(0), Some(1))
    );
    let error = http["last_error"].as_str().unwrap_or_else(|| panic!("{outputs}"));
    assert!(error.contains("127.0.0.1:9/hook?…"), "{error}");
    assert!(!error.contains("pw-9f3e") && !error.contains("tk-51ac"), "{error}");
    assert!(http["last_error_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{outputs}");
    let (_, stats) = call(&app, "GET", "/api/stats", None).await;
    let totals = &protocol(&stats["protocols"], "ai-on-the-edge")["totals"];
    assert_eq!(totals, &json!({"accepted": 0, "rejected": 0, "failed": 1}), "a journaled failure");
}

#[tokio::test]
async fn with_https_on_the_test_request_of_an_https_only_protocol_goes_over_the_tls_listener() {
    use crate::tls::pki::{DOMAIN, free_port, make_ca, make_leaf};
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    let (cert, key) = make_leaf(dir.path(), "ca", "leaf", &format!("DNS:{DOMAIN}"));
    let port = free_port();
    let tls = format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let app = spawn_app(&format!("{}{tls}", config())).await;
    let plain = post_gridx(&app.client, &format!("http://{}", app.addr), GRIDX_SECRET, ping(1, "plain")).await;
    assert_eq!(plain.unwrap(), 403, "gridX refuses plain HTTP here");
    let (status, outcome) = call(&app, "POST", "/api/setup/gridx/test", None).await;
    assert_eq!((status, outcome["status"].as_u64()), (200, Some(204)), "{outcome}");
    assert_eq!(outcome["url"], format!("https://127.0.0.1:{port}/gridx/events"));
    assert!(outcome["request_id"].as_i64().is_some(), "{outcome}");
    let res = app.client.get(app.url("/api/setup")).bearer_auth(TOKEN).header("Host", "hooks.example.org:8080");
    let setup: Value = res.send().await.unwrap().json().await.unwrap();
    let gridx = &protocol(&setup, "gridx")["operations"][0];
    assert_eq!(gridx["url"], format!("https://hooks.example.org:{port}/gridx/events"), "shown at the HTTPS port");
    let ai = &protocol(&setup, "ai-on-the-edge")["operations"][0];
    assert_eq!(ai["url"], "http://hooks.example.org:8080/ai-on-the-edge/webhook");
    let (_, ai) = call(&app, "POST", "/api/setup/ai-on-the-edge/test", None).await;
    assert_eq!(ai["url"], format!("http://{}/ai-on-the-edge/webhook", app.addr), "plain HTTP where it is taken");
}
