//! A bounded mutation-fuzz run: radamsa (pyradamsa, from PyPI, installed by the test) mutates
//! well-formed raw requests of every protocol; the server must answer none with a 5xx, keep
//! serving, and journal nothing it did not acknowledge.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{REPO, TestApp, ai_reading, gridx_ping, gridx_signature, read_fixture, spawn_app};

const PYRADAMSA: &str = "0.1.1";
/// How long the fuzzer sends (the whole test stays well under a minute).
const SECONDS: &str = "40";

const CONFIG: &str = "[server]\nmax_failed_attempts = 0\nheader_timeout_ms = 1000\nbody_timeout_ms = 1000\n\
                      [protocols.ai-on-the-edge]\napi_keys = { \"fz-key\" = \"fuzz\" }\n\
                      [protocols.gridx]\nsecrets = [\"fz-secret\"]\n\
                      [protocols.wattmon]\ntoken = \"fz-token\"\n\
                      [protocols.wattsense]\nauth = { type = \"none\" }\n";

fn python() -> PathBuf {
    let venv = Path::new(REPO).join("target/fuzz-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python).args(["-c", "import pyradamsa"]).status().is_ok_and(|s| s.success());
    if !ready {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 runs");
        assert!(made.success(), "could not create {}", venv.display());
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", &format!("pyradamsa=={PYRADAMSA}")])
            .status()
            .expect("pip runs");
        assert!(pip.success(), "could not install pyradamsa {PYRADAMSA} from PyPI");
    }
    python
}

fn request(head: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{head} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One well-formed, accepted request of each operation.
fn seeds(dir: &Path) {
    let json = || ("Content-Type", "application/json".to_string());
    let reading = ai_reading("main", "123.4", 1_723_196_684);
    let ping = gridx_ping(7, "fuzz");
    let wattmon = read_fixture("wattmon/urlencoded-md5.body");
    let value = read_fixture("wattsense/value.json");
    let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[0u8; 64], &[0xFF, 0xD9]].concat();
    let all = [
        (
            "ai-readings",
            request("POST /ai-on-the-edge/webhook", &[json(), ("APIKEY", "fz-key".into())], reading.as_bytes()),
        ),
        (
            "ai-image",
            request(
                "PUT /ai-on-the-edge/webhook?timestamp=1723196684",
                &[("Content-Type", "image/jpeg".into()), ("APIKEY", "fz-key".into())],
                &jpeg,
            ),
        ),
        (
            "gridx",
            request(
                "POST /gridx/events",
                &[json(), ("X-Signature", gridx_signature("fz-secret", ping.as_bytes()))],
                ping.as_bytes(),
            ),
        ),
        (
            "wattmon",
            request(
                "POST /wattmon/export?token=fz-token",
                &[("Content-Type", "application/x-www-form-urlencoded".into())],
                &wattmon,
            ),
        ),
        ("wattsense", request("POST /wattsense/values", &[json()], &value)),
    ];
    for (name, bytes) in all {
        std::fs::write(dir.join(format!("{name}.http")), bytes).unwrap();
    }
}

fn journaled_requests(app: &TestApp) -> i64 {
    let conn = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_of_every_protocol_get_no_server_error_and_nothing_unacknowledged_is_kept() {
    let python = python();
    let app = spawn_app(CONFIG).await;
    let dir = tempfile::tempdir().unwrap();
    seeds(dir.path());
    // Each seed as sent is accepted: the mutants start from requests that pass every check.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let reply = raw(&app, &bytes).await;
        assert!(reply.starts_with("HTTP/1.1 2"), "{}: {reply}", path.display());
    }
    let before = journaled_requests(&app);
    let (port, seed_dir) = (app.addr.port().to_string(), dir.path().to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(Path::new(REPO).join("tests/fuzz/mutate.py"))
            .args(["127.0.0.1", &port, SECONDS])
            .arg(seed_dir)
            .output()
            .expect("the fuzzer runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(text.trim()).expect("the fuzzer's summary");
    eprintln!("fuzz: {summary}");
    assert!(summary["sent"].as_u64().unwrap() > 200, "too few mutants sent: {summary}");
    assert_eq!(summary["server_errors"], serde_json::json!([]), "a 5xx for a client's mistake");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200, "the server keeps serving");
    let kept = journaled_requests(&app) - before;
    let accepted = summary["accepted"].as_i64().unwrap();
    let unanswered = summary["unanswered"].as_i64().unwrap();
    assert!(
        kept >= accepted && kept <= accepted + unanswered,
        "journaled {kept}, acknowledged {accepted}, unanswered {unanswered}"
    );
}

/// Sends raw bytes on a new connection; the reply's text.
async fn raw(app: &TestApp, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}
