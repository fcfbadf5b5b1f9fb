//! Memory: uploads without a valid credential, over HTTP/1.1 and on one HTTP/2 connection,
//! do not grow the server's resident memory beyond a bound.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ATTACKER, Attack, Server, TURN, connect_from, h2_client, h2_get};

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

// Every upload reaches the credential check (no per-client cap, no lockout: after ten wrong
// keys the lockout would refuse the rest before the check, which holds no body either).
const MEMORY_SERVER: &str = "max_connections_per_client = 1000\nmax_failed_attempts = 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_uploads_with_a_wrong_api_key_do_not_grow_memory() {
    let _turn = TURN.lock().await;
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
    let _turn = TURN.lock().await;
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
    let count = |status: &str| replies.iter().filter(|r| *r == status).count();
    eprintln!("gridX replies: {} x 401, {} x 503, {} in all", count(allowed[0]), count(allowed[1]), replies.len());
    assert!(replies.iter().all(|r| allowed.contains(&r.as_str())), "{replies:?}");
    assert!(replies.iter().any(|r| r == allowed[0]), "some are read and refused: {replies:?}");
    let log = server.log();
    assert!(log.contains("client=127.0.0.2"), "refusals name the client: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http2_connection_with_many_refused_uploads_does_not_grow_memory() {
    let _turn = TURN.lock().await;
    let server = Server::start("http2 = true\nmax_failed_attempts = 0");
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

#[tokio::test]
async fn a_wrong_key_is_refused_before_any_100_continue() {
    let server = Server::start("");
    for (key, first) in [("wrong", "HTTP/1.1 403 Forbidden"), ("k", "HTTP/1.1 100 Continue")] {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "PUT /ai-on-the-edge/webhook?timestamp=1 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n\
             APIKEY: {key}\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut reply = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut reply)).await.expect("an answer").unwrap();
        let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
        assert!(reply.starts_with(first), "APIKEY {key}: {reply}");
    }
}
