//! Prometheus metrics (`GET /metrics`, text format), with the `prometheus-client` crate.
//!
//! Requests by protocol/route/outcome, events by protocol/outcome, script run latency, and the
//! journal's size on disk (read when scraped), named as Prometheus asks (`_total` counters, base
//! units `_seconds` and `_bytes`), each with its help text. A scraper that asks for OpenMetrics
//! (Prometheus does) gets it, with `# UNIT` lines; everyone else (curl, `promtool check
//! metrics`) gets the Prometheus text format 0.0.4. `/metrics` is served by the management
//! API (`admin`), behind the admin token: volumes per protocol are not for the public.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    protocol: String,
    source: String,
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
    tls_expiry: Gauge,
    rejected_dropped: Counter,
    last_seen: Family<SourceLabels, Gauge<f64, AtomicU64>>,
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
        registry.register(
            "requests",
            "Requests received, by protocol, route and outcome (accepted, or the reason for refusing or failing one)",
            requests.clone(),
        );
        registry.register(
            "events",
            "Events of accepted requests, by protocol and outcome (processed, failed, duplicate)",
            events.clone(),
        );
        registry.register_with_unit(
            "script",
            "Wall time the protocol's script took over one request's events",
            Unit::Seconds,
            script_seconds.clone(),
        );
        registry.register_with_unit(
            "journal",
            "Size of the journal on disk, its write-ahead log included",
            Unit::Bytes,
            journal_bytes.clone(),
        );
        registry.register(
            "failures",
            "Accepted requests that could not be processed (retryable), by protocol and kind: script, plugin, \
             output, journal, disk_full, busy, busy_elsewhere, shared_unreachable, stopped",
            failures.clone(),
        );
        let tls_expiry = Gauge::default();
        registry.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "When the served HTTPS certificate expires, in Unix time (0 while none is served: HTTPS off, or a certificate pending)",
            Unit::Seconds,
            tls_expiry.clone(),
        );
        let rejected_dropped = Counter::default();
        registry.register(
            "rejected_dropped",
            "Refused requests not recorded in the journal's rejected table because its queue was full",
            rejected_dropped.clone(),
        );
        let last_seen = Family::<SourceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "source_last_seen_timestamp",
            "When each source (tenant, device, sender) last sent a request that was journaled, in Unix time \
             (at most 1000 sources; seeded from the journal at start-up)",
            Unit::Seconds,
            last_seen.clone(),
        );
        Self {
            registry,
            requests,
            events,
            failures,
            script_seconds,
            journal_bytes,
            journal_path,
            tls_expiry,
            rejected_dropped,
            last_seen,
        }
    }

    /// A source's last request (Unix ms); the caller bounds how many sources there are.
    pub fn source_seen(&self, protocol: &str, source: &str, at_ms: i64) {
        let labels = SourceLabels { protocol: protocol.into(), source: source.into() };
        self.last_seen.get_or_create(&labels).set(at_ms as f64 / 1000.0);
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

    /// A refused request that could not be recorded (the queue of rejected records was full).
    pub fn rejected_dropped(&self) {
        self.rejected_dropped.inc();
    }

    /// The served certificate's expiry (Unix seconds; 0 while none is served).
    pub fn tls_expiry(&self, unix_seconds: i64) {
        self.tls_expiry.set(unix_seconds);
    }

    pub fn script_run(&self, protocol: &str, seconds: f64) {
        self.script_seconds.get_or_create(&ProtocolLabels { protocol: protocol.into() }).observe(seconds);
    }

    /// The Prometheus text format, or OpenMetrics when `accept` asks for it.
    pub fn exposition(&self, accept: Option<&str>) -> (&'static str, String) {
        let openmetrics = self.render();
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (OPENMETRICS, openmetrics)
        } else {
            (PROMETHEUS_TEXT, prometheus_text(&openmetrics))
        }
    }

    /// The journal's size on disk now, its write-ahead log included (bytes).
    pub fn journal_size(&self) -> u64 {
        let size = |suffix: &str| {
            let mut p = self.journal_path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        size("") + size("-wal")
    }

    /// The OpenMetrics text exposition, with the journal size read now.
    pub fn render(&self) -> String {
        self.journal_bytes.set(self.journal_size() as i64);
        let mut text = String::new();
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// `openmetrics` in the Prometheus text format 0.0.4: a counter's HELP and TYPE lines name its
/// `_total` samples, `unknown` is `untyped`, and there are no `# UNIT` or `# EOF` lines. (Help
/// texts hold no `"` or `\\`, whose escapes the two formats write differently.)
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').map(|(_, text)| text);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), kind),
                "unknown" => (name.to_owned(), "untyped"),
                _ => (name.to_owned(), kind),
            };
            if let Some(text) = help.take() {
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if !(line.starts_with("# UNIT ") || line == "# EOF") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The content type of the OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_counter_samples_and_drops_openmetrics_only_lines() {
        let openmetrics = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total{a=\"1\"} 2\n\
                           # HELP x_size_bytes Size.\n# TYPE x_size_bytes gauge\n# UNIT x_size_bytes bytes\n\
                           x_size_bytes 7\n# HELP x_odd Odd.\n# TYPE x_odd unknown\nx_odd 1\n# EOF\n";
        let expected = "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total{a=\"1\"} 2\n\
                        # HELP x_size_bytes Size.\n# TYPE x_size_bytes gauge\nx_size_bytes 7\n\
                        # HELP x_odd Odd.\n# TYPE x_odd untyped\nx_odd 1\n";
        assert_eq!(prometheus_text(openmetrics), expected);
    }
}
