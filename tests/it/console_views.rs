//! The console's views in a real headless Chromium, beyond the page tour of `console.rs`:
//! the meter plot's range buttons and drag-to-zoom change the shown range, and the
//! inspector's JSON, form and CSV tabs show the decoded body. Screenshots go to
//! `target/console-screenshots/`.

use crate::browser::Browser;
use crate::helpers::{Setup, TestApp, fixture_text, gridx_ping, post_gridx, spawn_with};

const CONFIG: &str = "[admin]\ntoken = \"adm1n\"\n[protocols.ai-on-the-edge]\napi_keys = { \"k\" = \"home\" }\n\
                      [protocols.gridx]\nsecrets = [\"s\"]\n[protocols.wattmon]\ntoken = \"w4ttm0n\"\n";

async fn spawn() -> TestApp {
    spawn_with(Setup { config: CONFIG, ..Setup::default() }).await
}

/// The readings count of the plot's note (`12 of 12 readings …`).
const SHOWN: &str = "parseInt(document.querySelector('#plot-note').textContent)";

#[tokio::test]
async fn the_meter_plots_range_buttons_and_drag_to_zoom_change_the_shown_range() {
    let app = spawn().await;
    crate::console::seed_three_days(&app).await;
    let b = Browser::start().await;
    b.goto(&app.url("/console/meters")).await;
    b.log_in("adm1n").await;
    b.click("#series-table a").await;
    b.until(&format!("document.querySelector('#plot canvas') !== null && {SHOWN} === 36")).await;

    b.click("#ranges button:first-child").await;
    b.until(&format!("{SHOWN} === 11")).await;
    assert!(
        b.text("#plot-note").await.starts_with("11 of 11 readings"),
        "the last day: {}",
        b.text("#plot-note").await
    );
    let days = b.js("return document.querySelectorAll('#daily-table tbody tr').length").await;
    assert!((1..=2).contains(&days.as_u64().unwrap()), "the days of 20 hours only: {days}");
    b.shot("meter-day").await;

    b.click("#ranges button:last-child").await;
    b.until(&format!("{SHOWN} === 36")).await;
    b.drag("#plot .u-over", 0.25, 0.5).await;
    b.until(&format!("{SHOWN} > 0 && {SHOWN} < 36")).await;
    let zoomed = b.js(&format!("return {SHOWN}")).await.as_u64().unwrap();
    assert!((6..=12).contains(&zoomed), "a quarter of the range: {zoomed} readings");
    b.shot("meter-zoomed").await;
    b.close().await;
}

#[tokio::test]
async fn the_inspectors_json_form_and_csv_tabs_show_the_decoded_body() {
    let app = spawn().await;
    assert_eq!(post_gridx(&app.client, &app.url(""), "s", gridx_ping(1, "hello")).await.unwrap(), 204);
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("key", "00:04:A3:12:34:56"), ("data", fixture_text("wattmon/block.csv").as_str())])
        .finish();
    let res = app.client.post(app.url("/wattmon/export?token=w4ttm0n"));
    let res = res.header("Content-Type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "OK");

    let b = Browser::start().await;
    b.goto(&app.url("/console/log?protocol=gridx")).await;
    b.log_in("adm1n").await;
    b.click("#log-table tbody tr a").await;
    b.until("document.querySelector('#raw-body') !== null").await;
    b.click("#body .tabs button:nth-child(2)").await;
    let pretty = b.text("#body pre").await;
    assert!(pretty.contains("\n  \"type\": \"ping\"") || pretty.contains("\n  \"data\": {"), "indented JSON: {pretty}");
    assert!(pretty.contains("\"message\": \"hello\""), "{pretty}");
    b.shot("inspector-json").await;

    b.goto(&app.url("/console/log?protocol=wattmon")).await;
    b.until("document.querySelectorAll('#log-table tbody tr').length > 0").await;
    b.click("#log-table tbody tr a").await;
    b.until("document.querySelector('#raw-body') !== null").await;
    let tabs = b.js("return [...document.querySelectorAll('#body .tabs button')].map(t => t.textContent)").await;
    assert_eq!(tabs, serde_json::json!(["Raw", "Form", "CSV"]), "a form with CSV in it");
    b.click("#body .tabs button:nth-child(2)").await;
    let form = b.text("#body table").await;
    assert!(form.contains("key") && form.contains("00:04:A3:12:34:56") && form.contains("Voltage"), "{form}");
    b.shot("inspector-form").await;
    b.click("#body .tabs button:nth-child(3)").await;
    let rows = b
        .js("return [...document.querySelectorAll('#body table tr')].map(r => [...r.cells].map(c => c.textContent))")
        .await;
    assert_eq!(
        rows,
        serde_json::json!([
            ["Time", "Voltage", "Current"],
            ["2025-09-01 12:00:00", "52.1", "3.4"],
            ["2025-09-01 12:01:00", "52.0", "3,5"]
        ]),
        "the CSV's cells, a quoted one with its comma"
    );
    b.shot("inspector-csv").await;
    b.close().await;
}
