//! Script outputs through the running server, against real backends: SQL rows in the
//! embedded SQLite database and in PostgreSQL, MQTT messages on Mosquitto (with Home
//! Assistant discovery), HTTP forwarding with retries. PostgreSQL and Mosquitto are the
//! ones `tools/services.sh` starts; these tests fail (not skip) when they are missing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::helpers::{Setup, ai_reading, eventually, journal_errors, journal_statuses, post_ai, spawn_with};

pub fn postgres_url() -> String {
    std::env::var("HOOKYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://hookyard_test:hookyard-test-only@127.0.0.1:5432/hookyard_test".into())
}

fn mqtt_broker() -> (String, u16) {
    let addr = std::env::var("HOOKYARD_TEST_MQTT").unwrap_or_else(|_| "127.0.0.1:1883".into());
    let (host, port) = addr.rsplit_once(':').expect("HOOKYARD_TEST_MQTT is host:port");
    (host.to_owned(), port.parse().expect("port"))
}

/// A connection to the test PostgreSQL, or a clear failure.
pub async fn postgres() -> postgres::Client {
    let url = postgres_url();
    tokio::task::spawn_blocking(move || {
        postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
            panic!("PostgreSQL for the tests is not reachable ({e}); run `bash tools/services.sh` first")
        })
    })
    .await
    .unwrap()
}

/// A unique name for this test run (tables and topics of concurrent runs do not collide).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    (t % 1_000_000_000) * 100 + N.fetch_add(1, Ordering::Relaxed)
}

fn sql_config(table: &str, url: Option<&str>) -> String {
    let url = url.map(|u| format!("url = \"{u}\"\n")).unwrap_or_default();
    format!(
        r#"
[protocols.ai-on-the-edge]
api_keys = {{ "k" = "cabin" }}
[outputs.sql]
{url}[outputs.sql.tables.{table}]
meter = "text"
value = "real"
time = "timestamp"
raw = "json"
"#
    )
}

fn sql_script(table: &str) -> String {
    format!(
        r#"
fn on_event(event) {{
    sql_insert("{table}", #{{ meter: `${{event.source}}/${{event.data.name}}`, value: event.data.value,
                              time: event.data.timestampLong, raw: event.data }});
}}
"#
    )
}

#[tokio::test]
async fn readings_become_rows_of_the_embedded_sqlite_database_once() {
    let script = sql_script("readings");
    let app = spawn_with(Setup {
        config: &sql_config("readings", None),
        scripts: vec![("ai-on-the-edge.rhai", &script)],
        ..Setup::default()
    })
    .await;
    assert_eq!(post_ai(&app, ai_reading("main", "345.4264", 1_723_196_684)).await.0, 200);
    assert_eq!(post_ai(&app, ai_reading("main", "345.5", 1_723_197_000)).await.0, 200);
    // The device's resend of the same reading is a duplicate: no second row.
    assert_eq!(post_ai(&app, ai_reading("main", "345.5", 1_723_197_000)).await.0, 200);
    // Error rounds carry "" as the value: NULL, not a failure.
    assert_eq!(post_ai(&app, ai_reading("main", "", 1_723_197_300)).await.0, 200);
    let db = rusqlite::Connection::open(app.data().join("hookyard.db")).unwrap();
    let mut stmt =
        db.prepare("SELECT meter, value, time, json_extract(raw, '$.rawValue') FROM readings ORDER BY id").unwrap();
    let rows: Vec<(String, Option<f64>, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(
        rows,
        vec![
            ("cabin/main".into(), Some(345.4264), "2024-08-09T09:44:44.000Z".into(), "345.4264".into()),
            ("cabin/main".into(), Some(345.5), "2024-08-09T09:50:00.000Z".into(), "345.5".into()),
            ("cabin/main".into(), None, "2024-08-09T09:55:00.000Z".into(), "".into()),
        ]
    );
    // A value that is no number fails the event, naming table and column; nothing is inserted.
    let (status, body) = post_ai(&app, ai_reading("main", "34x", 1_723_197_600)).await;
    assert_eq!(status, 500, "{body}");
    let error = journal_errors(&app).remove(0);
    assert!(error.contains("sql_insert: readings.value: \"34x\" is not a number"), "{error}");
    assert_eq!(db.query_row("SELECT count(*) FROM readings", [], |r| r.get::<_, i64>(0)).unwrap(), 3);
}

#[tokio::test]
async fn the_same_script_writes_rows_to_postgresql() {
    let table = unique("readings");
    let script = sql_script(&table);
    let url = postgres_url();
    let app = spawn_with(Setup {
        config: &sql_config(&table, Some(&url)),
        scripts: vec![("ai-on-the-edge.rhai", &script)],
        ..Setup::default()
    })
    .await;
    // Fresh times: the database outlives test runs, and it remembers applied events.
    let t = 1_700_000_000 + rand_suffix() % 100_000_000;
    assert_eq!(post_ai(&app, ai_reading("main", "12.5", t)).await.0, 200);
    assert_eq!(post_ai(&app, ai_reading("garage", "7", t + 16)).await.0, 200);
    let mut pg = postgres().await;
    let query =
        format!("SELECT meter, value, extract(epoch from time)::bigint, raw->>'name' FROM \"{table}\" ORDER BY id");
    let rows = tokio::task::spawn_blocking(move || {
        let rows = pg.query(&query, &[]).unwrap();
        rows.iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1), r.get::<_, i64>(2), r.get::<_, String>(3)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("cabin/main".to_owned(), 12.5, t as i64, "main".to_owned()),
            ("cabin/garage".to_owned(), 7.0, t as i64 + 16, "garage".to_owned()),
        ]
    );
}

#[tokio::test]
async fn with_postgresql_down_the_event_fails_and_is_kept_for_replay() {
    let table = unique("down");
    let script = sql_script(&table);
    let app = spawn_with(Setup {
        config: &sql_config(&table, Some("postgres://nobody:nothing@127.0.0.1:1/none?connect_timeout=1")),
        scripts: vec![("ai-on-the-edge.rhai", &script)],
        ..Setup::default()
    })
    .await;
    let (status, body) = post_ai(&app, ai_reading("main", "1", 1_723_196_684)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(journal_statuses(&app, ""), vec!["failed"]);
    let error = journal_errors(&app).remove(0);
    assert!(error.starts_with("output failed: sql (PostgreSQL): cannot connect"), "{error}");
    assert!(!error.contains("nothing"), "the password must not be shown: {error}");
}

/// Subscribes to `filter` and collects (topic, payload, retain).
async fn subscriber(filter: &str) -> Arc<Mutex<Vec<(String, String, bool)>>> {
    let (host, port) = mqtt_broker();
    let mut options = MqttOptions::new(unique("sub"), host, port);
    options.set_credentials("hookyard_test", "hookyard-test-only");
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let got: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let sink = got.clone();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push((
                    p.topic.to_string(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                    p.retain,
                )),
                Ok(_) => {}
                Err(e) => panic!("Mosquitto for the tests is not reachable ({e}); run `bash tools/services.sh` first"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed_rx).await.expect("subscribed").unwrap();
    got
}

fn mqtt_config(prefix: &str, port: u16, timeout_ms: u64) -> String {
    let (host, _) = mqtt_broker();
    format!(
        r#"
[protocols.ai-on-the-edge]
api_keys = {{ "k" = "cabin" }}
[outputs.mqtt]
host = "{host}"
port = {port}
username = "hookyard_test"
password = "hookyard-test-only"
timeout_ms = {timeout_ms}
discovery_prefix = "{prefix}"
"#
    )
}

#[tokio::test]
async fn readings_are_published_and_appear_as_home_assistant_sensors() {
    let prefix = unique("ha");
    let live = subscriber(&format!("{prefix}/meters/#")).await;
    let script = format!(
        r#"
fn on_event(event) {{
    mqtt_publish(`{prefix}/meters/${{event.data.name}}`, event.data.value, #{{ qos: 0 }});
    ha_sensor(`{prefix}_${{event.data.name}}`, "Water meter", event.data.value,
              #{{ unit: "m³", device_class: "water", device: "Vacation home" }});
}}
"#
    );
    let app = spawn_with(Setup {
        config: &mqtt_config(&prefix, mqtt_broker().1, 5000),
        scripts: vec![("ai-on-the-edge.rhai", &script)],
        ..Setup::default()
    })
    .await;
    let (status, body) = post_ai(&app, ai_reading("main", "345.4264", 1_723_196_684)).await;
    assert_eq!(status, 200, "{body}");
    assert!(eventually(5, async || !live.lock().unwrap().is_empty()).await);
    assert_eq!(live.lock().unwrap()[0], (format!("{prefix}/meters/main"), "345.4264".into(), false));
    // Home Assistant subscribes later (after a restart, say): the retained discovery config
    // and state are what it gets.
    let ha = subscriber(&format!("{prefix}/sensor/#")).await;
    let state_topic = format!("hookyard/{prefix}_main/state");
    let state = subscriber(&state_topic).await;
    assert!(eventually(5, async || !ha.lock().unwrap().is_empty() && !state.lock().unwrap().is_empty()).await);
    let (topic, config, retained) = ha.lock().unwrap()[0].clone();
    assert_eq!(topic, format!("{prefix}/sensor/hookyard/{prefix}_main/config"));
    assert!(retained, "discovery config must be retained");
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["state_topic"], state_topic.as_str());
    assert_eq!(config["unique_id"], format!("hookyard_{prefix}_main"));
    assert_eq!(config["unit_of_measurement"], "m³");
    assert_eq!(config["device_class"], "water");
    assert_eq!(config["state_class"], "total_increasing");
    assert_eq!(config["device"]["name"], "Vacation home");
    assert_eq!(state.lock().unwrap()[0], (state_topic, "345.4264".into(), true));
    // The journal keeps what was sent, with the event.
    let logs: String = rusqlite::Connection::open(app.data().join(".hookyard/journal.db"))
        .unwrap()
        .query_row("SELECT logs FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(logs.contains(&format!("mqtt: 8 bytes to {prefix}/meters/main (qos 0)")), "{logs}");
}

#[tokio::test]
async fn with_the_broker_down_the_event_fails_within_the_timeout() {
    let script = r#"fn on_event(event) { mqtt_publish("meters/x", event.data.value); }"#;
    let app = spawn_with(Setup {
        config: &mqtt_config("unused", 1, 400),
        scripts: vec![("ai-on-the-edge.rhai", script)],
        ..Setup::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (status, body) = post_ai(&app, ai_reading("main", "1", 1_723_196_684)).await;
    assert_eq!(status, 500, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let error = journal_errors(&app).remove(0);
    assert_eq!(error, "output failed: mqtt: broker 127.0.0.1:1 did not take meters/x within 400 ms");
}

type Received = Arc<Mutex<Vec<(String, String)>>>;
type Plan = Arc<Mutex<std::collections::VecDeque<u16>>>;

/// A small HTTP receiver: answers with the statuses in `plan` (then 200), records bodies.
async fn receiver(plan: Vec<u16>) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    use poem::{EndpointExt, Route, handler, http::StatusCode, post, web::Data};
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let plan = Arc::new(Mutex::new(std::collections::VecDeque::from(plan)));
    #[handler]
    fn hook(req: &poem::Request, body: String, state: Data<&(Received, Plan)>) -> StatusCode {
        let token = req.header("x-token").unwrap_or_default().to_owned();
        state.0.0.lock().unwrap().push((token, body));
        let status = state.0.1.lock().unwrap().pop_front().unwrap_or(200);
        StatusCode::from_u16(status).unwrap()
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let app = Route::new().at("/hook", post(hook)).data((got.clone(), plan));
    let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (format!("http://{addr}/hook"), got)
}

fn http_app_config(extra: &str) -> String {
    format!("[protocols.ai-on-the-edge]\napi_keys = {{ \"k\" = \"cabin\" }}\n{extra}")
}

#[tokio::test]
async fn events_are_forwarded_over_http_with_retries() {
    let (url, got) = receiver(vec![503, 502]).await;
    let script = format!(
        r#"fn on_event(event) {{ http_post("{url}", event.data, #{{ headers: #{{ "X-Token": "abc" }}, retries: 2 }}); }}"#
    );
    let app = spawn_with(Setup {
        config: &http_app_config(""),
        scripts: vec![("ai-on-the-edge.rhai", &script)],
        ..Setup::default()
    })
    .await;
    let (status, body) = post_ai(&app, ai_reading("main", "1.5", 1_723_196_684)).await;
    assert_eq!(status, 200, "{body}");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "two failed attempts, then success: {got:?}");
    let forwarded: serde_json::Value = serde_json::from_str(&got[2].1).unwrap();
    assert_eq!((got[2].0.as_str(), forwarded["value"].as_str()), ("abc", Some("1.5")));
}

#[tokio::test]
async fn a_refused_forward_fails_the_event_and_sql_rows_are_not_doubled_by_the_retry() {
    // The receiver refuses the first call (404: no retry), then accepts.
    let (url, got) = receiver(vec![404]).await;
    let script = format!(
        r#"
fn on_event(event) {{
    sql_insert("readings", #{{ meter: event.data.name, value: event.data.value }});
    http_post("{url}", event.data);
}}
"#
    );
    let app = spawn_with(Setup {
        config: &http_app_config("[outputs.sql.tables.readings]\nmeter = \"text\"\nvalue = \"real\"\n"),
        scripts: vec![("ai-on-the-edge.rhai", &script)],
        ..Setup::default()
    })
    .await;
    let (status, body) = post_ai(&app, ai_reading("main", "2.5", 1_723_196_684)).await;
    assert_eq!(status, 500, "{body}");
    let error = journal_errors(&app).remove(0);
    assert_eq!(error, format!("output failed: http: {url} answered 404 Not Found"));
    // The sender retries: the row written by the first attempt is not written again.
    let (status, body) = post_ai(&app, ai_reading("main", "2.5", 1_723_196_684)).await;
    assert_eq!(status, 200, "{body}");
    let db = rusqlite::Connection::open(app.data().join("hookyard.db")).unwrap();
    assert_eq!(db.query_row("SELECT count(*) FROM readings", [], |r| r.get::<_, i64>(0)).unwrap(), 1);
    assert_eq!(got.lock().unwrap().len(), 2);
    // The failed attempt is marked superseded by the one that succeeded.
    assert_eq!(journal_statuses(&app, "ORDER BY id"), vec!["superseded", "processed"]);
}

#[tokio::test]
async fn outputs_that_are_not_configured_or_declared_are_named_in_the_error() {
    let script = r#"
fn on_event(event) {
    if event.data.name == "a" { sql_insert("nowhere", #{ x: 1 }); }
    if event.data.name == "b" { mqtt_publish("t", "v"); }
    if event.data.name == "c" { http_post("ftp://example.org/", "v"); }
}
"#;
    let app = spawn_with(Setup {
        config: &http_app_config(""),
        scripts: vec![("ai-on-the-edge.rhai", script)],
        ..Setup::default()
    })
    .await;
    for name in ["a", "b", "c"] {
        assert_eq!(post_ai(&app, ai_reading(name, "1", 1_723_196_684)).await.0, 500);
    }
    let errors = journal_errors(&app);
    assert!(
        errors[0].contains("sql_insert: no table \"nowhere\" is declared ([outputs.sql.tables.nowhere])"),
        "{errors:?}"
    );
    assert!(errors[1].contains("mqtt_publish: no broker is configured ([outputs.mqtt])"), "{errors:?}");
    assert!(errors[2].contains("http_post: \"ftp://example.org/\" is not an http:// or https:// URL"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_output_holds_up_only_its_own_requests() {
    use poem::{Route, handler};
    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(3)).await;
        "late"
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(Route::new().at("/slow", poem::post(slow))));
    let script = format!(r#"fn on_event(event) {{ http_post("{url}", event.data, #{{ timeout_ms: 10000 }}); }}"#);
    let config = http_app_config("[protocols.gridx]\nsecrets = [\"whsec_slow\"]\n");
    let app =
        spawn_with(Setup { config: &config, scripts: vec![("ai-on-the-edge.rhai", &script)], ..Setup::default() })
            .await;
    let app = Arc::new(app);
    let slow_app = app.clone();
    let reading_started = std::time::Instant::now();
    let slow_request = tokio::spawn(async move { post_ai(&slow_app, ai_reading("main", "1", 1_723_196_684)).await.0 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile gridX events are processed and acknowledged at once.
    for n in 0..5 {
        let started = std::time::Instant::now();
        let status = crate::helpers::post_gridx(
            &reqwest::Client::new(),
            &app.url(""),
            "whsec_slow",
            crate::helpers::gridx_ping(n, "meanwhile"),
        )
        .await
        .unwrap();
        assert_eq!(status, 204);
        assert!(started.elapsed() < Duration::from_secs(1), "gridX waited {:?}", started.elapsed());
    }
    assert!(!slow_request.is_finished(), "the reading's forward is still under way");
    assert_eq!(slow_request.await.unwrap(), 200);
    assert!(reading_started.elapsed() >= Duration::from_secs(3));
    assert_eq!(app.lines("gridx/events.jsonl").len(), 5);
}
