//! Running a request's events through its protocol's script: one `on_events(events)` call
//! when the script defines it, else one `on_event(event)` call per event, in order, stopping
//! at the first failure. Handler plugins run before the script, event by event.

use std::sync::{Arc, Mutex};

use rhai::{AST, Dynamic};

use super::engine;
use super::host::{HostCall, Recorder};
use super::{FailureKind, RunFailure, RunReport, ScriptHost};
use crate::event::Event;

type Failed = (FailureKind, String);

impl ScriptHost {
    /// Hands `events` to the protocol's script, in order, stopping at the first failure.
    pub fn run(&self, protocol: &str, events: &[&Event]) -> RunReport {
        if events.is_empty() {
            return RunReport::empty();
        }
        let loaded = self.read_scripts().get(protocol).map(|l| (l.ast.clone(), l.batch));
        let batch = loaded.as_ref().is_some_and(|(_, batch)| *batch);
        let recorder = Arc::new(Mutex::new(Recorder::new(events.iter().map(|e| e.blob.clone()).collect(), batch)));
        let host = HostCall { protocol: protocol.into(), record: recorder.clone(), ext: self.ext.clone() };
        let failure = match loaded {
            None => no_script(protocol, &host),
            Some((ast, true)) => self.run_batch(&ast, events, &host),
            Some((ast, false)) => self.run_each(&ast, events, &host),
        };
        drop(host);
        let recorder = Arc::try_unwrap(recorder)
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_else(|shared| std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner())));
        recorder.into_report(failure)
    }

    /// `on_event` once per event.
    fn run_each(&self, ast: &AST, events: &[&Event], host: &HostCall) -> Option<RunFailure> {
        let mut shared = engine::Shared::default();
        for (index, event) in events.iter().enumerate() {
            let result = self.event_value(&mut shared, event).and_then(|value| {
                engine::call(&self.engine, ast, "on_event", value, host.clone(), self.budget)
                    .map_err(|e| (FailureKind::Script, e.to_string()))
            });
            let mut recorder = host.recorder();
            match result {
                Ok(()) => recorder.close(),
                Err((kind, message)) => {
                    recorder.discard();
                    return Some(RunFailure { index, kind, message });
                }
            }
        }
        None
    }

    /// One `on_events` call with every event whose handler plugins passed; the events the
    /// script marked done (`event_done`) before an error keep their effects.
    fn run_batch(&self, ast: &AST, events: &[&Event], host: &HostCall) -> Option<RunFailure> {
        let mut values = Vec::with_capacity(events.len());
        let mut plugin_failure = None;
        let mut shared = engine::Shared::default();
        for (index, event) in events.iter().enumerate() {
            match self.event_value(&mut shared, event) {
                Ok(value) => values.push(value),
                Err((kind, message)) => {
                    plugin_failure = Some(RunFailure { index, kind, message });
                    break;
                }
            }
        }
        let count = values.len();
        host.recorder().limit(count);
        let result = match count {
            0 => Ok(()),
            n => engine::call(
                &self.engine,
                ast,
                "on_events",
                Dynamic::from_array(values),
                host.clone(),
                self.budget.times(n),
            ),
        };
        let mut recorder = host.recorder();
        match result {
            Ok(()) => {
                while recorder.current() < count {
                    recorder.close();
                }
                plugin_failure
            }
            Err(e) => {
                recorder.discard();
                let index = recorder.current();
                Some(RunFailure { index, kind: FailureKind::Script, message: e.to_string() })
            }
        }
    }

    /// The event as its script sees it, after its handler plugins.
    fn event_value<'e>(&self, shared: &mut engine::Shared<'e>, event: &'e Event) -> Result<Dynamic, Failed> {
        let notes = self
            .ext
            .plugins
            .handle(event)
            .map_err(|e| (FailureKind::Plugin { name: e.plugin().to_owned() }, e.to_string()))?;
        Ok(shared.event_value(event, notes))
    }
}

/// Fails the first event: the protocol has no script.
fn no_script(protocol: &str, host: &HostCall) -> Option<RunFailure> {
    host.recorder().discard();
    let message = format!("no script is loaded for protocol {protocol}");
    Some(RunFailure { index: 0, kind: FailureKind::Script, message })
}
