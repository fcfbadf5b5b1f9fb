//! Retention prunes old processed requests from the journal, never failed ones.

use crate::helpers::{Setup, TestApp, eventually, gridx_ping as ping, post_gridx, spawn_with};

const SCRIPT: &str = r#"
fn on_event(event) {
    if event.data.data.message == "bad" { throw "not now"; }
    append_json("gridx/events.jsonl", event.data);
}
"#;

async fn post(app: &TestApp, body: String) -> u16 {
    post_gridx(&app.client, &format!("http://{}", app.addr), "s", body).await.unwrap()
}

fn journal_statuses(app: &TestApp) -> Vec<String> {
    crate::helpers::journal_statuses(app, "ORDER BY id")
}

async fn pruned_to_the_failed_one(journal: &str) {
    let config = format!("[protocols.gridx]\nsecrets = [\"s\"]\n[journal]\n{journal}prune_interval_ms = 100\n");
    let app = spawn_with(Setup { config: &config, scripts: vec![("gridx.rhai", SCRIPT)], ..Setup::default() }).await;
    assert_eq!(post(&app, ping(1, "ok")).await, 204);
    assert_eq!(post(&app, ping(2, "bad")).await, 503);
    assert_eq!(post(&app, ping(1, "ok")).await, 204);
    assert_eq!(journal_statuses(&app), ["processed", "failed", "duplicate"]);
    let pruned = eventually(10, async || journal_statuses(&app) == ["failed"]).await;
    assert!(pruned, "left in the journal: {:?}", journal_statuses(&app));
    assert_eq!(app.lines("gridx/events.jsonl").len(), 1, "pruning the journal leaves the output alone");
    assert_eq!(post(&app, ping(1, "ok")).await, 204);
    assert_eq!(app.lines("gridx/events.jsonl").len(), 1, "the running server still knows the key");
}

#[tokio::test]
async fn old_processed_requests_are_pruned_and_failed_ones_kept() {
    pruned_to_the_failed_one("max_age_days = 0\n").await;
}

#[tokio::test]
async fn a_size_limit_prunes_the_oldest_processed_requests_first() {
    pruned_to_the_failed_one("max_age_days = 3650\nmax_size_mb = 0\n").await;
}
