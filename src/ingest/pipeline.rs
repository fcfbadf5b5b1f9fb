//! Handing a request's events to the scripts exactly once, and journaling the outcome.
//!
//! Events whose idempotency key was already processed are recorded as duplicates and not
//! processed again; a key another request is processing right now makes this one fail with
//! the protocol's retryable reply. The scripts run first, collecting effects in memory; then
//! one journal submission records the request, every event's outcome and the effects of the
//! processed ones, and applies those effects. Only then is the request acknowledged. The keys
//! are held by a [`Claims`] from the plan to the commit: whatever path a request takes out,
//! what it claimed is given back unless it was committed.

use std::sync::Arc;

use super::claims::{Claims, ClusterAnswer};
use super::plan::{InFlight, Plan, plan};
use super::reply::{Failure, Rejection};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::output::Outputs;
use crate::script::{RunReport, ScriptHost};
use crate::spec::readings::ReadingsSpec;
use crate::store::journal::{JournalError, RequestRecord, Status, Submission, Target, keeps_event_data};
use crate::store::shared::LedgerRow;
use crate::store::{Journal, SeenKeys, Shared};

/// The services a request goes through: scripts, the dedup memory, the journal, outputs.
pub struct Pipeline {
    pub scripts: Arc<ScriptHost>,
    pub seen: Arc<SeenKeys>,
    pub journal: Arc<Journal>,
    pub metrics: Arc<Metrics>,
    pub outputs: Arc<Outputs>,
    /// The journal shared with other instances (PostgreSQL), when configured.
    pub shared: Option<Arc<Shared>>,
    /// Script runs of large requests on blocking threads at once (one per CPU: more would
    /// only add threads, each with its own allocator memory, not speed).
    pub large_runs: tokio::sync::Semaphore,
    /// Failed credential attempts per client (shared with the management API).
    pub lockout: Arc<crate::lockout::Lockout>,
    /// Refusals per minute and sources last seen, for the health view.
    pub activity: Arc<crate::activity::Activity>,
    /// The wall clock of receive times.
    pub clock: crate::clock::Clock,
}

/// Requests with at most this many events run their script on the request's own thread:
/// inline once the protocol's script has proved fast ([`ScriptHost::proven_fast`]: a gridX
/// run takes microseconds, less than a hand-off), else after handing the thread's other work
/// to another thread (`block_in_place`), so a spinning script never holds up other requests
/// or `/healthz`. Larger ones (Wattmon blocks) run on a blocking thread, at most one per CPU.
const INLINE_EVENTS: usize = 16;

impl Pipeline {
    /// The permits of [`Pipeline::large_runs`]: the number of CPUs.
    pub fn large_runs_limit() -> tokio::sync::Semaphore {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// A journaled request of `source` at `at_ms`: its last-seen time and gauge (up to the
    /// cap of tracked sources).
    pub fn seen(&self, protocol: &str, source: &str, at_ms: i64) {
        if self.activity.sources.record(protocol, source, at_ms) {
            self.metrics.source_seen(protocol, source, at_ms);
        }
    }

    /// An empty set of key claims on this pipeline's dedup memory and shared journal.
    pub fn claims(&self) -> Claims {
        Claims::new(self.seen.clone(), self.shared.clone())
    }

    /// Processes `events` of `request`; Ok once everything new is journaled and written.
    /// `readings`: the operation's `x-hookyard-readings` block, if it has one.
    pub async fn process(
        &self,
        key_of: impl Fn(&Event) -> Option<String>,
        readings: Option<&ReadingsSpec>,
        request: RequestRecord,
        events: Vec<Event>,
    ) -> Result<(), Rejection> {
        let protocol = request.protocol.clone();
        let result = self.process_claimed(key_of, readings, request, events).await;
        if let Err(Rejection::Failed(failure)) = &result {
            self.metrics.failure(&protocol, failure.kind());
        }
        result
    }

    async fn process_claimed(
        &self,
        key_of: impl Fn(&Event) -> Option<String>,
        readings: Option<&ReadingsSpec>,
        request: RequestRecord,
        events: Vec<Event>,
    ) -> Result<(), Rejection> {
        // Before any script runs: what cannot be kept must not be delivered either.
        if let Err(e) = self.journal.room() {
            tracing::error!(protocol = %request.protocol, error = %e, "refusing new work until the disk has room");
            return Err(Rejection::Failed(Failure::DiskFull));
        }
        let mut claims = self.claims();
        let mut plan =
            plan(events, key_of, |k| claims.claim(k)).map_err(|InFlight| Rejection::Failed(Failure::Busy))?;
        match claims.claim_cluster().await {
            Ok(ClusterAnswer::Ours { done_elsewhere }) => plan.skip(&done_elsewhere),
            Ok(ClusterAnswer::BusyElsewhere) => return Err(Rejection::Failed(Failure::BusyElsewhere)),
            Err(e) => {
                tracing::error!(error = %e, "cannot claim keys in the shared journal");
                return Err(Rejection::Failed(Failure::SharedUnreachable));
            }
        }
        let (mut plan, mut report) = self.run(&request.protocol, plan).await?;
        deliver(&self.outputs, &plan.running_keys(), &mut report).await;
        plan.settle(&report);
        let processed = plan.processed_keys();
        let tallies = Status::ALL.map(|s| (s, plan.count(s)));
        let (protocol, source, received_ms) = (request.protocol.clone(), request.source.clone(), request.received_ms);
        // The JSON form of the events only where it is kept: the journal's when it cannot
        // split the body again, the shared journal's ledger always.
        let with_data = self.shared.is_some() || keeps_event_data(&request.spec, plan.outcomes());
        let events = plan.into_records(readings, with_data);
        let ledger = if self.shared.is_some() { ledger_rows(&request, &events) } else { Vec::new() };
        let effects = crate::store::effects::coalesce(std::mem::take(&mut report.effects));
        let submission = Submission { target: Target::New(Box::new(request)), events, effects };
        if let Err(e) = self.journal.submit(submission).await {
            tracing::error!(protocol = %protocol, error = %e, "the request could not be journaled or written");
            let disk_full = matches!(e, JournalError::DiskFull { .. });
            return Err(Rejection::Failed(if disk_full { Failure::DiskFull } else { Failure::Journal }));
        }
        claims.commit(&processed, ledger).await;
        self.seen(&protocol, &source, received_ms);
        for (status, n) in tallies {
            self.metrics.events(&protocol, status.as_str(), n);
        }
        report.failure.map_or(Ok(()), |f| {
            tracing::error!(protocol = %protocol, event = f.index, error = %f.message, "processing failed: {f}");
            Err(Rejection::Failed(Failure::Event { index: f.index, kind: f.kind }))
        })
    }

    /// Runs the plan's events through the protocol's script; the plan comes back with the
    /// report (aligned with [`Plan::to_run`]).
    pub async fn run(&self, protocol: &str, plan: Plan) -> Result<(Plan, RunReport), Rejection> {
        let count = plan.running_count();
        if count == 0 {
            return Ok((plan, RunReport::empty()));
        }
        let started = std::time::Instant::now();
        let result = if count <= INLINE_EVENTS {
            let report = self.run_small(protocol, &plan);
            Ok((plan, report))
        } else {
            self.run_large(protocol, plan).await
        };
        self.metrics.script_run(protocol, started.elapsed().as_secs_f64());
        result
    }

    /// A small run on this thread: inline once the protocol proved fast, else handed off first.
    /// Only the run itself is timed for [`ScriptHost::timed`], not a hand-off before it.
    fn run_small(&self, protocol: &str, plan: &Plan) -> RunReport {
        let run = || {
            let started = std::time::Instant::now();
            let report = self.scripts.run(protocol, &plan.to_run());
            self.scripts.timed(protocol, started.elapsed());
            report
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        // A single-threaded runtime (the replay command) has nothing else to serve.
        if multi_thread && !self.scripts.proven_fast(protocol) { tokio::task::block_in_place(run) } else { run() }
    }

    /// A large run on a blocking thread, at most [`Pipeline::large_runs`] at once.
    async fn run_large(&self, protocol: &str, plan: Plan) -> Result<(Plan, RunReport), Rejection> {
        let _permit = self.large_runs.acquire().await;
        let (scripts, name) = (self.scripts.clone(), protocol.to_owned());
        tokio::task::spawn_blocking(move || {
            let report = scripts.run(&name, &plan.to_run());
            (plan, report)
        })
        .await
        .map_err(|e| {
            tracing::error!(protocol, error = %e, "a script run stopped unexpectedly");
            Rejection::Failed(Failure::Stopped)
        })
    }
}

/// The shared journal's ledger rows of a request's events.
fn ledger_rows(request: &RequestRecord, events: &[crate::store::journal::EventRecord]) -> Vec<LedgerRow> {
    events
        .iter()
        .map(|e| LedgerRow {
            protocol: request.protocol.clone(),
            operation: request.operation.clone(),
            source: request.source.clone(),
            received_ms: request.received_ms,
            key: e.key.clone(),
            status: e.outcome,
            error: e.error.clone(),
            data: e.data.clone(),
            blob: e.blob,
        })
        .collect()
}

/// Delivers the outputs of the processed events (keys: the run events' idempotency keys, in
/// order); an output failure fails its event and the later ones, dropping their effects.
pub async fn deliver(outputs: &Outputs, keys: &[Option<String>], report: &mut RunReport) {
    if report.outputs.iter().all(Vec::is_empty) {
        return;
    }
    let events: Vec<(Option<String>, Vec<crate::output::Output>)> =
        report.outputs.iter().zip(keys).map(|(outs, key)| (key.clone(), outs.clone())).collect();
    let delivery = outputs.deliver(&events).await;
    for (lines, extra) in report.logs.iter_mut().zip(delivery.logs) {
        lines.extend(extra);
    }
    if let Some(message) = delivery.failure {
        tracing::warn!(error = %message, "an output failed; the event fails and can be retried or replayed");
        report.cut_at(delivery.delivered, message.to_string());
    }
}
