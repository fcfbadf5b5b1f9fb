//! `spawn_app()`: a real hookyard on port 0 with its own data, spec and script directories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hookyard::{App, Config};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A file of `tests/fixtures/` (`<protocol>/<file>`), inside the repository.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures").join(rel)
}

/// The bytes of a fixture file.
pub fn read_fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// The text of a fixture file.
pub fn fixture_text(rel: &str) -> String {
    String::from_utf8(read_fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// A fixture file parsed as JSON.
pub fn fixture_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read_fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// A running server and its directories (removed when dropped).
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub root: TempDir,
    data_dir: PathBuf,
    shutdown: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn data(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn scripts(&self) -> PathBuf {
        self.root.path().join("scripts")
    }

    /// The text of a file in the data directory ("" when it does not exist).
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.data().join(rel)).unwrap_or_default()
    }

    /// GET `path` and parse the reply as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        res.json().await.unwrap()
    }

    pub fn lines(&self, rel: &str) -> Vec<String> {
        self.read(rel).lines().map(str::to_owned).collect()
    }

    /// Shuts the server down and waits until it has closed its journal and data directory.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.server.await.expect("server stops");
    }
}

/// Options for [`spawn_with`].
#[derive(Default)]
pub struct Setup<'a> {
    pub config: &'a str,
    /// Extra `(file name, text)` put in the spec directory beside the shipped specs.
    pub extra_specs: Vec<(&'a str, &'a str)>,
    /// `(file name, text)` replacing or adding scripts.
    pub scripts: Vec<(&'a str, &'a str)>,
    pub script_timeout_ms: Option<u64>,
    /// Where the data directory goes (default: inside the test's temporary directory).
    pub data_dir: Option<PathBuf>,
    /// The server's wall clock (default: the system's).
    pub clock: Option<hookyard::clock::Clock>,
}

pub async fn spawn_app(config: &str) -> TestApp {
    spawn_with(Setup { config, ..Setup::default() }).await
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Starts hookyard with `setup`, waiting until it answers.
pub async fn spawn_with(setup: Setup<'_>) -> TestApp {
    let root = tempfile::tempdir().unwrap();
    let (spec_dir, script_dir) = (root.path().join("spec"), root.path().join("scripts"));
    copy_dir(&Path::new(REPO).join("spec"), &spec_dir);
    copy_dir(&Path::new(REPO).join("scripts"), &script_dir);
    for (name, text) in &setup.extra_specs {
        std::fs::write(spec_dir.join(name), text).unwrap();
    }
    for (name, text) in &setup.scripts {
        std::fs::write(script_dir.join(name), text).unwrap();
    }
    let mut config = Config::from_toml(setup.config, |k| std::env::var(k).ok()).expect("test config");
    config.data_dir = setup.data_dir.clone().unwrap_or_else(|| root.path().join("data"));
    config.spec_dir = Some(spec_dir);
    config.scripts_dir = Some(script_dir);
    config.reload_interval = Duration::from_millis(100);
    if let Some(ms) = setup.script_timeout_ms {
        config.script_limits.timeout_ms = ms;
    }
    if let Some(clock) = &setup.clock {
        config.clock = clock.clone();
    }
    let app = App::build(config).unwrap_or_else(|e| panic!("app does not build: {e:#?}"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        hookyard::run(listener, app, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    // A new connection per request, as the devices do (and no pooled connection holds a slot).
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let data_dir = app_data_dir(&root, &setup);
    let app = TestApp { addr, client, root, data_dir, shutdown: tx, server };
    for _ in 0..100 {
        if app.client.get(app.url("/healthz")).send().await.is_ok() {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not come up");
}

fn app_data_dir(root: &TempDir, setup: &Setup<'_>) -> PathBuf {
    setup.data_dir.clone().unwrap_or_else(|| root.path().join("data"))
}

/// Sends raw bytes over a new TCP connection and returns the whole raw response.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
            });
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Every file path below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Waits up to `secs` for `check` to hold.
pub async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `hookyard serve` as a child process in `dir` (config written to `dir/hookyard.toml`,
/// scripts copied to `dir/scripts` so tests can edit them, data in `dir/data`).
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    pub fn start(dir: &Path, protocols: &str) -> Self {
        if !dir.join("scripts").exists() {
            copy_dir(&Path::new(REPO).join("scripts"), &dir.join("scripts"));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nspec_dir = \"{REPO}/spec\"\nscripts_dir = \"scripts\"\n{protocols}"
        );
        std::fs::write(dir.join("hookyard.toml"), config).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("serve")
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Serving starts after start-up recovery: wait for an HTTP answer, not just the port.
        let started = std::time::Instant::now();
        while !healthy(port) {
            assert!(started.elapsed() < Duration::from_secs(20), "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

/// The time this test process started, RFC 3339: fresh for gridX (`x-hookyard-freshness`)
/// and the same on every call, so a body built twice is the same bytes.
pub fn test_start_time() -> &'static str {
    static START: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    START.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        hookyard::event::rfc3339_millis(now.as_millis() as i64)
    })
}

/// A gridX event (JSON text) with its `time` set to [`test_start_time`].
pub fn fresh_gridx(event: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(event).unwrap();
    value["time"] = test_start_time().into();
    value.to_string()
}

/// A gridX `ping` event whose id ends in `n`.
pub fn gridx_ping(n: u64, message: &str) -> String {
    let time = test_start_time();
    format!(
        r#"{{"id":"00000000-0000-4000-8000-{n:012}","time":"{time}","specVersion":"1.0","source":"/s","type":"ping","data":{{"message":"{message}"}}}}"#
    )
}

/// `sha512=<hex>` of `body` under `secret`, as gridX signs.
pub fn gridx_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha512={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` signed with `secret` to `<base>/gridx/events`; the status.
pub async fn post_gridx(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    body: String,
) -> Result<u16, reqwest::Error> {
    let signature = gridx_signature(secret, body.as_bytes());
    let res = client.post(format!("{base}/gridx/events")).header("X-Signature", signature).body(body).send().await?;
    Ok(res.status().as_u16())
}

/// The `status` column of the journal's events (`clause`: e.g. `ORDER BY id`).
pub fn journal_statuses(app: &TestApp, clause: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    let mut stmt = conn.prepare(&format!("SELECT status FROM events {clause}")).unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// One AI-on-the-edge reading as the device sends it (every value a string).
pub fn ai_reading(name: &str, value: &str, time: u64) -> String {
    format!(
        r#"[{{"timestamp":"","timestampLong":"{time}","name":"{name}","rawValue":"{value}","value":"{value}","preValue":"","rate":"","changeAbsolute":"","error":"no error"}}]"#
    )
}

/// POSTs AI-on-the-edge readings with the API key `k`; (status, body).
pub async fn post_ai(app: &TestApp, body: String) -> (u16, String) {
    let res = app
        .client
        .post(app.url("/ai-on-the-edge/webhook"))
        .header("Content-Type", "application/json")
        .header("APIKEY", "k")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The `error` column of the journal's failed events, in order.
pub fn journal_errors(app: &TestApp) -> Vec<String> {
    let conn = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    let mut stmt = conn.prepare("SELECT error FROM events WHERE error IS NOT NULL ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}
