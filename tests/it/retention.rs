//! Retention prunes old processed requests from the journal, never failed ones.

use crate::helpers::{REPO, Setup, TestApp, eventually, gridx_ping as ping, post_gridx, spawn_with};

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

/// The shipped gridX spec without its freshness window: a journal that keeps nothing
/// (`max_age_days = 0`) is refused beside one, and these tests are about pruning.
pub fn gridx_without_freshness() -> String {
    let spec = std::fs::read_to_string(format!("{REPO}/spec/gridx.yaml")).unwrap();
    let mut out = Vec::new();
    let mut skip_below: Option<usize> = None;
    for line in spec.lines() {
        let indent = line.len() - line.trim_start().len();
        if skip_below.is_some_and(|at| indent > at) {
            continue;
        }
        skip_below = line.contains("x-hookyard-freshness").then_some(indent);
        if skip_below.is_none() {
            out.push(line);
        }
    }
    out.join("\n")
}

async fn pruned_to_the_failed_one(journal: &str) {
    let config = format!("[protocols.gridx]\nsecrets = [\"s\"]\n[journal]\n{journal}prune_interval_ms = 100\n");
    let spec = gridx_without_freshness();
    let setup = Setup {
        config: &config,
        scripts: vec![("gridx.rhai", SCRIPT)],
        extra_specs: vec![("gridx.yaml", &spec)],
        ..Setup::default()
    };
    let app = spawn_with(setup).await;
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
