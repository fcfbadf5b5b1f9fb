//! `fill`: writes a history of N gridX requests (one event each, processed, with the default
//! script's effect) into the journal of a data directory, through hookyard's own journal code
//! (`Bulk`: the writer's statements, in transactions of 10,000 requests, no fsync), so a
//! server can be started on a journal as a long-running receiver would have it. The requests
//! are the load generator's signed gridX bodies; their receive times are spread over the
//! `--days` before now (the dedup window), so retention prunes none of them. At the end the
//! merged keys' Bloom filter is built and stored, as a server's merges keep it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use hookyard::event::Origin;
use hookyard::spec::ext::Idempotency;
use hookyard::store::journal::{Bulk, EventRecord, RequestRecord, Status, Submission, Target};
use hookyard::store::{DataDir, Effect};
use hookyard_bench::{Credentials, Scenario, request};

#[derive(Parser)]
#[command(about = "Fills a data directory's journal with N processed gridX events")]
struct Args {
    /// The data directory (created if needed).
    #[arg(long)]
    data: PathBuf,
    /// How many events.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Over how many days before now their receive times are spread.
    #[arg(long, default_value_t = 29.0)]
    days: f64,
}

const PER_TRANSACTION: u64 = 10_000;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match fill(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fill: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn fill(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let data = Arc::new(DataDir::open(&args.data)?);
    let mut bulk = Bulk::open(&data)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let span = (args.days * 86_400_000.0) as i64;
    let step = span / args.events.max(1) as i64;
    let started = Instant::now();
    let mut n = 0;
    while n < args.events {
        let end = (n + PER_TRANSACTION).min(args.events);
        let batch: Vec<Submission> = (n..end).map(|i| submission(i, now - span + step * i as i64)).collect();
        bulk.insert(&batch)?;
        n = end;
        if n % 1_000_000 == 0 {
            eprintln!("fill: {n} events, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    bulk.finish()?;
    let secs = started.elapsed().as_secs_f64();
    println!("{{\"events\":{},\"seconds\":{secs:.1}}}", args.events);
    Ok(())
}

/// Request `n` as the server would have journaled it: the body, the headers it keeps, the
/// event in its JSON form with its key, and the default script's one appended line.
fn submission(n: u64, received_ms: i64) -> Submission {
    let (body, headers) = request(Scenario::Gridx, &Credentials::default(), n);
    let data: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let origin = Origin { protocol: "gridx".into(), operation: "events".into(), source: String::new(), received_ms };
    let event = origin.event(0, data.clone(), serde_json::Map::new());
    let key = event.idempotency_key(&Idempotency { key: vec!["/data/id".into()], digest: None });
    let mut line = serde_json::to_vec(&data).unwrap_or_default();
    line.push(b'\n');
    let request = RequestRecord {
        protocol: origin.protocol.clone(),
        operation: origin.operation.clone(),
        source: String::new(),
        received_ms,
        headers: headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        verification: "hmac".into(),
        body: body.into(),
        client: "127.0.0.1".into(),
        method: "POST".into(),
        path: "/gridx/events".into(),
        reply_status: 200,
        failed_status: 503,
        // The shipped spec's version: the server derives the event again from the body.
        spec: gridx_spec_version(),
        query: String::new(),
    };
    let record = EventRecord {
        index: 0,
        key,
        data: event.to_json_string(),
        blob: false,
        outcome: Status::Processed,
        error: None,
        logs: Vec::new(),
        readings: Vec::new(),
        image: false,
    };
    let effect = Effect::Append { path: "gridx/events.jsonl".into(), header: None, bytes: line };
    Submission { target: Target::New(Box::new(request)), events: vec![record], effects: vec![effect] }
}

/// The version of the built-in gridX spec, as the server records it per request.
fn gridx_spec_version() -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            let specs = hookyard::spec::embedded::SPECS;
            hookyard::spec::version(specs.iter().find(|(name, _)| *name == "gridx").map_or("", |(_, t)| t))
        })
        .clone()
}
