//! Handing a request's events to the scripts exactly once, and syncing what they wrote.
//!
//! Events whose idempotency key was already processed are acknowledged without a second
//! processing; a key another request is processing right now makes this one fail with the
//! protocol's retryable reply. Keys of events that were processed (and synced) are recorded
//! even when a later event of the same request fails, so the sender's retry writes nothing
//! twice.

use std::collections::HashSet;
use std::sync::Arc;

use super::reply::Rejection;
use crate::event::Event;
use crate::script::ScriptHost;
use crate::store::{Claim, SeenKeys};

/// Scripts plus the memory of processed keys.
pub struct Pipeline {
    pub scripts: Arc<ScriptHost>,
    pub seen: Arc<SeenKeys>,
}

impl Pipeline {
    /// Processes `events`; Ok once everything new is handled and on disk.
    pub async fn process(
        &self,
        protocol: &str,
        key_spec: &[String],
        events: Vec<Event>,
    ) -> Result<(), Rejection> {
        let (todo, keys) = self.claim(key_spec, events)?;
        if todo.is_empty() {
            return Ok(());
        }
        let scripts = self.scripts.clone();
        let protocol_name = protocol.to_owned();
        let outcome = tokio::task::spawn_blocking(move || {
            let report = scripts.run(&protocol_name, &todo);
            let synced = report.touched.sync();
            (report, synced)
        })
        .await;
        let (report, synced) = match outcome {
            Ok(r) => r,
            Err(e) => {
                self.release_all(&keys);
                return Err(Rejection::Failed(format!(
                    "processing stopped unexpectedly ({e})"
                )));
            }
        };
        if let Err(e) = synced {
            self.release_all(&keys);
            tracing::error!(error = %e, "could not sync written data to disk");
            return Err(Rejection::Failed(
                "processing failed: data could not be stored".into(),
            ));
        }
        let done: Vec<String> = keys
            .iter()
            .take(report.processed)
            .flatten()
            .cloned()
            .collect();
        let rest: Vec<String> = keys
            .iter()
            .skip(report.processed)
            .flatten()
            .cloned()
            .collect();
        self.seen.release(&rest);
        if let Err(e) = self.seen.commit(&done) {
            tracing::error!(error = %e, "could not record processed keys");
            return Err(Rejection::Failed(
                "processing failed: data could not be stored".into(),
            ));
        }
        match report.failure {
            None => Ok(()),
            Some(f) => {
                tracing::error!(protocol, event = f.index, error = %f.message, "script failed");
                Err(Rejection::Failed(format!(
                    "processing failed at event {} (script error, see the server log)",
                    f.index
                )))
            }
        }
    }

    /// Splits events into those to process (with their claimed keys) and duplicates.
    fn claim(
        &self,
        key_spec: &[String],
        events: Vec<Event>,
    ) -> Result<(Vec<Event>, Vec<Option<String>>), Rejection> {
        let mut todo = Vec::with_capacity(events.len());
        let mut keys = Vec::with_capacity(events.len());
        let mut in_request = HashSet::new();
        for event in events {
            let Some(key) = event.idempotency_key(key_spec) else {
                todo.push(event);
                keys.push(None);
                continue;
            };
            if !in_request.insert(key.clone()) {
                continue;
            }
            match self.seen.claim(&key) {
                Claim::New => {
                    todo.push(event);
                    keys.push(Some(key));
                }
                Claim::Seen => {}
                Claim::InFlight => {
                    self.release_all(&keys);
                    return Err(Rejection::Failed(
                        "the same data is being processed by another request; retry".into(),
                    ));
                }
            }
        }
        Ok((todo, keys))
    }

    fn release_all(&self, keys: &[Option<String>]) {
        let all: Vec<String> = keys.iter().flatten().cloned().collect();
        self.seen.release(&all);
    }
}
