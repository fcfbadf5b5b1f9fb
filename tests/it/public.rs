//! On the public internet: an attacker without credentials, on 127.0.0.2, cannot exhaust the
//! server's memory or connections for an honest client on 127.0.0.1.
//!
//! Each test runs `hookyard serve` as a child process (its RSS is read from `/proc`, its log
//! from its stderr) and the attacker in a runtime of its own thread, so the test's own work
//! does not blur either. The attack tests take turns (one lock), as they load the machine.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{REPO, ai_reading};

mod connections;
mod memory;

/// The attack tests take turns: each loads both cores on its own.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PROTOCOLS: &str = "[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n\
                         [protocols.gridx]\nsecrets = [\"whsec_test\"]\n";

/// `hookyard serve` on 127.0.0.1 with `server` as its `[server]` table; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(server: &str) -> Self {
        raise_open_files();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nspec_dir = \"{REPO}/spec\"\n\
             scripts_dir = \"{REPO}/scripts\"\n[server]\n{server}\n{PROTOCOLS}"
        );
        std::fs::write(dir.path().join("hookyard.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
            .arg("serve")
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), dir };
        let started = Instant::now();
        while !server.healthy() {
            assert!(started.elapsed() < Duration::from_secs(30), "server did not start: {}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(self.addr) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200")
    }

    /// The server's resident memory, in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib / 1024.0
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Many connections need many descriptors: the soft limit is raised to the hard one.
fn raise_open_files() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(soft >= 4096, "at least 4096 open files are needed (soft limit {soft}; raise the hard limit)");
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

/// An attack running on a thread of its own until dropped.
struct Attack {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attack {
    fn start<F: Future<Output = ()> + 'static>(attack: impl FnOnce() -> F + Send + 'static) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                tokio::select! {
                    _ = attack() => {}
                    _ = stopped => {}
                }
            });
        });
        Self { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long the honest client on 127.0.0.1 waits for a valid AI-on-the-edge POST and for
/// `/healthz` (each on a new connection, as the device does); 5 s when unanswered.
async fn honest(addr: SocketAddr) -> (Duration, Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap();
    let started = Instant::now();
    let post = client
        .post(format!("http://{addr}/ai-on-the-edge/webhook"))
        .header("Content-Type", "application/json")
        .header("APIKEY", "k")
        .body(ai_reading("water", "1.5", 1_700_000_000_000))
        .send()
        .await;
    let post_took = match post {
        Ok(r) if r.status() == 200 => started.elapsed(),
        _ => Duration::from_secs(5),
    };
    let started = Instant::now();
    let health = client.get(format!("http://{addr}/healthz")).send().await;
    let health_took = match health {
        Ok(r) if r.status() == 200 => started.elapsed(),
        _ => Duration::from_secs(5),
    };
    (post_took, health_took)
}

fn assert_answered_within_a_second(attack: &str, times: &[(Duration, Duration)]) {
    eprintln!("{attack}: honest POST, /healthz: {times:?}");
    for (post, health) in times {
        assert!(*post < Duration::from_secs(1), "{attack}: the honest POST took {post:?}");
        assert!(*health < Duration::from_secs(1), "{attack}: /healthz took {health:?}");
    }
}

/// An HTTP/2 connection by prior knowledge (h2c) from 127.0.0.1.
async fn h2_client(addr: SocketAddr) -> Result<h2::client::SendRequest<Bytes>, h2::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn h2_get(client: &mut h2::client::SendRequest<Bytes>, addr: SocketAddr, path: &str) -> Result<u16, h2::Error> {
    let request = poem::http::Request::get(format!("http://{addr}{path}")).body(()).unwrap();
    let mut ready = client.clone().ready().await?;
    let (response, _) = ready.send_request(request, true)?;
    *client = ready;
    Ok(response.await?.status().as_u16())
}
