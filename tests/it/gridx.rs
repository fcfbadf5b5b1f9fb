//! gridX: X-Signature vectors and cases, every example event, per-type paths, dispatch;
//! old captures refused by the freshness window, which the journal must outlast.

use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::helpers::{
    REPO, Setup, TestApp, fixture_text, fresh_gridx, gridx_signature as sign, read_fixture, spawn_app, spawn_with,
    test_start_time,
};

const SECRET: &str = "whsec_89d31d45a90e309f4e24b7";

fn vectors() -> Value {
    serde_json::from_slice(&read_fixture("gridx/hmac-test-vectors.json")).unwrap()
}

/// The 14 example events, their `time` now (gridX refuses old events).
fn examples() -> Vec<String> {
    fixture_text("gridx/examples.jsonl").lines().map(fresh_gridx).collect()
}

/// A server whose gridX spec allows events of any age (and whose journal keeps them as long,
/// as it must): the signature vectors are fixed bytes signed long ago.
async fn spawn_for_vectors(secrets: &[&str]) -> TestApp {
    let spec = std::fs::read_to_string(format!("{REPO}/spec/gridx.yaml")).unwrap();
    let ageless = spec.replace("max-age-seconds: 604800", "max-age-seconds: 3153600000");
    assert_ne!(spec, ageless, "the shipped gridX spec declares a 7-day window");
    let config = format!("{}[journal]\nmax_age_days = 36500\n", config(secrets));
    spawn_with(Setup { config: &config, extra_specs: vec![("gridx.yaml", &ageless)], ..Setup::default() }).await
}

fn config(secrets: &[&str]) -> String {
    format!("[protocols.gridx]\nsecrets = {secrets:?}\n")
}

async fn send(app: &TestApp, path: &str, signature: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req = app.client.post(app.url(path)).body(body);
    if let Some(s) = signature {
        req = req.header("X-Signature", s);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn event_ids(app: &TestApp) -> Vec<String> {
    app.lines("gridx/events.jsonl")
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_signed_vector_passes_the_signature_check() {
    for v in vectors()["vectors"].as_array().unwrap() {
        let secrets: Vec<&str> = v["signing_secrets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        // The receiver holds only the newest secret, as after a rotation.
        let app = spawn_for_vectors(&secrets[secrets.len() - 1..]).await;
        let body = base64::engine::general_purpose::STANDARD.decode(v["body_base64"].as_str().unwrap()).unwrap();
        let (status, reply) = send(&app, "/gridx/events", v["x_signature"].as_str(), body).await;
        if v["name"] == "V3-empty-body" {
            // Signed correctly, but an empty body is not an event.
            assert_eq!(status, 400, "{reply}");
            assert!(reply.contains("body: empty"), "{reply}");
        } else {
            assert_eq!((status, reply.as_str()), (204, ""), "{}", v["name"]);
        }
    }
}

#[tokio::test]
async fn all_fourteen_verify_cases_accept_or_reject_as_the_vectors_say() {
    let vectors = vectors();
    let body_of = |name: &str| -> Vec<u8> {
        let base = name.trim_end_matches("+LF");
        let v = vectors["vectors"].as_array().unwrap().iter().find(|v| v["name"] == base).unwrap();
        let mut body = base64::engine::general_purpose::STANDARD.decode(v["body_base64"].as_str().unwrap()).unwrap();
        if name.ends_with("+LF") {
            body.push(b'\n');
        }
        body
    };
    let cases = vectors["verify_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 14);
    for case in cases {
        let app = spawn_for_vectors(&[case["receiver_secret"].as_str().unwrap()]).await;
        let header = case["x_signature"].as_str().unwrap();
        let signature = (!header.is_empty()).then_some(header);
        let (status, reply) = send(&app, "/gridx/events", signature, body_of(case["body"].as_str().unwrap())).await;
        let expected = if case["accept"].as_bool().unwrap() { 204 } else { 401 };
        assert_eq!(status, expected, "case {:?}", case["case"]);
        assert_eq!(reply, "", "case {:?}: a 401 must have an empty body", case["case"]);
        let stored = app.lines("gridx/events.jsonl").len();
        assert_eq!(stored, usize::from(expected == 204), "case {:?}", case["case"]);
    }
}

#[tokio::test]
async fn all_fourteen_example_events_land_in_events_jsonl() {
    let app = spawn_app(&config(&[SECRET])).await;
    let examples = examples();
    assert_eq!(examples.len(), 14);
    for line in &examples {
        let (status, reply) =
            send(&app, "/gridx/events", Some(&sign(SECRET, line.as_bytes())), line.clone().into_bytes()).await;
        assert_eq!((status, reply.as_str()), (204, ""), "{line}");
    }
    let stored: Vec<Value> = app.lines("gridx/events.jsonl").iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sent: Vec<Value> = examples.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn per_type_paths_take_their_type_and_refuse_another() {
    let app = spawn_app(&config(&[SECRET])).await;
    for line in examples() {
        let event: Value = serde_json::from_str(&line).unwrap();
        let path = format!("/gridx/events/{}", event["type"].as_str().unwrap());
        let (status, _) = send(&app, &path, Some(&sign(SECRET, line.as_bytes())), line.clone().into_bytes()).await;
        assert_eq!(status, 204, "{path}");
    }
    assert_eq!(app.lines("gridx/events.jsonl").len(), 14);
    let ping = examples().pop().unwrap().replace("708677289513", "708677289599");
    let (status, reply) =
        send(&app, "/gridx/events/appliance/online", Some(&sign(SECRET, ping.as_bytes())), ping.into_bytes()).await;
    assert_eq!(status, 400);
    assert!(reply.contains("/type: "), "{reply}");
}

#[tokio::test]
async fn schema_violations_are_listed_with_their_paths() {
    let app = spawn_app(&config(&[SECRET])).await;
    let appliance: Value = serde_json::from_str(&examples()[0]).unwrap();
    let mut missing = appliance.clone();
    missing["data"].as_object_mut().unwrap().remove("gatewayID");
    let mut bad_enum = appliance.clone();
    bad_enum["data"]["kind"] = "NUCLEAR".into();
    let mut bad_uuid = appliance.clone();
    bad_uuid["id"] = "not-a-uuid".into();
    let mut no_type = appliance.clone();
    no_type.as_object_mut().unwrap().remove("type");
    let cases = [
        (missing, "/data/gatewayID: required"),
        (bad_enum, "/data/kind: "),
        (bad_uuid, "/id: \"not-a-uuid\" is not a \"uuid\""),
        (no_type, "/type: required"),
    ];
    for (event, expected) in cases {
        let body = event.to_string();
        let (status, reply) =
            send(&app, "/gridx/events", Some(&sign(SECRET, body.as_bytes())), body.into_bytes()).await;
        assert_eq!(status, 400, "{expected}");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        let violations: Vec<&str> =
            reply["violations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(violations.iter().any(|v| v.starts_with(expected)), "{expected}: {violations:?}");
    }
    assert!(app.lines("gridx/events.jsonl").is_empty());
}

#[tokio::test]
async fn unknown_types_and_fields_are_acknowledged_and_duplicates_stored_once() {
    let app = spawn_app(&config(&[SECRET])).await;
    let body = format!(
        r#"{{"id":"11111111-2222-4333-8444-555555555555","time":"{}","specVersion":"1.0","source":"/x","type":"battery/new-thing","data":{{"x":1}},"futureField":true}}"#,
        test_start_time()
    );
    for _ in 0..2 {
        let (status, _) =
            send(&app, "/gridx/events", Some(&sign(SECRET, body.as_bytes())), body.as_bytes().to_vec()).await;
        assert_eq!(status, 204);
    }
    assert_eq!(event_ids(&app), vec!["11111111-2222-4333-8444-555555555555"]);
}

/// The `violations` of a JSON error reply.
fn violations(reply: &str) -> Vec<String> {
    let reply: Value = serde_json::from_str(reply).unwrap_or_else(|_| panic!("not JSON: {reply}"));
    reply["violations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn an_old_capture_correctly_signed_is_refused_naming_the_reason() {
    let app = spawn_app(&config(&[SECRET])).await;
    // V1-ping as captured: signed with SECRET, its time 2025-08-13.
    let v1 = &vectors()["vectors"][0];
    assert_eq!(v1["name"], "V1-ping");
    let body = base64::engine::general_purpose::STANDARD.decode(v1["body_base64"].as_str().unwrap()).unwrap();
    let (status, reply) = send(&app, "/gridx/events", v1["x_signature"].as_str(), body).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(violations(&reply), ["/time: the event is older than 7 days"]);
    let now = time::OffsetDateTime::now_utc();
    let at = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let mut event: Value = serde_json::from_str(&examples().pop().unwrap()).unwrap();
    for (offset, expected) in [
        (time::Duration::hours(2), Some("/time: the event is more than 5 minutes in the future")),
        (-time::Duration::days(8), Some("/time: the event is older than 7 days")),
        (-time::Duration::days(6), None),
    ] {
        event["time"] = at(now + offset).into();
        let body = event.to_string();
        let (status, reply) = send(&app, "/gridx/events", Some(&sign(SECRET, body.as_bytes())), body.into()).await;
        match expected {
            Some(reason) => assert_eq!((status, violations(&reply)), (400, vec![reason.to_owned()])),
            None => assert_eq!(status, 204, "{reply}"),
        }
    }
    assert_eq!(event_ids(&app).len(), 1, "only the six-day-old event is stored");
}

#[test]
fn check_refuses_a_journal_kept_shorter_than_the_freshness_window() {
    let check = |days: &str| {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("[journal]\nmax_age_days = {days}\n");
        std::fs::write(dir.path().join("hookyard.toml"), config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hookyard")).arg("check").current_dir(dir.path()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = check("3");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "error: hookyard.toml line 2: [journal] max_age_days: 3 days is shorter than the freshness window \
             of gridx (7 days, x-hookyard-freshness)"
        ),
        "{out}"
    );
    let (code, out) = check("7");
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_rotated_pair_of_secrets_both_verify() {
    let app = spawn_app(&config(&["old-secret", SECRET])).await;
    for (i, secret) in ["old-secret", SECRET].iter().enumerate() {
        let body = examples()[i].clone();
        let (status, _) = send(&app, "/gridx/events", Some(&sign(secret, body.as_bytes())), body.into_bytes()).await;
        assert_eq!(status, 204);
    }
    assert_eq!(event_ids(&app).len(), 2);
}
