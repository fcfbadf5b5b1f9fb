//! Several instances sharing one journal in PostgreSQL: every event processed exactly once
//! across them, whichever instance the sender reaches (and however often).

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::{Setup, TestApp, gridx_ping, journal_statuses, post_gridx, spawn_with};
use crate::outputs::{postgres, postgres_url, unique};

fn config(instance: &str) -> String {
    format!(
        "[protocols.gridx]\nsecrets = [\"whsec_scale\"]\n[journal]\npostgres_url = \"{}\"\ninstance = \"{instance}\"\n",
        postgres_url()
    )
}

/// POSTs until the instance acknowledges (the retryable replies are what a sender retries on).
async fn deliver(client: &reqwest::Client, app: &TestApp, body: String) -> u16 {
    for _ in 0..200 {
        match post_gridx(client, &app.url(""), "whsec_scale", body.clone()).await {
            Ok(204) => return 204,
            Ok(s) if s >= 500 => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("never acknowledged");
}

fn ids_in(app: &TestApp) -> Vec<String> {
    app.lines("gridx/events.jsonl")
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgresql_process_every_event_exactly_once() {
    let run = unique("scale");
    let a = spawn_with(Setup { config: &config(&format!("{run}-a")), ..Setup::default() }).await;
    let b = spawn_with(Setup { config: &config(&format!("{run}-b")), ..Setup::default() }).await;
    let client = reqwest::Client::new();
    // Event ids unique to this run (the database outlives test runs).
    let base = (std::process::id() as u64 % 90_000 + 10_000) * 10_000_000 + rand_offset();
    let n = 300u64;
    let mut sends = Vec::new();
    for i in 0..n {
        let body = gridx_ping(base + i, "hello");
        let (client, a_url, b_url) = (client.clone(), &a, &b);
        // Every event goes to both instances at once, as a retrying sender behind a load
        // balancer may do; both must acknowledge, one must process it.
        sends.push(async move {
            let (x, y) = tokio::join!(deliver(&client, a_url, body.clone()), deliver(&client, b_url, body));
            assert_eq!((x, y), (204, 204));
        });
    }
    futures_util::future::join_all(sends).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for id in ids_in(&a).into_iter().chain(ids_in(&b)) {
        *count.entry(id).or_default() += 1;
    }
    assert_eq!(count.len() as u64, n, "every event landed");
    let twice: Vec<_> = count.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    let (on_a, on_b) = (ids_in(&a).len(), ids_in(&b).len());
    assert!(on_a > 0 && on_b > 0, "both instances took part ({on_a} / {on_b})");
    // The local journals: each event processed on one instance, a duplicate on the other.
    let processed = |app: &TestApp| journal_statuses(app, "").iter().filter(|s| *s == "processed").count();
    assert_eq!(processed(&a) + processed(&b), n as usize);
    // The shared ledger holds every processed event once, with its instance.
    let mut pg = postgres().await;
    let (ia, ib) = (format!("{run}-a"), format!("{run}-b"));
    let ledger: Vec<(String, i64)> = tokio::task::spawn_blocking(move || {
        pg.query(
            "SELECT instance, count(*) FROM hookyard_journal_events WHERE instance IN ($1, $2) AND status = 'processed'
             GROUP BY instance ORDER BY instance",
            &[&ia, &ib],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    })
    .await
    .unwrap();
    assert_eq!(ledger, vec![(format!("{run}-a"), on_a as i64), (format!("{run}-b"), on_b as i64)]);
}

fn rand_offset() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 % 9_000_000
}

async fn replay_failed(app: &TestApp) -> serde_json::Value {
    let res = reqwest::Client::new()
        .post(app.url("/api/replay"))
        .bearer_auth("adm1n")
        .json(&serde_json::json!({ "failed": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_failed_event_is_replayed_from_another_instance_and_never_twice() {
    let run = unique("replay");
    let with_admin = |name: &str| format!("{}[admin]\ntoken = \"adm1n\"\n", config(&format!("{run}-{name}")));
    let broken = r#"fn on_event(event) { if event.data.data.message == "boom" { throw "refusing"; } append_json("gridx/events.jsonl", event.data); }"#;
    let a =
        spawn_with(Setup { config: &with_admin("a"), scripts: vec![("gridx.rhai", broken)], ..Setup::default() }).await;
    let b = spawn_with(Setup { config: &with_admin("b"), ..Setup::default() }).await;
    let id = (std::process::id() as u64 % 90_000 + 10_000) * 10_000_000 + rand_offset();
    let body = gridx_ping(id, "boom");
    let client = reqwest::Client::new();
    assert_eq!(post_gridx(&client, &a.url(""), "whsec_scale", body).await.unwrap(), 503);
    // Instance b replays what failed anywhere in the cluster: a's event is processed on b.
    let summary = replay_failed(&b).await;
    let ours: Vec<&serde_json::Value> = summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["instance"] == format!("{run}-a").as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{summary}");
    assert_eq!(ours[0]["outcome"], "processed", "{summary}");
    assert_eq!(ids_in(&b), vec![format!("00000000-0000-4000-8000-{id:012}")]);
    // Instance a's own replay of the same failed event is refused: b processed it.
    let summary = replay_failed(&a).await;
    let mine = &summary["results"].as_array().unwrap()[0];
    assert_eq!(mine["outcome"], "skipped", "{summary}");
    assert_eq!(mine["detail"], "another instance already processed it");
    assert!(ids_in(&a).is_empty());
    // And b's next replay does not pick it up again (the ledger row is superseded).
    let again = replay_failed(&b).await;
    assert!(
        !again["results"].as_array().unwrap().iter().any(|r| r["instance"] == format!("{run}-a").as_str()),
        "{again}"
    );
}

/// A stale claim whose local state cannot be read is left as it is: releasing it could let
/// another instance process a key this one processed.
#[test]
fn a_stale_claim_is_not_released_when_the_local_journal_cannot_be_read() {
    use hookyard::store::Shared;
    use hookyard::store::journal::JournalError;
    use hookyard::store::shared::SharedClaim;
    let run = unique("stale");
    let (a, b) = (format!("{run}-a"), format!("{run}-b"));
    let ours = Shared::open(&postgres_url(), &a).unwrap();
    let other = Shared::open(&postgres_url(), &b).unwrap();
    let key = format!("{run}-key");
    assert_eq!(ours.claim(std::slice::from_ref(&key)).unwrap(), [SharedClaim::New]);
    let unreadable = |_: &str| Err(JournalError::Stopped);
    assert!(ours.settle_stale(Duration::ZERO, unreadable).is_err());
    assert_eq!(other.claim(std::slice::from_ref(&key)).unwrap(), [SharedClaim::Claimed], "still held, not released");
    // Once the journal answers (it processed the key), the claim is settled as done.
    assert_eq!(ours.settle_stale(Duration::ZERO, |_| Ok(true)).unwrap(), (1, 0));
    assert_eq!(other.claim(std::slice::from_ref(&key)).unwrap(), [SharedClaim::Done]);
}
