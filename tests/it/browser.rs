//! A headless Chromium for the console's tests: `chromedriver` (Debian `chromium-driver`, at
//! `/usr/bin/chromedriver`) started on a free port, one WebDriver session in Chromium
//! (`--headless=new --no-sandbox`), and the few steps the tests take: go, click, read, wait
//! for a condition, screenshot. One browser runs at a time (the tests take turns), so a
//! loaded machine is not asked for several Chromiums at once. Dropped, it ends the session
//! and stops the driver.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a condition may take to become true.
const PATIENCE: Duration = Duration::from_secs(30);

/// Whose turn it is to run a browser.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Browser {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    client: Option<Client>,
    driver: Child,
    port: u16,
    session: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn capabilities(extra: &[&str]) -> serde_json::Map<String, Value> {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--window-size=1100,860",
        "--force-device-scale-factor=1",
    ];
    args.extend_from_slice(extra);
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    caps.as_object().unwrap().clone()
}

/// Where the screenshots go: `<target dir>/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Starts chromedriver and a Chromium session in it.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The same, with more Chromium switches (`--force-dark-mode`, say).
    pub async fn start_with(extra: &[&str]) -> Self {
        let turn = TURN.lock().await;
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian package chromium-driver; tools/services.sh installs it)");
        let started = Instant::now();
        let client = loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(capabilities(extra)).connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) if started.elapsed() > PATIENCE => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let session = client.session_id().await.unwrap().unwrap_or_default();
        Self { _turn: turn, client: Some(client), driver, port, session }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub async fn goto(&self, url: &str) {
        self.c().goto(url).await.unwrap();
    }

    pub async fn url(&self) -> String {
        self.c().current_url().await.unwrap().to_string()
    }

    pub async fn click(&self, css: &str) {
        self.c().find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.c().find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).send_keys(text).await.unwrap();
    }

    /// Drags the mouse with its left button down across the element `css` at half its
    /// height, from `from` to `to` (fractions of its width).
    pub async fn drag(&self, css: &str, from: f64, to: f64) {
        use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
        let element = self.c().find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        let (_, _, width, _) = element.rectangle().await.unwrap();
        let at = |f: f64| PointerAction::MoveToElement {
            element: element.clone(),
            duration: Some(Duration::from_millis(100)),
            x: width * (f - 0.5),
            y: 0.0,
        };
        let mouse = MouseActions::new("mouse".into())
            .then(at(from))
            .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
            .then(at(to))
            .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
        self.c().perform_actions(mouse).await.unwrap();
    }

    /// Resizes the window (a phone's width, say).
    pub async fn resize(&self, width: u32, height: u32) {
        self.c().set_window_size(width, height).await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.c().find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub async fn js(&self, script: &str) -> Value {
        self.c().execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until the JavaScript expression `condition` is true in the page.
    pub async fn until(&self, condition: &str) {
        let started = Instant::now();
        let script = format!("try {{ return !!({condition}); }} catch (e) {{ return false; }}");
        while started.elapsed() < PATIENCE {
            if self.c().execute(&script, vec![]).await.is_ok_and(|v| v == json!(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shown = self.js("return document.body.innerText").await;
        panic!("never true: {condition}\npage {}:\n{}", self.url().await, shown.as_str().unwrap_or_default());
    }

    /// Fills in the log-in form the browser was sent to, and waits for the page it came for.
    pub async fn log_in(&self, token: &str) {
        self.until("location.pathname === '/console/login' && document.querySelector('#token') !== null").await;
        self.c().find(Locator::Css("#token")).await.unwrap().send_keys(token).await.unwrap();
        self.click("#login-button").await;
        self.until("location.pathname !== '/console/login' && document.querySelector('#main h1') !== null").await;
    }

    /// The `hookyard_session` cookie's value, as the browser keeps it.
    pub async fn session_cookie(&self) -> Option<String> {
        let cookies = self.c().get_all_cookies().await.unwrap();
        cookies.iter().find(|c| c.name() == "hookyard_session").map(|c| c.value().to_owned())
    }

    /// Saves a screenshot of the page as `<name>.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.c().screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    /// Saves a screenshot of the page `height` pixels tall (the whole of a long page).
    pub async fn tall_shot(&self, name: &str, height: u32) {
        self.resize(1100, height).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.shot(name).await;
        self.resize(1100, 860).await;
    }

    /// The page errors the browser logged (script errors, refused by the Content-Security-Policy),
    /// leaving out failed loads (a 401 before log-in is one).
    pub async fn page_errors(&self) -> Vec<String> {
        let (port, session) = (self.port, self.session.clone());
        let answer = tokio::task::spawn_blocking(move || {
            driver_call(port, "POST", &format!("/session/{session}/se/log"), r#"{"type":"browser"}"#)
        });
        let answer: Value = serde_json::from_str(&answer.await.unwrap()).expect("the browser log as JSON");
        let entries = answer["value"].as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .filter(|m| !m.contains("Failed to load resource"))
            .collect()
    }

    /// Checks that no page logged an error, ends the session (Chromium quits) and stops the
    /// driver.
    pub async fn close(mut self) {
        let errors = self.page_errors().await;
        assert!(errors.is_empty(), "the pages logged errors: {errors:#?}");
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

/// One plain HTTP call to chromedriver; the body of its answer.
fn driver_call(port: u16, method: &str, path: &str, body: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed midway still ends its Chromium: the session is deleted over
        // plain HTTP before the driver stops.
        if self.client.take().is_some() {
            driver_call(self.port, "DELETE", &format!("/session/{}", self.session), "");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
