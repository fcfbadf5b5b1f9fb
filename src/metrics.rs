//! Prometheus metrics (`GET /metrics`, text format), with the `prometheus-client` crate.
//!
//! Requests by protocol/route/outcome, events by protocol/outcome, script run latency, and the
//! journal's size on disk (read when scraped). `/metrics` asks for the admin token like the
//! management API and is disabled without one: volumes per protocol are not for the public.

use std::path::PathBuf;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
    script_seconds: Family<ProtocolLabels, Histogram, fn() -> Histogram>,
    journal_bytes: Gauge,
    journal_path: PathBuf,
}

impl Metrics {
    pub fn new(journal_path: PathBuf) -> Self {
        let mut registry = Registry::with_prefix("hookyard");
        let requests = Family::<RequestLabels, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let script_seconds =
            Family::<ProtocolLabels, Histogram, fn() -> Histogram>::new_with_constructor(script_histogram);
        let journal_bytes = Gauge::default();
        registry.register("requests", "Requests by protocol, route and outcome", requests.clone());
        registry.register("events", "Events by protocol and outcome (processed, failed, duplicate)", events.clone());
        registry.register("script_seconds", "Time the scripts took per request", script_seconds.clone());
        registry.register("journal_bytes", "Size of the journal on disk", journal_bytes.clone());
        Self { registry, requests, events, script_seconds, journal_bytes, journal_path }
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

/// `GET /metrics`, behind the admin token.
pub struct MetricsEndpoint {
    pub metrics: Arc<Metrics>,
    pub token_digest: Option<[u8; 32]>,
}

impl Endpoint for MetricsEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let text = |status: StatusCode, body: &str| {
            Response::builder().status(status).content_type("text/plain").body(body.to_owned())
        };
        let Some(expected) = &self.token_digest else {
            return Ok(text(StatusCode::NOT_FOUND, "metrics are disabled: set [admin] token"));
        };
        let given = req.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if !bool::from(digest.ct_eq(expected)) {
            return Ok(text(StatusCode::UNAUTHORIZED, "invalid admin token"));
        }
        Ok(Response::builder()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(self.metrics.render()))
    }
}
