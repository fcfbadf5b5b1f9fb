//! Wattsense: values, events and alarms under every auth type, with and without integrity.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use crate::helpers::{TestApp, fixture_json, fixture_text, spawn_app};

fn value(n: i64) -> Value {
    json!({"deviceId": "tower-42", "property": "supply-air-temperature", "timestamp": 1_756_728_000_000i64 + n,
           "payload": 21.5, "scaledPayload": null, "unit": "°C", "tags": {"floor": "2"}})
}

async fn send(app: &TestApp, route: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url(&format!("/wattsense/{route}")))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, serde_json::from_str(&res.text().await.unwrap()).unwrap())
}

/// The exact text of a message file of `tests/fixtures/wattsense/`.
fn message(file: &str) -> String {
    fixture_text(&format!("wattsense/{file}"))
}

/// The messages of a fixture file, one or many, as the server should store them.
fn messages(file: &str) -> Vec<Value> {
    match fixture_json(&format!("wattsense/{file}")) {
        Value::Array(items) => items,
        one => vec![one],
    }
}

fn stored(app: &TestApp, file: &str) -> Vec<Value> {
    app.lines(file).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn single_messages_and_arrays_are_stored_under_each_auth_type() {
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("wattsense:pa55"));
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let auth_types: [(&str, Headers, Headers); 4] = [
        (r#"{ type = "none" }"#, vec![], vec![]),
        (
            r#"{ type = "basic", username = "wattsense", password = "pa55" }"#,
            vec![("Authorization", basic.as_str())],
            vec![("Authorization", "Basic d3Jvbmc6d3Jvbmc=")],
        ),
        (
            r#"{ type = "bearer", token = "t0ken" }"#,
            vec![("Authorization", "Bearer t0ken")],
            vec![("Authorization", "Bearer nope")],
        ),
        (r#"{ type = "header", name = "X-Api-Key", value = "k3y" }"#, vec![("X-Api-Key", "k3y")], vec![]),
    ];
    for (auth, good, bad) in auth_types {
        let app = spawn_app(&format!("[protocols.wattsense]\nauth = {auth}\n")).await;
        let (status, reply) = send(&app, "values", &good, &message("value.json")).await;
        assert_eq!((status, reply.clone()), (200, json!({"status": "success", "message": "Data received"})), "{auth}");
        assert_eq!(send(&app, "values", &good, &message("values.json")).await.0, 200, "{auth}");
        let sent = [messages("value.json"), messages("values.json")].concat();
        assert_eq!(stored(&app, "wattsense/values.jsonl"), sent, "{auth}");
        if auth.contains("none") {
            continue;
        }
        let (status, reply) = send(&app, "values", &bad, &value(3).to_string()).await;
        assert_eq!(status, 401, "{auth}");
        assert_eq!(reply["status"], "error");
        assert_eq!(stored(&app, "wattsense/values.jsonl").len(), sent.len(), "{auth}");
    }
}

#[tokio::test]
async fn the_integrity_hmac_is_checked_over_the_raw_body() {
    let config = r#"
[protocols.wattsense]
auth = { type = "bearer", token = "t0ken" }
integrity = { header = "X-Signature", algorithm = "hmac-sha256", encoding = "hex", secret = "s3cret" }
"#;
    let app = spawn_app(config).await;
    let body = value(0).to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let auth = ("Authorization", "Bearer t0ken");
    assert_eq!(send(&app, "values", &[auth, ("X-Signature", &signature)], &body).await.0, 200);
    let (status, reply) = send(&app, "values", &[auth, ("X-Signature", &signature)], &format!("{body} ")).await;
    assert_eq!(status, 401);
    assert_eq!(reply["message"], "integrity check failed: X-Signature does not match the body");
    let (status, reply) = send(&app, "values", &[auth], &body).await;
    assert_eq!(
        (status, reply["message"].as_str()),
        (401, Some("integrity check failed: X-Signature header is missing"))
    );
    assert_eq!(stored(&app, "wattsense/values.jsonl").len(), 1);
}

#[tokio::test]
async fn events_and_alarms_land_in_their_own_files_as_sent() {
    let app = spawn_app("[protocols.wattsense]\nauth = { type = \"none\" }\n").await;
    assert_eq!(send(&app, "events", &[], &message("event.json")).await.0, 200);
    assert_eq!(send(&app, "alarms", &[], &message("alarm.json")).await.0, 200);
    assert_eq!(stored(&app, "wattsense/events.jsonl"), messages("event.json"));
    assert_eq!(stored(&app, "wattsense/alarms.jsonl"), messages("alarm.json"));
}

#[tokio::test]
async fn every_integrity_vector_gets_its_verdict() {
    let vectors = fixture_json("wattsense/integrity-vectors.json");
    let (header, secret) = (vectors["header"].as_str().unwrap(), vectors["secret"].as_str().unwrap());
    for v in vectors["vectors"].as_array().unwrap() {
        let field = |k: &str| v[k].as_str().unwrap();
        let config = format!(
            "[protocols.wattsense]\nauth = {{ type = \"none\" }}\nintegrity = {{ header = {header:?}, \
             algorithm = {:?}, encoding = {:?}, prefix = {:?}, secret = {secret:?} }}\n",
            field("algorithm"),
            field("encoding"),
            field("prefix")
        );
        let app = spawn_app(&config).await;
        let (route, body) = (field("route"), field("body"));
        let (status, reply) = send(&app, route, &[(header, field("signature"))], &message(body)).await;
        let file = format!("wattsense/{route}.jsonl");
        if v["accept"] == Value::Bool(true) {
            assert_eq!(status, 200, "{}: {reply}", field("name"));
            assert_eq!(stored(&app, &file), messages(body), "{}", field("name"));
        } else {
            assert_eq!(status, 401, "{}: {reply}", field("name"));
            assert!(reply["message"].as_str().unwrap().starts_with("integrity check failed"), "{reply}");
            assert!(stored(&app, &file).is_empty(), "{}", field("name"));
        }
    }
}

#[tokio::test]
async fn invalid_messages_are_refused_naming_the_field() {
    let app = spawn_app("[protocols.wattsense]\nauth = { type = \"none\" }\n").await;
    let mut no_device = value(0);
    no_device.as_object_mut().unwrap().remove("deviceId");
    let (status, reply) = send(&app, "values", &[], &no_device.to_string()).await;
    assert_eq!(status, 400);
    assert!(reply["violations"].to_string().contains("/deviceId: required"), "{reply}");
    let mut bad_property = value(1);
    bad_property.as_object_mut().unwrap().remove("property");
    let (status, reply) = send(&app, "values", &[], &json!([value(0), bad_property]).to_string()).await;
    assert_eq!(status, 400);
    assert!(reply["violations"].to_string().contains("/1/property: required"), "{reply}");
    let (status, reply) = send(&app, "alarms", &[], &json!({"severity": "minor"}).to_string()).await;
    assert_eq!(status, 400);
    assert!(reply["violations"].to_string().contains("/severity"), "{reply}");
    assert!(!app.data().join("wattsense").exists());
}

#[tokio::test]
async fn with_no_auth_configured_a_generated_bearer_token_is_required() {
    let app = spawn_app("").await;
    let (status, _) = send(&app, "values", &[], &value(0).to_string()).await;
    assert_eq!(status, 401);
    let creds: toml::Table = toml::from_str(&app.read("credentials.toml")).unwrap();
    let token = creds["protocols"]["wattsense"]["auth"]["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32);
    let bearer = format!("Bearer {token}");
    assert_eq!(send(&app, "values", &[("Authorization", &bearer)], &value(0).to_string()).await.0, 200);
}

#[tokio::test]
async fn an_identical_event_or_alarm_resent_is_processed_once_and_a_changed_one_again() {
    let app = spawn_app("[protocols.wattsense]\nauth = { type = \"none\" }\n").await;
    for _ in 0..3 {
        assert_eq!(send(&app, "events", &[], &message("event.json")).await.0, 200);
        assert_eq!(send(&app, "alarms", &[], &message("alarm.json")).await.0, 200);
    }
    assert_eq!(stored(&app, "wattsense/events.jsonl"), messages("event.json"));
    assert_eq!(stored(&app, "wattsense/alarms.jsonl"), messages("alarm.json"));
    let statuses = crate::helpers::journal_statuses(&app, "ORDER BY id");
    assert_eq!(statuses.iter().filter(|s| *s == "processed").count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 4, "{statuses:?}");
    // The same alarm, now closed, is another message.
    let closed = message("alarm.json").replace("\"open\"", "\"closed\"");
    assert_eq!(send(&app, "alarms", &[], &closed).await.0, 200);
    assert_eq!(stored(&app, "wattsense/alarms.jsonl").len(), 2);
}
