//! Config mistakes through the real binary: `hookyard check` and `hookyard serve` refuse
//! unknown keys and protocols, bad types and TOML syntax, naming the key, the line and the
//! closest known key; nothing is generated for a config that does not load.

use std::path::Path;
use std::process::Command;

use hookyard::Config;
use hookyard::spec::Registry;

use crate::helpers::REPO;

const BIN: &str = env!("CARGO_BIN_EXE_hookyard");

/// Runs `hookyard <command>` in a fresh directory holding `hookyard.toml` = `config`
/// (built-in specs and scripts); returns the exit code, stdout + stderr, and the directory.
fn run(command: &str, config: &str) -> (Option<i32>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hookyard.toml"), config).unwrap();
    let out = Command::new(BIN)
        .arg(command)
        .current_dir(dir.path())
        .env("HOOKYARD_LISTEN", "127.0.0.1:0")
        .env_remove("HOOKYARD_DATA_DIR")
        .env_remove("HOOKYARD_TEST_NEVER_SET")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text, dir)
}

#[test]
fn check_names_the_key_the_line_and_the_closest_key_of_each_mistake() {
    let cases = [
        (
            "listen = \"127.0.0.1:8080\"\n[protocols.gridx]\nsecret = [\"whsec_x\"]\n",
            "hookyard.toml line 3: [protocols.gridx] secret: unknown key (did you mean secrets?)",
        ),
        (
            "[protocols.ai-on-the-edge]\napi_key = { \"k\" = \"home\" }\n",
            "hookyard.toml line 2: [protocols.ai-on-the-edge] api_key: unknown key (did you mean api_keys?)",
        ),
        (
            "\n[protocols.gridex]\nsecrets = [\"whsec_x\"]\n",
            "hookyard.toml line 2: [protocols.gridex]: there is no protocol gridex (did you mean gridx?)",
        ),
        (
            "[protocols.wattsense]\nauth = { type = \"bearer\", tokn = \"t0ken\" }\n",
            "hookyard.toml line 2: [protocols.wattsense.auth] tokn: unknown key (did you mean token?)",
        ),
        (
            "[protocols.wattsense]\nauth = { type = \"bearr\", token = \"t0ken\" }\n",
            "hookyard.toml line 2: [protocols.wattsense.auth] type: \"bearr\" is not one of none, basic, bearer, header (did you mean bearer?)",
        ),
        (
            "[protocols.wattsense]\nauth = { type = \"basic\", username = \"u\" }\n",
            "hookyard.toml line 2: [protocols.wattsense] auth: password is missing",
        ),
        (
            "[protocols.wattsense]\nauth = { type = \"none\", token = \"t0ken\" }\n",
            "hookyard.toml line 2: [protocols.wattsense.auth] token: unknown key (none is read here)",
        ),
        (
            "[protocols.wattsense]\nintegrity = { header = \"X-Signature\", algorithm = \"sha256\", secret = \"s\" }\n",
            "hookyard.toml line 2: [protocols.wattsense.integrity] algorithm: \"sha256\" is not one of hmac-sha256, hmac-sha512 (did you mean hmac-sha256?)",
        ),
        (
            "[protocols.gridx]\nsecrets = []\n",
            "hookyard.toml line 2: [protocols.gridx] secrets: must hold at least one value",
        ),
        (
            "[protocols.wattmon]\nrequire_md5 = \"yes\"\n",
            "hookyard.toml line 2: [protocols.wattmon] require_md5: expected true or false, found a string",
        ),
        (
            "[server]\nheader_timeout_ms = 10000\nmax_connections = \"lots\"\n",
            "hookyard.toml line 3: [server] max_connections: expected a whole number (0 or more), found the string \"lots\"",
        ),
        (
            "[protocols.gridx]\nsecrets = [\"${HOOKYARD_TEST_NEVER_SET}\"]\n",
            "hookyard.toml line 2: [protocols.gridx] secrets[0]: environment variable HOOKYARD_TEST_NEVER_SET is referenced but not set",
        ),
        ("[server]\nmax_connections = 0\n", "hookyard.toml line 2: [server] max_connections: must be at least 1"),
        (
            "[journal]\nrejected_retention_days = -1\n",
            "hookyard.toml line 2: [journal] rejected_retention_days: must be 0 or more",
        ),
        ("[journal]\nrejected_rows = 5\n", "hookyard.toml line 2: [journal] rejected_rows: unknown key"),
        (
            "listen = \"127.0.0.1:8080\"\n[server\nmax_connections = 5\n",
            "hookyard.toml line 2, column 8: not valid TOML",
        ),
    ];
    for (config, expected) in cases {
        let (code, out, dir) = run("check", config);
        assert_eq!(code, Some(1), "{config}\n{out}");
        assert!(out.contains(expected), "{config}\nexpected: {expected}\ngot: {out}");
        assert!(!dir.path().join("data/credentials.toml").exists(), "{config}: credentials stored");
    }
}

#[test]
fn a_value_of_a_protocol_setting_is_refused_without_showing_it() {
    let (code, out, _dir) =
        run("check", "[protocols.wattsense]\nauth = { type = \"basic\", username = \"u\", password = 4711 }\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("hookyard.toml line 2: [protocols.wattsense.auth] password: expected a string, found a number"),
        "{out}"
    );
    assert!(!out.contains("4711"), "the value was printed: {out}");
}

#[test]
fn serve_with_a_typo_refuses_to_start_and_generates_nothing() {
    let (code, out, dir) = run("serve", "[protocols.gridx]\nsecret = [\"whsec_x\"]\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("hookyard.toml line 2: [protocols.gridx] secret: unknown key (did you mean secrets?)"),
        "{out}"
    );
    assert!(out.contains("not starting"), "{out}");
    assert!(!out.contains("generated credentials"), "{out}");
    assert!(!dir.path().join("data/credentials.toml").exists());
}

#[test]
fn serve_refuses_a_section_mistake_before_anything_else() {
    let (code, out, dir) = run("serve", "[server]\nmax_conections = 10\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("hookyard.toml line 2: [server] max_conections: unknown key (did you mean max_connections?)"),
        "{out}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was created: {out}");
}

/// The `toml` block of README's configuration section.
fn readme_config() -> String {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let section = &readme[readme.find("## Configuration").expect("a configuration section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    section[start..][..section[start..].find("```").unwrap()].to_owned()
}

#[test]
fn the_readme_configuration_example_loads_and_fits_the_specs() {
    let text = readme_config();
    let mut config = Config::from_toml(&text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server_limits.max_connections, 1024);
    let registry = Registry::load(Some(&Path::new(REPO).join("spec"))).unwrap();
    let problems = hookyard::auth::check_protocols(&mut config, &registry);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(config.protocols.len(), 4, "every protocol table is kept");
}
