//! Native plugins: the quality-checker plugin built with cargo, loaded into a running server
//! (as a handler of named operations and through `plugin()` in a script), with the README's
//! own configuration; bad libraries and `handles` entries that name nothing refused at start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::helpers::{REPO, Setup, ai_reading, journal_errors, journal_statuses, post_ai, spawn_with};

/// Builds `plugins/quality` once (own target dir: the outer `cargo test` may hold the lock of
/// the main one) and returns the library's path.
pub fn quality_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = Path::new(REPO).join("target/plugin-tests");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--locked", "--quiet", "-p", "hookyard-quality", "--target-dir"])
                .arg(&target)
                .current_dir(REPO)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the quality plugin failed");
            let lib = target.join("debug").join(format!(
                "{}hookyard_quality{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            ));
            assert!(lib.is_file(), "{} was not built", lib.display());
            lib
        })
        .clone()
}

const SCRIPT: &str = r#"
fn on_event(event) {
    let q = event.plugins.quality;
    // The same plugin called directly, on a meter of its own.
    let direct = plugin("quality", #{ meter: `direct-${event.data.name}`, value: event.data.value,
                                      time: event.data.timestampLong, max_rate_per_hour: 100.0 });
    append_csv("quality.csv", [event.data.name, event.data.value, q.status, q.consumption, direct.status]);
}
"#;

#[tokio::test]
async fn the_quality_plugin_annotates_every_reading_of_a_running_server() {
    let lib = quality_plugin();
    let config = format!(
        r#"
[protocols.ai-on-the-edge]
api_keys = {{ "k" = "cabin" }}
[plugins.quality]
path = "{}"
handles = ["ai-on-the-edge/readings"]
options = {{ rollover = 1000.0 }}
"#,
        lib.display()
    );
    let app =
        spawn_with(Setup { config: &config, scripts: vec![("ai-on-the-edge.rhai", SCRIPT)], ..Setup::default() }).await;
    let hour = 3600;
    for (value, t) in [("990.5", 0), ("995.0", hour), ("2.0", 2 * hour), ("1.0", 3 * hour), ("500.0", 4 * hour)] {
        let (status, body) = post_ai(&app, ai_reading("main", value, 1_700_000_000 + t)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        app.lines("quality.csv"),
        vec![
            "main,990.5,first,,first",
            "main,995.0,ok,4.5,ok",
            // 995 → 2 wraps around 1000 (handler options); the direct call has no rollover.
            "main,2.0,rollover,7.0,negative",
            // 2 → 1 would be 999 units in one wrap: a misread, not a rollover.
            "main,1.0,negative,-1.0,negative",
            // The negative reading did not become the reference (498 since 2.0); without the
            // rollover the direct meter still compares with 995.
            "main,500.0,ok,498.0,negative",
        ]
    );
}

#[tokio::test]
async fn a_handler_plugin_error_fails_the_event_naming_the_plugin_and_the_server_stays_up() {
    let lib = quality_plugin();
    let config = format!(
        "[protocols.ai-on-the-edge]\napi_keys = {{ \"k\" = \"cabin\" }}\n[plugins.quality]\npath = \"{}\"\nhandles = [\"ai-on-the-edge/readings\"]\n",
        lib.display()
    );
    let app =
        spawn_with(Setup { config: &config, scripts: vec![("ai-on-the-edge.rhai", SCRIPT)], ..Setup::default() }).await;
    // (Another meter than the other test's: both load the same library, one memory.)
    let (status, body) = post_ai(&app, ai_reading("second", "12O.5", 1_700_000_000)).await;
    assert_eq!(status, 500, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply["message"], "processing failed: plugin quality failed at event 0 (see the server log)",
        "not a script error: {body}"
    );
    assert_eq!(journal_statuses(&app, ""), vec!["failed"]);
    let error = journal_errors(&app).remove(0);
    assert_eq!(error, r#"plugin quality failed: /data/value: "12O.5" is not a number"#);
    let (status, _) = post_ai(&app, ai_reading("second", "120.5", 1_700_000_000)).await;
    assert_eq!(status, 200);
    assert_eq!(app.lines("quality.csv"), vec!["second,120.5,first,,first"]);
}

/// The configuration block of README.md as written, with its plugin block (commented out
/// there, as the README's run command does not build the plugin) switched on and its path
/// pointing at the library built for the test.
fn readme_config(lib: &Path) -> String {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let (_, rest) = readme.split_once("## Configuration").expect("README has a Configuration section");
    let (_, rest) = rest.split_once("```toml\n").expect("the section has a toml block");
    let (block, _) = rest.split_once("```").unwrap();
    let plugin_path = r#"# path = "target/release/libhookyard_quality.so""#;
    assert!(block.contains(plugin_path), "{block}");
    let plugin_line = |l: &str| ["[plugins.quality]", "handles = ", "options = "].iter().any(|p| l.starts_with(p));
    let block = block.replace(plugin_path, &format!("path = \"{}\"", lib.display()));
    let lines = block.lines().map(|l| l.strip_prefix("# ").filter(|rest| plugin_line(rest)).unwrap_or(l));
    lines.collect::<Vec<_>>().join("\n")
}

/// The shipped script's image branch, and the quality verdict of each reading in a CSV.
const README_SCRIPT: &str = r#"
fn on_event(event) {
    let folder = `ai-on-the-edge/${event.source}`;
    if event.operation == "image" {
        if "plugins" in event { throw "the image was handed to a plugin"; }
        write_blob(`${folder}/${event.meta.timestamp}.jpg`);
        return;
    }
    let q = event.plugins.quality;
    append_csv(`${folder}/quality.csv`, [event.data.name, event.data.value, q.status, q.rate_per_hour]);
}
"#;

/// Sends `request` with the README's API key; (status, body).
async fn send(request: reqwest::RequestBuilder) -> (u16, String) {
    let res = request.header("APIKEY", "s3cr3tKey").send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn with_the_readme_configuration_readings_get_the_plugin_and_images_are_stored() {
    let config = readme_config(&quality_plugin());
    let app = spawn_with(Setup {
        config: &config,
        scripts: vec![("ai-on-the-edge.rhai", README_SCRIPT)],
        ..Setup::default()
    })
    .await;
    let url = app.url("/ai-on-the-edge/webhook");
    for (value, time) in [("100.0", 1_723_196_684), ("200.0", 1_723_196_684 + 3600)] {
        let body = ai_reading("readme-meter", value, time);
        let post = app.client.post(&url).header("Content-Type", "application/json").body(body);
        let (status, reply) = send(post).await;
        assert_eq!(status, 200, "{reply}");
    }
    let image: Vec<u8> =
        [0xFF, 0xD8, 0xFF, 0xE0].into_iter().chain((0..2000).map(|i| (i % 251) as u8)).chain([0xFF, 0xD9]).collect();
    let put =
        app.client.put(format!("{url}?timestamp=1723196684")).header("Content-Type", "image/jpeg").body(image.clone());
    let (status, reply) = send(put).await;
    assert_eq!(status, 200, "{reply}");
    // 100 units in an hour is above the README's max_rate_per_hour = 5.0.
    assert_eq!(
        app.lines("ai-on-the-edge/vacation-home/quality.csv"),
        vec!["readme-meter,100.0,first,", "readme-meter,200.0,spike,100.0"]
    );
    assert_eq!(std::fs::read(app.data().join("ai-on-the-edge/vacation-home/1723196684.jpg")).unwrap(), image);
}

/// Runs `hookyard check` in a directory whose hookyard.toml is `config`; (exit code, output).
fn check_with(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hookyard.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .arg("check")
        .current_dir(dir.path())
        .env("HOOKYARD_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn check_refuses_handles_that_name_no_operation_and_a_bare_protocol() {
    let lib = quality_plugin();
    let config = format!(
        "[plugins.quality]\npath = \"{}\"\nhandles = [\"ai-on-the-edge/nope\", \"wattmon\", \"ai-on-the-edge/readings\"]\n",
        lib.display()
    );
    let (code, out) = check_with(&config);
    assert_eq!(code, Some(1), "{out}");
    let errors: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("error: ")).collect();
    assert_eq!(
        errors,
        vec![
            r#"[plugins.quality] handles = ["ai-on-the-edge/nope"]: ai-on-the-edge has no operation "nope" (its operations: image, readings)"#,
            r#"[plugins.quality] handles = ["wattmon"]: name the operations to handle as "<protocol>/<operationId>": "wattmon/export", or "wattmon/*" for all of them"#,
        ],
        "{out}"
    );
    assert!(out.contains("2 problem(s) found"), "{out}");
    let fixed = config.replace("\"ai-on-the-edge/nope\", \"wattmon\"", "\"wattmon/*\"");
    let (code, out) = check_with(&fixed);
    assert_eq!(code, Some(0), "{out}");
}

/// Compiles C source into a shared library (a library that is not a valid plugin).
fn c_library(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(format!("lib{name}.so"));
    let status = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&out).arg(&src).status().expect("cc runs");
    assert!(status.success());
    out
}

fn build_errors(plugins: &[(&str, &Path)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for (name, path) in plugins {
        toml.push_str(&format!("[plugins.{name}]\npath = \"{}\"\n", path.display()));
    }
    let mut config = hookyard::Config::from_toml(&toml, |_| None).unwrap();
    config.data_dir = dir.path().join("data");
    match hookyard::App::build(config) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

#[test]
fn wrong_abi_versions_missing_symbols_and_missing_files_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let old = c_library(dir.path(), "old", "unsigned hookyard_plugin_abi_version(void) { return 999; }\n");
    let partial = c_library(dir.path(), "partial", "unsigned hookyard_plugin_abi_version(void) { return 1; }\n");
    let unrelated = c_library(dir.path(), "unrelated", "int answer(void) { return 42; }\n");
    let missing = dir.path().join("nowhere.so");
    let errors = build_errors(&[("old", &old), ("partial", &partial), ("unrelated", &unrelated), ("gone", &missing)]);
    let expect = [
        format!("plugin gone ({}): no such file", missing.display()),
        format!(
            "plugin old ({}): plugin ABI version 999, this server speaks version 1; rebuild the plugin against hookyard-plugin-api 1",
            old.display()
        ),
        format!("plugin partial ({}): missing symbol hookyard_plugin_name", partial.display()),
        format!(
            "plugin unrelated ({}): not a hookyard plugin: missing symbol hookyard_plugin_abi_version",
            unrelated.display()
        ),
    ];
    for e in &expect {
        assert!(errors.iter().any(|got| got.starts_with(e.as_str())), "expected {e:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), 4, "{errors:#?}");
}
