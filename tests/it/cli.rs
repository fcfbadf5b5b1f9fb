//! The binary: `serve` with no config at all, `check`, and `validate`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::REPO;

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
fn validate_prints_each_violation_once_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut event = serde_json::json!({
        "id": "0f8fad5b-d9cb-469f-a165-708677289500", "time": "2025-09-01T12:00:00Z", "specVersion": "1.0",
        "source": "/systems/5eda17ec-4dc9-46d5-b3b8-c396f75a760f", "type": "appliance/online",
        "data": {"applianceID": "fc0a6ac7-64ce-4276-a7cd-bace946af433",
                 "gatewayID": "25ccab17-cd40-4db1-a320-a986d1c15fb1", "type": "METER"}
    });
    let run_at = |path: &str, name: &str, event: &serde_json::Value| {
        let file = dir.path().join(name);
        std::fs::write(&file, event.to_string()).unwrap();
        let out =
            Command::new(BIN).args(["validate", "gridx", "POST", path]).arg(&file).current_dir(REPO).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let run = |name: &str, event: &serde_json::Value| run_at("/gridx/events", name, event);
    let (code, text) = run("good.json", &event);
    assert_eq!((code, text.trim()), (Some(0), "valid: 1 event(s)"));
    event["data"].as_object_mut().unwrap().remove("gatewayID");
    event["data"]["type"] = "TOASTER".into();
    let (code, text) = run("bad.json", &event);
    assert_eq!(code, Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.contains(&"/data/gatewayID: required"), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("/data/type: \"TOASTER\" is not one of")), "{text}");
    // The envelope and the appliance schema both say `data` is an object (allOf), with the
    // envelope's `id` error between them: one violation, printed once.
    event["data"] = "x".into();
    event["id"] = "nope".into();
    let (code, text) = run("twice.json", &event);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec![r#"/data: "x" is not of type "object""#, r#"/id: "nope" is not a "uuid""#]
    );
    // A per-type path narrows the appliance types to its own: one line about `type`.
    let (code, text) = run_at("/gridx/events/appliance/create", "narrowed.json", &event);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec![
            r#"/data: "x" is not of type "object""#,
            r#"/id: "nope" is not a "uuid""#,
            r#"/type: "appliance/online" is not one of "appliance/create""#
        ]
    );
}
