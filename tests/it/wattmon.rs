//! Wattmon: form-urlencoded and multipart blocks, MD5, allowed keys, resent blocks; the URL
//! token, MAC spellings, one file per header, neutralised cells.

use md5::{Digest, Md5};
use serde_json::Value;

use crate::helpers::{TestApp, files_below, fixture_json, fixture_text, read_fixture, spawn_app};

const MAC: &str = "00:04:A3:12:34:56";
/// `wattmon/<canonical key>-<first 8 hex of SHA-256 of the header row "Time,Voltage,Current\r\n">.csv`.
const FILE: &str = "wattmon/00-04-a3-12-34-56-23320988.csv";
const TOKEN: &str = "w4ttm0n-t0k3n";
/// The config every test here starts from (the token the device's URL carries).
const CONFIG: &str = "[protocols.wattmon]\ntoken = \"w4ttm0n-t0k3n\"\n";
const EXPORT: &str = "/wattmon/export?token=w4ttm0n-t0k3n";

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
    let res = app.client.post(app.url(EXPORT)).header("Content-Type", content_type).body(body).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn send_form(app: &TestApp, fields: &[(&str, &str)]) -> (u16, String) {
    send_form_to(app, EXPORT, fields).await
}

async fn send_form_to(app: &TestApp, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let res = app
        .client
        .post(app.url(url))
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
        let app = spawn_app(CONFIG).await;
        let field = |k: &str| case[k].as_str().unwrap();
        let (status, reply) = send_fixture(&app, field("body"), field("content_type")).await;
        assert_eq!((status, reply.as_str()), (200, field("reply")), "{}", field("name"));
        let expected = if case["stored"] == Value::Bool(true) { stored.as_str() } else { "" };
        assert_eq!(app.read(FILE), expected, "{}", field("name"));
    }
}

#[tokio::test]
async fn a_mismatched_md5_gets_error_and_stores_nothing_then_the_resend_is_stored() {
    let app = spawn_app(CONFIG).await;
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
    let app = spawn_app(CONFIG).await;
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
    let app = spawn_app(
        "[protocols.wattmon]\ntoken = \"w4ttm0n-t0k3n\"\nallowed_keys = [\"00:04:a3:12:34:56\"]\nrequire_md5 = true\n",
    )
    .await;
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
    let app = spawn_app(CONFIG).await;
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
    let res = app.client.post(app.url(EXPORT)).header("Content-Type", "text/csv").body("x").send().await.unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        res.text().await.unwrap(),
        "ERROR: Content-Type text/csv is not accepted here (send application/x-www-form-urlencoded or multipart/form-data)"
    );
}

/// The files below `wattmon/`.
fn wattmon_files(app: &TestApp) -> Vec<String> {
    files_below(&app.data()).into_iter().filter(|f| f.starts_with("wattmon/")).collect()
}

/// The first 8 hex digits of the SHA-256 of a header row as written (CRLF).
fn header_digest(header: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(format!("{header}\r\n").as_bytes()))[..8].to_owned()
}

/// Every byte the journal holds (database and write-ahead log).
fn journal_bytes(app: &TestApp) -> Vec<u8> {
    let dir = app.data().join(".hookyard");
    ["journal.db", "journal.db-wal"].iter().flat_map(|f| std::fs::read(dir.join(f)).unwrap_or_default()).collect()
}

#[tokio::test]
async fn the_url_must_carry_the_token_and_the_journal_never_keeps_it() {
    let app = spawn_app(CONFIG).await;
    let block = block();
    let fields = [("key", MAC), ("data", block.as_str())];
    let missing = send_form_to(&app, "/wattmon/export", &fields).await;
    let expected = "ERROR: the token query parameter is missing (the URL must end in ?token=<token>)";
    assert_eq!(missing, (200, expected.to_owned()));
    let wrong = send_form_to(&app, "/wattmon/export?token=w4ttm0n-t0k3", &fields).await;
    assert_eq!(wrong, (200, "ERROR: wrong token".to_owned()));
    assert!(wattmon_files(&app).is_empty(), "nothing stored from a refused block");
    assert_eq!(send_form(&app, &fields).await, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), fixture_text("wattmon/stored.csv"));
    let journal = journal_bytes(&app);
    assert!(!journal.is_empty(), "the accepted block is journaled");
    assert!(!journal.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the journal holds the token");
}

#[tokio::test]
async fn with_require_token_false_a_url_without_one_is_accepted_but_a_wrong_one_is_not() {
    let app = spawn_app("[protocols.wattmon]\ntoken = \"w4ttm0n-t0k3n\"\nrequire_token = false\n").await;
    let block = block();
    let fields = [("key", MAC), ("data", block.as_str())];
    assert_eq!(send_form_to(&app, "/wattmon/export", &fields).await, (200, "OK".to_owned()));
    let wrong = send_form_to(&app, "/wattmon/export?token=guess", &fields).await;
    assert_eq!(wrong, (200, "ERROR: wrong token".to_owned()));
    assert_eq!(app.read(FILE), fixture_text("wattmon/stored.csv"));
}

#[tokio::test]
async fn a_token_is_generated_on_first_start_kept_in_credentials_toml_and_opens_the_url() {
    let app = spawn_app("").await;
    let text = std::fs::read_to_string(app.data().join("credentials.toml")).unwrap();
    let stored: toml::Table = toml::from_str(&text).unwrap();
    let token = stored["protocols"]["wattmon"]["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32 && token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
    let block = block();
    let fields = [("key", MAC), ("data", block.as_str())];
    let (_, refused) = send_form_to(&app, "/wattmon/export", &fields).await;
    assert!(refused.starts_with("ERROR: the token query parameter is missing"), "{refused}");
    assert_eq!(send_form_to(&app, &format!("/wattmon/export?token={token}"), &fields).await, (200, "OK".to_owned()));
    assert_eq!(app.read(FILE), fixture_text("wattmon/stored.csv"));
}

#[tokio::test]
async fn every_spelling_of_a_mac_is_one_device_one_file_and_resends_are_duplicates() {
    let config = format!("{CONFIG}allowed_keys = [\"AA:BB:CC:DD:EE:0F\"]\n");
    let app = spawn_app(&config).await;
    let block = block();
    for key in ["AA-BB-CC-DD-EE-0F", "aa-bb-cc-dd-ee-0f", "Aa-bB-cC-Dd-eE-0f", "AA:BB:CC:DD:EE:0F"] {
        assert_eq!(send_form(&app, &[("key", key), ("data", &block)]).await, (200, "OK".to_owned()), "{key}");
    }
    let file = format!("wattmon/aa-bb-cc-dd-ee-0f-{}.csv", header_digest("Time,Voltage,Current"));
    assert_eq!(wattmon_files(&app), vec![file.clone()]);
    assert_eq!(app.read(&file), fixture_text("wattmon/stored.csv"));
    let statuses = crate::helpers::journal_statuses(&app, "ORDER BY id");
    let rows = statuses.len() / 4;
    assert_eq!(statuses.iter().filter(|s| *s == "processed").count(), rows, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 3 * rows, "{statuses:?}");
}

#[tokio::test]
async fn a_block_with_another_header_goes_to_the_file_of_that_header() {
    let app = spawn_app(CONFIG).await;
    let first = "Time,Voltage,Current\n2025-09-01 12:00:00,52.1,3.4\n";
    let swapped = "Time,Current,Voltage\n2025-09-01 12:05:00,3.6,51.9\n";
    let added = "Time,Voltage,Current,Power\n2025-09-01 12:10:00,51.8,3.7,191.7\n";
    for data in [first, swapped, added] {
        assert_eq!(send_form(&app, &[("key", MAC), ("data", data)]).await, (200, "OK".to_owned()));
    }
    let file = |header: &str| format!("wattmon/00-04-a3-12-34-56-{}.csv", header_digest(header));
    let mut expected =
        vec![file("Time,Voltage,Current"), file("Time,Current,Voltage"), file("Time,Voltage,Current,Power")];
    expected.sort();
    assert_eq!(wattmon_files(&app), expected);
    assert_eq!(app.read(&file("Time,Voltage,Current")), "Time,Voltage,Current\r\n2025-09-01 12:00:00,52.1,3.4\r\n");
    assert_eq!(app.read(&file("Time,Current,Voltage")), "Time,Current,Voltage\r\n2025-09-01 12:05:00,3.6,51.9\r\n");
    assert_eq!(
        app.read(&file("Time,Voltage,Current,Power")),
        "Time,Voltage,Current,Power\r\n2025-09-01 12:10:00,51.8,3.7,191.7\r\n"
    );
}

/// Cells a spreadsheet would run as formulas, and what lands for each (`'` before it), as a
/// spreadsheet program reads the file back.
pub const FORMULAS: [(&str, &str); 7] = [
    ("=HYPERLINK(\"http://example.com/x\",\"open\")", "'=HYPERLINK(\"http://example.com/x\",\"open\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-1+1", "'-1+1"),
    ("@SUM(1)", "'@SUM(1)"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("-12.5", "-12.5"),
];

#[tokio::test]
async fn formula_cells_of_a_block_land_neutralised_and_numbers_stay_numbers() {
    let app = spawn_app(CONFIG).await;
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["Time", "Note"]).unwrap();
    for (n, (cell, _)) in FORMULAS.iter().enumerate() {
        writer.write_record([format!("2025-09-01 12:0{n}:00").as_str(), cell]).unwrap();
    }
    let data = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    assert_eq!(send_form(&app, &[("key", MAC), ("data", &data)]).await, (200, "OK".to_owned()));
    let file = format!("wattmon/00-04-a3-12-34-56-{}.csv", header_digest("Time,Note"));
    let text = app.read(&file);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let notes: Vec<String> = reader.records().map(|r| r.unwrap()[1].to_owned()).collect();
    let expected: Vec<&str> = FORMULAS.iter().map(|(_, written)| *written).collect();
    assert_eq!(notes, expected);
}

#[test]
fn check_names_a_token_setting_that_does_not_fit() {
    for (config, expected) in [
        (
            "[protocols.wattmon]\nrequire_token = \"no\"\n",
            "hookyard.toml line 2: [protocols.wattmon] require_token: expected true or false, found a string",
        ),
        ("[protocols.wattmon]\ntoken = \"\"\n", "hookyard.toml line 2: [protocols.wattmon] token: must not be empty"),
        ("[protocols.wattmon]\ntokens = \"x\"\n", "hookyard.toml line 2: [protocols.wattmon] tokens: unknown key"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hookyard.toml"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("check")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{config}\n{text}");
        assert!(text.contains(expected), "{config}\nexpected: {expected}\ngot: {text}");
    }
}

#[tokio::test]
async fn neither_the_token_nor_a_wrong_guess_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hookyard.toml"), CONFIG).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .arg("serve")
        .current_dir(dir.path())
        .env("HOOKYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "trace")
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let up = crate::helpers::eventually(20, async || client.get(format!("{base}/healthz")).send().await.is_ok()).await;
    assert!(up, "server did not start");
    let block = block();
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs([("key", MAC), ("data", &block)]).finish();
    let mut replies = Vec::new();
    for token in [TOKEN, "Gu3ssedT0k3n"] {
        let res = client
            .post(format!("{base}/wattmon/export?token={token}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        replies.push(res.text().await.unwrap());
    }
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    assert_eq!(replies, ["OK", "ERROR: wrong token"]);
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(log.contains("reason=wrong token"), "the refusal is logged: {log}");
    assert!(!log.contains(TOKEN) && !log.contains("Gu3ssedT0k3n"), "{log}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_before_the_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(CONFIG).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /wattmon/export?token=guess HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut reply)).await;
    let n = read.expect("answered without the body").unwrap();
    let text = String::from_utf8_lossy(&reply[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.ends_with("ERROR: wrong token"), "{text}");
}
