//! The meter series: readings declared by `x-hookyard-readings` in the shipped specs, sent
//! through the real routes, read back from `/api/series` — names, points, consumption per
//! day, CSV, the last image — and a spec whose readings block is malformed refused.

use serde_json::{Value, json};

use crate::helpers::{TestApp, fixture_json, fixture_text, read_fixture, spawn_app};

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n\
    [protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"ferienhaus\" }\n\
    [protocols.wattmon]\ntoken = \"w4ttm0n\"\n\
    [protocols.wattsense]\nauth = { type = \"none\" }\n";

/// 2026-11-29T00:00:00Z in Unix seconds.
const DAY_A: i64 = 1_795_910_400;
const DAY_B: i64 = DAY_A + 86_400;
const HOUR: i64 = 3600;
const RATE: &str = "Rate too high - Read: 346.4270 - Pre: 101.25 - Rate: 1.0006";

async fn admin(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).bearer_auth("adm1n").send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// One AI-on-the-edge round of meter `name`: a value, or an error round (empty value).
async fn round(app: &TestApp, name: &str, at: i64, value: &str, error: &str) {
    let body = json!([{ "timestamp": "", "timestampLong": at.to_string(), "name": name, "rawValue": value,
        "value": value, "preValue": "", "rate": "", "changeAbsolute": "", "error": error }]);
    let res = app.client.post(app.url("/ai-on-the-edge/webhook")).header("APIKEY", "k").json(&body).send().await;
    assert_eq!(res.unwrap().status(), 200);
}

/// The series named `name` of `/api/series`.
async fn series(app: &TestApp, name: &str) -> Value {
    let (status, all) = admin(app, "/api/series").await;
    assert_eq!(status, 200, "{all}");
    let found = all.as_array().unwrap().iter().find(|s| s["name"] == name).cloned();
    found.unwrap_or_else(|| panic!("no series {name:?} in {all}"))
}

async fn ai_on_the_edge_rounds(app: &TestApp) {
    round(app, "main", DAY_A, "100.5", "no error").await;
    round(app, "main", DAY_A + HOUR, "101.25", "no error").await;
    // An error round: the device repeats the time of its last valid reading.
    round(app, "main", DAY_A + HOUR, "", RATE).await;
    round(app, "main", DAY_B, "102", "no error").await;
    // The meter was replaced: the counter starts again.
    round(app, "main", DAY_B + HOUR, "3.5", "no error").await;
    round(app, "main", DAY_B + 2 * HOUR, "4", "").await;
    round(app, "main", DAY_B + 2 * HOUR, "", "Neg. Rate - Read:  - Raw: 0003.9000 - Pre: 4 ").await;
}

#[tokio::test]
async fn ai_on_the_edge_rounds_make_a_counter_with_points_days_csv_and_the_last_image() {
    let app = spawn_app(CONFIG).await;
    ai_on_the_edge_rounds(&app).await;
    let image = read_fixture("ai-on-the-edge/meter.jpg");
    let res = app
        .client
        .put(app.url(&format!("/ai-on-the-edge/webhook?timestamp={}", DAY_B + 2 * HOUR)))
        .header("APIKEY", "k")
        .header("Content-Type", "image/jpeg")
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let main = series(&app, "ferienhaus / main").await;
    let id = main["id"].as_str().unwrap().to_owned();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        (&main["protocol"], &main["kind"], &main["last_value"], &main["count"], &main["has_image"]),
        (&json!("ai-on-the-edge"), &json!("counter"), &json!(4.0), &json!(7), &json!(true))
    );
    assert_eq!(
        (&main["status"], main["status_text"].as_str()),
        (&json!("error"), Some("Neg. Rate - Read:  - Raw: 0003.9000 - Pre: 4"))
    );
    assert_eq!(
        (main["last_ms"].as_i64(), main["last_at"].as_str()),
        (Some((DAY_B + 2 * HOUR) * 1000), Some("2026-11-30T02:00:00.000Z"))
    );
    assert_eq!(admin(&app, &format!("/api/series/{id}")).await.1["name"], "ferienhaus / main");

    let ms = |s: i64| s * 1000;
    let (status, points) = admin(&app, &format!("/api/series/{id}/points")).await;
    assert_eq!(status, 200);
    assert_eq!(
        points,
        json!({ "points": [[ms(DAY_A), 100.5], [ms(DAY_A + HOUR), 101.25], [ms(DAY_B), 102.0],
            [ms(DAY_B + HOUR), 3.5], [ms(DAY_B + 2 * HOUR), 4.0]], "downsampled": false, "total": 5 })
    );
    // Two points of five: the minimum and the maximum, in time order.
    let (_, few) = admin(&app, &format!("/api/series/{id}/points?max_points=2")).await;
    assert_eq!(
        few,
        json!({ "points": [[ms(DAY_B), 102.0], [ms(DAY_B + HOUR), 3.5]], "downsampled": true, "total": 5 })
    );
    let (_, day_b) =
        admin(&app, &format!("/api/series/{id}/points?since=2026-11-30T00:00:00Z&until={}", ms(DAY_B + HOUR))).await;
    assert_eq!(day_b["points"], json!([[ms(DAY_B), 102.0]]));

    let (status, daily) = admin(&app, &format!("/api/series/{id}/daily")).await;
    assert_eq!(status, 200, "{daily}");
    assert_eq!(
        daily,
        json!({ "days": [
            { "day": "2026-11-29", "consumption": 0.75, "readings": 2 },
            { "day": "2026-11-30", "consumption": 0.75 + 3.5 + 0.5, "readings": 3 },
        ] })
    );
    // A range counts its first day from the last good value before it.
    let (_, from_b) = admin(&app, &format!("/api/series/{id}/daily?since={}", ms(DAY_B))).await;
    assert_eq!(from_b["days"], json!([{ "day": "2026-11-30", "consumption": 4.75, "readings": 3 }]));

    let res = app.client.get(app.url(&format!("/api/series/{id}/csv"))).bearer_auth("adm1n").send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(res.headers()["content-disposition"], "attachment; filename=\"ferienhaus-main.csv\"");
    assert_eq!(
        res.text().await.unwrap(),
        format!(
            "time,value,unit,status\r\n2026-11-29T00:00:00.000Z,100.5,,ok\r\n2026-11-29T01:00:00.000Z,101.25,,ok\r\n\
             2026-11-29T01:00:00.000Z,,,{RATE}\r\n2026-11-30T00:00:00.000Z,102,,ok\r\n2026-11-30T01:00:00.000Z,3.5,,ok\r\n\
             2026-11-30T02:00:00.000Z,4,,ok\r\n2026-11-30T02:00:00.000Z,,,Neg. Rate - Read:  - Raw: 0003.9000 - Pre: 4\r\n"
        )
    );

    let res = app.client.get(app.url(&format!("/api/series/{id}/image"))).bearer_auth("adm1n").send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["content-type"].to_str().unwrap()), (200, "image/jpeg"));
    assert_eq!(res.bytes().await.unwrap().to_vec(), image, "the image as it was sent");
}

#[tokio::test]
async fn unknown_series_and_bad_ranges_are_refused_and_the_api_needs_the_token() {
    let app = spawn_app(CONFIG).await;
    round(&app, "main", DAY_A, "1", "no error").await;
    let id = series(&app, "ferienhaus / main").await["id"].as_str().unwrap().to_owned();
    assert_eq!(
        admin(&app, "/api/series/0000000000000000").await,
        (404, json!({ "message": "no series \"0000000000000000\"" }))
    );
    let (status, body) = admin(&app, &format!("/api/series/{id}/points?since=yesterday")).await;
    assert_eq!(status, 400);
    let text = body["message"].as_str().unwrap();
    assert!(text.contains("`since`") && text.contains("\"yesterday\" is neither RFC 3339"), "{body}");
    assert_eq!(
        admin(&app, &format!("/api/series/{id}/image")).await,
        (404, json!({ "message": "ferienhaus / main has no image" }))
    );
    let res = app.client.get(app.url("/api/series")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn each_numeric_wattmon_column_and_each_wattsense_property_is_a_series() {
    let app = spawn_app(CONFIG).await;
    assert_eq!(post_wattmon_block(&app, &fixture_text("wattmon/block.csv")).await, "OK");
    for file in ["value.json", "values.json"] {
        let body = fixture_json(&format!("wattsense/{file}"));
        let res = app.client.post(app.url("/wattsense/values")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }

    let (_, all) = admin(&app, "/api/series").await;
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["00-04-a3-12-34-56 / Current", "00-04-a3-12-34-56 / Voltage", "tower-42 / supply-air-temperature"]
    );
    let noon = 1_756_728_000_000i64;
    for (name, values) in [("00-04-a3-12-34-56 / Voltage", [52.1, 52.0]), ("00-04-a3-12-34-56 / Current", [3.4, 3.5])] {
        let s = series(&app, name).await;
        assert_eq!((&s["kind"], &s["unit"], &s["count"]), (&json!("gauge"), &Value::Null, &json!(2)));
        let (_, points) = admin(&app, &format!("/api/series/{}/points", s["id"].as_str().unwrap())).await;
        assert_eq!(points["points"], json!([[noon, values[0]], [noon + 60_000, values[1]]]), "{name}");
        let (status, daily) = admin(&app, &format!("/api/series/{}/daily", s["id"].as_str().unwrap())).await;
        assert_eq!(
            (status, daily["message"].as_str()),
            (400, Some(format!("{name} is a gauge: consumption per day is for counters").as_str()))
        );
    }
    let air = series(&app, "tower-42 / supply-air-temperature").await;
    assert_eq!((&air["unit"], &air["last_value"], &air["interval_s"]), (&json!("°C"), &json!(21.6), &json!(60.0)));
    let (_, points) = admin(&app, &format!("/api/series/{}/points", air["id"].as_str().unwrap())).await;
    assert_eq!(points["points"], json!([[noon, 21.5], [noon + 60_000, 21.6]]));
}

#[test]
fn a_spec_with_a_malformed_readings_block_is_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let spec_dir = dir.path().join("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let spec = "openapi: 3.0.3\ninfo: { title: acme, version: '1' }\nx-hookyard-reply: { style: text }\npaths:\n  \
                /acme/push:\n    post:\n      operationId: push\n      x-hookyard-events: { split: whole }\n      \
                x-hookyard-readings: { series: [/data/meter], value: data/value, kind: counter }\n";
    std::fs::write(spec_dir.join("acme.yaml"), spec).unwrap();
    let mut config = hookyard::Config::from_toml("", |_| None).unwrap();
    config.data_dir = dir.path().join("data");
    config.spec_dir = Some(spec_dir);
    let errors = hookyard::App::build(config).err().unwrap_or_default();
    assert_eq!(
        errors,
        [
            "spec/acme.yaml: POST /acme/push: x-hookyard-readings: `value`: \"data/value\" is not a JSON pointer (it must start with '/')"
        ]
    );
}

#[tokio::test]
async fn a_wattmon_block_timed_in_unix_seconds_makes_no_series_of_its_time_column() {
    let app = spawn_app(CONFIG).await;
    assert_eq!(post_wattmon_block(&app, "Epoch,Voltage\n1756728000,52.1\n1756728060,52.0\n").await, "OK");
    let (_, all) = admin(&app, "/api/series").await;
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["00-04-a3-12-34-56 / Voltage"], "the first column is the time, not a meter");
    let s = series(&app, "00-04-a3-12-34-56 / Voltage").await;
    let (_, points) = admin(&app, &format!("/api/series/{}/points", s["id"].as_str().unwrap())).await;
    let noon = 1_756_728_000_000i64;
    assert_eq!(points["points"], json!([[noon, 52.1], [noon + 60_000, 52.0]]));
}

/// Posts one Wattmon block of device 00:04:A3:12:34:56; the reply's body.
async fn post_wattmon_block(app: &TestApp, data: &str) -> String {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("key", "00:04:A3:12:34:56"), ("data", data)])
        .finish();
    let res = app
        .client
        .post(app.url("/wattmon/export?token=w4ttm0n"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    res.text().await.unwrap()
}
