//! Replay: run the current scripts again over journaled events (CLI and management API).
//!
//! The fix-your-script-then-backfill workflow: select events by protocol, time and outcome,
//! hand each to the protocol's current script, and journal the new outcome and effects like
//! any request (so a crash during replay is repaired the same way). A failed event whose key a
//! later attempt already processed is skipped; its key is claimed in the dedup memory while it
//! is replayed, so a sender's retry cannot process it at the same time. A dry run prints what
//! the scripts would write and writes nothing; it only reads the journal, so it works while
//! the server runs. A real CLI replay needs the data directory to itself (stop the server
//! first); the management API replays inside the running server.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::app::{self, App};
use crate::config::Config;
use crate::output::Outputs;
use crate::script::ScriptHost;
use crate::store::journal::query::{self, Filter, Journaled};
use crate::store::journal::{EventRecord, Outcome, Submission, Target};
use crate::store::{Claim, Journal, SeenKeys};

/// What became of one replayed event.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    Processed,
    Failed(String),
    Skipped(String),
}

/// Replays one journaled event.
pub async fn replay_event(
    scripts: &Arc<ScriptHost>,
    journal: &Journal,
    seen: &SeenKeys,
    outputs: &Outputs,
    item: &Journaled,
) -> Replayed {
    let claimed = match (&item.key, item.status.as_str()) {
        (Some(key), "failed") => match seen.claim(key) {
            Claim::New => Some(key.clone()),
            Claim::Seen => return Replayed::Skipped("a later attempt already processed it".into()),
            Claim::InFlight => return Replayed::Skipped("a request with the same data is being processed".into()),
        },
        _ => None,
    };
    let result = run_and_record(scripts, journal, outputs, item).await;
    if let Some(key) = claimed {
        match result {
            Replayed::Processed => seen.commit(std::slice::from_ref(&key)),
            _ => seen.release(std::slice::from_ref(&key)),
        }
    }
    result
}

async fn run_and_record(scripts: &Arc<ScriptHost>, journal: &Journal, outputs: &Outputs, item: &Journaled) -> Replayed {
    let (scripts, event) = (scripts.clone(), item.event.clone());
    let mut report =
        match tokio::task::spawn_blocking(move || scripts.run(&event.protocol, std::slice::from_ref(&event))).await {
            Ok(r) => r,
            Err(e) => return Replayed::Failed(format!("processing stopped unexpectedly ({e})")),
        };
    crate::ingest::deliver(outputs, std::slice::from_ref(&item.key), &mut report).await;
    let error = report.failure.map(|f| f.message);
    if let (Some(why), "processed") = (&error, item.status.as_str()) {
        // It stays processed (its earlier output stands); only this attempt failed.
        return Replayed::Failed(why.clone());
    }
    let record = EventRecord {
        index: item.event.index,
        key: item.key.clone(),
        data: String::new(),
        blob: item.event.blob.is_some(),
        outcome: if error.is_some() { Outcome::Failed } else { Outcome::Processed },
        error: error.clone(),
        logs: report.logs.into_iter().next().unwrap_or_default(),
    };
    let target = Target::Replay { event_id: item.event_id, request_id: item.request_id };
    let submitted = journal.submit(Submission { target, events: vec![record], effects: report.effects }).await;
    match (error, submitted) {
        (None, Ok(())) => Replayed::Processed,
        (Some(why), _) => Replayed::Failed(why),
        (None, Err(e)) => Replayed::Failed(e.to_string()),
    }
}

/// Counts of a replay run.
#[derive(Debug, Default)]
pub struct Tally {
    pub processed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Tally {
    pub fn add(&mut self, r: &Replayed) {
        match r {
            Replayed::Processed => self.processed += 1,
            Replayed::Failed(_) => self.failed += 1,
            Replayed::Skipped(_) => self.skipped += 1,
        }
    }
}

/// Options of one CLI replay.
pub struct Options {
    pub filter: Filter,
    pub dry_run: bool,
}

/// `hookyard replay`; exit code 1 when any event failed again.
pub fn run(config: Config, options: Options) -> anyhow::Result<ExitCode> {
    let app = App::build(config).map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut tally = Tally::default();
    if options.dry_run {
        let conn = crate::store::journal::open_read_only(&app.data)?;
        each(&conn, &options.filter, |item| {
            let r = dry_run(&app, item);
            tally.add(&r);
        })?;
    } else {
        let _lock =
            app::lock_data_dir(&app.data).context("replay writes to the data directory: stop the server first")?;
        let journal = Journal::open(app.data.clone(), app.config.journal.clone())?;
        let seen = SeenKeys::new(journal.processed_keys()?);
        let outputs = {
            let _entered = runtime.enter();
            app.open_outputs()?
        };
        let conn = journal.reader()?;
        each(&conn, &options.filter, |item| {
            let r = runtime.block_on(replay_event(&app.scripts, &journal, &seen, &outputs, item));
            match &r {
                Replayed::Processed => println!("{}: processed", label(item)),
                Replayed::Failed(why) => println!("{}: failed: {why}", label(item)),
                Replayed::Skipped(why) => println!("{}: skipped, {why}", label(item)),
            }
            tally.add(&r);
        })?;
        journal.close();
    }
    let verb = if options.dry_run { "would be" } else { "were" };
    println!(
        "{} event(s): {} {verb} processed, {} {verb} failing, {} skipped",
        tally.processed + tally.failed + tally.skipped,
        tally.processed,
        tally.failed,
        tally.skipped
    );
    Ok(if tally.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Calls `f` on every event matching `filter`, a page at a time.
pub fn each(conn: &rusqlite::Connection, filter: &Filter, mut f: impl FnMut(&Journaled)) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let page = query::page(conn, filter, after)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.event_id;
        page.iter().for_each(&mut f);
    }
}

fn label(item: &Journaled) -> String {
    let e = &item.event;
    format!("event {} ({} {}, received {}, was {})", item.event_id, e.protocol, e.operation, e.received_at, item.status)
}

fn dry_run(app: &App, item: &Journaled) -> Replayed {
    let report = app.scripts.run(&item.event.protocol, std::slice::from_ref(&item.event));
    match report.failure {
        Some(f) => {
            println!("{}: would fail: {}", label(item), f.message);
            Replayed::Failed(f.message)
        }
        None => {
            println!("{}: would write:", label(item));
            for effect in &report.effects {
                println!("  {}", effect.describe());
            }
            for output in report.outputs.iter().flatten() {
                println!("  {}", output.describe());
            }
            Replayed::Processed
        }
    }
}
