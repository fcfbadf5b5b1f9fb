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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{REPO, ai_reading};

/// The attack tests take turns: each loads both cores on its own.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// Sends `head` then `body_len` bytes from one shared buffer; the reply's status line.
async fn upload(addr: SocketAddr, head: String, body_len: usize, chunk: Bytes) -> Option<String> {
    let mut s = connect_from(ATTACKER, addr).await.ok()?;
    s.write_all(head.as_bytes()).await.ok()?;
    let mut sent = 0;
    while sent < body_len {
        let n = chunk.len().min(body_len - sent);
        if s.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        sent += n;
    }
    let mut reply = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut reply)).await.ok()?.ok()?;
    String::from_utf8_lossy(&reply[..n]).lines().next().map(str::to_owned)
}

/// 400 concurrent uploads of `head` + `body_len` bytes; the server's peak RSS and the replies.
async fn flood(server: &Server, head: &str, body_len: usize) -> (f64, Vec<String>) {
    let (addr, head) = (server.addr, head.to_owned());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _attack = Attack::start(move || async move {
        let chunk = Bytes::from(vec![b'0'; 64 * 1024]);
        let tasks: Vec<_> =
            (0..400).map(|_| tokio::task::spawn_local(upload(addr, head.clone(), body_len, chunk.clone()))).collect();
        let mut replies = Vec::new();
        for t in tasks {
            replies.extend(t.await.ok().flatten());
        }
        let _ = tx.send(replies);
        std::future::pending::<()>().await;
    });
    let mut peak: f64 = 0.0;
    let mut rx = std::pin::pin!(rx);
    loop {
        peak = peak.max(server.rss_mib());
        tokio::select! {
            replies = &mut rx => return (peak, replies.unwrap()),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

const MEMORY_SERVER: &str = "max_connections_per_client = 1000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_uploads_with_a_wrong_api_key_do_not_grow_memory() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(MEMORY_SERVER);
    let baseline = server.rss_mib();
    let head = "PUT /ai-on-the-edge/webhook?timestamp=1 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n\
                APIKEY: wrong\r\nContent-Length: 2097152\r\n\r\n";
    let (peak, replies) = flood(&server, head, 2 * 1024 * 1024).await;
    eprintln!("400 x 2 MiB PUT, wrong APIKEY: RSS {baseline:.1} MiB before, {peak:.1} MiB at most");
    assert!(peak < baseline + 64.0, "RSS went from {baseline:.1} to {peak:.1} MiB");
    assert!(replies.iter().all(|r| r == "HTTP/1.1 403 Forbidden"), "{replies:?}");
    assert!(!replies.is_empty(), "no reply at all");
    assert!(!server.data().join("ai-on-the-edge").exists(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_bodies_with_a_wrong_signature_stay_within_the_budget() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(MEMORY_SERVER);
    let baseline = server.rss_mib();
    // gridX's limit is 1 MiB: each body is that large, and needs reading for its signature.
    let sig = format!("sha512={}", "ab".repeat(64));
    let head =
        format!("POST /gridx/events HTTP/1.1\r\nHost: x\r\nX-Signature: {sig}\r\nContent-Length: 1048576\r\n\r\n");
    let (peak, replies) = flood(&server, &head, 1024 * 1024).await;
    eprintln!("400 x 1 MiB gridX POST, wrong signature: RSS {baseline:.1} MiB before, {peak:.1} MiB at most");
    assert!(peak < baseline + 64.0, "RSS went from {baseline:.1} to {peak:.1} MiB");
    let allowed = ["HTTP/1.1 401 Unauthorized", "HTTP/1.1 503 Service Unavailable"];
    assert!(replies.iter().all(|r| allowed.contains(&r.as_str())), "{replies:?}");
    assert!(replies.iter().any(|r| r == allowed[0]), "some are read and refused: {replies:?}");
    let log = server.log();
    assert!(log.contains("client=127.0.0.2"), "refusals name the client: {log}");
}

/// Holds `n` connections from the attacker, each sending `opening` once connected; returns
/// when all have been tried, keeping them open until the attack is dropped.
fn hold(addr: SocketAddr, n: usize, opening: &'static [u8]) -> (Attack, tokio::sync::oneshot::Receiver<usize>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let attack = Attack::start(move || async move {
        let mut held = Vec::new();
        for _ in 0..n {
            if let Ok(mut s) = connect_from(ATTACKER, addr).await {
                let _ = s.write_all(opening).await;
                held.push(s);
            }
        }
        let _ = tx.send(held.len());
        std::future::pending::<()>().await;
    });
    (attack, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_from_one_address_leave_room_for_others() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("");
    let (_attack, opened) = hold(server.addr, 2000, b"");
    assert_eq!(opened.await.unwrap(), 2000, "the attacker's connections were all tried");
    let mut times = Vec::new();
    for _ in 0..3 {
        times.push(honest(server.addr).await);
    }
    assert_answered_within_a_second("2,000 idle connections", &times);
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("connection refused")
            && l.contains("client=127.0.0.2")
            && l.contains("too many connections from this address")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_hundred_slowloris_connections_reconnecting_leave_room_for_others() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("header_timeout_ms = 4000");
    let addr = server.addr;
    // Each drips a header line a second and reconnects a second after it is cut.
    let drip = |addr| async move {
        loop {
            if let Ok(mut s) = connect_from(ATTACKER, addr).await {
                let mut ok = s.write_all(b"POST /ai-on-the-edge/webhook HTTP/1.1\r\nHost: x\r\n").await.is_ok();
                while ok {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    ok = s.write_all(b"X-Slow: 1\r\n").await.is_ok();
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let _attack = Attack::start(move || async move {
        for _ in 0..1200 {
            tokio::task::spawn_local(drip(addr));
        }
        std::future::pending::<()>().await;
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Probes before, across and after the first cut of the dripping heads (4 s).
    let mut times = Vec::new();
    for _ in 0..4 {
        times.push(honest(server.addr).await);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_answered_within_a_second("1,200 slowloris connections", &times);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_with_408_and_leave_room_for_others() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("");
    let addr = server.addr;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _attack = Attack::start(move || async move {
        let slow = |addr| async move {
            let mut s = connect_from(ATTACKER, addr).await.ok()?;
            let head =
                "POST /gridx/events HTTP/1.1\r\nHost: x\r\nX-Signature: sha512=00\r\nContent-Length: 1000\r\n\r\n";
            s.write_all(head.as_bytes()).await.ok()?;
            let started = Instant::now();
            let mut reply = vec![0u8; 512];
            loop {
                // One byte every 2 s, until the server answers.
                tokio::select! {
                    n = s.read(&mut reply) => {
                        let n = n.ok()?;
                        let status = String::from_utf8_lossy(&reply[..n]).lines().next()?.to_owned();
                        return Some((status, started.elapsed()));
                    }
                    _ = tokio::time::sleep(Duration::from_secs(2)) => { let _ = s.write_all(b"{").await; }
                }
            }
        };
        let tasks: Vec<_> = (0..200).map(|_| tokio::task::spawn_local(slow(addr))).collect();
        let mut cut = Vec::new();
        for t in tasks {
            cut.extend(t.await.ok().flatten());
        }
        let _ = tx.send(cut);
        std::future::pending::<()>().await;
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut times = Vec::new();
    for _ in 0..3 {
        times.push(honest(server.addr).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_answered_within_a_second("slow bodies", &times);
    let cut = tokio::time::timeout(Duration::from_secs(20), rx).await.expect("slow bodies are cut").unwrap();
    eprintln!("slow bodies: {} answered, first {:?}", cut.len(), cut.first());
    assert!(!cut.is_empty(), "the slow bodies got an answer");
    for (status, after) in &cut {
        assert_eq!(status, "HTTP/1.1 408 Request Timeout");
        assert!(*after < Duration::from_secs(10), "cut after {after:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_is_refused_by_default() {
    let server = Server::start("");
    let refused = match h2_client(server.addr).await {
        Err(_) => true,
        Ok(mut client) => h2_get(&mut client, server.addr, "/healthz").await.is_err(),
    };
    assert!(refused, "h2c was served");
    assert!(server.healthy(), "HTTP/1.1 still is");
    let log = server.log();
    assert!(log.contains("HTTP/2 is off") && log.contains("client=127.0.0.1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_http2_connection_is_not_cut() {
    let server = Server::start("http2 = true\nheader_timeout_ms = 2000");
    let mut client = h2_client(server.addr).await.expect("h2c handshake");
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(15) {
        let status = h2_get(&mut client, server.addr, "/healthz").await;
        assert_eq!(status.ok(), Some(200), "request {answered} after {:?}", started.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(answered >= 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http2_connection_with_many_refused_uploads_does_not_grow_memory() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("http2 = true");
    let baseline = server.rss_mib();
    let mut client = h2_client(server.addr).await.expect("h2c handshake");
    // One answer first: the client has the server's settings (its stream limit) from then on,
    // and queues the streams over it instead of having them refused.
    assert_eq!(h2_get(&mut client, server.addr, "/healthz").await.ok(), Some(200));
    let body = Bytes::from(vec![b'0'; 2 * 1024 * 1024]);
    let addr = server.addr;
    let uploads = (0..150).map(|_| {
        let (client, body) = (client.clone(), body.clone());
        tokio::spawn(async move {
            let request = poem::http::Request::put(format!("http://{addr}/ai-on-the-edge/webhook?timestamp=1"))
                .header("APIKEY", "wrong")
                .header("Content-Type", "image/jpeg")
                .body(())
                .unwrap();
            let mut ready = client.ready().await.ok()?;
            let (response, mut stream) = ready.send_request(request, false).ok()?;
            let _ = stream.send_data(body, true);
            Some(response.await.ok()?.status().as_u16())
        })
    });
    let uploads: Vec<_> = uploads.collect();
    let mut peak: f64 = baseline;
    let mut statuses = Vec::new();
    for u in uploads {
        peak = peak.max(server.rss_mib());
        statuses.extend(u.await.unwrap());
    }
    peak = peak.max(server.rss_mib());
    eprintln!("one h2 connection, 150 x 2 MiB PUT, wrong APIKEY: RSS {baseline:.1} MiB before, {peak:.1} MiB at most");
    assert!(peak < baseline + 64.0, "RSS went from {baseline:.1} to {peak:.1} MiB");
    assert_eq!(statuses.len(), 150, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 403), "{statuses:?}");
}
