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
use crate::event::Event;
use crate::ingest::Pipeline;
use crate::output::Outputs;
use crate::script::ScriptHost;
use crate::store::journal::RequestRecord;
use crate::store::journal::query::{self, Filter, Journaled};
use crate::store::journal::{EventRecord, Outcome, Submission, Target};
use crate::store::shared::{LedgerEvent, SharedClaim};
use crate::store::{Claim, Journal, SeenKeys, Shared};

/// What became of one replayed event.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    Processed,
    Failed(String),
    Skipped(String),
}

/// What a replay needs from the server.
pub struct Replayer<'a> {
    pub scripts: &'a Arc<ScriptHost>,
    pub journal: &'a Journal,
    pub seen: &'a SeenKeys,
    pub outputs: &'a Outputs,
    /// The journal shared with other instances: a failed event's key is claimed there too,
    /// so an event another instance processed meanwhile is not processed again.
    pub shared: Option<&'a Arc<Shared>>,
}

/// Replays one journaled event.
pub async fn replay_event(ctx: &Replayer<'_>, item: &Journaled) -> Replayed {
    let claimed = match (&item.key, item.status.as_str()) {
        (Some(key), "failed") => match ctx.seen.claim(key) {
            Claim::New => Some(key.clone()),
            Claim::Seen => return Replayed::Skipped("a later attempt already processed it".into()),
            Claim::InFlight => return Replayed::Skipped("a request with the same data is being processed".into()),
        },
        _ => None,
    };
    if let (Some(key), Some(shared)) = (&claimed, ctx.shared) {
        let (client, keys) = (shared.clone(), vec![key.clone()]);
        let answer = tokio::task::spawn_blocking(move || client.claim(&keys)).await;
        let skip = match answer {
            Ok(Ok(a)) if a == [SharedClaim::New] => None,
            Ok(Ok(a)) if a == [SharedClaim::Done] => Some("another instance already processed it"),
            Ok(Ok(_)) => Some("another instance is processing the same data"),
            _ => Some("the shared journal is unreachable; try again"),
        };
        if let Some(why) = skip {
            ctx.seen.release(std::slice::from_ref(key));
            return Replayed::Skipped(why.into());
        }
    }
    let result = run_and_record(ctx.scripts, ctx.journal, ctx.outputs, item).await;
    if let Some(key) = claimed {
        let keys = vec![key];
        let processed = result == Replayed::Processed;
        if processed {
            ctx.seen.commit(&keys)
        } else {
            ctx.seen.release(&keys)
        }
        if let Some(shared) = ctx.shared.cloned() {
            let (done, released) = if processed { (keys, Vec::new()) } else { (Vec::new(), keys) };
            let settled = tokio::task::spawn_blocking(move || shared.settle(&done, &released, &[])).await;
            if let Ok(Err(e)) = settled {
                tracing::warn!(error = %e, "could not settle a replayed key in the shared journal; will retry");
            }
        }
    }
    result
}

/// Replays a failed event another instance recorded in the shared ledger: processed here as
/// a new request (its key claimed cluster-wide, so it cannot be processed twice), and the
/// ledger row marked superseded. Events with a binary body (images) stay on their instance.
pub async fn replay_foreign(pipeline: &Pipeline, item: &LedgerEvent) -> Replayed {
    let mut event: Event = match serde_json::from_str(&item.data) {
        Ok(e) => e,
        Err(e) => return Replayed::Failed(format!("ledger event {} cannot be read back: {e}", item.id)),
    };
    if event.meta.contains_key("size") && event.operation == "image" {
        return Replayed::Skipped(format!("binary uploads are replayed on their instance ({})", item.instance));
    }
    event.blob = None;
    let request = RequestRecord {
        protocol: event.protocol.clone(),
        operation: event.operation.clone(),
        source: event.source.clone(),
        received_ms: event.received_ms,
        headers: Vec::new(),
        verification: format!("replay of event {} of instance {}", item.id, item.instance),
        body: bytes::Bytes::from(item.data.clone().into_bytes()),
    };
    let keys: std::collections::HashMap<usize, String> = item.key.iter().map(|k| (event.index, k.clone())).collect();
    let outcome = pipeline.process_keyed(&keys, request, vec![event]).await;
    let result = match outcome {
        Ok(()) => Replayed::Processed,
        Err(crate::ingest::Rejection::Failed(why)) => Replayed::Failed(why),
        Err(other) => Replayed::Failed(format!("{other:?}")),
    };
    if let Some(shared) = pipeline.shared.clone() {
        let (id, processed) = (item.id, result == Replayed::Processed);
        let marked = tokio::task::spawn_blocking(move || {
            shared.mark_replayed(id, if processed { "processed" } else { "failed" }, None)
        })
        .await;
        if let Ok(Err(e)) = marked {
            tracing::warn!(error = %e, "could not mark a replayed ledger event");
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
        let shared = match app.config.journal.postgres_url.as_ref().filter(|u| !u.0.is_empty()) {
            Some(url) => {
                let instance = app.config.journal.instance.clone().unwrap_or_else(|| app::default_instance(&app.data));
                Some(Arc::new(Shared::open(&url.0, &instance).map_err(anyhow::Error::msg)?))
            }
            None => None,
        };
        let ctx = Replayer {
            scripts: &app.scripts,
            journal: &journal,
            seen: &seen,
            outputs: &outputs,
            shared: shared.as_ref(),
        };
        let conn = journal.reader()?;
        each(&conn, &options.filter, |item| {
            let r = runtime.block_on(replay_event(&ctx, item));
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
