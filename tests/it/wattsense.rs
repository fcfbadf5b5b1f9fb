//! Wattsense: values, events and alarms under every auth type, with and without integrity.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

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
        let (status, reply) = send(&app, "values", &good, &value(0).to_string()).await;
        assert_eq!((status, reply.clone()), (200, json!({"status": "success", "message": "Data received"})), "{auth}");
        let array = json!([value(1), value(2)]).to_string();
        assert_eq!(send(&app, "values", &good, &array).await.0, 200, "{auth}");
        assert_eq!(stored(&app, "wattsense/values.jsonl"), vec![value(0), value(1), value(2)], "{auth}");
        if auth.contains("none") {
            continue;
        }
        let (status, reply) = send(&app, "values", &bad, &value(3).to_string()).await;
        assert_eq!(status, 401, "{auth}");
        assert_eq!(reply["status"], "error");
        assert_eq!(stored(&app, "wattsense/values.jsonl").len(), 3, "{auth}");
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
    let event = json!({"deviceId": "tower-42", "kind": "door-opened", "timestamp": 1, "extra": {"a": [1, 2]}});
    let alarm = json!({"deviceId": "tower-42", "status": "open", "severity": "CRITICAL", "alerts": [{"status": "acknowledged"}]});
    assert_eq!(send(&app, "events", &[], &event.to_string()).await.0, 200);
    assert_eq!(send(&app, "alarms", &[], &json!([alarm]).to_string()).await.0, 200);
    assert_eq!(stored(&app, "wattsense/events.jsonl"), vec![event]);
    assert_eq!(stored(&app, "wattsense/alarms.jsonl"), vec![alarm]);
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
