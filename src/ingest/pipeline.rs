//! Handing a request's events to the scripts exactly once, and journaling the outcome.
//!
//! Events whose idempotency key was already processed are recorded as duplicates and not
//! processed again; a key another request is processing right now makes this one fail with
//! the protocol's retryable reply. The scripts run first, collecting effects in memory; then
//! one journal submission records the request, every event's outcome and the effects of the
//! processed ones, and applies those effects. Only then is the request acknowledged.

use std::collections::HashSet;
use std::sync::Arc;

use super::reply::Rejection;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::output::Outputs;
use crate::script::{RunReport, ScriptHost};
use crate::store::journal::{EventRecord, Outcome, RequestRecord, Submission, Target};
use crate::store::shared::{LedgerRow, SharedClaim};
use crate::store::{Claim, Journal, SeenKeys, Shared};

/// Scripts, the dedup memory and the journal.
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
}

/// Requests with at most this many events run their script on the request's own thread: a
/// hand-off to a blocking thread costs more than the script. Larger ones (Wattmon blocks)
/// run on a blocking thread so that they do not hold up other requests.
const INLINE_EVENTS: usize = 16;

/// One event and whether it goes to the script.
struct Planned {
    record: EventRecord,
    run: bool,
}

impl Pipeline {
    /// The permits of [`Pipeline::large_runs`]: the number of CPUs.
    pub fn large_runs_limit() -> tokio::sync::Semaphore {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Processes `events` of `request`; Ok once everything new is journaled and written.
    pub async fn process(
        &self,
        key_spec: &[String],
        request: RequestRecord,
        events: Vec<Event>,
    ) -> Result<(), Rejection> {
        self.process_with(|event| event.idempotency_key(key_spec), request, events).await
    }

    /// Processes `events` whose idempotency keys are known already (a replay of events
    /// recorded by another instance), by event index.
    pub async fn process_keyed(
        &self,
        keys: &std::collections::HashMap<usize, String>,
        request: RequestRecord,
        events: Vec<Event>,
    ) -> Result<(), Rejection> {
        self.process_with(|event| keys.get(&event.index).cloned(), request, events).await
    }

    async fn process_with(
        &self,
        key_of: impl Fn(&Event) -> Option<String>,
        request: RequestRecord,
        events: Vec<Event>,
    ) -> Result<(), Rejection> {
        let (mut todo, mut plan) = self.claim(key_of, events)?;
        if let Some(shared) = &self.shared {
            self.claim_shared(shared, &mut todo, &mut plan).await?;
        }
        let claimed: Vec<String> = plan.iter().filter(|p| p.run).filter_map(|p| p.record.key.clone()).collect();
        let report = self.run(&request.protocol, todo).await;
        let mut report = match report {
            Ok(r) => r,
            Err(e) => {
                self.seen.release(&claimed);
                self.settle_shared(Vec::new(), claimed, Vec::new()).await;
                return Err(e);
            }
        };
        let keys: Vec<Option<String>> = plan.iter().filter(|p| p.run).map(|p| p.record.key.clone()).collect();
        deliver(&self.outputs, &keys, &mut report).await;
        settle(&mut plan, &report);
        let processed: Vec<String> = plan
            .iter()
            .filter(|p| p.run && p.record.outcome == Outcome::Processed)
            .filter_map(|p| p.record.key.clone())
            .collect();
        let count = |o: Outcome| plan.iter().filter(|p| p.record.outcome == o).count();
        let tallies = [
            (Outcome::Processed, count(Outcome::Processed)),
            (Outcome::Failed, count(Outcome::Failed)),
            (Outcome::Duplicate, count(Outcome::Duplicate)),
        ];
        let protocol = request.protocol.clone();
        let ledger: Vec<LedgerRow> = match &self.shared {
            None => Vec::new(),
            Some(_) => plan
                .iter()
                .map(|p| LedgerRow {
                    protocol: request.protocol.clone(),
                    operation: request.operation.clone(),
                    source: request.source.clone(),
                    received_ms: request.received_ms,
                    key: p.record.key.clone(),
                    status: p.record.outcome.as_str().into(),
                    error: p.record.error.clone(),
                    data: p.record.data.clone(),
                })
                .collect(),
        };
        let submission = Submission {
            target: Target::New(request),
            events: plan.into_iter().map(|p| p.record).collect(),
            effects: crate::store::effects::coalesce(report.effects),
        };
        if let Err(e) = self.journal.submit(submission).await {
            self.seen.release(&claimed);
            self.settle_shared(Vec::new(), claimed, Vec::new()).await;
            tracing::error!(protocol = %protocol, error = %e, "the request could not be journaled or written");
            return Err(Rejection::Failed("processing failed: data could not be stored".into()));
        }
        self.seen.commit(&processed);
        self.seen.release(&claimed);
        let released: Vec<String> = claimed.into_iter().filter(|k| !processed.contains(k)).collect();
        self.settle_shared(processed, released, ledger).await;
        for (outcome, n) in tallies {
            self.metrics.events(&protocol, outcome.as_str(), n);
        }
        match report.failure {
            None => Ok(()),
            Some(f) => {
                tracing::error!(protocol = %protocol, event = f.index, error = %f.message, "script failed");
                Err(Rejection::Failed(format!(
                    "processing failed at event {} (script error, see the server log)",
                    f.index
                )))
            }
        }
    }

    /// Claims the locally new keys in the shared journal: keys another instance processed
    /// become duplicates; a key another instance is processing makes the request retry.
    async fn claim_shared(
        &self,
        shared: &Arc<Shared>,
        todo: &mut Vec<Event>,
        plan: &mut [Planned],
    ) -> Result<(), Rejection> {
        let keys: Vec<String> = plan.iter().filter(|p| p.run).filter_map(|p| p.record.key.clone()).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let (client, asked) = (shared.clone(), keys.clone());
        let answer = tokio::task::spawn_blocking(move || client.claim(&asked)).await;
        let answers = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                self.seen.release(&keys);
                tracing::error!(error = %e, "cannot claim keys in the shared journal");
                return Err(Rejection::Failed("processing failed: the shared journal is unreachable; retry".into()));
            }
            Err(e) => {
                self.seen.release(&keys);
                return Err(Rejection::Failed(format!("processing stopped unexpectedly ({e})")));
            }
        };
        if answers.contains(&SharedClaim::Claimed) {
            let ours: Vec<String> =
                keys.iter().zip(&answers).filter(|(_, a)| **a == SharedClaim::New).map(|(k, _)| k.clone()).collect();
            self.seen.release(&keys);
            self.settle_shared(Vec::new(), ours, Vec::new()).await;
            return Err(Rejection::Failed("the same data is being processed by another instance; retry".into()));
        }
        let done: Vec<&String> =
            keys.iter().zip(&answers).filter(|(_, a)| **a == SharedClaim::Done).map(|(k, _)| k).collect();
        if done.is_empty() {
            return Ok(());
        }
        let mut skipped = HashSet::new();
        for p in plan.iter_mut().filter(|p| p.run) {
            if p.record.key.as_ref().is_some_and(|k| done.contains(&k)) {
                p.run = false;
                p.record.outcome = Outcome::Duplicate;
                skipped.insert(p.record.index);
            }
        }
        todo.retain(|e| !skipped.contains(&e.index));
        let done: Vec<String> = done.into_iter().cloned().collect();
        self.seen.commit(&done);
        Ok(())
    }

    /// Tells the shared journal (if any) what became of claimed keys; failures are left to
    /// the stale-claim settling.
    async fn settle_shared(&self, done: Vec<String>, released: Vec<String>, ledger: Vec<LedgerRow>) {
        let Some(shared) = self.shared.clone() else { return };
        if done.is_empty() && released.is_empty() && ledger.is_empty() {
            return;
        }
        let result = tokio::task::spawn_blocking(move || shared.settle(&done, &released, &ledger)).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "could not settle keys in the shared journal; will retry from the local journal");
        }
    }

    async fn run(&self, protocol: &str, todo: Vec<Event>) -> Result<RunReport, Rejection> {
        if todo.is_empty() {
            return Ok(RunReport::empty());
        }
        let started = std::time::Instant::now();
        let report = if todo.len() <= INLINE_EVENTS {
            Ok(self.scripts.run(protocol, &todo))
        } else {
            let _permit = self.large_runs.acquire().await;
            let (scripts, name) = (self.scripts.clone(), protocol.to_owned());
            tokio::task::spawn_blocking(move || scripts.run(&name, &todo))
                .await
                .map_err(|e| Rejection::Failed(format!("processing stopped unexpectedly ({e})")))
        };
        self.metrics.script_run(protocol, started.elapsed().as_secs_f64());
        report
    }

    /// Plans every event: new ones run (their keys claimed), duplicates do not.
    fn claim(
        &self,
        key_of: impl Fn(&Event) -> Option<String>,
        events: Vec<Event>,
    ) -> Result<(Vec<Event>, Vec<Planned>), Rejection> {
        let mut todo = Vec::with_capacity(events.len());
        let mut plan: Vec<Planned> = Vec::with_capacity(events.len());
        let mut in_request = HashSet::new();
        for event in events {
            let key = key_of(&event);
            let run = match &key {
                None => true,
                Some(k) if !in_request.insert(k.clone()) => false,
                Some(k) => match self.seen.claim(k) {
                    Claim::New => true,
                    Claim::Seen => false,
                    Claim::InFlight => {
                        let claimed: Vec<String> =
                            plan.iter().filter(|p| p.run).filter_map(|p| p.record.key.clone()).collect();
                        self.seen.release(&claimed);
                        return Err(Rejection::Failed(
                            "the same data is being processed by another request; retry".into(),
                        ));
                    }
                },
            };
            let data = event.to_json_string();
            let outcome = if run { Outcome::Processed } else { Outcome::Duplicate };
            let blob = event.blob.is_some();
            plan.push(Planned {
                record: EventRecord { index: event.index, key, data, blob, outcome, error: None, logs: Vec::new() },
                run,
            });
            if run {
                todo.push(event);
            }
        }
        Ok((todo, plan))
    }
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

/// Sets each run event's outcome from the script report.
fn settle(plan: &mut [Planned], report: &RunReport) {
    for (n, p) in plan.iter_mut().filter(|p| p.run).enumerate() {
        p.record.logs = report.logs.get(n).cloned().unwrap_or_default();
        if n < report.processed {
            continue;
        }
        p.record.outcome = Outcome::Failed;
        p.record.error = Some(match &report.failure {
            Some(f) if n == report.processed => f.message.clone(),
            _ => "not processed: an earlier event of the request failed".into(),
        });
    }
}
