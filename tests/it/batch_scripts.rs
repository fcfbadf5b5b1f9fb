//! Scripts that take a request's events in one call (`fn on_events(events)`): order, the
//! event an error names, the effects of the events before it, and precedence over `on_event`.

use crate::helpers::{Setup, TestApp, journal_errors, journal_statuses, post_ai, spawn_with};

const CONFIG: &str = "[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n";

/// AI-on-the-edge readings of meters `names`, one request.
fn readings(names: &[&str]) -> String {
    let items: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                r#"{{"timestamp":"","timestampLong":"{}","name":"{name}","rawValue":"{i}","value":"{i}","preValue":"","rate":"","changeAbsolute":"","error":"no error"}}"#,
                1_700_000_000 + i
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

async fn app_with(script: &str) -> TestApp {
    spawn_with(Setup { config: CONFIG, scripts: vec![("ai-on-the-edge.rhai", script)], ..Setup::default() }).await
}

#[tokio::test]
async fn one_batch_call_receives_every_event_of_the_request_in_order() {
    let script = r#"
        fn on_events(events) {
            append_json("calls.jsonl", events.len());
            for event in events { append_json("seen.jsonl", [event.index, event.data.name]); event_done(); }
        }"#;
    let app = app_with(script).await;
    let (status, body) = post_ai(&app, readings(&["a", "b", "c", "d"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.lines("calls.jsonl"), ["4"], "one call for the request's four events");
    assert_eq!(app.lines("seen.jsonl"), [r#"[0,"a"]"#, r#"[1,"b"]"#, r#"[2,"c"]"#, r#"[3,"d"]"#]);
    assert_eq!(journal_statuses(&app, "ORDER BY id"), ["processed"; 4]);
}

#[tokio::test]
async fn an_error_at_event_k_keeps_the_events_before_it_and_the_reply_names_k() {
    let script = r#"
        fn on_events(events) {
            for event in events {
                append_json("kept.jsonl", event.data.name);
                if event.data.name == "bad" { throw "cannot store this reading"; }
                event_done();
            }
        }"#;
    let app = app_with(script).await;
    let (status, body) = post_ai(&app, readings(&["a", "b", "bad", "d"])).await;
    assert_eq!(status, 500, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["message"], "processing failed: script error at event 2 (see the server log)", "{body}");
    assert_eq!(app.lines("kept.jsonl"), [r#""a""#, r#""b""#], "the failing event's own write is dropped");
    assert_eq!(journal_statuses(&app, "ORDER BY id"), ["processed", "processed", "failed", "failed"]);
    let errors = journal_errors(&app);
    assert!(errors[0].starts_with("script threw: cannot store this reading"), "{errors:?}");
    assert_eq!(errors[1], "not processed: an earlier event of the request failed");
    // The resend processes only what failed: a and b are duplicates now.
    let fixed =
        "fn on_events(events) { for event in events { append_json(\"kept.jsonl\", event.data.name); event_done(); } }";
    std::fs::write(app.scripts().join("ai-on-the-edge.rhai"), fixed).unwrap();
    let resent =
        crate::helpers::eventually(5, async || post_ai(&app, readings(&["a", "b", "bad", "d"])).await.0 == 200);
    assert!(resent.await, "the resend after the fix is accepted");
    assert_eq!(app.lines("kept.jsonl"), [r#""a""#, r#""b""#, r#""bad""#, r#""d""#]);
}

#[tokio::test]
async fn an_error_before_any_event_is_marked_done_fails_the_first_and_keeps_nothing() {
    let script = r#"fn on_events(events) { for event in events { append_json("x.jsonl", 1); } throw "late"; }"#;
    let app = app_with(script).await;
    let (status, body) = post_ai(&app, readings(&["a", "b"])).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("script error at event 0"), "{body}");
    assert!(app.read("x.jsonl").is_empty(), "nothing of a failed first event is written");
    assert_eq!(journal_statuses(&app, "ORDER BY id"), ["failed", "failed"]);
}

#[tokio::test]
async fn when_both_functions_are_defined_the_batch_one_wins() {
    let script = r#"
        fn on_event(event) { append_json("one.jsonl", event.data.name); }
        fn on_events(events) { for event in events { append_json("batch.jsonl", event.data.name); } }"#;
    let app = app_with(script).await;
    let (status, body) = post_ai(&app, readings(&["a", "b"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.lines("batch.jsonl"), [r#""a""#, r#""b""#], "unmarked events are done when the call returns");
    assert!(app.read("one.jsonl").is_empty(), "on_event is not called");
}

#[tokio::test]
async fn event_done_outside_a_batch_call_or_past_the_last_event_is_an_error() {
    let app = app_with(r#"fn on_event(event) { event_done(); }"#).await;
    let (status, body) = post_ai(&app, readings(&["a"])).await;
    assert_eq!(status, 500, "{body}");
    assert!(journal_errors(&app)[0].contains("event_done belongs in fn on_events"), "{:?}", journal_errors(&app));
    let app = app_with(r#"fn on_events(events) { append_json("y.jsonl", 1); event_done(); event_done(); }"#).await;
    let (status, body) = post_ai(&app, readings(&["a"])).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("script error at event 0"), "the last event fails: {body}");
    assert!(app.read("y.jsonl").is_empty());
}
