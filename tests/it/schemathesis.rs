//! schemathesis against every served spec with the server running: zero 5xx, and every
//! response, status and content type as the spec documents.
//!
//! schemathesis (pinned) is installed from PyPI into `target/schemathesis-venv` on first use,
//! so `cargo test` needs nothing else; a failed install fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{REPO, spawn_app};

const VERSION: &str = "4.32.5";
// The fuzzer sends wrong credentials on purpose, then right ones from the same address: the
// lockout (tested in `hardening`) would refuse the right ones, so it is off here.
const CONFIG: &str = "[server]\nmax_failed_attempts = 0\n\
                      [protocols.ai-on-the-edge]\napi_keys = { \"st-key\" = \"fuzz\" }\n\
                      [protocols.gridx]\nsecrets = [\"st-secret\"]\n\
                      [protocols.wattmon]\nrequire_md5 = false\n\
                      [protocols.wattsense]\nauth = { type = \"none\" }\n";

fn schemathesis() -> PathBuf {
    let venv = Path::new(REPO).join("target/schemathesis-venv");
    let bin = venv.join("bin/schemathesis");
    let ready = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VERSION));
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for schemathesis");
        assert!(made.success(), "could not create {}", venv.display());
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", &format!("schemathesis=={VERSION}")])
            .status()
            .expect("pip runs");
        assert!(pip.success(), "could not install schemathesis {VERSION} from PyPI");
    }
    bin
}

/// Runs schemathesis over one document; returns (exit ok, cases, output).
fn run(bin: &Path, base: &str, document: &str) -> (bool, usize, String) {
    let out = Command::new(bin)
        .args(["run", &format!("{base}/openapi/{document}.yaml"), "--url", base])
        .args(["-H", "APIKEY: st-key", "--max-examples", "40", "--seed", "20261122", "--no-color"])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance"])
        .env("SCHEMATHESIS_HOOKS", "hookyard_hooks")
        .env("PYTHONPATH", Path::new(REPO).join("tests/schemathesis"))
        .env("HOOKYARD_GRIDX_SECRET", "st-secret")
        .output()
        .expect("schemathesis runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let cases = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_suffix(" passed")
                .and_then(|l| l.split(" generated").next())
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0);
    (out.status.success(), cases, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_spec_holds_under_schemathesis() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let app = spawn_app(CONFIG).await;
    let base = format!("http://{}", app.addr);
    for document in ["ai-on-the-edge", "gridx", "wattmon", "wattsense", "management"] {
        let (bin, base) = (bin.clone(), base.clone());
        let (ok, cases, text) = tokio::task::spawn_blocking(move || run(&bin, &base, document)).await.unwrap();
        assert!(ok, "schemathesis found problems in {document}:\n{text}");
        assert!(cases > 0, "schemathesis ran no case for {document}:\n{text}");
        eprintln!("schemathesis {document}: {cases} cases, 0 failures");
    }
    // Generated valid requests got past the checks (the gridX hook signs them) and landed.
    assert!(!app.lines("gridx/events.jsonl").is_empty(), "no signed gridX case was accepted");
    assert!(crate::helpers::files_below(&app.data().join("ai-on-the-edge/fuzz")).iter().any(|f| f.ends_with(".csv")));
}
