//! Prometheus metrics (`GET /metrics`, text format), with the `prometheus-client` crate.
//!
//! Requests by protocol/route/outcome, events by protocol/outcome, script run latency, and the
//! journal's size on disk (read when scraped). `/metrics` is served by the management API
//! (`admin`), behind the admin token: volumes per protocol are not for the public.

use std::path::PathBuf;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    protocol: String,
    route: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    protocol: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    protocol: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

fn script_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    events: Family<EventLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    script_seconds: Family<ProtocolLabels, Histogram, fn() -> Histogram>,
    journal_bytes: Gauge,
    journal_path: PathBuf,
}

impl Metrics {
    pub fn new(journal_path: PathBuf) -> Self {
        let mut registry = Registry::with_prefix("hookyard");
        let requests = Family::<RequestLabels, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let script_seconds =
            Family::<ProtocolLabels, Histogram, fn() -> Histogram>::new_with_constructor(script_histogram);
        let journal_bytes = Gauge::default();
        registry.register("requests", "Requests by protocol, route and outcome", requests.clone());
        registry.register("events", "Events by protocol and outcome (processed, failed, duplicate)", events.clone());
        registry.register(
            "failures",
            "Accepted requests that could not be processed (retryable), by protocol and kind: script, plugin, \
             output, journal, busy, busy_elsewhere, shared_unreachable, stopped",
            failures.clone(),
        );
        registry.register("script_seconds", "Time the scripts took per request", script_seconds.clone());
        registry.register("journal_bytes", "Size of the journal on disk", journal_bytes.clone());
        Self { registry, requests, events, failures, script_seconds, journal_bytes, journal_path }
    }

    pub fn request(&self, protocol: &str, route: &str, outcome: &str) {
        let labels = RequestLabels { protocol: protocol.into(), route: route.into(), outcome: outcome.into() };
        self.requests.get_or_create(&labels).inc();
    }

    pub fn events(&self, protocol: &str, outcome: &str, n: usize) {
        if n > 0 {
            self.events
                .get_or_create(&EventLabels { protocol: protocol.into(), outcome: outcome.into() })
                .inc_by(n as u64);
        }
    }

    /// One request that failed after it was accepted, by kind.
    pub fn failure(&self, protocol: &str, kind: &str) {
        self.failures.get_or_create(&FailureLabels { protocol: protocol.into(), kind: kind.into() }).inc();
    }

    pub fn script_run(&self, protocol: &str, seconds: f64) {
        self.script_seconds.get_or_create(&ProtocolLabels { protocol: protocol.into() }).observe(seconds);
    }

    /// The text exposition, with the journal size read now.
    pub fn render(&self) -> String {
        let size = |suffix: &str| {
            let mut p = self.journal_path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        self.journal_bytes.set((size("") + size("-wal")) as i64);
        let mut text = String::new();
        let _ = encode(&mut text, &self.registry);
        text
    }
}
