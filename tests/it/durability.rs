//! Nothing acknowledged is lost: the journal, `kill -9`, SIGTERM and write failures.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{ServerProcess, Setup, TestApp, gridx_ping, journal_statuses, post_gridx, spawn_with};

const SECRET: &str = "whsec_durability";

async fn send(client: &reqwest::Client, base: &str, n: u64) -> Result<u16, reqwest::Error> {
    post_gridx(client, base, SECRET, gridx_ping(n, &format!("m{n}"))).await
}

/// `id → how many lines` of gridx/events.jsonl.
fn stored_ids(data: &std::path::Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(data.join("gridx/events.jsonl")).unwrap_or_default();
    let mut ids = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line {line:?}: {e}"));
        *ids.entry(v["id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    ids
}

/// Every effect's recorded place holds bytes with its recorded digest.
fn assert_effects_point_at_their_bytes(journal: &rusqlite::Connection, data: &std::path::Path) {
    let mut stmt = journal
        .prepare(
            "SELECT COALESCE((SELECT text FROM request_texts WHERE id = path_id), path), at, size, digest FROM effects",
        )
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    let mut checked = 0;
    for row in rows {
        let (path, at, size, digest): (String, i64, i64, Vec<u8>) = row.unwrap();
        let file = std::fs::read(data.join(&path)).unwrap();
        let bytes = &file[at as usize..(at + size) as usize];
        assert_eq!(&<sha2::Sha256 as sha2::Digest>::digest(bytes)[..16], &digest[..], "effect at {at} of {path}");
        checked += 1;
    }
    assert!(checked > 0);
}

fn id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn start(dir: &std::path::Path, journal: &str) -> ServerProcess {
    ServerProcess::start(dir, &format!("[protocols.gridx]\nsecrets = [\"{SECRET}\"]\n[journal]\n{journal}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_concurrent_load_loses_nothing_acknowledged_and_duplicates_nothing() {
    kill_9_under_load("").await;
}

/// With a WAL that restarts every 64 pages the checkpointer copies it into the database
/// all the time: the `kill -9` lands while it does (or between two copies a few
/// milliseconds apart), and the journal and the files come back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_the_wal_is_copied_into_the_database_loses_nothing_acknowledged() {
    kill_9_under_load("wal_restart_mb = 0.25\n").await;
}

async fn kill_9_under_load(journal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), journal);
    let client = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let sent = Arc::new(Mutex::new(HashSet::new()));
    let clients = 8u64;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, acked, sent) = (client.clone(), server.base.clone(), acked.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let n = c * 1_000_000 + i;
                sent.lock().unwrap().insert(n);
                match send(&client, &base, n).await {
                    Ok(204) => {
                        acked.lock().unwrap().insert(n);
                    }
                    Ok(other) => panic!("unexpected status {other}"),
                    Err(_) => break,
                }
            }
        }));
    }
    let started = Instant::now();
    // Past the first checkpoint (1 s), so recovery sees checkpointed and unchekpointed effects.
    while (acked.lock().unwrap().len() < 400 || started.elapsed() < Duration::from_millis(1300))
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: HashSet<u64> = acked.lock().unwrap().clone();
    let sent: HashSet<u64> = sent.lock().unwrap().clone();

    let mut server = start(dir.path(), journal);
    let ids = stored_ids(&dir.path().join("data"));
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "processed twice: {twice:?}");
    let lost: Vec<u64> = acked.iter().copied().filter(|n| !ids.contains_key(&id(*n))).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let journal = rusqlite::Connection::open(dir.path().join("data/.hookyard/journal.db")).unwrap();
    let check: String = journal.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let journaled: i64 =
        journal.query_row("SELECT COUNT(*) FROM events WHERE status = 'processed'", [], |r| r.get(0)).unwrap();
    assert_eq!(journaled as usize, ids.len(), "every processed event in the journal exactly once");
    // Redone at start-up or checkpointed before the crash, every effect's bytes have left the
    // journal, and its offset, size and digest point at exactly those bytes in the file.
    let waiting: i64 = journal.query_row("SELECT COUNT(*) FROM effect_bytes", [], |r| r.get(0)).unwrap();
    assert_eq!(waiting, 0, "effect bytes kept after their checkpoint");
    assert_effects_point_at_their_bytes(&journal, &dir.path().join("data"));

    // The platform retries everything it did not hear 2xx for: afterwards each sent event
    // is stored exactly once.
    for n in &sent {
        assert_eq!(send(&client, &server.base, *n).await.unwrap(), 204);
    }
    let ids = stored_ids(&dir.path().join("data"));
    assert_eq!(ids.len(), sent.len());
    assert!(ids.values().all(|n| *n == 1));
    eprintln!(
        "crash test: sent {}, acknowledged {}, found after restart {}, processed after retries {}, lost 0",
        sent.len(),
        acked.len(),
        journaled,
        ids.len()
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), "");
    let client = reqwest::Client::new();
    let mut in_flight = Vec::new();
    for n in 0..20 {
        let (client, base) = (client.clone(), server.base.clone());
        in_flight.push(tokio::spawn(async move { send(&client, &base, n).await }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "did not exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let ids = stored_ids(&dir.path().join("data"));
    for (n, task) in in_flight.into_iter().enumerate() {
        if let Ok(Ok(204)) = task.await {
            assert!(ids.contains_key(&id(n as u64)), "acknowledged {n} before shutdown but it is not stored");
        }
    }
}

fn ping_app_setup() -> Setup<'static> {
    Setup { config: "[protocols.gridx]\nsecrets = [\"whsec_durability\"]\n", ..Setup::default() }
}

async fn post(app: &TestApp, n: u64) -> u16 {
    send(&app.client, &format!("http://{}", app.addr), n).await.unwrap()
}

#[tokio::test]
async fn the_journal_keeps_the_raw_request_and_its_outcome_but_no_credentials() {
    let app = spawn_with(Setup {
        config: "[protocols.ai-on-the-edge]\napi_keys = { \"s3cr3tKey\" = \"home\" }\n",
        ..Setup::default()
    })
    .await;
    let body = crate::helpers::read_fixture("ai-on-the-edge/body_ok_two_numbers.json");
    let res = app
        .client
        .post(app.url("/ai-on-the-edge/webhook"))
        .header("APIKEY", "s3cr3tKey")
        .header("User-Agent", "ESP32 Meter reader")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let journal = rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap();
    let (source, headers, stored, packed): (String, String, Vec<u8>, i64) = journal
        .query_row(
            "SELECT source, COALESCE((SELECT t.text FROM request_shapes s JOIN request_texts t ON t.id = s.headers_id
                 WHERE s.id = shape_id), headers), body, packed
             FROM requests",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    // A body worth deflating is kept deflated; inflated, it is the received one byte for byte.
    assert!(packed != 0 && stored.len() < body.len(), "{packed}: {} of {} bytes", stored.len(), body.len());
    let raw = hookyard::store::journal::unpack_body(1, stored, packed).unwrap();
    assert_eq!((source.as_str(), raw), ("home", body));
    assert!(headers.contains("ESP32 Meter reader") && !headers.contains("s3cr3tKey"), "{headers}");
    assert_eq!(journal_statuses(&app, "ORDER BY idx"), ["processed", "processed"]);
}

#[tokio::test]
async fn a_write_failure_gets_a_retryable_reply_and_the_retry_after_the_fix_stores_once() {
    let app = spawn_with(ping_app_setup()).await;
    assert_eq!(post(&app, 1).await, 204);
    // Inject a write error: the output file becomes a directory.
    let file = app.data().join("gridx/events.jsonl");
    let kept = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    assert_eq!(post(&app, 2).await, 503);
    assert_eq!(post(&app, 2).await, 503, "still failing, still not acknowledged");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    std::fs::remove_dir(&file).unwrap();
    std::fs::write(&file, kept).unwrap();
    assert_eq!(post(&app, 2).await, 204);
    assert_eq!(post(&app, 2).await, 204);
    let ids = stored_ids(&app.data());
    assert_eq!(ids.keys().cloned().collect::<Vec<_>>(), [id(1), id(2)]);
    assert!(ids.values().all(|n| *n == 1));
    let statuses = journal_statuses(&app, "WHERE idem_key LIKE '%000000000002%' ORDER BY id");
    assert_eq!(statuses, ["superseded", "superseded", "processed", "duplicate"]);
}

/// A tiny tmpfs (a real file system that fills up), unmounted when dropped.
struct TinyDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(kib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(ok.success(), "this test mounts a tiny tmpfs and needs root");
        Self { path, _dir: dir }
    }

    /// Fills every free byte; returns the filler's path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..1]).is_ok() {}
        filler
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_gets_retryable_replies_and_the_retries_store_everything_once() {
    let disk = TinyDisk::mount(16 * 1024);
    // The free-disk floor would refuse everything on this tiny disk before it fills: this is
    // the test of what happens when a write finds the disk full.
    let config = "[protocols.gridx]\nsecrets = [\"whsec_durability\"]\n[journal]\nmin_free_disk_mb = 0\n";
    let mut setup = Setup { config, ..Setup::default() };
    setup.data_dir = Some(disk.path.join("data"));
    let app = spawn_with(setup).await;
    assert_eq!(post(&app, 1).await, 204);
    let filler = disk.fill();
    let mut refused = Vec::new();
    for n in 2..=30 {
        match post(&app, n).await {
            204 => {}
            503 => refused.push(n),
            other => panic!("event {n}: unexpected {other}"),
        }
    }
    assert!(!refused.is_empty(), "the full disk never refused anything");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    std::fs::remove_file(filler).unwrap();
    // The platform retries what it did not get 2xx for.
    for n in &refused {
        assert!(
            crate::helpers::eventually(5, async || post(&app, *n).await == 204).await,
            "event {n} after space came back"
        );
    }
    for n in 1..=30 {
        assert_eq!(post(&app, n).await, 204, "a resend is a duplicate");
    }
    let ids = stored_ids(&app.data());
    assert_eq!(ids.len(), 30, "{} refused while full: {refused:?}", refused.len());
    assert!(ids.values().all(|c| *c == 1), "{ids:?}");
    eprintln!("disk full: {} of 29 refused while full, all stored once afterwards", refused.len());
}
