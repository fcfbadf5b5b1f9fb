//! Connections: idle, slowloris and slow-body connections from one address leave room for
//! others; HTTP/2 is refused unless switched on, and then not cut while active.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ATTACKER, Attack, Server, TURN, assert_answered_within_a_second, connect_from, h2_client, h2_get, honest};

/// Opens `n` connections from the attacker at once and holds them until the attack is
/// dropped; reports how many connected once all have settled (or after 5 s).
fn hold(addr: SocketAddr, n: usize) -> (Attack, tokio::sync::oneshot::Receiver<usize>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let attack = Attack::start(move || async move {
        let (settled, mut report) = tokio::sync::mpsc::unbounded_channel::<bool>();
        for _ in 0..n {
            let settled = settled.clone();
            tokio::task::spawn_local(async move {
                let held = connect_from(ATTACKER, addr).await;
                let _ = settled.send(held.is_ok());
                std::future::pending::<()>().await;
                drop(held);
            });
        }
        let until = Instant::now() + Duration::from_secs(5);
        let mut connected = 0;
        for _ in 0..n {
            match tokio::time::timeout_at(until.into(), report.recv()).await {
                Ok(Some(ok)) => connected += usize::from(ok),
                _ => break,
            }
        }
        let _ = tx.send(connected);
        std::future::pending::<()>().await;
    });
    (attack, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_from_one_address_leave_room_for_others() {
    let _turn = TURN.lock().await;
    let server = Server::start("");
    let (_attack, opened) = hold(server.addr, 2000);
    let opened = opened.await.unwrap();
    eprintln!("2,000 idle connections: {opened} connected");
    assert!(opened >= 1000, "the attacker's connections are open ({opened})");
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
    let _turn = TURN.lock().await;
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
    let _turn = TURN.lock().await;
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

#[tokio::test]
async fn refusals_name_the_client_and_forwarded_for_counts_only_from_a_trusted_proxy() {
    let server = Server::start("trusted_proxies = [\"127.0.0.1\"]\nheader_timeout_ms = 500");
    let wrong_key = "POST /ai-on-the-edge/webhook HTTP/1.1\r\nHost: x\r\nAPIKEY: wrong\r\n\
                     X-Forwarded-For: 203.0.113.9\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]";
    for from in [[127, 0, 0, 1], ATTACKER] {
        let mut s = connect_from(from, server.addr).await.unwrap();
        s.write_all(wrong_key.as_bytes()).await.unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply).await;
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    }
    // A head that never ends is cut and logged too.
    let mut slow = connect_from(ATTACKER, server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
    let log = server.log();
    let rejected: Vec<&str> = log.lines().filter(|l| l.contains("request rejected")).collect();
    assert_eq!(rejected.len(), 2, "{log}");
    assert!(rejected[0].contains("client=203.0.113.9"), "through the trusted proxy: {}", rejected[0]);
    assert!(rejected[1].contains("client=127.0.0.2") && !rejected[1].contains("203.0.113.9"), "{}", rejected[1]);
    assert!(
        log.lines().any(|l| l.contains("connection refused")
            && l.contains("client=127.0.0.2")
            && l.contains("request head too slow")),
        "{log}"
    );
}

#[test]
fn a_trusted_proxy_that_is_not_an_address_is_refused_with_its_line() {
    let err = hookyard::Config::from_toml("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", |_| None).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("line 2: [server] trusted_proxies"), "{shown}");
    assert!(shown.contains("\"10.0.0.0/33\" is not an address or a range like 10.0.0.0/8"), "{shown}");
}

/// A burst of new clients while every slot is taken waits in the kernel's backlog and is
/// served once a slot frees. With the standard library's backlog of 128 the connects beyond
/// it had their SYNs dropped and completed only at the client's retry, a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_clients_beyond_the_open_slots_waits_in_the_backlog_and_is_served() {
    const CLIENTS: usize = 600;
    let _turn = TURN.lock().await;
    let server = Server::start("max_connections = 1");
    let addr = server.addr;
    let holder = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let connects: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let stream = tokio::net::TcpStream::connect(addr).await;
                (stream, started.elapsed())
            })
        })
        .collect();
    let mut streams = Vec::new();
    let mut slowest = Duration::ZERO;
    for c in connects {
        let (stream, took) = c.await.unwrap();
        let mut stream = stream.expect("the connect is answered");
        slowest = slowest.max(took);
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        streams.push(stream);
    }
    assert!(slowest < Duration::from_millis(900), "{CLIENTS} connects in a burst: the slowest took {slowest:?}");
    drop(holder);
    let replies: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut reply = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut reply)).await;
                read.is_ok() && reply.starts_with(b"HTTP/1.1 200")
            })
        })
        .collect();
    let mut served = 0;
    for r in replies {
        served += usize::from(r.await.unwrap());
    }
    assert_eq!(served, CLIENTS, "every client waiting in the backlog got its 200");
}
