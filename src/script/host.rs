//! The state a script run carries into the host functions: the call tag of one request's
//! events (`HostCall`), what they recorded event by event (`Recorder`), and what scripts can
//! reach beyond the data directory (`Extensions`).

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{RunFailure, RunReport};
use crate::output::{Catalog, Output};
use crate::plugin::Plugins;
use crate::store::Effect;

/// What scripts can reach beyond the data directory: plugins and outputs.
#[derive(Default)]
pub struct Extensions {
    pub plugins: Plugins,
    /// The declared outputs; `None` when the host runs without them (dry runs).
    pub catalog: Option<Arc<Catalog>>,
}

/// Per-request state the host functions reach through the call tag.
#[derive(Clone)]
pub struct HostCall {
    pub(crate) protocol: Arc<str>,
    pub(crate) record: Arc<Mutex<Recorder>>,
    pub(crate) ext: Arc<Extensions>,
}

impl HostCall {
    /// What the run has recorded so far.
    pub(crate) fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the events of one run recorded. Host functions add to the current event (the first
/// one not closed yet); [`Recorder::close`] keeps what it recorded and moves on to the next,
/// [`Recorder::discard`] drops its effects and outputs (its log lines stay, for the journal).
#[derive(Default)]
pub(crate) struct Recorder {
    effects: Vec<Effect>,
    outputs: Vec<Output>,
    logs: Vec<String>,
    /// The binary body of each event of the run, in order.
    blobs: Vec<Option<Bytes>>,
    /// The run is one `on_events` call (events are closed by `event_done`).
    pub batch: bool,
    closed_logs: Vec<Vec<String>>,
    closed_outputs: Vec<Vec<Output>>,
    /// How many of `effects` the first n+1 closed events made.
    effect_ends: Vec<usize>,
}

impl Recorder {
    /// A recorder for a run over events with these binary bodies, in one `on_events` call
    /// (`batch`) or one `on_event` call each.
    pub fn new(blobs: Vec<Option<Bytes>>, batch: bool) -> Self {
        Self { blobs, batch, ..Self::default() }
    }

    /// The position, within the run, of the event being handled.
    pub fn current(&self) -> usize {
        self.effect_ends.len()
    }

    /// Whether every event of the run is closed.
    pub fn all_closed(&self) -> bool {
        self.current() >= self.blobs.len()
    }

    pub fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub fn output(&mut self, output: Output) {
        self.outputs.push(output);
    }

    pub fn log(&mut self, line: String) {
        self.logs.push(line);
    }

    /// The binary body of the event being handled.
    pub fn blob(&self) -> Option<Bytes> {
        self.blobs.get(self.current()).cloned().flatten()
    }

    /// The current event succeeded: what it recorded is kept.
    pub fn close(&mut self) {
        self.closed_logs.push(std::mem::take(&mut self.logs));
        self.closed_outputs.push(std::mem::take(&mut self.outputs));
        self.effect_ends.push(self.effects.len());
    }

    /// Only the first `n` events run (a handler plugin failed the next one).
    pub fn limit(&mut self, n: usize) {
        self.blobs.truncate(n);
    }

    /// The current event failed: its effects and outputs are dropped, its log lines kept.
    /// After every event was closed, the last one is the one that failed.
    pub fn discard(&mut self) {
        if self.all_closed() && self.effect_ends.pop().is_some() {
            self.closed_outputs.pop();
            let mut lines = self.closed_logs.pop().unwrap_or_default();
            lines.append(&mut self.logs);
            self.logs = lines;
        }
        self.effects.truncate(self.effect_ends.last().copied().unwrap_or(0));
        self.outputs.clear();
        self.closed_logs.push(std::mem::take(&mut self.logs));
    }

    /// The run's report: the closed events processed, then the failure if any.
    pub fn into_report(self, failure: Option<RunFailure>) -> RunReport {
        RunReport {
            processed: self.effect_ends.len(),
            failure,
            logs: self.closed_logs,
            effects: self.effects,
            outputs: self.closed_outputs,
            effect_ends: self.effect_ends,
        }
    }
}
