//! Splitting a journaled request's body again into its events, with the current specs
//! (the journal keeps the body once, not the events a second time).
//!
//! The split is the request path's own ([`super::split::split`]), without the freshness
//! check (a journaled event is as old as it is); the body's signature was checked when it
//! arrived and is not checked again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use super::Operation;
use super::split;
use crate::event::Origin;
use crate::form::Form;
use crate::spec::ext::BodyKind;
use crate::spec::readings::ReadingsSpec;
use crate::store::journal::query::{Derive, Derived, Received};

/// Every served operation by protocol and operation id.
#[derive(Default)]
pub struct Splits {
    ops: HashMap<(String, String), Arc<Operation>>,
}

impl Splits {
    pub fn new<'a>(ops: impl IntoIterator<Item = &'a Arc<Operation>>) -> Self {
        let ops =
            ops.into_iter().map(|op| ((op.spec.protocol.clone(), op.spec.operation_id.clone()), op.clone())).collect();
        Self { ops }
    }
}

impl Splits {
    /// The method and route of `operation` of `protocol`, as its spec declares them.
    pub fn route(&self, protocol: &str, operation: &str) -> Option<(String, String)> {
        let op = self.ops.get(&(protocol.to_owned(), operation.to_owned()))?;
        Some((op.spec.method.to_string(), op.spec.path.clone()))
    }
}

impl Derive for Splits {
    fn derive(&self, r: &Received) -> Result<Derived, String> {
        let key = (r.protocol.clone(), r.operation.clone());
        let op =
            self.ops.get(&key).ok_or_else(|| format!("the {} spec has no operation {}", r.protocol, r.operation))?;
        let spec = &op.spec;
        let content_type = r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
        let form = match spec.split.body_kind() {
            BodyKind::Form => {
                Some(ready(Form::parse(content_type, r.body.clone()))?.map_err(|e| format!("body: {e}"))?)
            }
            _ => None,
        };
        let origin = Origin {
            protocol: r.protocol.clone(),
            operation: r.operation.clone(),
            source: r.source.clone(),
            received_ms: r.received_ms,
        };
        let input = split::Input { body: r.body.clone(), form: form.as_ref(), query: &r.query, content_type };
        let parsed = split::split(spec, &origin, input).map_err(|problems| problems.join("; "))?;
        let keys = parsed.events.iter().map(|e| e.idempotency_key(&spec.idempotency)).collect();
        Ok(Derived { events: parsed.events, keys, spec: spec.digest.clone() })
    }

    fn readings(&self, protocol: &str, operation: &str) -> Option<&ReadingsSpec> {
        self.ops.get(&(protocol.to_owned(), operation.to_owned()))?.spec.readings.as_ref()
    }

    fn reading_protocols(&self) -> Vec<String> {
        let mut protocols: Vec<String> =
            self.ops.values().filter(|op| op.spec.readings.is_some()).map(|op| op.spec.protocol.clone()).collect();
        protocols.sort();
        protocols.dedup();
        protocols
    }
}

/// The output of a future that needs nothing to wait for (a form parsed from bytes in
/// memory), polled on this thread.
fn ready<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1024 {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Ok(out);
        }
    }
    Err("body: the form could not be read again".into())
}
