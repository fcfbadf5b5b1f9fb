//! Wattmon: form-urlencoded and multipart blocks, MD5, allowed keys, resent blocks.

use md5::{Digest, Md5};

use crate::helpers::{TestApp, files_below, spawn_app};

const MAC: &str = "00:04:A3:12:34:56";
const FILE: &str = "wattmon/00:04:A3:12:34:56.csv";
const BLOCK: &str = "Time,Voltage,Current\n2025-09-01 12:00:00,52.1,3.4\n2025-09-01 12:01:00,52.0,\"3,5\"\n";

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
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

async fn send_multipart(app: &TestApp, fields: &[(&str, &str)]) -> (u16, String) {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!("--BOUNDARY\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
    }
    body.push_str("--BOUNDARY--\r\n");
    let res = app
        .client
        .post(app.url("/wattmon/export"))
        .header("Content-Type", "multipart/form-data; boundary=BOUNDARY")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

const STORED: &str = "Time,Voltage,Current\r\n2025-09-01 12:00:00,52.1,3.4\r\n2025-09-01 12:01:00,52.0,\"3,5\"\r\n";

#[tokio::test]
async fn a_urlencoded_block_is_stored_and_answered_ok() {
    let app = spawn_app("").await;
    let md5 = md5_hex(BLOCK);
    let reply = send_form(&app, &[("key", MAC), ("md5sum", &md5), ("data", BLOCK)]).await;
    assert_eq!(reply, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), STORED);
}

#[tokio::test]
async fn a_multipart_block_is_stored_the_same_way_with_an_uppercase_md5() {
    let app = spawn_app("").await;
    let md5 = md5_hex(BLOCK).to_uppercase();
    let reply = send_multipart(&app, &[("key", MAC), ("md5sum", &md5), ("data", BLOCK)]).await;
    assert_eq!(reply, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), STORED);
}

#[tokio::test]
async fn a_mismatched_md5_gets_error_and_stores_nothing_then_the_resend_is_stored() {
    let app = spawn_app("").await;
    let wrong = md5_hex("something else");
    let reply = send_form(&app, &[("key", MAC), ("md5sum", &wrong), ("data", BLOCK)]).await;
    assert_eq!(reply, (200, "ERROR: MD5 sum mismatch".to_owned()));
    assert!(!app.data().join(FILE).exists());
    let reply = send_form(&app, &[("key", MAC), ("md5sum", &md5_hex(BLOCK)), ("data", BLOCK)]).await;
    assert_eq!(reply, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), STORED);
}

#[tokio::test]
async fn a_resent_block_adds_no_duplicate_rows() {
    let app = spawn_app("").await;
    for _ in 0..3 {
        assert_eq!(send_form(&app, &[("key", MAC), ("data", BLOCK)]).await, (200, "OK".to_owned()));
    }
    // The next block repeats the last row and adds one.
    let next = "Time,Voltage,Current\n2025-09-01 12:01:00,52.0,\"3,5\"\n2025-09-01 12:02:00,51.9,3.6\n";
    assert_eq!(send_form(&app, &[("key", MAC), ("data", next)]).await, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), format!("{STORED}2025-09-01 12:02:00,51.9,3.6\r\n"));
}

#[tokio::test]
async fn configured_checks_refuse_unknown_devices_and_missing_checksums() {
    let app = spawn_app("[protocols.wattmon]\nallowed_keys = [\"00:04:a3:12:34:56\"]\nrequire_md5 = true\n").await;
    let reply = send_form(&app, &[("key", "00:04:A3:00:00:01"), ("md5sum", &md5_hex(BLOCK)), ("data", BLOCK)]).await;
    assert_eq!(reply, (200, "ERROR: key is not an allowed device".to_owned()));
    let reply = send_form(&app, &[("key", MAC), ("data", BLOCK)]).await;
    assert_eq!(reply, (200, "ERROR: md5sum field is missing".to_owned()));
    assert!(!app.data().join("wattmon").exists());
    let reply = send_form(&app, &[("key", MAC), ("md5sum", &md5_hex(BLOCK)), ("data", BLOCK)]).await;
    assert_eq!(reply, (200, "OK".to_owned()), "the allowed list compares MACs case-insensitively");
}

#[tokio::test]
async fn bad_blocks_get_error_replies_naming_the_field() {
    let app = spawn_app("").await;
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case; 6] = [
        (&[("key", MAC)], 400, "ERROR: invalid request: /data: required"),
        (&[("data", BLOCK)], 200, "ERROR: key field is missing"),
        (&[("key", "../../etc/passwd"), ("data", BLOCK)], 400, "ERROR: invalid request: /key: "),
        (
            &[("key", MAC), ("data", "Time,V\n1,2,3\n")],
            400,
            "ERROR: invalid request: /data: CSV row 2 has 3 fields, the header has 2",
        ),
        (&[("key", MAC), ("md5sum", "xyz"), ("data", BLOCK)], 200, "ERROR: MD5 sum mismatch"),
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
