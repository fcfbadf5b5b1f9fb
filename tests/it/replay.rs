//! `hookyard replay`: fix the script, then backfill from the journal.

use std::process::{Command, Output};

use crate::helpers::{ServerProcess, gridx_ping as ping, post_gridx};

const BIN: &str = env!("CARGO_BIN_EXE_hookyard");
const CONFIG: &str = "[protocols.gridx]\nsecrets = [\"whsec_replay\"]\n";

const BUGGY: &str = r#"
fn on_event(event) {
    if event.data.data.message == "bad" { throw "a bug in the script"; }
    append_json("gridx/events.jsonl", event.data);
}
"#;

async fn post(server: &ServerProcess, body: String) -> u16 {
    post_gridx(&reqwest::Client::new(), &server.base, "whsec_replay", body).await.unwrap()
}

fn replay(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let Output { status, stdout, stderr } =
        Command::new(BIN).arg("replay").args(args).current_dir(dir).output().unwrap();
    (status.code(), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
}

fn lines(dir: &std::path::Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("data").join(file)).unwrap_or_default();
    text.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_the_script_then_replay_the_failed_events_and_backfill() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    for name in ["ai-on-the-edge", "wattmon", "wattsense"] {
        std::fs::copy(
            format!("{}/scripts/{name}.rhai", crate::helpers::REPO),
            dir.path().join(format!("scripts/{name}.rhai")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("scripts/gridx.rhai"), BUGGY).unwrap();
    let server = ServerProcess::start(dir.path(), CONFIG);
    assert_eq!(post(&server, ping(1, "good")).await, 204);
    assert_eq!(post(&server, ping(2, "bad")).await, 503);
    let (code, out) = replay(dir.path(), &["--failed"]);
    assert_ne!(code, Some(0), "a replay must not run beside the server: {out}");
    assert!(out.contains("stop the server first"), "{out}");
    let (code, out) = replay(dir.path(), &["--failed", "--dry-run"]);
    assert_eq!(code, Some(1), "the script still fails: {out}");
    assert!(out.contains("would fail: script threw: a bug in the script"), "{out}");
    assert!(server.stop().success());

    std::fs::write(
        dir.path().join("scripts/gridx.rhai"),
        "fn on_event(event) { append_json(\"gridx/events.jsonl\", event.data); }",
    )
    .unwrap();
    let (code, out) = replay(dir.path(), &["--failed", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would write:\n  append ") && out.contains("gridx/events.jsonl"), "{out}");
    assert_eq!(lines(dir.path(), "gridx/events.jsonl").len(), 1, "a dry run writes nothing");

    let (code, out) = replay(dir.path(), &["--failed"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 event(s): 1 were processed, 0 were failing, 0 skipped"), "{out}");
    let stored = lines(dir.path(), "gridx/events.jsonl");
    assert_eq!(stored.len(), 2);
    assert!(stored[1].contains("000000000002"));
    let (_, out) = replay(dir.path(), &["--failed"]);
    assert!(out.contains("0 event(s)"), "nothing is left failing: {out}");

    // Backfill into a new file with a new script, over a time range.
    std::fs::write(
        dir.path().join("scripts/gridx.rhai"),
        "fn on_event(event) { append_json(\"gridx/backfill.jsonl\", event.data.id); }",
    )
    .unwrap();
    let (code, out) = replay(dir.path(), &["--protocol", "gridx", "--since", "2020-01-01T00:00:00Z"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(lines(dir.path(), "gridx/backfill.jsonl").len(), 2, "{out}");
    let (_, out) = replay(dir.path(), &["--protocol", "gridx", "--until", "2020-01-01T00:00:00Z", "--dry-run"]);
    assert!(out.contains("0 event(s)"), "{out}");
    let (_, out) = replay(dir.path(), &["--protocol", "wattmon", "--dry-run"]);
    assert!(out.contains("0 event(s)"), "{out}");

    // The replayed output survives a restart (it was journaled like any request).
    let server = ServerProcess::start(dir.path(), CONFIG);
    assert_eq!(lines(dir.path(), "gridx/events.jsonl").len(), 2);
    assert_eq!(post(&server, ping(2, "bad")).await, 204, "already processed by the replay: a duplicate now");
    assert_eq!(lines(dir.path(), "gridx/backfill.jsonl").len(), 2);
    assert!(server.stop().success());
}
