//! A version-3 journal with data opens as version 4 (and then 5) in place: every event is still shown
//! with its key (in the log), headers and verification (in the inspector), replays, and dedups; a failed attempt made
//! before the migration is superseded by a success after it.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{Setup, TestApp, gridx_ping as ping, post_gridx, spawn_with};
use crate::journal_once::checkpointed;

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n[protocols.gridx]\nsecrets = [\"s\"]\n";
pub const VERIFIED: &str = "passed: HMAC signature in X-Signature";
const SCRIPT: &str = r#"
fn on_event(event) {
    if event.data.data.message == "boom" { throw "boom"; }
    append_json("gridx/events.jsonl", event.data);
}
"#;

pub async fn start(data: &Path) -> TestApp {
    let setup = Setup {
        config: CONFIG,
        data_dir: Some(data.into()),
        scripts: vec![("gridx.rhai", SCRIPT)],
        ..Setup::default()
    };
    spawn_with(setup).await
}

pub async fn admin(app: &TestApp, method: &str, path: &str) -> (u16, Value) {
    let res = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth("adm1n").send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

pub fn journal(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join(".hookyard/journal.db")).unwrap()
}

/// What version 3 kept: every key whole, each request's verification text, the time index
/// of the key table, no sweep position.
const BACK_TO_VERSION_3: &str = r#"
UPDATE events SET idem_key = '["gridx","events"' || idem_key WHERE substr(idem_key, 1, 1) = ',';
UPDATE requests SET verification = (SELECT text FROM request_texts WHERE id = verification_id),
    headers = (SELECT text FROM request_texts WHERE id = headers_id);
ALTER TABLE requests DROP COLUMN verification_id;
ALTER TABLE requests DROP COLUMN headers_id;
DROP TABLE request_texts;
CREATE INDEX processed_keys_time ON processed_keys(received_ms);
DROP TABLE key_sweep;
PRAGMA user_version = 3;
"#;

/// The stored key of the gridX ping numbered `n`.
pub fn key(n: u64) -> String {
    format!(r#"["gridx","events","00000000-0000-4000-8000-{n:012}"]"#)
}

/// A journal in `data` of four gridX pings: two processed, one failed (`boom`), one resent
/// (a duplicate); checkpointed, the server stopped.
pub async fn seed(data: &Path) {
    let app = start(data).await;
    let base = app.url("");
    for (n, message) in [(1, "one"), (2, "two"), (9, "boom"), (1, "one")] {
        let status = post_gridx(&app.client, &base, "s", ping(n, message)).await.unwrap();
        assert_eq!(status == 204, message != "boom", "{message}: {status}");
    }
    checkpointed(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_version_3_journal_opens_as_version_4_and_5_with_every_event_shown_and_replayable() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    seed(&data).await;
    journal(&data).execute_batch(crate::journal_v5::BACK_TO_VERSION_4).unwrap();
    journal(&data).execute_batch(BACK_TO_VERSION_3).unwrap();
    let stored = |sql: &str| journal(&data).query_row(sql, [], |r| r.get::<_, String>(0)).unwrap();
    assert_eq!(stored("SELECT idem_key FROM events WHERE id = 1"), key(1), "a version-3 key");

    let app = start(&data).await;
    let base = app.url("");
    let conn = journal(&data);
    assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 7);
    let index: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'processed_keys_time'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(index, 0, "the key table's time index went");
    assert_eq!(stored("SELECT idem_key FROM events WHERE id = 1"), r#","00000000-0000-4000-8000-000000000001"]"#);

    let expected = [(1, "processed", "one"), (2, "processed", "two"), (3, "failed", "boom"), (4, "duplicate", "one")];
    for (id, status, message) in expected {
        let (code, detail) = admin(&app, "GET", &format!("/api/events/{id}")).await;
        assert_eq!((code, detail["event"]["status"].as_str()), (200, Some(status)), "{detail}");
        assert_eq!(detail["data"]["data"]["message"], message, "{detail}");
        assert_eq!(detail["verification"], VERIFIED, "{detail}");
        assert_eq!(detail["headers"][0]["name"], "x-signature", "{detail}");
    }
    let (code, log) = admin(&app, "GET", "/api/log?protocol=gridx").await;
    assert_eq!(code, 200, "{log}");
    let keys: Vec<&str> = log["entries"].as_array().unwrap().iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(keys, [key(1), key(9), key(2), key(1)], "newest first, each key whole: {log}");
    let (_, found) = admin(&app, "GET", &format!("/api/log?q={}", urlencode(&key(2)[..40]))).await;
    assert_eq!(found["entries"].as_array().map(Vec::len), Some(4), "a key prefix finds: {found}");

    // Replay, dedup and supersede go on across the migration.
    let (code, replayed) = admin(&app, "POST", "/api/events/2/replay").await;
    assert_eq!((code, replayed["outcome"].as_str()), (200, Some("processed")), "{replayed}");
    assert_eq!(app.lines("gridx/events.jsonl").len(), 3, "one, two, and two again");
    assert_eq!(post_gridx(&app.client, &base, "s", ping(2, "two")).await.unwrap(), 204);
    assert_eq!(app.lines("gridx/events.jsonl").len(), 3, "a resend after the migration is a duplicate");
    assert_eq!(post_gridx(&app.client, &base, "s", ping(9, "fixed")).await.unwrap(), 204);
    let (_, failed) = admin(&app, "GET", "/api/events/3").await;
    assert_eq!(failed["event"]["status"], "superseded", "{failed}");
    let (_, fixed) = admin(&app, "GET", "/api/events/6").await;
    assert_eq!((fixed["event"]["status"].as_str(), &fixed["verification"]), (Some("processed"), &VERIFIED.into()));
    assert_eq!(fixed["headers"][0]["name"], "x-signature", "{fixed}");
    assert_eq!(stored("SELECT verification FROM requests WHERE id = 1"), VERIFIED, "an old row keeps its text");
    assert_eq!(stored("SELECT verification || headers FROM requests WHERE id = 6"), "", "a new one keeps them apart");
    assert_eq!(stored("SELECT headers FROM requests WHERE id = 1"), r#"[["x-signature",""]]"#);
}

pub fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
