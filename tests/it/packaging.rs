//! What a user installs and first runs: the config file `hookyard init` writes and the package
//! installs (every default shown, cannot drift from the code), the Debian package's parts and
//! its hardened unit, the container build file, `hookyard init` and `hookyard healthcheck`
//! through the real binary, and the README's configuration and curl examples against a real
//! server.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hookyard::Config;
use hookyard::spec::embedded;

use crate::helpers::{REPO, fixture, read_fixture};

const BIN: &str = env!("CARGO_BIN_EXE_hookyard");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every setting of a config that a user can set in the file, printed.
fn settings(c: &Config) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        c.listen,
        c.data_dir,
        c.spec_dir,
        c.scripts_dir,
        c.reload_interval,
        c.script_limits,
        c.server_limits,
        c.admin,
        c.journal,
        c.protocols,
        c.plugins,
        c.outputs
    )
}

/// The text with every shown default (`#key = value`, no space after `#`) uncommented.
fn uncommented(text: &str) -> String {
    let shown = |l: &str| l.starts_with('#') && l[1..].starts_with(|c: char| c.is_ascii_lowercase());
    text.lines().map(|l| if shown(l) { &l[1..] } else { l }).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_config_file_init_writes_shows_every_default_and_each_is_the_codes_default() {
    let as_written = Config::from_toml(embedded::CONFIG, |_| None).expect("the config file loads");
    let every_default = Config::from_toml(&uncommented(embedded::CONFIG), |_| None).expect("uncommented, it loads");
    let defaults = settings(&Config::defaults());
    assert_eq!(settings(&as_written), defaults);
    assert_eq!(settings(&every_default), defaults, "a `#key = value` line is not the code's default");
    let keys = [
        "listen",
        "data_dir",
        "spec_dir",
        "scripts_dir",
        "reload_interval_ms",
        "max_connections",
        "header_timeout_ms",
        "body_timeout_ms",
        "idle_timeout_ms",
        "max_age_days",
        "prune_interval_ms",
        "readings_retention_days",
        "max_size_mb",
        "rejected_max_rows",
        "rejected_retention_days",
        "postgres_url",
        "instance",
        "url",
        "sqlite_file",
        "timeout_ms",
        "retries",
        "token",
        "max_operations",
        "max_call_levels",
        "max_string_size",
        "max_array_size",
        "max_map_size",
        "host",
        "port",
        "client_id",
        "discovery_prefix",
        "wal_restart_mb",
    ];
    let missing: Vec<_> =
        keys.iter().filter(|k| !embedded::CONFIG.lines().any(|l| l.contains(&format!("{k} = ")))).collect();
    assert!(missing.is_empty(), "settings not shown in src/defaults/hookyard.toml: {missing:?}");
}

/// The packaged config's lines that differ from what `hookyard init` writes.
const SYSTEM_PATHS: [(&str, &str); 3] = [
    (
        "data_dir",
        r#"data_dir = "/var/lib/hookyard"       # the package's state directory (the unit's StateDirectory=)"#,
    ),
    ("spec_dir", r#"spec_dir = "/etc/hookyard/spec"       # the specs to edit"#),
    (
        "scripts_dir",
        r#"scripts_dir = "/etc/hookyard/scripts" # the scripts to edit; the server picks a change up live"#,
    ),
];

#[test]
fn the_packaged_config_is_the_init_config_with_the_system_paths() {
    let expected: Vec<String> = embedded::CONFIG
        .lines()
        .map(|line| match SYSTEM_PATHS.iter().find(|(k, _)| line.starts_with(&format!("#{k} = "))) {
            Some((_, system)) => system.to_string(),
            None => line.to_owned(),
        })
        .collect();
    let packaged = read("packaging/hookyard.toml");
    let drifted: Vec<String> = packaged
        .lines()
        .zip(&expected)
        .enumerate()
        .filter(|(_, (got, want))| got != want)
        .map(|(n, (got, want))| format!("line {}: {got:?}, expected {want:?}", n + 1))
        .collect();
    assert!(
        drifted.is_empty(),
        "packaging/hookyard.toml drifted from src/defaults/hookyard.toml:\n{}",
        drifted.join("\n")
    );
    assert_eq!(packaged.lines().count(), expected.len(), "packaging/hookyard.toml drifted in length");
    let config = Config::from_toml(&packaged, |_| None).expect("the packaged config loads");
    assert_eq!(config.data_dir, Path::new("/var/lib/hookyard"));
    assert_eq!(config.scripts_dir.as_deref(), Some(Path::new("/etc/hookyard/scripts")));
}

/// `[package.metadata.deb]` of Cargo.toml.
fn deb_metadata() -> toml::Table {
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    cargo["package"]["metadata"]["deb"].as_table().unwrap().clone()
}

#[test]
fn the_package_installs_the_binary_the_config_and_what_a_user_edits_where_the_unit_looks() {
    let deb = deb_metadata();
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_str().unwrap().to_owned(), a[1].as_str().unwrap().to_owned()))
        .collect();
    for (from, to) in [
        ("target/release/hookyard", "usr/bin/"),
        ("packaging/hookyard.toml", "etc/hookyard/hookyard.toml"),
        ("spec/*.yaml", "etc/hookyard/spec/"),
        ("scripts/*.rhai", "etc/hookyard/scripts/"),
    ] {
        assert!(assets.contains(&(from.into(), to.into())), "no asset {from} -> {to}: {assets:?}");
    }
    let unit = read("packaging/hookyard.service");
    let set = |key: &str| unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).collect::<Vec<_>>();
    assert_eq!(set("ExecStart"), ["/usr/bin/hookyard serve --config /etc/hookyard/hookyard.toml"]);
    assert_eq!(set("ExecStartPre"), ["/usr/bin/hookyard check --config /etc/hookyard/hookyard.toml"]);
    assert_eq!(set("User"), ["hookyard"]);
    assert_eq!(set("StateDirectory"), ["hookyard"], "data_dir of the packaged config is /var/lib/hookyard");
    assert_eq!(set("ProtectSystem"), ["strict"]);
    assert_eq!(set("NoNewPrivileges"), ["yes"]);
    assert_eq!(set("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(set("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
    assert!(set("SystemCallFilter").contains(&"@system-service"), "{unit}");
    let postinst = read("packaging/debian/postinst");
    assert!(postinst.contains("adduser --system --group --home /var/lib/hookyard"), "{postinst}");
    assert!(postinst.contains("#DEBHELPER#"), "the unit's enable/start lines go there");
}

#[test]
fn the_unit_is_rated_at_most_2_0_by_systemd_analyze_security() {
    let unit = Path::new(REPO).join("packaging/hookyard.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd, installed by tools/services.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for hookyard.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in: {text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");
}

#[test]
fn the_containerfile_builds_a_static_binary_and_runs_it_unprivileged_with_a_healthcheck() {
    let file = read("packaging/Containerfile");
    let lines: Vec<&str> = file.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let froms: Vec<&str> = lines.iter().filter(|l| l.starts_with("FROM ")).copied().collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    assert_eq!(froms[1], "FROM scratch", "the static binary needs no base image");
    assert!(file.contains("--target x86_64-unknown-linux-musl") && file.contains("--profile dist"), "{file}");
    for line in lines.iter().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(Path::new(REPO).join(source).exists(), "COPY of {source}, not in the repository");
        }
    }
    let built = "/src/target/x86_64-unknown-linux-musl/dist/hookyard";
    assert!(lines.iter().any(|l| l.starts_with("COPY --from=build") && l.contains(built)), "{file}");
    let user = lines.iter().find_map(|l| l.strip_prefix("USER ")).expect("a USER line");
    assert!(!["0", "root", "0:0"].contains(&user), "runs as {user}");
    let health = lines.iter().find(|l| l.starts_with("HEALTHCHECK ")).expect("a HEALTHCHECK");
    assert!(
        health.contains(r#"["/usr/bin/hookyard", "healthcheck", "--config", "/etc/hookyard/hookyard.toml"]"#),
        "{health}"
    );
}

fn run(dir: &Path, args: &[&str], port: u16) -> Output {
    Command::new(BIN).args(args).current_dir(dir).env("HOOKYARD_LISTEN", format!("127.0.0.1:{port}")).output().unwrap()
}

fn serve(dir: &Path, port: u16) -> Child {
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env("HOOKYARD_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if !wait_for(30, || run(dir, &["healthcheck"], port).status.success()) {
        child.kill().unwrap();
        panic!("the server in {} did not come up", dir.display());
    }
    child
}

fn wait_for(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn init_writes_a_working_directory_whose_scripts_the_server_uses_live_and_never_overwrites() {
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("site");
    let out = run(root.path(), &["init", "site"], 0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(site.join("hookyard.toml")).unwrap(), embedded::CONFIG);
    for name in ["ai-on-the-edge", "gridx", "wattmon", "wattsense"] {
        assert_eq!(
            std::fs::read(site.join(format!("spec/{name}.yaml"))).unwrap(),
            read(&format!("spec/{name}.yaml")).as_bytes()
        );
        assert_eq!(
            std::fs::read(site.join(format!("scripts/{name}.rhai"))).unwrap(),
            read(&format!("scripts/{name}.rhai")).as_bytes()
        );
    }

    std::fs::write(site.join("scripts/gridx.rhai"), "// mine\n").unwrap();
    let again = run(root.path(), &["init", "site"], 0);
    let told = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{told}");
    assert!(told.contains("not overwriting existing files") && told.contains("site/hookyard.toml"), "{told}");
    assert_eq!(std::fs::read_to_string(site.join("scripts/gridx.rhai")).unwrap(), "// mine\n");
    std::fs::write(site.join("scripts/gridx.rhai"), embedded::SCRIPTS[1].1).unwrap();

    let port = free_port();
    let mut server = serve(&site, port);
    assert!(site.join("data/credentials.toml").exists(), "data lands in the working directory");
    std::fs::write(site.join("scripts/wattmon.rhai"), "fn on_event(event) {").unwrap();
    let degraded = wait_for(10, || {
        let out = run(&site, &["healthcheck"], port);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(r#""status":"degraded""#)
    });
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(degraded, "an edited script of the working directory is picked up live");
    let down = run(&site, &["healthcheck"], port);
    assert_eq!(down.status.code(), Some(1));
    let told = String::from_utf8_lossy(&down.stderr);
    assert!(told.contains(&format!("unhealthy: cannot reach hookyard at 127.0.0.1:{port}")), "{told}");
}

/// The first fenced block of `language` after the heading `heading` in README.md.
fn readme_block(heading: &str, language: &str) -> String {
    let readme = read("README.md");
    let section = readme.split_once(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("no {heading}")).1;
    let start = section.split_once(&format!("```{language}\n")).unwrap_or_else(|| panic!("no {language} block")).1;
    start.split_once("\n```").unwrap().0.to_owned()
}

#[test]
fn the_readmes_configuration_starts_a_server_and_its_curl_examples_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hookyard.toml"), readme_block("## Configuration", "toml")).unwrap();
    let port = free_port();
    let mut server = serve(dir.path(), port);
    let examples =
        readme_block("## One request per protocol", "sh").replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let wrapper = "curl() { command curl -sS -w '\\n%{http_code}\\n' \"$@\"; }\n";
    let out = Command::new("bash").arg("-c").arg(format!("{wrapper}{examples}")).current_dir(REPO).output().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let replies: Vec<&str> = text.lines().collect();
    assert_eq!(replies.len(), 2 * examples.matches("curl ").count(), "one reply and status per curl: {text}");
    for pair in replies.chunks(2) {
        assert!(pair[1].starts_with('2') && !pair[0].to_lowercase().contains("error"), "not accepted: {pair:?}");
    }
    let data = dir.path().join("data");
    let image = data.join("ai-on-the-edge/vacation-home/1723196684.jpg");
    assert_eq!(std::fs::read(&image).unwrap(), read_fixture("ai-on-the-edge/meter.jpg"), "{}", fixture("").display());
    for file in ["ai-on-the-edge/vacation-home/webhook_log.csv", "gridx/events.jsonl", "wattsense/values.jsonl"] {
        assert!(data.join(file).exists(), "{file} not written");
    }
}
