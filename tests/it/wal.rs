//! The journal's write-ahead log under a sustained load: copied into the database on a
//! thread of its own, it starts again from its beginning and its file stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{ServerProcess, gridx_ping, post_gridx};

const SECRET: &str = "whsec_wal";
/// Requests acknowledged before the WAL is judged.
const REQUESTS: u64 = 8000;
const CLIENTS: u64 = 8;
/// What the WAL file may reach with `wal_restart_mb = 0.25`: under the checkpointer's last
/// resort (a TRUNCATE at 8 times that, 2 MiB), so only the writer's restarts keep it there.
const BOUND: u64 = 1024 * 1024;

/// Each client has one request in flight, so a commit holds at most `CLIENTS` requests and
/// writes at least one 4 KiB page: without restarts the WAL would grow past 4 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sustained_load_keeps_the_wal_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let protocols = format!("[protocols.gridx]\nsecrets = [\"{SECRET}\"]\n[journal]\nwal_restart_mb = 0.25\n");
    let server = ServerProcess::start(dir.path(), &protocols);
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (base, acked) = (server.base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = c * 1_000_000;
            while acked.load(Ordering::Relaxed) < REQUESTS {
                let status = post_gridx(&client, &base, SECRET, gridx_ping(n, "load")).await.unwrap();
                assert_eq!(status, 204);
                acked.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let wal = dir.path().join("data/.hookyard/journal.db-wal");
    let (started, mut largest) = (Instant::now(), 0);
    while acked.load(Ordering::Relaxed) < REQUESTS && started.elapsed() < Duration::from_secs(240) {
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(server.stop().success());
    let sent = acked.load(Ordering::Relaxed);
    assert!(sent >= REQUESTS, "only {sent} requests acknowledged in {:?}", started.elapsed());
    assert!(largest <= BOUND, "the wal file grew to {largest} bytes");
    let journal = rusqlite::Connection::open(dir.path().join("data/.hookyard/journal.db")).unwrap();
    let events: i64 = journal.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(events as u64, sent, "every acknowledged request is in the journal");
    let lines = std::fs::read_to_string(dir.path().join("data/gridx/events.jsonl")).unwrap().lines().count();
    assert_eq!(lines as u64, sent);
    eprintln!("wal test: {sent} requests, the wal file at most {largest} bytes");
}
