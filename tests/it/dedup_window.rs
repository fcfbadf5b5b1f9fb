//! The dedup window is the retention window (`[journal] max_age_days`, 30 days by default),
//! across restarts and whatever the size limit prunes: a resend 29 days later is a duplicate,
//! one 31 days later is processed again. The server's clock is moved forward (an injected
//! clock); the processed keys are looked up on disk after the restart, not remembered.

use std::path::Path;
use std::time::Duration;

use hookyard::clock::Clock;

use crate::helpers::{Setup, TestApp, eventually, gridx_ping as ping, post_gridx, spawn_with};
use crate::retention::gridx_without_freshness;

const SCRIPT: &str = r#"
fn on_event(event) { append_json("gridx/events.jsonl", event.data); }
"#;
const DAY: Duration = Duration::from_secs(86_400);

/// The default `[journal]` settings but for `extra`, and retention passes every 100 ms. The
/// gridX spec goes without its 7-day freshness window, which would refuse a 29-day-old resend
/// before dedup is asked.
async fn start(data: &Path, clock: &Clock, extra: &str) -> TestApp {
    let config = format!("[protocols.gridx]\nsecrets = [\"s\"]\n[journal]\nprune_interval_ms = 100\n{extra}");
    let spec = gridx_without_freshness();
    let setup = Setup {
        config: &config,
        scripts: vec![("gridx.rhai", SCRIPT)],
        extra_specs: vec![("gridx.yaml", &spec)],
        data_dir: Some(data.to_owned()),
        clock: Some(clock.clone()),
        ..Setup::default()
    };
    spawn_with(setup).await
}

async fn post(app: &TestApp, body: String) -> u16 {
    post_gridx(&app.client, &format!("http://{}", app.addr), "s", body).await.unwrap()
}

fn journal(app: &TestApp, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn a_resend_29_days_later_is_a_duplicate_and_31_days_later_new_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::shifted();
    let app = start(dir.path(), &clock, "").await;
    assert_eq!(post(&app, ping(31, "old")).await, 204);
    clock.advance(2 * DAY);
    assert_eq!(post(&app, ping(29, "recent")).await, 204);
    clock.advance(29 * DAY);
    // Retention runs on the moved clock: the 31-day-old request and its key go.
    let pruned = eventually(10, async || journal(&app, "SELECT COUNT(*) FROM requests") == 1).await;
    assert!(pruned, "the 31-day-old request was not pruned");
    // The recent tier (`keys_recent`) holds them until a run's worth has come; the old one
    // left it when it passed the window.
    let keys = "SELECT (SELECT COUNT(*) FROM keys_recent) + (SELECT COUNT(*) FROM processed_keys)";
    assert_eq!(journal(&app, keys), 1);
    app.stop().await;

    let app = start(dir.path(), &clock, "").await;
    assert_eq!(post(&app, ping(29, "recent")).await, 204, "a duplicate is acknowledged");
    assert_eq!(app.lines("gridx/events.jsonl").len(), 2, "the 29-day-old resend is not processed again");
    assert_eq!(post(&app, ping(31, "old")).await, 204);
    let lines = app.lines("gridx/events.jsonl");
    assert_eq!(lines.len(), 3, "past the window the key is new again: {lines:?}");
    assert!(lines[2].contains("old"), "{lines:?}");
    let statuses = crate::helpers::journal_statuses(&app, "ORDER BY id");
    assert_eq!(statuses, ["processed", "duplicate", "processed"]);
}

#[tokio::test]
async fn keys_outlive_requests_pruned_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::shifted();
    let app = start(dir.path(), &clock, "max_size_mb = 0\n").await;
    assert_eq!(post(&app, ping(1, "once")).await, 204);
    let pruned = eventually(10, async || journal(&app, "SELECT COUNT(*) FROM requests") == 0).await;
    assert!(pruned, "the size limit did not prune the request");
    clock.advance(29 * DAY);
    app.stop().await;

    let app = start(dir.path(), &clock, "max_size_mb = 0\n").await;
    assert_eq!(post(&app, ping(1, "once")).await, 204);
    assert_eq!(app.lines("gridx/events.jsonl").len(), 1, "written once");
    assert_eq!(crate::helpers::journal_statuses(&app, "ORDER BY id"), ["duplicate"]);
}
