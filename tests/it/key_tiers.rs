//! Processed keys through their tiers on the real server (`store/journal/tiers.rs`): once a
//! run's worth of keys (65,536) has come, the recent ones are written into a run behind a
//! filter; a resend of a key in the run, or of one still recent, is a duplicate, before and
//! after a restart, and nothing is processed twice.

use std::path::Path;

use crate::helpers::{Setup, TestApp, eventually, journal_statuses, post_ai, spawn_with};

const CONFIG: &str = "[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"house\" }\n";
/// Readings per request (the spec's most), and requests: past one run of keys.
const METERS: usize = 64;
const ROUNDS: usize = 1_100;
const SCRIPT: &str =
    r#"fn on_events(events) { for event in events { append_json("seen.jsonl", event.data.rawValue); event_done(); } }"#;

/// Round `n`: a reading of each of the meters, at minute `n`.
fn round(n: usize) -> String {
    let items: Vec<String> = (0..METERS)
        .map(|m| {
            format!(
                r#"{{"timestamp":"","timestampLong":"{}","name":"m{m}","rawValue":"{n}.{m}","value":"{n}.{m}","preValue":"","rate":"","changeAbsolute":"","error":"no error"}}"#,
                1_700_000_000 + 60 * n
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

async fn start(data: &Path) -> TestApp {
    let setup = Setup {
        config: CONFIG,
        scripts: vec![("ai-on-the-edge.rhai", SCRIPT)],
        data_dir: Some(data.to_owned()),
        ..Setup::default()
    };
    spawn_with(setup).await
}

fn journal(data: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(data.join(".hookyard/journal.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Keys in the recent tier and in the listed runs.
fn tiers(data: &Path) -> (i64, i64) {
    let runs: Vec<i64> = {
        let conn = rusqlite::Connection::open(data.join(".hookyard/journal.db")).unwrap();
        let mut stmt = conn.prepare("SELECT id FROM key_runs WHERE complete = 1").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let in_runs = runs.iter().map(|id| journal(data, &format!("SELECT COUNT(*) FROM keys_run_{id}"))).sum();
    (journal(data, "SELECT COUNT(*) FROM keys_recent"), in_runs)
}

async fn resend(app: &TestApp, n: usize) {
    let (status, body) = post_ai(app, round(n)).await;
    assert_eq!(status, 200, "round {n}: {body}");
}

#[tokio::test]
async fn keys_written_into_a_run_stay_duplicates_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = start(&data).await;
    for chunk in (0..ROUNDS).collect::<Vec<_>>().chunks(8) {
        let sends = chunk.iter().map(|&n| post_ai(&app, round(n)));
        for (status, body) in futures_util::future::join_all(sends).await {
            assert_eq!(status, 200, "{body}");
        }
    }
    let all = (ROUNDS * METERS) as i64;
    let flushed = eventually(30, async || tiers(&data).1 > 0).await;
    assert!(flushed, "no run was written after {all} keys: {:?}", tiers(&data));
    let (recent, in_runs) = tiers(&data);
    assert_eq!(recent + in_runs, all, "every key in one tier: {recent} recent, {in_runs} in runs");
    assert!(in_runs >= 65_536 && recent < all - 65_536 + 1, "{recent} recent, {in_runs} in runs");

    // Round 0 is in the run, the last one still recent.
    resend(&app, 0).await;
    resend(&app, ROUNDS - 1).await;
    assert_eq!(app.lines("seen.jsonl").len(), ROUNDS * METERS, "a resend is not processed again");
    app.stop().await;

    let app = start(&data).await;
    resend(&app, 1).await;
    resend(&app, ROUNDS - 2).await;
    resend(&app, ROUNDS).await;
    let seen = app.lines("seen.jsonl");
    assert_eq!(seen.len(), (ROUNDS + 1) * METERS, "only the new round is processed");
    assert_eq!(seen.last().unwrap(), &format!("\"{ROUNDS}.{}\"", METERS - 1));
    let statuses = journal_statuses(&app, "ORDER BY id");
    let duplicates = statuses.iter().filter(|s| *s == "duplicate").count();
    assert_eq!(duplicates, 4 * METERS, "four resent rounds");
    assert_eq!(statuses.iter().filter(|s| *s == "processed").count(), (ROUNDS + 1) * METERS);
}

/// The journal as an older hookyard leaves it after merges: every key in `processed_keys`,
/// no stored filter, version 6.
fn merged_by_an_older_version(data: &Path) {
    let conn = rusqlite::Connection::open(data.join(".hookyard/journal.db")).unwrap();
    conn.execute_batch(
        "INSERT INTO processed_keys (digest, event_id, received_ms) SELECT digest, event_id, received_ms FROM keys_recent;
         DELETE FROM keys_recent; DELETE FROM key_filter; PRAGMA user_version = 6;",
    )
    .unwrap();
}

#[tokio::test]
async fn merged_keys_stay_duplicates_while_their_filter_is_built_and_once_it_is_stored() {
    const SENT: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = start(&data).await;
    for n in 0..SENT {
        resend(&app, n).await;
    }
    app.stop().await;
    merged_by_an_older_version(&data);
    assert_eq!(journal(&data, "SELECT COUNT(*) FROM processed_keys"), (SENT * METERS) as i64);

    // The first start builds the filter by a scan; its writer stores it once it is ready.
    let app = start(&data).await;
    resend(&app, 0).await;
    let stored = eventually(30, async || journal(&data, "SELECT COUNT(*) FROM key_filter") == 1).await;
    assert!(stored, "no filter was stored");
    resend(&app, 1).await;
    resend(&app, SENT).await;
    app.stop().await;

    // The next start reads it back: old keys are still duplicates, a new one is processed.
    let app = start(&data).await;
    resend(&app, 2).await;
    resend(&app, SENT - 1).await;
    resend(&app, SENT).await;
    resend(&app, SENT + 1).await;
    let seen = app.lines("seen.jsonl");
    assert_eq!(seen.len(), (SENT + 2) * METERS, "only the two new rounds are processed");
    let statuses = journal_statuses(&app, "ORDER BY id");
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 5 * METERS, "five resent rounds");
    assert_eq!(statuses.iter().filter(|s| *s == "processed").count(), (SENT + 2) * METERS);
}
