//! The console's live log through the real server: events and refused requests in one list
//! (`/api/log`), stable paging, the SSE stream, the bounded `rejected` table, the inspector's
//! dry run, curl and fixture, and no credential anywhere in an answer or the journal's bytes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Setup, TestApp, eventually, gridx_ping as ping, gridx_signature, spawn_with};

const API_KEY: &str = "apikey-7f3c9e1d5b";
const SECRET: &str = "gridx-secret-4a8e";

fn config(extra: &str) -> String {
    format!(
        "[admin]\ntoken = \"adm1n\"\n[protocols.ai-on-the-edge]\napi_keys = {{ \"{API_KEY}\" = \"home\" }}\n\
         [protocols.gridx]\nsecrets = [\"{SECRET}\"]\n{extra}"
    )
}

async fn start(extra: &str) -> TestApp {
    spawn_with(Setup { config: &config(extra), ..Setup::default() }).await
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

async fn admin_text(app: &TestApp, path: &str) -> (u16, String, String) {
    let res = app.client.get(app.url(path)).bearer_auth("adm1n").send().await.unwrap();
    let disposition = res.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), disposition.unwrap_or_default(), res.text().await.unwrap())
}

/// POSTs `body` to gridX with `signature`; the status.
async fn post_signed(app: &TestApp, body: &str, signature: &str) -> u16 {
    let res = app.client.post(app.url("/gridx/events")).header("X-Signature", signature).body(body.to_owned());
    res.send().await.unwrap().status().as_u16()
}

async fn post_ping(app: &TestApp, n: u64) -> u16 {
    let body = ping(n, "hello");
    post_signed(app, &body, &gridx_signature(SECRET, body.as_bytes())).await
}

/// The log page at `query`, once it holds at least `n` entries.
async fn log_with(app: &TestApp, query: &str, n: usize) -> Value {
    let path = format!("/api/log{query}");
    let mut page = Value::Null;
    let found = eventually(5, async || {
        page = admin(app, "GET", &path, None).await.1;
        page["entries"].as_array().is_some_and(|e| e.len() >= n)
    })
    .await;
    assert!(found, "{path}: fewer than {n} entries: {page}");
    page
}

fn ids(page: &Value) -> Vec<i64> {
    page["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn an_event_and_a_refused_request_show_in_the_log_with_status_reason_and_client() {
    let app = start("").await;
    assert_eq!(post_ping(&app, 1).await, 204);
    let wrong = format!("sha512={}", "0f".repeat(64));
    assert_eq!(post_signed(&app, &ping(2, "forged"), &wrong).await, 401);

    let page = log_with(&app, "", 2).await;
    let entries = page["entries"].as_array().unwrap();
    let (refused, event) = (&entries[0], &entries[1]);
    assert_eq!(refused["kind"], "rejected", "{page}");
    assert_eq!((refused["status"].as_str(), refused["reply_status"].as_u64()), (Some("rejected"), Some(401)));
    assert_eq!(refused["protocol"], "gridx");
    assert_eq!(refused["error"], "X-Signature does not match the body", "{refused}");
    assert_eq!(event["kind"], "event");
    assert_eq!((event["status"].as_str(), event["reply_status"].as_u64()), (Some("processed"), Some(204)));
    assert_eq!(event["size"].as_u64(), Some(ping(1, "hello").len() as u64));
    assert!(event["key"].as_str().unwrap().contains("00000000-0000-4000-8000-000000000001"), "{event}");
    assert!(page["next"].is_null());

    let (status, detail) = admin(&app, "GET", &format!("/api/rejected/{}", refused["id"]), None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!((detail["client"].as_str(), detail["check"].as_str()), (Some("127.0.0.1"), Some("hmac")));
    assert_eq!(detail["path"], "/gridx/events");
    assert_eq!(detail["reason"], refused["error"]);
    let signature = detail["headers"].as_array().unwrap().iter().find(|h| h["name"] == "x-signature").unwrap();
    assert_eq!(signature["value"], "••••");
    let body =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, detail["body_base64"].as_str().unwrap());
    assert_eq!(body.unwrap(), ping(2, "forged").as_bytes());
    assert_eq!(admin(&app, "GET", "/api/rejected/999", None).await.0, 404);

    // Only refused ones, only events; a refused-before-body request keeps no body.
    let res = app.client.post(app.url("/ai-on-the-edge/webhook")).header("APIKEY", "wrong-key").body("[]");
    assert_eq!(res.send().await.unwrap().status(), 403);
    let refused = log_with(&app, "?status=rejected", 2).await;
    assert!(refused["entries"].as_array().unwrap().iter().all(|e| e["kind"] == "rejected"), "{refused}");
    let ai = &refused["entries"][0];
    let (_, detail) = admin(&app, "GET", &format!("/api/rejected/{}", ai["id"]), None).await;
    assert_eq!((detail["check"].as_str(), detail["body_base64"].as_str()), (Some("api-key-header"), None), "{detail}");
    let events = admin(&app, "GET", "/api/log?status=processed", None).await.1;
    assert_eq!(ids(&events), [event["id"].as_i64().unwrap()]);
    assert_eq!(admin(&app, "GET", "/api/log?status=lost", None).await.0, 400);
    assert_eq!(admin(&app, "GET", "/api/log?before=nonsense", None).await.0, 400);
}

#[tokio::test]
async fn paging_stays_stable_while_new_entries_arrive() {
    let app = start("").await;
    for n in 1..=5 {
        assert_eq!(post_ping(&app, n).await, 204);
    }
    let first = log_with(&app, "?protocol=gridx&status=processed&limit=2", 2).await;
    let all = ids(&log_with(&app, "?protocol=gridx&limit=500", 5).await);
    assert_eq!(ids(&first), all[..2]);
    let next = first["next"].as_str().unwrap().to_owned();
    // New entries arrive between two pages.
    for n in 6..=7 {
        assert_eq!(post_ping(&app, n).await, 204);
    }
    let second =
        admin(&app, "GET", &format!("/api/log?protocol=gridx&status=processed&limit=2&before={next}"), None).await.1;
    assert_eq!(ids(&second), all[2..4]);
    let third = admin(
        &app,
        "GET",
        &format!("/api/log?protocol=gridx&limit=2&before={}", second["next"].as_str().unwrap()),
        None,
    )
    .await
    .1;
    assert_eq!(ids(&third), all[4..5]);
    assert!(third["next"].is_null(), "{third}");
    let newest = admin(&app, "GET", "/api/log?limit=2", None).await.1;
    assert!(ids(&newest).iter().all(|id| !all.contains(id)), "the first page shows the new entries: {newest}");
    // `q`: an event id, or the start of an idempotency key.
    let by_id = admin(&app, "GET", &format!("/api/log?q={}", all[0]), None).await.1;
    assert!(ids(&by_id).contains(&all[0]), "{by_id}");
    let key = first["entries"][0]["key"].as_str().unwrap();
    let by_key = admin(&app, "GET", &format!("/api/log?q={}", &key[..key.len() - 2]), None).await.1;
    assert!(ids(&by_key).contains(&all[0]), "{by_key}");
}

/// An SSE stream being read, and what it sent so far.
struct Sse {
    res: reqwest::Response,
    text: String,
}

impl Sse {
    async fn open(app: &TestApp, path: &str) -> Self {
        let res = app.client.get(app.url(path)).bearer_auth("adm1n").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Self { res, text: String::new() }
    }

    /// The data of every `event: entries` message so far.
    fn messages(&self) -> Vec<Value> {
        let entries = self.text.split("\n\n").filter(|m| m.starts_with("event: entries\n"));
        entries
            .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// Reads on until `done` holds for the messages (within 5 s).
    async fn until(&mut self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while !self.text.ends_with("\n\n") || !done(&self.messages()) {
                let Some(chunk) = self.res.chunk().await.unwrap() else { break };
                self.text.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
        assert!(read.is_ok(), "the messages within 5 s: {}", self.text);
        self.messages()
    }
}

/// The entries of `messages` in the order they were committed (each message is newest first).
fn committed(messages: &[Value]) -> Vec<Value> {
    messages.iter().flat_map(|m| m["entries"].as_array().unwrap().iter().rev().cloned()).collect()
}

#[tokio::test]
async fn the_stream_sends_new_entries_in_messages() {
    let app = start("").await;
    let mut sse = Sse::open(&app, "/api/log/stream?protocol=gridx").await;
    assert_eq!(post_ping(&app, 1).await, 204);
    let wrong = format!("sha512={}", "ab".repeat(64));
    assert_eq!(post_signed(&app, &ping(2, "forged"), &wrong).await, 401);
    let messages = sse.until(|m| committed(m).len() >= 2).await;
    assert!(messages.iter().all(|m| m["skipped"] == 0), "{messages:?}");
    let data = committed(&messages);
    assert_eq!((data[0]["kind"].as_str(), data[0]["status"].as_str()), (Some("event"), Some("processed")), "{data:?}");
    assert_eq!((data[1]["kind"].as_str(), data[1]["reply_status"].as_u64()), (Some("rejected"), Some(401)), "{data:?}");
    let page = log_with(&app, "", 2).await;
    assert_eq!(page["entries"][1]["id"], data[0]["id"], "the streamed entry is the listed one");
}

/// A Wattmon form of `rows` readings (one event each), as the device sends it.
fn wattmon_form(rows: usize) -> String {
    use md5::Digest as _;
    let mut block = String::from("Time,Voltage,Current\r\n");
    for n in 0..rows {
        block.push_str(&format!("2025-09-01 {:02}:{:02}:00,52.1,3.4\r\n", n / 60, n % 60));
    }
    let md5 = hex::encode(md5::Md5::digest(block.as_bytes()));
    let fields = [("key", "00:04:A3:12:34:56"), ("md5sum", md5.as_str()), ("data", block.as_str())];
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

#[tokio::test]
async fn a_busy_feed_comes_in_few_capped_messages_newest_first() {
    let app = start("[protocols.wattmon]\ntoken = \"w4tt\"\n").await;
    let mut sse = Sse::open(&app, "/api/log/stream").await;
    // One request of 250 readings: 250 entries in one commit, so in one message.
    let form = app.client.post(app.url("/wattmon/export?token=w4tt")).body(wattmon_form(250));
    let sent = form.header("Content-Type", "application/x-www-form-urlencoded").send().await.unwrap();
    assert_eq!(sent.status(), 200);
    let total = |m: &[Value]| committed(m).len() as u64 + m.iter().map(|m| m["skipped"].as_u64().unwrap()).sum::<u64>();
    let messages = sse.until(|m| total(m) >= 250).await;
    let first = &messages[0];
    assert_eq!((first["entries"].as_array().unwrap().len(), first["skipped"].as_u64()), (200, Some(50)), "{first}");
    let ids: Vec<i64> = first["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let page = log_with(&app, "?protocol=wattmon&limit=1", 1).await;
    assert_eq!(page["entries"][0]["id"], first["entries"][0]["id"], "the newest of the commit leads");
    // At most one message per 200 ms: twenty requests in a row cost a few messages, not twenty.
    let started = std::time::Instant::now();
    for n in 1..=20 {
        assert_eq!(post_ping(&app, n).await, 204);
    }
    let messages = sse.until(|m| total(m) >= 270).await;
    assert_eq!(total(&messages), 270, "every entry is sent or counted as skipped: {messages:?}");
    let most = started.elapsed().as_millis() / 200 + 1;
    assert!(messages.len() as u128 - 1 <= most, "{} messages in {:?}", messages.len() - 1, started.elapsed());
    assert!(committed(&messages[1..]).iter().all(|e| e["protocol"] == "gridx"), "the pings follow");
}

#[tokio::test]
async fn the_rejected_table_is_capped() {
    let app = start("[journal]\nrejected_max_rows = 3\n").await;
    for n in 0..7 {
        // Signed, but not a gridX event: refused by the schema (no lockout for that).
        let body = format!("{{\"n\":{n}}}");
        assert_eq!(post_signed(&app, &body, &gridx_signature(SECRET, body.as_bytes())).await, 400);
    }
    let db = app.data().join(".hookyard/journal.db");
    let counts = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(MIN(id), 0) FROM rejected", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .unwrap()
    };
    assert!(eventually(5, async || counts().1 == 7).await, "all seven recorded: {:?}", counts());
    assert_eq!(counts(), (3, 7, 5), "the newest three are kept");
    let page = admin(&app, "GET", "/api/log?status=rejected", None).await.1;
    assert_eq!(ids(&page), [7, 6, 5]);
    let (_, detail) = admin(&app, "GET", "/api/rejected/7", None).await;
    assert_eq!(detail["check"], "schema", "{detail}");
}

#[tokio::test]
async fn no_credential_is_in_an_answer_or_in_the_journal() {
    let app = start("").await;
    let reading = crate::helpers::ai_reading("main", "1.5", 1_700_000_000);
    let res = app
        .client
        .post(app.url("/ai-on-the-edge/webhook"))
        .header("APIKEY", API_KEY)
        .header("Content-Type", "application/json");
    assert_eq!(res.body(reading).send().await.unwrap().status(), 200);
    let body = ping(1, "hello");
    let signature = gridx_signature(SECRET, body.as_bytes());
    assert_eq!(post_signed(&app, &body, &signature).await, 204);
    let forged = format!("sha512={}", "9c".repeat(64));
    assert_eq!(post_signed(&app, &ping(3, "x"), &forged).await, 401);
    let res =
        app.client.post(app.url("/ai-on-the-edge/webhook?apikey=query-secret-55")).header("APIKEY", "bad-key-value-77");
    assert_eq!(res.body("[]").send().await.unwrap().status(), 403);

    let page = log_with(&app, "", 4).await;
    let mut answers = vec![page.to_string()];
    for entry in page["entries"].as_array().unwrap() {
        let id = entry["id"].as_i64().unwrap();
        if entry["kind"] == "rejected" {
            answers.push(admin(&app, "GET", &format!("/api/rejected/{id}"), None).await.1.to_string());
        } else {
            answers.push(admin(&app, "GET", &format!("/api/events/{id}"), None).await.1.to_string());
            answers.push(admin_text(&app, &format!("/api/events/{id}/curl")).await.2);
            answers.push(admin_text(&app, &format!("/api/events/{id}/fixture")).await.2);
        }
    }
    let hex = signature.trim_start_matches("sha512=");
    let secrets = [API_KEY, hex, &forged[7..], "query-secret-55", "bad-key-value-77", SECRET];
    for answer in &answers {
        for secret in secrets {
            assert!(!answer.contains(secret), "{secret} in an answer: {answer}");
        }
    }
    assert!(answers.iter().any(|a| a.contains("apikey=••••")), "the masked query shows: {answers:?}");
    // Checkpointed or still in the write-ahead log: neither file holds a credential.
    for file in ["journal.db", "journal.db-wal"] {
        let bytes = std::fs::read(app.data().join(".hookyard").join(file)).unwrap_or_default();
        for secret in secrets {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in {file}");
        }
    }
}

#[tokio::test]
async fn the_inspector_dry_runs_copies_as_curl_and_downloads_a_fixture() {
    let app = start("").await;
    let body = ping(1, "hello");
    assert_eq!(post_signed(&app, &body, &gridx_signature(SECRET, body.as_bytes())).await, 204);
    let id = ids(&log_with(&app, "?status=processed", 1).await)[0];

    let (status, detail) = admin(&app, "GET", &format!("/api/events/{id}"), None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!((detail["reply_status"].as_u64(), detail["method"].as_str()), (Some(204), Some("POST")));
    assert_eq!(detail["effects"][0]["path"], "gridx/events.jsonl");
    let written = detail["effects"][0]["text"].as_str().unwrap().to_owned();
    assert_eq!(detail["effects"][0]["size"].as_u64(), Some(written.len() as u64));
    assert_eq!(detail["siblings"], json!([]));

    std::fs::write(
        app.scripts().join("gridx.rhai"),
        "fn on_event(event) { log(\"v2\"); append_json(\"gridx/events.jsonl\", #{ id: event.data.id }); }",
    )
    .unwrap();
    let path = format!("/api/events/{id}/dry-run");
    let mut dry = Value::Null;
    let changed = eventually(5, async || {
        dry = admin(&app, "POST", &path, None).await.1;
        dry["logs"] == json!(["v2"])
    })
    .await;
    assert!(changed, "the dry run uses the new script: {dry}");
    assert_eq!(dry["outcome"], "processed");
    let effect = &dry["effects"][0];
    assert_eq!(
        (effect["path"].as_str(), effect["before"].as_str()),
        (Some("gridx/events.jsonl"), Some(written.as_str()))
    );
    assert_eq!(effect["after"], format!("{{\"id\":\"00000000-0000-4000-8000-000000000001\"}}\n"));
    assert_eq!(app.lines("gridx/events.jsonl").len(), 1, "a dry run writes nothing");

    let (status, _, curl) = admin_text(&app, &format!("/api/events/{id}/curl")).await;
    assert_eq!(status, 200);
    assert!(curl.starts_with("curl -sS -X POST \"${HOOKYARD_URL:-http://"), "{curl}");
    assert!(curl.contains("/gridx/events\""), "{curl}");
    assert!(curl.contains("-H \"x-signature: $HOOKYARD_SIGNATURE\""), "{curl}");
    assert!(curl.contains(&format!("--data-binary '{body}'")), "{curl}");

    let (status, disposition, text) = admin_text(&app, &format!("/api/events/{id}/fixture")).await;
    assert_eq!(status, 200);
    assert_eq!(disposition, format!("attachment; filename=\"gridx-{id}.json\""));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((fixture["method"].as_str(), fixture["path"].as_str()), (Some("POST"), Some("/gridx/events")));
    assert_eq!(fixture["expected"]["status"], 204);
    assert_eq!(fixture["expected"]["events"][0]["data"]["message"], "hello");
    let sent =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, fixture["body_base64"].as_str().unwrap());
    assert_eq!(sent.unwrap(), body.as_bytes());
}

#[tokio::test]
async fn bulk_replay_takes_the_log_filter_and_a_dry_run() {
    let app = start("").await;
    for n in 1..=3 {
        assert_eq!(post_ping(&app, n).await, 204);
    }
    let before = app.lines("gridx/events.jsonl");
    let (status, dry) =
        admin(&app, "POST", "/api/replay", Some(json!({"protocol": "gridx", "status": "processed", "dry_run": true})))
            .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (dry["count"].as_u64(), dry["processed"].as_u64(), dry["dry_run"].as_bool()),
        (Some(3), Some(3), Some(true))
    );
    assert_eq!(app.lines("gridx/events.jsonl"), before, "a dry run writes nothing");
    let (_, none) = admin(&app, "POST", "/api/replay", Some(json!({"source": "nobody", "dry_run": true}))).await;
    assert_eq!(none["count"].as_u64(), Some(0), "{none}");
    let (status, _) = admin(&app, "POST", "/api/replay", Some(json!({"status": "rejected"}))).await;
    assert_eq!(status, 400);
    let (_, done) = admin(&app, "POST", "/api/replay", Some(json!({"protocol": "gridx"}))).await;
    assert_eq!(
        (done["count"].as_u64(), done["processed"].as_u64(), done["dry_run"].as_bool()),
        (Some(3), Some(3), Some(false))
    );
    assert_eq!(app.lines("gridx/events.jsonl").len(), 6);
}
