//! The benchmark harness in smoke mode: a few seconds of each scenario against a real server,
//! checking that every acknowledged event landed. No timing assertions.

use std::time::Duration;

use hookyard_bench::{Credentials, Load, Scenario, landed, run, server_config};

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_loses_nothing() {
    let credentials = Credentials::default();
    let app = spawn_app(&server_config(&credentials)).await;
    for scenario in [Scenario::Gridx, Scenario::Ai, Scenario::AiNewConnection, Scenario::Wattmon, Scenario::Wattsense] {
        let load = Load {
            base: format!("http://{}", app.addr),
            scenario,
            concurrency: 4,
            duration: Duration::from_millis(1500),
            rate: None,
            credentials: credentials.clone(),
            first: 1_000_000 * scenario as u64,
            path: None,
        };
        let before = landed(scenario, &app.data(), &credentials);
        let report = run(load).await;
        assert_eq!(report.errors, 0, "{scenario:?}");
        assert!(report.acknowledged > 0, "{scenario:?}");
        let found = landed(scenario, &app.data(), &credentials) - before;
        assert_eq!(
            found,
            report.acknowledged * scenario.events_per_request(),
            "{scenario:?}: acknowledged events must all land"
        );
        eprintln!("smoke {scenario:?}: {} requests, {} events, all landed", report.acknowledged, found);
    }
}
