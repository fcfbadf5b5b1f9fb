//! `loadgen`: drive one scenario against a running server and print what it measured.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hookyard_bench::{Credentials, Load, Scenario, landed, run};

#[derive(Parser)]
#[command(about = "Sends unique, signed/keyed requests and reports throughput and latency")]
struct Args {
    /// Print the hookyard config section these requests need, and exit.
    #[arg(long)]
    print_config: bool,
    /// Server base URL, e.g. http://127.0.0.1:8080
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    #[arg(long, value_enum, default_value = "gridx")]
    scenario: Scenario,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Total requests per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u32>,
    /// Path to post to (default: the scenario's hookyard route).
    #[arg(long)]
    path: Option<String>,
    /// First request number (keep runs against one data directory unique).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// After the run, check that every acknowledged event landed in this data directory.
    #[arg(long)]
    verify: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let credentials = Credentials::default();
    if args.print_config {
        print!("{}", hookyard_bench::server_config(&credentials));
        return std::process::ExitCode::SUCCESS;
    }
    let load = Load {
        base: args.base,
        scenario: args.scenario,
        concurrency: args.concurrency,
        duration: Duration::from_secs_f64(args.seconds),
        rate: args.rate,
        credentials: credentials.clone(),
        first: args.first,
        path: args.path,
    };
    let before = args.verify.as_ref().map(|dir| landed(args.scenario, dir, &credentials)).unwrap_or(0);
    let r = run(load).await;
    let landed = args.verify.as_ref().map(|dir| landed(args.scenario, dir, &credentials) - before);
    let acknowledged_events = r.acknowledged * r.events_per_request;
    let report = serde_json::json!({
        "scenario": format!("{:?}", args.scenario),
        "sent": r.sent,
        "acknowledged": r.acknowledged,
        "errors": r.errors,
        "error_kinds": r.error_kinds,
        "seconds": r.elapsed.as_secs_f64(),
        "requests_per_second": r.requests_per_second(),
        "events_per_second": r.events_per_second(),
        "p50_ms": r.latency_ms(0.5),
        "p99_ms": r.latency_ms(0.99),
        "max_ms": r.max_ms(),
        "acknowledged_events": acknowledged_events,
        "landed_events": landed,
    });
    println!("{report}");
    match landed {
        Some(found) if found < acknowledged_events => {
            eprintln!("LOST DATA: {acknowledged_events} events acknowledged, {found} landed");
            std::process::ExitCode::FAILURE
        }
        _ => std::process::ExitCode::SUCCESS,
    }
}
