//! The meter pages after what a journal went through: a replay after a script fix (one
//! event, or many) puts its readings on the page once, a journal from before the readings
//! index gets its pages in the background after start-up, and a series of many readings
//! read at the hour level gives the same consumption per day as its readings one by one.

use serde_json::{Value, json};

use crate::helpers::{Setup, TestApp, eventually, spawn_with};

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"ferienhaus\" }\n";

/// 2026-11-29T00:00:00Z in Unix seconds.
const DAY_A: i64 = 1_795_910_400;
const HOUR: i64 = 3600;

/// Fails on a reading of 102 (a bug), writes the CSV like the shipped script otherwise.
const BUGGY: &str = r#"
fn on_event(event) {
    if event.data.value == "102" { throw "a bug in the script"; }
    append_csv(`ai-on-the-edge/${event.source}/webhook_log.csv`, ["name", "value"], [event.data.name, event.data.value]);
}
"#;

async fn call(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth("adm1n");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = call(app, reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// AI-on-the-edge rounds `(unix seconds, value, error)` in one request; its status.
async fn rounds(app: &TestApp, rounds: &[(i64, String, &str)]) -> u16 {
    let body: Vec<Value> = rounds
        .iter()
        .map(|(at, value, error)| {
            json!({ "timestamp": "", "timestampLong": at.to_string(), "name": "main", "rawValue": value,
                "value": value, "preValue": "", "rate": "", "changeAbsolute": "", "error": error })
        })
        .collect();
    let res = app.client.post(app.url("/ai-on-the-edge/webhook")).header("APIKEY", "k").json(&body).send().await;
    res.unwrap().status().as_u16()
}

async fn one(app: &TestApp, at: i64, value: &str) -> u16 {
    rounds(app, &[(at, value.to_owned(), "no error")]).await
}

/// The `ferienhaus / main` series (none when there is none yet).
async fn main_series(app: &TestApp) -> Option<Value> {
    let all = get(app, "/api/series").await;
    all.as_array().unwrap().iter().find(|s| s["name"] == "ferienhaus / main").cloned()
}

async fn pages(app: &TestApp) -> (Value, Value, Value) {
    let main = main_series(app).await.expect("the series is listed");
    let id = main["id"].as_str().unwrap().to_owned();
    (main, get(app, &format!("/api/series/{id}/points")).await, get(app, &format!("/api/series/{id}/daily")).await)
}

fn journal(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(app.data().join(".hookyard/journal.db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_script_fix_puts_its_readings_on_the_meter_page_once() {
    let setup = Setup { config: CONFIG, scripts: vec![("ai-on-the-edge.rhai", BUGGY)], ..Setup::default() };
    let app = spawn_with(setup).await;
    assert_eq!(one(&app, DAY_A, "100.5").await, 200);
    assert_eq!(one(&app, DAY_A + HOUR, "101.25").await, 200);
    assert_ne!(one(&app, DAY_A + 2 * HOUR, "102").await, 200, "the script fails on it");
    assert_ne!(one(&app, DAY_A + 3 * HOUR, "102").await, 200);
    assert_eq!(one(&app, DAY_A + 4 * HOUR, "103").await, 200);
    let (main, points, _) = pages(&app).await;
    assert_eq!((&main["count"], &points["total"]), (&json!(3), &json!(3)), "failed events make no reading");

    // The script is fixed; the first failed event is replayed alone, then every event at once.
    let fixed = std::fs::read_to_string(format!("{}/scripts/ai-on-the-edge.rhai", crate::helpers::REPO)).unwrap();
    std::fs::write(app.scripts().join("ai-on-the-edge.rhai"), fixed).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let failed: i64 =
        journal(&app).query_row("SELECT MIN(id) FROM events WHERE status = 'failed'", [], |r| r.get(0)).unwrap();
    let (status, replayed) = call(&app, reqwest::Method::POST, &format!("/api/events/{failed}/replay"), None).await;
    assert_eq!((status, &replayed["outcome"]), (200, &json!("processed")), "{replayed}");
    let (main, points, daily) = pages(&app).await;
    assert_eq!(main["count"], 4);
    assert!(points["points"].as_array().unwrap().contains(&json!([(DAY_A + 2 * HOUR) * 1000, 102.0])), "{points}");
    assert_eq!(daily["days"], json!([{ "day": "2026-11-29", "consumption": 2.5, "readings": 4 }]));

    let (status, summary) = call(&app, reqwest::Method::POST, "/api/replay", Some(json!({}))).await;
    assert_eq!((status, &summary["processed"]), (200, &json!(5)), "{summary}");
    let (main, points, daily) = pages(&app).await;
    assert_eq!((&main["count"], &points["total"]), (&json!(5), &json!(5)), "each reading once: {points}");
    assert_eq!(
        points["points"],
        json!([
            [DAY_A * 1000, 100.5],
            [(DAY_A + HOUR) * 1000, 101.25],
            [(DAY_A + 2 * HOUR) * 1000, 102.0],
            [(DAY_A + 3 * HOUR) * 1000, 102.0],
            [(DAY_A + 4 * HOUR) * 1000, 103.0]
        ])
    );
    assert_eq!(daily["days"], json!([{ "day": "2026-11-29", "consumption": 2.5, "readings": 5 }]));
    assert_eq!((&main["last_value"], &main["last_ms"]), (&json!(103.0), &json!((DAY_A + 4 * HOUR) * 1000)));
}

/// Drops `tables` of the readings index from the stopped server's journal.
fn forget_index(data: &std::path::Path, tables: &[&str]) {
    let conn = rusqlite::Connection::open(data.join(".hookyard/journal.db")).unwrap();
    for table in tables {
        conn.execute_batch(&format!("DROP TABLE {table};")).unwrap();
    }
}

async fn ready(app: &TestApp) -> bool {
    eventually(30, async || get(app, "/api/journal").await["readings_index"]["state"] == "ready").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_before_the_readings_index_gets_its_meter_pages_after_start_up() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let setup = || Setup { config: CONFIG, data_dir: Some(data.clone()), ..Setup::default() };
    let app = spawn_with(setup()).await;
    // One reading per request, more requests than the backfill reads again at once.
    let sent: Vec<(i64, String, &str)> = (0..230).map(|i| (DAY_A + i * 300, format!("{}", 100 + i), "")).collect();
    for chunk in sent.chunks(1) {
        assert_eq!(rounds(&app, chunk).await, 200);
    }
    let before = pages(&app).await;
    assert_eq!(before.0["count"], 230);
    let extended = hour_rows(&app);
    app.stop().await;

    // As a journal of a version without the index: its events are there, no reading is.
    forget_index(&data, &["series", "readings", "readings_hours", "series_images", "readings_backfill"]);
    let app = spawn_with(setup()).await;
    assert!(ready(&app).await, "the backfill ends: {}", get(&app, "/api/journal").await);
    let journal_status = get(&app, "/api/journal").await;
    assert_eq!(journal_status["readings_index"]["readings_added"], 230, "{journal_status}");
    let after = pages(&app).await;
    assert_eq!((&after.1, &after.2), (&before.1, &before.2), "the same points and days");
    assert_eq!((&after.0["count"], &after.0["last_value"]), (&json!(230), &json!(329.0)));
    app.stop().await;

    // A journal whose readings were indexed, but not their hours: indexed again, counted once.
    forget_index(&data, &["readings_hours", "readings_backfill"]);
    let app = spawn_with(setup()).await;
    assert!(ready(&app).await);
    let again = pages(&app).await;
    assert_eq!((&again.0["count"], &again.1, &again.2), (&json!(230), &before.1, &before.2));
    let hours: i64 = journal(&app).query_row("SELECT COUNT(*) FROM readings_hours", [], |r| r.get(0)).unwrap();
    assert_eq!(hours, 230 * 300 / 3600 + 1, "every hour of the series");
    assert_eq!(hour_rows(&app), extended, "hours extended request by request are the hours computed at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_that_arrive_out_of_order_keep_the_hours_a_recount_gives() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let setup = || Setup { config: CONFIG, data_dir: Some(data.clone()), ..Setup::default() };
    let app = spawn_with(setup()).await;
    // Every 5 minutes for three hours, in quarters (exact sums), a reset at 20, error rounds.
    let sent: Vec<(i64, String, &str)> = (0..36)
        .map(|i| {
            let value = if i < 20 { 100.0 + 0.25 * (i * i % 7) as f64 + i as f64 } else { 0.5 * (i - 19) as f64 };
            let error = if i % 11 == 4 { "Rate too high" } else { "" };
            (DAY_A + i * 300, format!("{value}"), error)
        })
        .collect();
    // As racing connections deliver them: on time, a late run between older ones (spliced),
    // a late single reading, late readings around an older one (the hour counted again), and
    // the earliest of an hour last.
    let order: [&[usize]; 11] = [
        &[1, 2],
        &[8, 9, 10],
        &[3, 4, 5, 6, 7],
        &[12],
        &[11],
        &[14, 16],
        &[13, 15],
        &[24, 25, 26],
        &[20, 21],
        &[0],
        &[17, 18, 19, 22, 23, 27, 28, 29, 30, 31, 32, 33, 34, 35],
    ];
    for group in order {
        let chunk: Vec<_> = group.iter().map(|&i| sent[i].clone()).collect();
        assert_eq!(rounds(&app, &chunk).await, 200);
    }
    let kept = hour_rows(&app);
    let (main, _, daily) = pages(&app).await;
    assert_eq!(main["count"], 36);
    app.stop().await;

    forget_index(&data, &["readings_hours", "readings_backfill"]);
    let app = spawn_with(setup()).await;
    assert!(ready(&app).await);
    assert_eq!(hour_rows(&app), kept, "the hours kept as the readings came are the hours counted again");
    assert_eq!(pages(&app).await.2, daily);
}

/// Every hour of the index, as text.
fn hour_rows(app: &TestApp) -> String {
    journal(app)
        .query_row(
            "SELECT group_concat(concat_ws(',', hour, n, first_ms, first_v, min_ms, min_v, max_ms, max_v, last_ms, last_v,
                 good, good_first, good_last, used), ';') FROM (SELECT * FROM readings_hours ORDER BY hour)",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Consumption per day as the readings one by one say it (values in quarters: exact sums).
fn expected_days(sent: &[(i64, String, &str)], since: i64) -> Vec<Value> {
    let mut days: Vec<(i64, f64, u64)> = Vec::new();
    let mut previous: Option<f64> = None;
    for (at, value, _) in sent.iter().filter(|r| r.2.is_empty() && !r.1.is_empty()) {
        let value: f64 = value.parse().unwrap();
        let used = previous.map_or(0.0, |p| if value >= p { value - p } else { value });
        previous = Some(value);
        if *at < since {
            continue;
        }
        match days.last_mut() {
            Some(d) if d.0 == at.div_euclid(86_400) => {
                d.1 += used;
                d.2 += 1;
            }
            _ => days.push((at.div_euclid(86_400), used, 1)),
        }
    }
    days.into_iter().map(|(d, used, n)| json!({ "day": civil_day(d), "consumption": used, "readings": n })).collect()
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), civil-from-days.
fn civil_day(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let (d, m) = (doy - (153 * mp + 2) / 5 + 1, if mp < 10 { mp + 3 } else { mp - 9 });
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_series_read_at_the_hour_level_keeps_its_days_and_its_extremes() {
    let app = spawn_with(Setup { config: CONFIG, ..Setup::default() }).await;
    let (mut value, mut sent) = (1000.0_f64, Vec::new());
    for i in 0..12_000_i64 {
        let error = i % 500 == 499;
        value = if i == 6000 {
            5.0
        } else if error {
            value
        } else {
            value + 0.25 * (1 + i % 3) as f64
        };
        let shown = if error { String::new() } else { format!("{value}") };
        sent.push((DAY_A - 40 * 86_400 + i * 300, shown, if error { "Rate too high" } else { "" }));
    }
    sent[7777].1 = "99999".into();
    sent[7778].1 = "0".into();
    for chunk in sent.chunks(64) {
        assert_eq!(rounds(&app, chunk).await, 200);
    }
    let (main, points, daily) = pages(&app).await;
    assert_eq!(main["count"], 12_000);
    assert_eq!(daily["days"], json!(expected_days(&sent, i64::MIN)));
    let shown = points["points"].as_array().unwrap();
    assert_eq!((&points["downsampled"], &points["total"]), (&json!(true), &json!(12_000 - 24)));
    assert!(shown.len() <= 1000 && shown.len() > 400, "{}", shown.len());
    let spike = |at: i64, v: f64| shown.contains(&json!([at * 1000, v]));
    assert!(spike(sent[7777].0, 99999.0) && spike(sent[7778].0, 0.0), "the extremes survive");

    // A range that starts and ends inside hours: its edges are read one by one.
    let id = main["id"].as_str().unwrap();
    let since = sent[1001].0 + 17;
    let until = sent[9001].0 + 17;
    let part = get(&app, &format!("/api/series/{id}/daily?since={}&until={}", since * 1000, until * 1000)).await;
    let within: Vec<_> = sent.iter().filter(|r| r.0 < until).cloned().collect();
    assert_eq!(part["days"], json!(expected_days(&within, since)));
    let part = get(&app, &format!("/api/series/{id}/points?since={}&until={}", since * 1000, until * 1000)).await;
    let values_in = within.iter().filter(|r| r.0 >= since && !r.1.is_empty()).count();
    assert_eq!(part["total"], values_in, "{}", part["total"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_journal_with_its_events_data_stored_gets_its_meter_page() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join(".hookyard")).unwrap();
    let conn = rusqlite::Connection::open(data.join(".hookyard/journal.db")).unwrap();
    conn.execute_batch(crate::journal_read_back::VERSION_2).unwrap();
    for (i, value) in ["100.5", "101.25", "", "102"].iter().enumerate() {
        let at = DAY_A + i as i64 * HOUR;
        let error = if value.is_empty() { "Rate too high" } else { "no error" };
        let reading = json!({ "timestamp": "", "timestampLong": at.to_string(), "name": "main", "rawValue": value,
            "value": value, "preValue": "", "rate": "", "changeAbsolute": "", "error": error });
        let event = json!({ "protocol": "ai-on-the-edge", "operation": "readings", "source": "ferienhaus",
            "received_at": "2026-11-29T00:00:00.000Z", "received_ms": at * 1000, "index": 0, "data": reading, "meta": {} });
        conn.execute(
            "INSERT INTO requests VALUES (?1, 'ai-on-the-edge', 'readings', 'ferienhaus', ?2, '[]', 'passed: API key', ?3, '')",
            rusqlite::params![i as i64 + 1, at * 1000, format!("[{reading}]").as_bytes()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO events VALUES (?1, ?1, 0, NULL, ?2, 0, 'processed', NULL, NULL, NULL)",
            rusqlite::params![i as i64 + 1, event.to_string()],
        )
        .unwrap();
    }
    drop(conn);
    let app = spawn_with(Setup { config: CONFIG, data_dir: Some(data), ..Setup::default() }).await;
    assert!(ready(&app).await, "{}", get(&app, "/api/journal").await);
    let (main, points, daily) = pages(&app).await;
    assert_eq!((&main["count"], &main["last_value"], &points["total"]), (&json!(4), &json!(102.0), &json!(3)));
    assert_eq!(daily["days"], json!([{ "day": "2026-11-29", "consumption": 1.5, "readings": 3 }]));
}
