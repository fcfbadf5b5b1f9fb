//! Replay: run the current scripts again over journaled events (CLI and management API).
//!
//! The fix-your-script-then-backfill workflow: each selected event goes through the same
//! [`Pipeline`] as a request — planned, its key held by [`Claims`](crate::ingest::Claims)
//! while it runs, outputs delivered — and the new outcome and effects are journaled like any
//! request (so a crash during replay is repaired the same way). A failed event whose key a
//! later attempt already processed is skipped; its key is claimed while it is replayed, so a
//! sender's retry cannot process it at the same time. A dry run only reads the journal and
//! writes nothing. The `hookyard replay` command (printing) lives in `cli`.

use crate::event::Event;
use crate::ingest::{Claims, ClusterAnswer, Pipeline, Rejection, deliver, plan};
use crate::script::ScriptHost;
use crate::store::Claim;
use crate::store::journal::query::Journaled;
use crate::store::journal::{EventRecord, RequestRecord, Status, Submission, Target};
use crate::store::shared::LedgerEvent;

/// What became of one replayed event.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    Processed,
    Failed(String),
    Skipped(String),
}

/// Replays one journaled event through `pipeline`.
pub async fn replay_event(pipeline: &Pipeline, item: &Journaled) -> Replayed {
    if let Some(why) = &item.problem {
        return Replayed::Skipped(why.clone());
    }
    let mut claims = pipeline.claims();
    if let (Some(key), Status::Failed) = (&item.key, item.status)
        && let Some(skipped) = claim_failed(&mut claims, key).await
    {
        return skipped;
    }
    // The key was claimed above where it needs to be; the plan only carries it to the outputs.
    let key = item.key.clone();
    let Ok(planned) = plan(vec![item.event.clone()], |_| key.clone(), |_| Claim::New) else {
        return Replayed::Failed("the event could not be planned".into());
    };
    let (planned, mut report) = match pipeline.run(&item.event.protocol, planned).await {
        Ok(done) => done,
        Err(rejection) => return Replayed::Failed(rejection.reason()),
    };
    deliver(&pipeline.outputs, &planned.running_keys(), &mut report).await;
    let error = report.failure.map(|f| f.message);
    if let (Some(why), Status::Processed) = (&error, item.status) {
        // It stays processed (its earlier output stands); only this attempt failed.
        return Replayed::Failed(why.clone());
    }
    let record = EventRecord {
        index: item.event.index,
        key: item.key.clone(),
        data: String::new(),
        blob: item.event.blob.is_some(),
        outcome: if error.is_some() { Status::Failed } else { Status::Processed },
        error: error.clone(),
        logs: report.logs.into_iter().next().unwrap_or_default(),
        readings: if error.is_none() { item.readings.clone() } else { Vec::new() },
        image: error.is_none() && item.image,
    };
    let target = Target::Replay { event_id: item.event_id, request_id: item.request_id };
    let submitted = pipeline.journal.submit(Submission { target, events: vec![record], effects: report.effects }).await;
    let result = match (error, submitted) {
        (None, Ok(())) => Replayed::Processed,
        (Some(why), _) => Replayed::Failed(why),
        (None, Err(e)) => Replayed::Failed(e.to_string()),
    };
    let processed: Vec<String> = item.key.iter().filter(|_| result == Replayed::Processed).cloned().collect();
    claims.commit(&processed, Vec::new()).await;
    result
}

/// Claims the key of a failed event for its replay; `Some` when it must be skipped.
async fn claim_failed(claims: &mut Claims, key: &str) -> Option<Replayed> {
    let skip = |why: &str| Some(Replayed::Skipped(why.into()));
    match claims.claim(key) {
        Claim::New => {}
        Claim::Seen => return skip("a later attempt already processed it"),
        Claim::InFlight => return skip("a request with the same data is being processed"),
    }
    match claims.claim_cluster().await {
        Ok(ClusterAnswer::Ours { done_elsewhere }) if done_elsewhere.is_empty() => None,
        Ok(ClusterAnswer::Ours { .. }) => skip("another instance already processed it"),
        Ok(ClusterAnswer::BusyElsewhere) => skip("another instance is processing the same data"),
        Err(_) => skip("the shared journal is unreachable; try again"),
    }
}

/// Replays a failed event another instance recorded in the shared ledger: processed here as
/// a new request (its key claimed cluster-wide, so it cannot be processed twice), and the
/// ledger row marked superseded. Uploads (their bytes are in the other instance's journal
/// only) stay on their instance.
pub async fn replay_foreign(pipeline: &Pipeline, item: &LedgerEvent) -> Replayed {
    if item.blob {
        return Replayed::Skipped(format!("binary uploads are replayed on their instance ({})", item.instance));
    }
    let mut event: Event = match serde_json::from_str(&item.data) {
        Ok(e) => e,
        Err(e) => return Replayed::Failed(format!("ledger event {} cannot be read back: {e}", item.id)),
    };
    event.blob = None;
    let request = RequestRecord {
        protocol: event.protocol.clone(),
        operation: event.operation.clone(),
        source: event.source.clone(),
        received_ms: event.received_ms,
        headers: Vec::new(),
        verification: format!("replay of event {} of instance {}", item.id, item.instance),
        body: bytes::Bytes::from(item.data.clone().into_bytes()),
        client: format!("replay of instance {}", item.instance),
        method: String::new(),
        path: String::new(),
        reply_status: 200,
        failed_status: 503,
        spec: String::new(),
        query: String::new(),
    };
    let key = item.key.clone();
    let result = match pipeline.process(|_| key.clone(), None, request, vec![event]).await {
        Ok(()) => Replayed::Processed,
        Err(rejection @ Rejection::Failed(_)) => Replayed::Failed(rejection.reason()),
        Err(other) => Replayed::Failed(other.reason()),
    };
    if let Some(shared) = pipeline.shared.clone() {
        let (id, processed) = (item.id, result == Replayed::Processed);
        let marked = tokio::task::spawn_blocking(move || shared.mark_replayed(id, processed, None)).await;
        if let Ok(Err(e)) = marked {
            tracing::warn!(error = %e, "could not mark a replayed ledger event");
        }
    }
    result
}

/// What the current script would do with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum DryRun {
    /// Its effects and outputs, described.
    WouldWrite(Vec<String>),
    /// The script's error.
    WouldFail(String),
}

/// Runs the current script over a journaled event and writes nothing.
pub fn dry_run(scripts: &ScriptHost, item: &Journaled) -> DryRun {
    if let Some(why) = &item.problem {
        return DryRun::WouldFail(why.clone());
    }
    let report = scripts.run(&item.event.protocol, &[&item.event]);
    match report.failure {
        Some(f) => DryRun::WouldFail(f.message),
        None => DryRun::WouldWrite(
            report
                .effects
                .iter()
                .map(|e| e.describe())
                .chain(report.outputs.iter().flatten().map(|o| o.describe()))
                .collect(),
        ),
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
