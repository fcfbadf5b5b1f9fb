//! Native plugins: the quality-checker plugin built with cargo, loaded into a running server
//! (as an event handler and through `plugin()` in a script); bad libraries refused at start.

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
        reply["message"],
        "processing failed: plugin quality failed at event 0 (see the server log)",
        "not a script error: {body}"
    );
    assert_eq!(journal_statuses(&app, ""), vec!["failed"]);
    let error = journal_errors(&app).remove(0);
    assert_eq!(error, r#"plugin quality failed: /data/value: "12O.5" is not a number"#);
    let (status, _) = post_ai(&app, ai_reading("second", "120.5", 1_700_000_000)).await;
    assert_eq!(status, 200);
    assert_eq!(app.lines("quality.csv"), vec!["second,120.5,first,,first"]);
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
