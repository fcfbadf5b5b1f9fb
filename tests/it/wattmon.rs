//! Wattmon: form-urlencoded and multipart blocks, MD5, allowed keys, resent blocks.

use md5::{Digest, Md5};
use serde_json::Value;

use crate::helpers::{TestApp, files_below, fixture_json, fixture_text, read_fixture, spawn_app};

const MAC: &str = "00:04:A3:12:34:56";
const FILE: &str = "wattmon/00:04:A3:12:34:56.csv";

/// The CSV block of `tests/fixtures/wattmon/block.csv`.
fn block() -> String {
    fixture_text("wattmon/block.csv")
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// POSTs a fixture body as it was generated, with its content type.
async fn send_fixture(app: &TestApp, body: &str, content_type: &str) -> (u16, String) {
    let body = read_fixture(&format!("wattmon/{body}"));
    let res = app
        .client
        .post(app.url("/wattmon/export"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn send_form(app: &TestApp, fields: &[(&str, &str)]) -> (u16, String) {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let res = app
        .client
        .post(app.url("/wattmon/export"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn every_generated_body_gets_its_reply_and_only_accepted_blocks_are_stored() {
    let vectors = fixture_json("wattmon/vectors.json");
    let stored = fixture_text("wattmon/stored.csv");
    for case in vectors["cases"].as_array().unwrap() {
        let app = spawn_app("").await;
        let field = |k: &str| case[k].as_str().unwrap();
        let (status, reply) = send_fixture(&app, field("body"), field("content_type")).await;
        assert_eq!((status, reply.as_str()), (200, field("reply")), "{}", field("name"));
        let expected = if case["stored"] == Value::Bool(true) { stored.as_str() } else { "" };
        assert_eq!(app.read(FILE), expected, "{}", field("name"));
    }
}

#[tokio::test]
async fn a_mismatched_md5_gets_error_and_stores_nothing_then_the_resend_is_stored() {
    let app = spawn_app("").await;
    let form = "application/x-www-form-urlencoded";
    let reply = send_fixture(&app, "urlencoded-wrong-md5.body", form).await;
    assert_eq!(reply, (200, "ERROR: MD5 sum mismatch".to_owned()));
    assert!(!app.data().join(FILE).exists());
    let reply = send_fixture(&app, "urlencoded-md5.body", form).await;
    assert_eq!(reply, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), fixture_text("wattmon/stored.csv"));
}

#[tokio::test]
async fn a_resent_block_adds_no_duplicate_rows() {
    let app = spawn_app("").await;
    let form = "application/x-www-form-urlencoded";
    for _ in 0..3 {
        assert_eq!(send_fixture(&app, "urlencoded-no-md5.body", form).await, (200, "OK".to_owned()));
    }
    // The next block repeats the last row and adds one.
    assert_eq!(send_fixture(&app, "urlencoded-next-block.body", form).await, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), format!("{}2025-09-01 12:02:00,51.9,3.6\r\n", fixture_text("wattmon/stored.csv")));
}

#[tokio::test]
async fn configured_checks_refuse_unknown_devices_and_missing_checksums() {
    let app = spawn_app("[protocols.wattmon]\nallowed_keys = [\"00:04:a3:12:34:56\"]\nrequire_md5 = true\n").await;
    let (block, md5) = (block(), md5_hex(&block()));
    let reply = send_form(&app, &[("key", "00:04:A3:00:00:01"), ("md5sum", &md5), ("data", &block)]).await;
    assert_eq!(reply, (200, "ERROR: key is not an allowed device".to_owned()));
    let reply = send_form(&app, &[("key", MAC), ("data", &block)]).await;
    assert_eq!(reply, (200, "ERROR: md5sum field is missing".to_owned()));
    assert!(!app.data().join("wattmon").exists());
    let reply = send_form(&app, &[("key", MAC), ("md5sum", &md5), ("data", &block)]).await;
    assert_eq!(reply, (200, "OK".to_owned()), "the allowed list compares MACs case-insensitively");
}

#[tokio::test]
async fn bad_blocks_get_error_replies_naming_the_field() {
    let app = spawn_app("").await;
    let block = block();
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case; 6] = [
        (&[("key", MAC)], 400, "ERROR: invalid request: /data: required"),
        (&[("data", &block)], 200, "ERROR: key field is missing"),
        (&[("key", "../../etc/passwd"), ("data", &block)], 400, "ERROR: invalid request: /key: "),
        (
            &[("key", MAC), ("data", "Time,V\n1,2,3\n")],
            400,
            "ERROR: invalid request: /data: CSV row 2 has 3 fields, the header has 2",
        ),
        (&[("key", MAC), ("md5sum", "xyz"), ("data", &block)], 200, "ERROR: MD5 sum mismatch"),
        (
            &[("key", MAC), ("data", "Time,Time\n1,2\n")],
            400,
            "ERROR: invalid request: /data: the CSV header names a column twice",
        ),
    ];
    for (fields, status, expected) in cases {
        let (got_status, reply) = send_form(&app, fields).await;
        assert_eq!(got_status, status, "{fields:?}: {reply}");
        assert!(reply.starts_with(expected), "{fields:?}: {reply}");
    }
    assert!(files_below(&app.data()).iter().all(|f| !f.starts_with("wattmon")));
    let res =
        app.client.post(app.url("/wattmon/export")).header("Content-Type", "text/csv").body("x").send().await.unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        res.text().await.unwrap(),
        "ERROR: Content-Type text/csv is not accepted here (send application/x-www-form-urlencoded or multipart/form-data)"
    );
}
