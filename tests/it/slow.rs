//! Slow clients are cut off without starving others; open connections are bounded.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app};

const LIMITS: &str = "[server]\nheader_timeout_ms = 1000\nbody_timeout_ms = 1200\nmax_connections = 4\nidle_timeout_ms = 600000\n\
                      [protocols.wattsense]\nauth = { type = \"none\" }\n";

async fn healthz_within(app: &TestApp, limit: Duration) -> bool {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(limit).build().unwrap();
    matches!(client.get(app.url("/healthz")).send().await, Ok(r) if r.status() == 200)
}

/// Reads until the peer closes or `limit` passes; returns what was read and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let until = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until.into(), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn a_header_dripped_byte_by_byte_is_cut_off_while_others_are_served() {
    let app = spawn_app(LIMITS).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /wattsense/values HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let drip = async {
        for _ in 0..40 {
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (_, served) = tokio::join!(drip, healthz_within(&app, Duration::from_secs(1)));
    assert!(served, "another client is served while the slow one drips");
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(3)).await;
    assert!(closed, "the slow head was not cut off");
    assert!(started.elapsed() < Duration::from_secs(5), "cut off after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_in_the_protocol_style() {
    let app = spawn_app(LIMITS).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let head =
        "POST /wattsense/values HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(b"{\"deviceId\":").await.unwrap();
    let started = Instant::now();
    let (reply, _) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.ends_with(r#"{"message":"the request body did not arrive in time","status":"error"}"#), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!app.data().join("wattsense").exists());
}

#[tokio::test]
async fn open_connections_are_bounded_and_a_freed_slot_is_reused() {
    let app = spawn_app(LIMITS).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the readiness probe's connection is gone
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        // One complete request each, then keep the connection open.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(s);
    }
    assert!(!healthz_within(&app, Duration::from_millis(500)).await, "a fifth connection must wait for a slot");
    drop(idle.pop());
    assert!(healthz_within(&app, Duration::from_secs(2)).await, "a freed slot is reused");
}
