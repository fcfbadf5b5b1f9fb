//! The binary: `serve` with no config at all, `check`, and `validate`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{REPO, fixture};

const BIN: &str = env!("CARGO_BIN_EXE_hookyard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `hookyard serve` in `dir` with no config; returns the child and its stderr lines
/// up to "serving".
fn serve_in(dir: &std::path::Path, port: u16) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env("HOOKYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stderr.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        let done = line.contains("hookyard is serving");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

#[test]
fn serve_with_no_config_generates_credentials_once_and_keeps_them_private() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, lines) = serve_in(dir.path(), port);
    let health =
        std::net::TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(health.is_ok(), "{lines:?}");
    let told: Vec<&String> = lines.iter().filter(|l| l.contains("generated credentials")).collect();
    assert_eq!(told.len(), 1, "{lines:?}");
    assert!(told[0].contains("data/credentials.toml"), "{told:?}");
    let creds = dir.path().join("data/credentials.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&creds).unwrap();
    assert!(
        lines.iter().all(|l| !text.lines().filter(|t| t.contains('"')).any(|t| l.contains(t))),
        "a secret was logged"
    );

    let (mut again, lines) = serve_in(dir.path(), free_port());
    again.kill().unwrap();
    again.wait().unwrap();
    assert!(lines.iter().all(|l| !l.contains("generated credentials")), "told only once: {lines:?}");
    assert_eq!(std::fs::read_to_string(&creds).unwrap(), text, "credentials are kept, not regenerated");
}

#[test]
fn check_passes_on_the_shipped_setup_and_lists_every_problem_otherwise() {
    let ok = Command::new(BIN)
        .arg("check")
        .current_dir(REPO)
        .env("HOOKYARD_DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    for name in ["ai-on-the-edge", "gridx", "wattsense"] {
        std::fs::copy(format!("{REPO}/scripts/{name}.rhai"), dir.path().join(format!("scripts/{name}.rhai"))).unwrap();
    }
    std::fs::write(dir.path().join("scripts/wattmon.rhai"), "fn on_event(event) {").unwrap();
    let config = format!(
        "spec_dir = \"{REPO}/spec\"\nscripts_dir = \"scripts\"\n[protocols.ai-on-the-edge]\napi_keys = {{ \"k\" = \"../up\" }}\n"
    );
    std::fs::write(dir.path().join("hookyard.toml"), config).unwrap();
    let bad = Command::new(BIN).arg("check").current_dir(dir.path()).output().unwrap();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("scripts/wattmon.rhai"), "{out}");
    assert!(out.contains("api_keys: tenant \"../up\""), "{out}");
    assert!(out.contains("2 problem(s) found"), "{out}");
}

#[test]
fn validate_prints_each_violation_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut event: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(fixture("gridx/examples.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, event.to_string()).unwrap();
    event["data"].as_object_mut().unwrap().remove("gatewayID");
    event["data"]["type"] = "TOASTER".into();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, event.to_string()).unwrap();
    let run = |file: &std::path::Path| {
        Command::new(BIN)
            .args(["validate", "gridx", "POST", "/gridx/events"])
            .arg(file)
            .current_dir(REPO)
            .output()
            .unwrap()
    };
    let ok = run(&good);
    assert_eq!((ok.status.code(), String::from_utf8_lossy(&ok.stdout).trim()), (Some(0), "valid: 1 event(s)"));
    let out = run(&bad);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.contains(&"/data/gatewayID: required"), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("/data/type: \"TOASTER\" is not one of")), "{text}");
}
