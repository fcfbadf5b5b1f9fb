//! schemathesis against every served spec with the server running: zero 5xx, and every
//! response, status and content type as the spec documents. The management document runs
//! with the admin token over a seeded journal (readings with an image, a gridX event, a
//! refused request), its hooks drawing path ids from the real rows, and must reach them.
//!
//! schemathesis (pinned) is installed from PyPI into `target/schemathesis-venv` on first use,
//! so `cargo test` needs nothing else; a failed install fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::helpers::{REPO, TestApp, ai_reading, gridx_ping, gridx_signature, read_fixture, spawn_app};

const VERSION: &str = "4.32.5";
const TOKEN: &str = "st-admin";
// The fuzzer sends wrong credentials on purpose, then right ones from the same address: the
// lockout (tested in `hardening`) would refuse the right ones, so it is off here.
const CONFIG: &str = "[admin]\ntoken = \"st-admin\"\n\
                      [server]\nmax_failed_attempts = 0\n\
                      [protocols.ai-on-the-edge]\napi_keys = { \"st-key\" = \"fuzz\", \"st-seed\" = \"seeded\" }\n\
                      [protocols.gridx]\nsecrets = [\"st-secret\"]\n\
                      [protocols.wattmon]\nrequire_md5 = false\n\
                      [protocols.wattsense]\nauth = { type = \"none\" }\n";
/// Per document: its name, cases per operation, and the headers every request carries.
const DOCUMENTS: [(&str, &str, &str); 5] = [
    ("ai-on-the-edge", "40", "APIKEY: st-key"),
    ("gridx", "40", "APIKEY: st-key"),
    ("wattmon", "40", "APIKEY: st-key"),
    ("wattsense", "40", "APIKEY: st-key"),
    ("management", "12", "Authorization: Bearer st-admin"),
];

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

/// What a run is given: where, which document, and the environment of its hooks.
struct Run {
    bin: PathBuf,
    base: String,
    env: Vec<(String, String)>,
}

/// Runs schemathesis over one document; returns (exit ok, cases, output).
fn run(r: &Run, (document, examples, header): (&str, &str, &str)) -> (bool, usize, String) {
    let out = Command::new(&r.bin)
        .args(["run", &format!("{}/openapi/{document}.yaml", r.base), "--url", &r.base])
        .args(["-H", header, "--max-examples", examples, "--seed", "20261122", "--no-color"])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance"])
        .env("SCHEMATHESIS_HOOKS", "hookyard_hooks")
        .env("PYTHONPATH", Path::new(REPO).join("tests/schemathesis"))
        .env("HOOKYARD_GRIDX_SECRET", "st-secret")
        .envs(r.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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

async fn admin(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// The `key` of every item of `items`, comma-separated.
fn joined(items: &Value, key: &str) -> String {
    let all = items.as_array().map(Vec::as_slice).unwrap_or_default();
    all.iter().map(|i| i[key].to_string().trim_matches('"').to_owned()).collect::<Vec<_>>().join(",")
}

/// Puts rows in the journal for the management run: a counter with an image, a gridX event
/// and a refused request; answers the hooks' environment (the ids of those rows).
async fn seed(app: &TestApp) -> Vec<(String, String)> {
    let ai = |body: Vec<u8>, query: &str, key: &str, kind: &str| {
        let url = app.url(&format!("/ai-on-the-edge/webhook{query}"));
        app.client.post(url).header("APIKEY", key).header("Content-Type", kind).body(body).send()
    };
    for (i, value) in ["100.5", "101.25", "102"].into_iter().enumerate() {
        let body = ai_reading("main", value, 1_795_910_400 + 43_200 * i as u64).into_bytes();
        assert_eq!(ai(body, "", "st-seed", "application/json").await.unwrap().status(), 200);
    }
    let image = read_fixture("ai-on-the-edge/meter.jpg");
    let put = app.client.put(app.url("/ai-on-the-edge/webhook?timestamp=1795996800")).header("APIKEY", "st-seed");
    assert_eq!(put.header("Content-Type", "image/jpeg").body(image).send().await.unwrap().status(), 200);
    let ping = gridx_ping(1, "seeded");
    let signed =
        app.client.post(app.url("/gridx/events")).header("X-Signature", gridx_signature("st-secret", ping.as_bytes()));
    assert_eq!(signed.body(ping).send().await.unwrap().status(), 204);
    let wrong = ai(ai_reading("main", "1", 1_795_910_400).into_bytes(), "", "wrong", "application/json");
    assert_eq!(wrong.await.unwrap().status(), 403);

    let (events, series, rejected) = (
        admin(app, "/api/events").await.1,
        admin(app, "/api/series").await.1,
        admin(app, "/api/log?status=rejected").await.1,
    );
    let env = vec![
        ("HOOKYARD_ADMIN_TOKEN", TOKEN.to_owned()),
        ("HOOKYARD_EVENT_IDS", joined(&events, "id")),
        ("HOOKYARD_SERIES_IDS", joined(&series, "id")),
        ("HOOKYARD_REJECTED_IDS", joined(&rejected["entries"], "id")),
        ("HOOKYARD_PROTOCOLS", "ai-on-the-edge,gridx,wattmon,wattsense".to_owned()),
    ];
    for (name, ids) in &env {
        assert!(!ids.is_empty(), "nothing seeded for {name}");
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The `(method path, status)` lines the hooks recorded of the management run.
fn answered(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_spec_holds_under_schemathesis() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let app = spawn_app(CONFIG).await;
    let mut env = seed(&app).await;
    let log = app.root.path().join("schemathesis-answers.txt");
    env.push(("HOOKYARD_BASE_URL".into(), format!("http://{}", app.addr)));
    env.push(("HOOKYARD_ANSWERS".into(), log.display().to_string()));
    let run_with = std::sync::Arc::new(Run { bin, base: format!("http://{}", app.addr), env });
    for document in DOCUMENTS {
        let (started, r) = (std::time::Instant::now(), run_with.clone());
        let (ok, cases, text) = tokio::task::spawn_blocking(move || run(&r, document)).await.unwrap();
        assert!(ok, "schemathesis found problems in {}:\n{text}", document.0);
        assert!(cases > 0, "schemathesis ran no case for {}:\n{text}", document.0);
        eprintln!("schemathesis {}: {cases} cases, 0 failures, {:.0} s", document.0, started.elapsed().as_secs_f64());
    }
    // Generated valid requests got past the checks (the gridX hook signs them) and landed.
    assert!(app.lines("gridx/events.jsonl").len() > 1, "no signed gridX case was accepted");
    assert!(crate::helpers::files_below(&app.data().join("ai-on-the-edge/fuzz")).iter().any(|f| f.ends_with(".csv")));
    // The management run reached real rows, and its log-outs left the bearer token working.
    let answers = answered(&log);
    for reached in [
        "GET /api/events/{id} 200",
        "GET /api/series/{id}/daily 200",
        "GET /api/series/{id}/csv 200",
        "GET /api/series/{id}/image 200",
        "GET /api/rejected/{id} 200",
        "POST /api/events/{id}/replay 200",
        "POST /api/setup/{protocol}/reveal 200",
        "GET /api/session 200",
        "DELETE /api/session 204",
    ] {
        assert!(answers.iter().any(|a| a == reached), "the management run never answered {reached}");
    }
    assert_eq!(admin(&app, "/api/events").await.0, 200);
}
