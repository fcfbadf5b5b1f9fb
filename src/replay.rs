//! `hookyard replay`: run the current scripts again over journaled events.
//!
//! The fix-your-script-then-backfill workflow: select events by protocol, time and outcome,
//! hand each to the protocol's current script, and journal the new outcome and effects like
//! any request (so a crash during replay is repaired the same way). A dry run prints what the
//! scripts would write and writes nothing; it only reads the journal, so it works while the
//! server runs. A real replay needs the data directory to itself (stop the server first).

use std::process::ExitCode;

use anyhow::Context;

use crate::app::{self, App};
use crate::config::Config;
use crate::store::Journal;
use crate::store::journal::query::{self, Filter, Journaled};
use crate::store::journal::{EventRecord, Outcome, Submission, Target};

/// Options of one replay.
pub struct Options {
    pub filter: Filter,
    pub dry_run: bool,
}

#[derive(Default)]
struct Tally {
    processed: usize,
    failed: usize,
    skipped: usize,
}

/// Runs the replay; exit code 1 when any event failed again.
pub fn run(config: Config, options: Options) -> anyhow::Result<ExitCode> {
    let app = App::build(config).map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut tally = Tally::default();
    if options.dry_run {
        let conn = crate::store::journal::open_read_only(&app.data)?;
        each(&conn, &options.filter, |item| dry_run(&app, item, &mut tally))?;
    } else {
        let _lock =
            app::lock_data_dir(&app.data).context("replay writes to the data directory: stop the server first")?;
        let journal = Journal::open(app.data.clone())?;
        let conn = journal.reader()?;
        each(&conn, &options.filter, |item| {
            if item.status == "failed"
                && item.key.as_deref().map(|k| query::key_processed(&conn, k)).transpose()? == Some(true)
            {
                println!("{}: skipped, a later attempt already processed it", label(item));
                tally.skipped += 1;
                return Ok(());
            }
            runtime.block_on(replay_one(&app, &journal, item, &mut tally))
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

fn each(
    conn: &rusqlite::Connection,
    filter: &Filter,
    mut f: impl FnMut(&Journaled) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let page = query::page(conn, filter, after)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.event_id;
        for item in &page {
            f(item)?;
        }
    }
}

fn label(item: &Journaled) -> String {
    let e = &item.event;
    format!("event {} ({} {}, received {}, was {})", item.event_id, e.protocol, e.operation, e.received_at, item.status)
}

fn dry_run(app: &App, item: &Journaled, tally: &mut Tally) -> anyhow::Result<()> {
    let report = app.scripts.run(&item.event.protocol, std::slice::from_ref(&item.event));
    match report.failure {
        Some(f) => {
            println!("{}: would fail: {}", label(item), f.message);
            tally.failed += 1;
        }
        None => {
            println!("{}: would write:", label(item));
            for effect in &report.effects {
                println!("  {}", effect.describe());
            }
            tally.processed += 1;
        }
    }
    Ok(())
}

async fn replay_one(app: &App, journal: &Journal, item: &Journaled, tally: &mut Tally) -> anyhow::Result<()> {
    let report = app.scripts.run(&item.event.protocol, std::slice::from_ref(&item.event));
    let error = report.failure.map(|f| f.message);
    if let (Some(why), "processed") = (&error, item.status.as_str()) {
        // It stays processed (its earlier output stands); only this attempt failed.
        println!("{}: failed: {why}", label(item));
        tally.failed += 1;
        return Ok(());
    }
    let outcome = if error.is_some() { Outcome::Failed } else { Outcome::Processed };
    let record = EventRecord {
        index: item.event.index,
        key: item.key.clone(),
        data: String::new(),
        blob: item.event.blob.is_some(),
        outcome,
        error: error.clone(),
    };
    let target = Target::Replay { event_id: item.event_id, request_id: item.request_id };
    let submitted = journal.submit(Submission { target, events: vec![record], effects: report.effects }).await;
    match (error, submitted) {
        (None, Ok(())) => {
            println!("{}: processed", label(item));
            tally.processed += 1;
        }
        (Some(why), _) => {
            println!("{}: failed: {why}", label(item));
            tally.failed += 1;
        }
        (None, Err(e)) => {
            println!("{}: failed: {e}", label(item));
            tally.failed += 1;
        }
    }
    Ok(())
}
