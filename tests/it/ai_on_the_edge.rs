//! AI-on-the-edge-device: readings (JSON array + APIKEY) and the JPEG image upload.

use crate::helpers::{TestApp, files_below, fixture_text, raw_http, read_fixture, spawn_app};

const CONFIG: &str = r#"
[protocols.ai-on-the-edge]
api_keys = { "s3cr3tKey" = "vacation-home", "other-key" = "garage" }
"#;

const CSV: &str = "ai-on-the-edge/vacation-home/webhook_log.csv";
const HEADER: &str = "timestampLong,name,rawValue,value,preValue,rate,changeAbsolute,error";

async fn post(app: &TestApp, key: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, String) {
    let mut req =
        app.client.post(app.url("/ai-on-the-edge/webhook")).header("Content-Type", "application/json").body(body);
    if let Some(k) = key {
        req = req.header("APIKEY", k);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn put_image(app: &TestApp, query: &str, body: Vec<u8>) -> (u16, String) {
    let res = app
        .client
        .put(app.url(&format!("/ai-on-the-edge/webhook{query}")))
        .header("APIKEY", "s3cr3tKey")
        .header("Content-Type", "image/jpeg")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn jpeg(size: usize) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..size.saturating_sub(6)).map(|i| (i % 251) as u8));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

#[tokio::test]
async fn the_devices_exact_request_bytes_over_a_raw_socket_land_as_one_csv_row() {
    let app = spawn_app(CONFIG).await;
    let bytes = read_fixture("ai-on-the-edge/post_ok.http");
    let text = String::from_utf8(bytes).unwrap();
    // The device posts to whatever URI it is configured with; ours is /ai-on-the-edge/webhook.
    let request = text.replacen("POST /watermeter/webhook HTTP/1.1", "POST /ai-on-the-edge/webhook HTTP/1.1", 1);
    let response = raw_http(app.addr, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.to_ascii_lowercase().contains("content-length: "), "{response}");
    assert!(response.ends_with(r#"{"message":"Data received","status":"success"}"#), "{response}");
    assert_eq!(
        app.read(CSV),
        format!("{HEADER}\r\n1723196684,main,0345.4264,345.4264,345.4264,0.000120,0.0006,no error\r\n")
    );
}

#[tokio::test]
async fn the_devices_image_put_over_a_raw_socket_lands_byte_for_byte() {
    let app = spawn_app(CONFIG).await;
    let head = fixture_text("ai-on-the-edge/put_image_headers.http.txt");
    let image = jpeg(20_000);
    let head = head.replacen("PUT /watermeter/webhook?", "PUT /ai-on-the-edge/webhook?", 1).replacen(
        "<N = JPEG size, <= 128000>",
        &image.len().to_string(),
        1,
    );
    assert!(head.ends_with("\r\n\r\n"), "the fixture's head ends with an empty line");
    let request = [head.into_bytes(), image.clone()].concat();
    let response = raw_http(app.addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with(r#"{"message":"Data received","status":"success"}"#), "{response}");
    assert_eq!(std::fs::read(app.data().join("ai-on-the-edge/vacation-home/1723196684.jpg")).unwrap(), image);
}

#[tokio::test]
async fn every_fixture_body_is_stored_with_its_text_kept_as_sent() {
    let app = spawn_app(CONFIG).await;
    for name in ["body_ok_two_numbers", "body_rate_too_high", "body_negative_rate", "body_nan_stale_prevalue"] {
        let body = read_fixture(&format!("ai-on-the-edge/{name}.json"));
        let (status, reply) = post(&app, Some("s3cr3tKey"), body).await;
        assert_eq!((status, reply.as_str()), (200, r#"{"message":"Data received","status":"success"}"#), "{name}");
    }
    let lines = app.lines(CSV);
    assert_eq!(lines[0], HEADER);
    assert_eq!(lines[1], "1723196684,main,0345.4264,345.4264,345.4264,0.000120,0.0006,no error");
    assert_eq!(lines[2], "1723196684,gas,0012,12,12,0.000000,0,no error");
    assert_eq!(
        lines[3],
        "1723196684,main,0346.4270,,345.4264,,0.0000,Rate too high - Read: 346.4270 - Pre: 345.4264 - Rate: 1.0006"
    );
    assert_eq!(
        lines[4],
        "1723196684,main,0345.4200,,345.4264,,0.0000,Neg. Rate - Read:  - Raw: 0345.4200 - Pre: 345.4264 "
    );
    assert_eq!(lines[5], "1723140902,main,03N5.4264,,345.42640,,0.0000,");
    assert_eq!(lines.len(), 6);
}

#[tokio::test]
async fn timestamp_long_may_be_a_number_and_each_tenant_has_its_own_folder() {
    let app = spawn_app(CONFIG).await;
    let body = r#"[{"timestamp":"2024-08-09T11:44:44+0200","timestampLong":1723196699,"name":"main","rawValue":"1","value":"1","preValue":"1","rate":"0","changeAbsolute":"0","error":"no error"}]"#;
    assert_eq!(post(&app, Some("other-key"), body).await.0, 200);
    assert_eq!(app.lines("ai-on-the-edge/garage/webhook_log.csv")[1], "1723196699,main,1,1,1,0,0,no error");
    let files = files_below(&app.data());
    assert!(
        files.iter().all(|f| !f.contains("other-key") && !f.contains("s3cr3tKey")),
        "a key reached the disk: {files:?}"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_key_gets_403_and_nothing_is_written() {
    let app = spawn_app(CONFIG).await;
    let body = read_fixture("ai-on-the-edge/body_ok_single.json");
    for key in [Some("wrong"), Some(""), None] {
        let (status, reply) = post(&app, key, body.clone()).await;
        assert_eq!(status, 403, "{key:?}");
        assert_eq!(reply, r#"{"message":"Invalid API key","status":"error"}"#);
    }
    assert!(!app.data().join("ai-on-the-edge").exists());
}

#[tokio::test]
async fn invalid_readings_are_refused_naming_the_field() {
    let app = spawn_app(CONFIG).await;
    let cases = [
        ("not json", "body: not valid JSON"),
        (r#"{"name":"main"}"#, r#"/: {"name":"main"} is not of type "array""#),
        ("[]", "/: [] has less than 1 item"),
        (
            r#"[{"timestamp":"t","timestampLong":"17x","name":"m","rawValue":"1","value":"1","preValue":"1","rate":"0","changeAbsolute":"0","error":""}]"#,
            "/0/timestampLong",
        ),
        (
            r#"[{"timestamp":"t","timestampLong":"1","name":"m","value":"1","preValue":"1","rate":"0","changeAbsolute":"0","error":""}]"#,
            "/0/rawValue: required",
        ),
    ];
    for (body, expected) in cases {
        let (status, reply) = post(&app, Some("s3cr3tKey"), body).await;
        assert_eq!(status, 400, "{body}");
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["status"], "error");
        assert!(reply["message"].as_str().unwrap().contains(expected), "{body}: {reply}");
    }
    assert!(!app.data().join(CSV).exists());
}

#[tokio::test]
async fn other_methods_get_405_and_oversized_bodies_413() {
    let app = spawn_app(CONFIG).await;
    let res = app.client.get(app.url("/ai-on-the-edge/webhook")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "PUT, POST");
    assert_eq!(res.text().await.unwrap(), r#"{"message":"method not allowed (allowed: PUT, POST)","status":"error"}"#);
    let (status, reply) = post(&app, Some("s3cr3tKey"), vec![b' '; 1024 * 1024 + 1]).await;
    assert_eq!(status, 413);
    assert_eq!(reply, r#"{"message":"request body is larger than 1048576 bytes","status":"error"}"#);
}

#[tokio::test]
async fn the_image_lands_as_timestamp_jpg_byte_for_byte() {
    let app = spawn_app(CONFIG).await;
    let image = jpeg(128_000);
    let (status, reply) = put_image(&app, "?timestamp=1723196684", image.clone()).await;
    assert_eq!((status, reply.as_str()), (200, r#"{"message":"Data received","status":"success"}"#));
    assert_eq!(std::fs::read(app.data().join("ai-on-the-edge/vacation-home/1723196684.jpg")).unwrap(), image);
    // A configured URI that already had a query gets a second '?' from the device.
    let (status, _) = put_image(&app, "?meter=1?timestamp=1723196999", jpeg(1000)).await;
    assert_eq!(status, 200);
    assert!(app.data().join("ai-on-the-edge/vacation-home/1723196999.jpg").exists());
}

/// An image's path, new with every image, stays on its effect's row; the readings' file, which
/// every reading appends to, is one shared text. The inspector shows both.
#[tokio::test]
async fn an_images_path_is_kept_on_its_row_and_an_appended_files_once() {
    let app = spawn_app(&format!("{CONFIG}[admin]\ntoken = \"adm1n\"\n")).await;
    for timestamp in [1723196684, 1723196685] {
        assert_eq!(put_image(&app, &format!("?timestamp={timestamp}"), jpeg(1000)).await.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(post(&app, Some("s3cr3tKey"), read_fixture("ai-on-the-edge/body_ok_single.json")).await.0, 200);
    }
    let journal = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    let texts = |sql: &str| -> Vec<String> {
        journal.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(
        texts("SELECT path FROM effects WHERE path != '' ORDER BY id"),
        ["ai-on-the-edge/vacation-home/1723196684.jpg", "ai-on-the-edge/vacation-home/1723196685.jpg"]
    );
    assert_eq!(texts("SELECT text FROM request_texts WHERE text LIKE 'ai-on-the-edge/%'"), [CSV]);
    for (event, path) in [(1, "ai-on-the-edge/vacation-home/1723196684.jpg"), (3, CSV)] {
        let res = app.client.get(app.url(&format!("/api/events/{event}"))).bearer_auth("adm1n").send().await.unwrap();
        let detail: serde_json::Value = res.json().await.unwrap();
        assert_eq!(detail["effects"][0]["path"], path, "{detail}");
    }
}

#[tokio::test]
async fn bad_images_and_timestamps_are_refused_and_cannot_choose_a_path() {
    let app = spawn_app(CONFIG).await;
    let cases: [(&str, Vec<u8>, u16, &str); 6] = [
        ("?timestamp=../../etc/passwd", jpeg(100), 400, "query parameter timestamp"),
        ("?timestamp=12ab", jpeg(100), 400, "query parameter timestamp"),
        ("", jpeg(100), 400, "query parameter timestamp: required"),
        ("?timestamp=1", Vec::new(), 400, "body: empty"),
        ("?timestamp=1", b"GIF89a....".to_vec(), 400, "does not start with the bytes FFD8FF"),
        ("?timestamp=1", jpeg(2 * 1024 * 1024 + 1), 413, "larger than 2097152 bytes"),
    ];
    for (query, body, want_status, want) in cases {
        let (status, reply) = put_image(&app, query, body).await;
        assert_eq!(status, want_status, "{query}: {reply}");
        assert!(reply.contains(want), "{query}: {reply}");
    }
    assert!(files_below(&app.data()).iter().all(|f| !f.ends_with(".jpg")));
    let res = app.client.put(app.url("/ai-on-the-edge/webhook?timestamp=1")).body(jpeg(100)).send().await.unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn the_same_image_twice_is_stored_once_and_a_new_image_for_the_same_timestamp_replaces_it() {
    let app = spawn_app(CONFIG).await;
    let (first, second) = (jpeg(5000), jpeg(6000));
    assert_eq!(put_image(&app, "?timestamp=1723196684", first.clone()).await.0, 200);
    assert_eq!(put_image(&app, "?timestamp=1723196684", first.clone()).await.0, 200);
    assert_eq!(crate::helpers::journal_statuses(&app, "ORDER BY id"), ["processed", "duplicate"]);
    assert_eq!(put_image(&app, "?timestamp=1723196684", second.clone()).await.0, 200);
    assert_eq!(std::fs::read(app.data().join("ai-on-the-edge/vacation-home/1723196684.jpg")).unwrap(), second);
}

#[tokio::test]
async fn formula_cells_of_a_reading_land_neutralised_and_negative_numbers_stay_numbers() {
    let app = spawn_app(CONFIG).await;
    let formulas = crate::wattmon::FORMULAS;
    let readings: Vec<serde_json::Value> = formulas
        .iter()
        .enumerate()
        .map(|(n, (cell, _))| {
            serde_json::json!({"timestamp": "", "timestampLong": format!("172319668{n}"), "name": format!("m{n}"),
                "rawValue": cell, "value": cell, "preValue": "", "rate": "", "changeAbsolute": "", "error": cell})
        })
        .collect();
    let body = serde_json::Value::Array(readings).to_string();
    let (status, reply) = post(&app, Some("s3cr3tKey"), body).await;
    assert_eq!(status, 200, "{reply}");
    let text = app.read(CSV);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), formulas.len());
    for (row, (sent, written)) in rows.iter().zip(formulas) {
        let cells = (&row[2], &row[3], &row[7]);
        assert_eq!(cells, (written, written, written), "sent {sent:?}");
    }
}
