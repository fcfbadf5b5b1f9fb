//! What the journal no longer copies is still shown: the written text after the checkpoint
//! dropped its bytes (read back from the file while it matches), events derived again from
//! the body, a version-2 journal migrated in place and replayed, a spec change said.

use serde_json::Value;

use crate::helpers::{Setup, TestApp, gridx_ping as ping, post_gridx, spawn_with};
use crate::journal_once::checkpointed;

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n[protocols.gridx]\nsecrets = [\"s\"]\n";

async fn admin(app: &TestApp, method: &str, path: &str) -> (u16, Value) {
    let res = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth("adm1n").send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn journal(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap()
}

fn count(app: &TestApp, sql: &str) -> i64 {
    journal(app).query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn the_inspector_shows_what_was_written_after_the_checkpoint_dropped_the_bytes() {
    let app = spawn_with(Setup { config: CONFIG, ..Setup::default() }).await;
    let base = app.url("");
    assert_eq!(post_gridx(&app.client, &base, "s", ping(1, "first")).await.unwrap(), 204);
    assert_eq!(post_gridx(&app.client, &base, "s", ping(2, "second")).await.unwrap(), 204);
    checkpointed(&app).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM effect_bytes"), 0, "the checkpoint dropped the bytes");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM events WHERE data != ''"), 0, "events are derived from bodies");
    let lines = app.lines("gridx/events.jsonl");

    let (status, detail) = admin(&app, "GET", "/api/events/2").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["data"]["data"]["message"], "second", "derived again from the body: {detail}");
    assert_eq!(detail["body_text"], ping(2, "second"), "the raw body byte for byte");
    let written = &detail["effects"][0];
    assert_eq!(written["path"], "gridx/events.jsonl");
    assert_eq!(written["kind"], "append");
    assert_eq!(written["text"], format!("{}\n", lines[1]), "{detail}");
    assert_eq!(written["offset"], lines[0].len() + 1);
    assert_eq!(written["size"], lines[1].len() + 1);
    assert_eq!(written["digest"].as_str().unwrap().len(), 32);

    // The file changed under it: the inspector says the bytes are gone instead of showing others.
    std::fs::write(app.data().join("gridx/events.jsonl"), lines[0].clone() + "\nedited by hand\n").unwrap();
    let (_, detail) = admin(&app, "GET", "/api/events/2").await;
    assert_eq!(detail["effects"][0]["text"], Value::Null, "{detail}");
    assert_eq!(detail["effects"][0]["size"], lines[1].len() + 1, "{detail}");
}

/// The tables of a version-2 journal, as that version created them.
pub(crate) const VERSION_2: &str = "
CREATE TABLE requests (id INTEGER PRIMARY KEY, protocol TEXT NOT NULL, operation TEXT NOT NULL,
    source TEXT NOT NULL, received_ms INTEGER NOT NULL, headers TEXT NOT NULL,
    verification TEXT NOT NULL DEFAULT '', body BLOB NOT NULL, client TEXT NOT NULL DEFAULT '');
CREATE INDEX requests_time ON requests(received_ms);
CREATE TABLE events (id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, idx INTEGER NOT NULL,
    idem_key TEXT, data TEXT NOT NULL, blob INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
    error TEXT, logs TEXT, duplicate_of INTEGER);
CREATE INDEX events_request ON events(request_id);
CREATE INDEX events_processed_key ON events(idem_key) WHERE status = 'processed' AND idem_key IS NOT NULL;
CREATE INDEX events_failed_key ON events(idem_key) WHERE status = 'failed';
CREATE TABLE effects (id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, path TEXT NOT NULL,
    kind INTEGER NOT NULL, header BLOB, bytes BLOB NOT NULL);
CREATE INDEX effects_request ON effects(request_id);
CREATE TABLE file_state (path TEXT PRIMARY KEY, length INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), effect_id INTEGER NOT NULL);
INSERT INTO checkpoint (id, effect_id) VALUES (1, 1);
PRAGMA user_version = 2;
";

/// A version-2 data directory: one processed gridX event (its data stored), its line
/// written and checkpointed.
fn version_2_data(dir: &std::path::Path) -> String {
    let body = ping(7, "from version 2");
    let line = format!("{body}\n");
    std::fs::create_dir_all(dir.join(".hookyard")).unwrap();
    std::fs::create_dir_all(dir.join("gridx")).unwrap();
    std::fs::write(dir.join("gridx/events.jsonl"), &line).unwrap();
    let conn = rusqlite::Connection::open(dir.join(".hookyard/journal.db")).unwrap();
    conn.execute_batch(VERSION_2).unwrap();
    let received_ms = 1_767_225_600_000_i64;
    let event = serde_json::json!({
        "protocol": "gridx", "operation": "events", "source": "", "received_at": "2026-01-01T00:00:00.000Z",
        "received_ms": received_ms, "index": 0, "data": serde_json::from_str::<Value>(&body).unwrap(), "meta": {}
    });
    conn.execute(
        "INSERT INTO requests VALUES (1, 'gridx', 'events', '', ?1, '[]', 'passed: HMAC signature in X-Signature', ?2, '127.0.0.1')",
        rusqlite::params![received_ms, body.as_bytes()],
    )
    .unwrap();
    let key = r#"["gridx","events","00000000-0000-4000-8000-000000000007"]"#;
    conn.execute(
        "INSERT INTO events VALUES (1, 1, 0, ?1, ?2, 0, 'processed', NULL, NULL, NULL)",
        rusqlite::params![key, event.to_string()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO effects VALUES (1, 1, 'gridx/events.jsonl', 0, NULL, ?1)",
        rusqlite::params![line.as_bytes()],
    )
    .unwrap();
    conn.execute("INSERT INTO file_state VALUES ('gridx/events.jsonl', ?1)", rusqlite::params![line.len() as i64])
        .unwrap();
    line
}

#[tokio::test]
async fn a_version_2_journal_is_migrated_in_place_and_its_events_replay() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let line = version_2_data(&data);
    let setup = Setup { config: CONFIG, data_dir: Some(data.clone()), ..Setup::default() };
    let app = spawn_with(setup).await;
    let conn = journal(&app);
    assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 7);
    let (spec, body): (String, Vec<u8>) =
        conn.query_row("SELECT spec, body FROM requests WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((spec.as_str(), body), ("", ping(7, "from version 2").into_bytes()), "the old row as it was");

    let (status, detail) = admin(&app, "GET", "/api/events/1").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["data"]["data"]["message"], "from version 2", "its stored data: {detail}");
    assert_eq!(detail["effects"][0]["text"], line, "its effect's bytes, kept in the old row: {detail}");

    let (status, replayed) = admin(&app, "POST", "/api/events/1/replay").await;
    assert_eq!((status, replayed["outcome"].as_str()), (200, Some("processed")), "{replayed}");
    assert_eq!(app.lines("gridx/events.jsonl").len(), 2, "the replay wrote the event again");
    // A resend of the old event is still a duplicate: its key came through the migration.
    let base = app.url("");
    assert_eq!(post_gridx(&app.client, &base, "s", ping(7, "from version 2")).await.unwrap(), 204);
    assert_eq!(app.lines("gridx/events.jsonl").len(), 2);
}

#[tokio::test]
async fn a_spec_change_that_no_longer_gives_an_event_is_said_and_it_is_not_replayed() {
    let app = spawn_with(Setup { config: CONFIG, ..Setup::default() }).await;
    assert_eq!(post_gridx(&app.client, &app.url(""), "s", ping(3, "kept")).await.unwrap(), 204);
    checkpointed(&app).await;
    // The request records the spec version that split it; say it was another one, under
    // which its event had another key than the current spec gives it.
    let conn = journal(&app);
    conn.execute("UPDATE request_shapes SET spec = 'feedfacefeedface'", []).unwrap();
    conn.execute("UPDATE events SET idem_key = '[\"gridx\",\"events\",\"another key\"]'", []).unwrap();
    let (_, detail) = admin(&app, "GET", "/api/events/1").await;
    assert_eq!(detail["data"], Value::Null, "{detail}");
    let problem = detail["data_problem"].as_str().unwrap_or_default();
    assert!(
        problem.starts_with(
            "the gridx spec changed since this request was received (split by version feedfacefeedface, now "
        ) && problem.ends_with("and its body no longer gives this event"),
        "{detail}"
    );
    assert_eq!(detail["body_text"], ping(3, "kept"), "the raw body is still shown");
    let (_, replayed) = admin(&app, "POST", "/api/events/1/replay").await;
    assert_eq!(replayed["outcome"], "skipped", "{replayed}");
    assert_eq!(replayed["detail"].as_str(), Some(problem));
    assert_eq!(app.lines("gridx/events.jsonl").len(), 1);
}
