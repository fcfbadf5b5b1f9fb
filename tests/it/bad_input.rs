//! Malformed input of every kind gets a clear 4xx in each protocol's reply style, and nothing
//! is stored.

use hmac::{KeyInit, Mac};

use crate::helpers::{TestApp, spawn_app};

const CONFIG: &str = "[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n\
                      [protocols.gridx]\nsecrets = [\"s\"]\n[protocols.wattmon]\nrequire_token = false\n[protocols.wattsense]\nauth = { type = \"none\" }\n";

/// One kind of bad JSON input: name, body, content type, expected status and reason.
type BadBody = (&'static str, Vec<u8>, Option<&'static str>, u16, &'static str);

fn bad_bodies() -> Vec<BadBody> {
    vec![
        ("malformed UTF-8", b"[{\"name\":\"\xff\xfe\"}]".to_vec(), Some("application/json"), 400, "not valid JSON"),
        ("deeply nested", "[".repeat(100_000).into_bytes(), Some("application/json"), 400, "not valid JSON"),
        ("huge number", b"[1e999]".to_vec(), Some("application/json"), 400, "not valid JSON"),
        ("duplicate keys", br#"{"id":"a","id":"b"}"#.to_vec(), Some("application/json"), 400, "duplicate key \"id\""),
        ("empty body", Vec::new(), Some("application/json"), 400, "body: empty"),
        ("trailing garbage", b"{} {}".to_vec(), Some("application/json"), 400, "not valid JSON"),
        ("wrong content type", b"{}".to_vec(), Some("text/html"), 415, "Content-Type text/html is not accepted here"),
    ]
}

async fn send(app: &TestApp, path: &str, body: Vec<u8>, content_type: Option<&str>) -> (u16, String) {
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(b"s").unwrap();
    mac.update(&body);
    let mut req = app
        .client
        .post(app.url(path))
        .header("APIKEY", "k")
        .header("X-Signature", format!("sha512={}", hex::encode(mac.finalize().into_bytes())))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn every_json_protocol_refuses_every_kind_of_bad_body_in_its_own_style() {
    let app = spawn_app(CONFIG).await;
    for path in ["/ai-on-the-edge/webhook", "/gridx/events", "/wattsense/values"] {
        for (name, body, content_type, status, reason) in bad_bodies() {
            let (got, reply) = send(&app, path, body, content_type).await;
            assert_eq!(got, status, "{path} {name}: {reply}");
            let reply: serde_json::Value =
                serde_json::from_str(&reply).unwrap_or_else(|_| panic!("{path} {name}: not JSON: {reply}"));
            assert_eq!(reply["status"], "error", "{path} {name}");
            assert!(reply["message"].as_str().unwrap().contains(reason), "{path} {name}: {reply}");
        }
    }
    assert!(!app.data().join("ai-on-the-edge").exists() && !app.data().join("gridx").exists());
    assert!(!app.data().join("wattsense").exists());
}

#[tokio::test]
async fn wattmon_refuses_bad_forms_in_plain_text() {
    let app = spawn_app(CONFIG).await;
    type Case<'a> = (&'a str, &'a [u8], &'a str, u16, &'a str);
    let cases: [Case; 4] = [
        (
            "malformed UTF-8",
            b"key=00:04&data=%FF%FE",
            "application/x-www-form-urlencoded",
            400,
            "ERROR: invalid request: ",
        ),
        (
            "duplicate field",
            b"key=a&key=b&data=x",
            "application/x-www-form-urlencoded",
            400,
            "ERROR: invalid request: body: form field \"key\" appears more than once",
        ),
        ("empty body", b"", "application/x-www-form-urlencoded", 200, "ERROR: key field is missing"),
        (
            "broken multipart",
            b"--X\r\nnope",
            "multipart/form-data; boundary=X",
            400,
            "ERROR: invalid request: body: multipart body is malformed",
        ),
    ];
    for (name, body, content_type, status, expected) in cases {
        let res = app
            .client
            .post(app.url("/wattmon/export"))
            .header("Content-Type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{name}");
        let text = res.text().await.unwrap();
        assert!(text.starts_with(expected), "{name}: {text}");
    }
    assert!(!app.data().join("wattmon").exists());
}
