//! What a client without credentials cannot make the server do: hold its threads with slow
//! scripts, forge log lines, read its journal, guess credentials quickly, or fill its disk
//! with resends.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Setup, TestApp, ai_reading, gridx_ping, post_gridx, spawn_app, spawn_with};

const BIN: &str = env!("CARGO_BIN_EXE_hookyard");
const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n\
                      [protocols.gridx]\nsecrets = [\"s\"]\n";

fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(address.parse().ok()).pool_max_idle_per_host(0).build().unwrap()
}

async fn post_reading(client: &reqwest::Client, app: &TestApp, key: &str, time: u64) -> reqwest::Response {
    client
        .post(app.url("/ai-on-the-edge/webhook"))
        .header("APIKEY", key)
        .header("Content-Type", "application/json")
        .body(ai_reading("main", "1.5", time))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_at_their_cap_hold_neither_healthz_nor_other_protocols_nor_run_past_it() {
    let spinning = "fn on_event(event) { let n = 0; loop { n += 1; } }";
    let setup = Setup {
        config: CONFIG,
        scripts: vec![("gridx.rhai", spinning)],
        script_timeout_ms: Some(1000),
        ..Setup::default()
    };
    let app = spawn_with(setup).await;
    let base = format!("http://{}", app.addr);
    let slow: Vec<_> = (0..4u64)
        .map(|n| {
            let (client, base) = (reqwest::Client::new(), base.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let status = post_gridx(&client, &base, "s", gridx_ping(n, "spin")).await.unwrap();
                (status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let took = started.elapsed();
        eprintln!("/healthz answered in {took:?} while four scripts ran at their cap");
        assert!(took < Duration::from_millis(100), "/healthz took {took:?} while scripts ran at their cap");
    }
    let started = Instant::now();
    assert_eq!(post_reading(&app.client, &app, "k", 1_700_000_000).await.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(500), "another protocol waited {:?}", started.elapsed());
    for run in slow {
        let (status, took) = run.await.unwrap();
        eprintln!("a script at its 1 s cap: its request answered after {took:?}");
        assert_eq!(status, 503, "a script stopped at its cap fails its request (retryable)");
        assert!(took < Duration::from_millis(1100 + 100), "the 1 s cap held only to {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_proved_fast_and_is_changed_to_spin_holds_neither_healthz_nor_other_requests() {
    let quick = "fn on_event(event) { }";
    let setup = Setup {
        config: CONFIG,
        scripts: vec![("gridx.rhai", quick)],
        script_timeout_ms: Some(500),
        ..Setup::default()
    };
    let app = spawn_with(setup).await;
    // Enough quick runs for them to go inline (no hand-off) from then on.
    for n in 0..100u64 {
        assert_eq!(post_gridx(&app.client, &app.url(""), "s", gridx_ping(n, "quick")).await.unwrap(), 204);
    }
    std::fs::write(app.scripts().join("gridx.rhai"), "fn on_event(event) { let n = 0; loop { n += 1; } }").unwrap();
    let mut n = 100;
    let spinning = crate::helpers::eventually(5, async || {
        n += 1;
        post_gridx(&app.client, &app.url(""), "s", gridx_ping(n, "probe")).await.unwrap() == 503
    });
    assert!(spinning.await, "the spinning script was not picked up");
    let slow: Vec<_> = (0..4u64)
        .map(|k| {
            let (client, base) = (reqwest::Client::new(), app.url(""));
            tokio::spawn(async move { post_gridx(&client, &base, "s", gridx_ping(1000 + k, "spin")).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(post_reading(&app.client, &app, "k", 1_700_000_000).await.status(), 200);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(300), "/healthz and a reading took {took:?} while four scripts spun");
    for run in slow {
        assert_eq!(run.await.unwrap(), 503);
    }
}

#[test]
fn control_characters_in_logged_values_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(dir.path().join("hookyard.toml"), "[protocols.gridx]\nsecrets = [\"s\"]\n").unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("HOOKYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("hookyard is serving") {
            break;
        }
    }
    let forged = "x/y\nINFO forged line\u{1b}[31m";
    let body = serde_json::json!({
        "id": "0f8fad5b-d9cb-469f-a165-708677289500", "time": crate::helpers::test_start_time(), "specVersion": "1.0",
        "source": "/s", "type": forged, "data": {}
    })
    .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status =
        runtime.block_on(post_gridx(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}"), "s", body)).unwrap();
    child.kill().unwrap();
    let text: Vec<String> = lines.map_while(Result::ok).collect();
    child.wait().unwrap();
    assert!(status < 500, "{status}");
    let logged: Vec<&String> = text.iter().filter(|l| l.contains("x/y")).collect();
    assert!(!logged.is_empty(), "{text:?}");
    for line in &logged {
        assert!(line.contains(r"x/y\nINFO forged line\u{1b}[31m"), "{line}");
        assert!(!line.contains('\u{1b}'), "a raw escape code reached the log: {line:?}");
    }
    assert!(!text.iter().any(|l| l.starts_with("INFO forged line")), "a forged line: {text:?}");
}

#[tokio::test]
async fn the_state_directory_is_private_and_so_is_the_journal() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app(CONFIG).await;
    assert_eq!(post_reading(&app.client, &app, "k", 1_700_000_001).await.status(), 200);
    let mode = |rel: &str| std::fs::metadata(app.data().join(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(".hookyard"), 0o700);
    assert_eq!(mode(".hookyard/journal.db"), 0o600);
    if app.data().join(".hookyard/journal.db-wal").exists() {
        assert_eq!(mode(".hookyard/journal.db-wal"), 0o600);
    }
}

#[tokio::test]
async fn wrong_admin_tokens_are_refused_for_a_while_and_other_clients_are_not() {
    let app = spawn_app(CONFIG).await;
    let guesser = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for n in 0..30 {
        let res = guesser.get(app.url("/api/events")).bearer_auth(format!("guess{n}")).send().await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            let body: Value = res.json().await.unwrap();
            assert!(body["message"].as_str().unwrap().contains("too many wrong tokens"), "{body}");
        }
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Even the right token waits out the lock from that address...
    let res = guesser.get(app.url("/api/events")).bearer_auth("adm1n").send().await.unwrap();
    assert_eq!(res.status(), 429);
    // ...while another address is served.
    let other = client_from("127.0.0.1");
    assert_eq!(other.get(app.url("/api/events")).bearer_auth("adm1n").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn wrong_api_keys_are_refused_for_a_while_in_the_protocols_own_style() {
    let app = spawn_app(CONFIG).await;
    let guesser = client_from("127.0.0.2");
    for n in 0..10u64 {
        assert_eq!(post_reading(&guesser, &app, &format!("guess{n}"), 1_700_000_100 + n).await.status(), 403);
    }
    let res = post_reading(&guesser, &app, "k", 1_700_000_200).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert!(body["message"].as_str().unwrap().starts_with("too many failed attempts from this address"), "{body}");
    assert_eq!(post_reading(&client_from("127.0.0.1"), &app, "k", 1_700_000_201).await.status(), 200);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_for_the_api_and_metrics() {
    let app = spawn_app(CONFIG).await;
    for path in ["/api/events", "/metrics"] {
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let res =
                app.client.get(app.url(path)).header("Authorization", format!("{scheme} adm1n")).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path} with {scheme}");
        }
    }
}

async fn admin_json(app: &TestApp, path: &str) -> Value {
    app.client.get(app.url(path)).bearer_auth("adm1n").send().await.unwrap().json().await.unwrap()
}

/// The journal's logical size (pages in use, the write-ahead log included).
fn journal_bytes(app: &TestApp) -> i64 {
    let conn = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    (pages - free) * size
}

#[tokio::test]
async fn a_resent_one_megabyte_request_costs_a_row_not_its_body() {
    let app = spawn_app(CONFIG).await;
    let base = format!("http://{}", app.addr);
    let big = gridx_ping(42, &"m".repeat(1_000_000));
    assert_eq!(post_gridx(&app.client, &base, "s", big.clone()).await.unwrap(), 204);
    let before = journal_bytes(&app);
    assert!(before > 1_000_000, "the original's body is kept: {before}");
    for _ in 0..100 {
        assert_eq!(post_gridx(&app.client, &base, "s", big.clone()).await.unwrap(), 204);
    }
    let grown = journal_bytes(&app) - before;
    eprintln!("100 resends of a 1 MB gridX request grew the journal by {grown} bytes");
    assert!(grown < 2 * 1024 * 1024, "100 resends grew the journal by {grown} bytes");
    // Each resend is still on record as a duplicate of the original, with its client.
    let list = admin_json(&app, "/api/events?status=duplicate&limit=1000").await;
    let duplicates = list.as_array().unwrap();
    assert_eq!(duplicates.len(), 100);
    let id = duplicates[0]["id"].as_i64().unwrap();
    let detail = admin_json(&app, &format!("/api/events/{id}")).await;
    assert_eq!(detail["client"], "127.0.0.1");
    assert!(detail["duplicate_of"].as_i64().is_some(), "{detail}");
    assert_eq!(detail["body_base64"], "", "no second copy of the body");
    let shown = detail["data"]["data"]["message"].as_str().map(str::len);
    assert_eq!(shown, Some(1_000_000), "the original's data is shown");
}

#[tokio::test]
async fn below_the_free_disk_floor_new_work_gets_the_retryable_reply() {
    let config = format!("{CONFIG}[journal]\nmin_free_disk_mb = 1000000000\n");
    let app = spawn_app(&config).await;
    let res = post_reading(&app.client, &app, "k", 1_700_000_300).await;
    assert_eq!(res.status(), 500, "the spec's status for a failure the sender may retry");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "processing paused: the server's disk is nearly full; retry later");
    assert!(app.lines("home/webhook_log.csv").is_empty(), "nothing was written");
    let metrics = app.client.get(app.url("/metrics")).bearer_auth("adm1n").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"hookyard_failures_total{protocol="ai-on-the-edge",kind="disk_full"} 1"#), "{metrics}");
}
