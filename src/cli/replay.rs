//! `hookyard replay`: runs the current scripts again over journaled events and prints what
//! became of each one.
//!
//! A real replay opens the app's services (`App::open_services`) (so it needs the data directory to itself:
//! stop the server first) and goes through the same pipeline as the server's
//! `POST /api/replay`; `--dry-run` only reads the journal, so it works while the server runs.

use std::process::ExitCode;

use anyhow::Context;

use crate::app::App;
use crate::config::Config;
use crate::replay::{DryRun, Replayed, Tally, dry_run, replay_event};
use crate::services::ServicesError;
use crate::store::journal::query::{self, Derive, Filter, Journaled};

/// Options of one replay.
pub struct Options {
    pub filter: Filter,
    pub dry_run: bool,
}

/// Replays; exit code 1 when any event failed (again).
pub fn run(config: Config, options: Options) -> anyhow::Result<ExitCode> {
    let app = App::build(config).map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut tally = Tally::default();
    if options.dry_run {
        let conn = crate::store::journal::open_read_only(&app.data)?;
        each(&conn, app.splits.as_ref(), &options.filter, |item| {
            let r = match dry_run(&app.scripts, item) {
                DryRun::WouldFail(why) => {
                    println!("{}: would fail: {why}", label(item));
                    Replayed::Failed(why)
                }
                DryRun::WouldWrite(writes) => {
                    println!("{}: would write:", label(item));
                    writes.iter().for_each(|w| println!("  {w}"));
                    Replayed::Processed
                }
            };
            tally.add(&r);
        })?;
    } else {
        let services = runtime.block_on(app.open_services()).map_err(|e| match e {
            ServicesError::Locked(_) => {
                anyhow::Error::new(e).context("replay writes to the data directory: stop the server first")
            }
            other => other.into(),
        })?;
        let conn = services.pipeline.journal.reader()?;
        each(&conn, app.splits.as_ref(), &options.filter, |item| {
            let r = runtime.block_on(replay_event(&services.pipeline, item));
            match &r {
                Replayed::Processed => println!("{}: processed", label(item)),
                Replayed::Failed(why) => println!("{}: failed: {why}", label(item)),
                Replayed::Skipped(why) => println!("{}: skipped, {why}", label(item)),
            }
            tally.add(&r);
        })
        .context("reading the journal")?;
        runtime.block_on(services.close());
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
fn each(
    conn: &rusqlite::Connection,
    derive: &dyn Derive,
    filter: &Filter,
    mut f: impl FnMut(&Journaled),
) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let page = query::page(conn, derive, filter, after)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.event_id;
        page.iter().for_each(&mut f);
    }
}

fn label(item: &Journaled) -> String {
    let e = &item.event;
    format!("event {} ({} {}, received {}, was {})", item.event_id, e.protocol, e.operation, e.received_at, item.status)
}
