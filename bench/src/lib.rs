//! Load generation for hookyard's benchmarks: unique, correctly signed or keyed requests per
//! protocol, latency histograms, and a check that every acknowledged event landed.
//!
//! Every request carries new data (fresh gridX ids, new reading timestamps, new CSV rows), so
//! the server's dedup never short-circuits the work being measured.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use md5::{Digest, Md5};

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Signed gridX events (one event per request), keep-alive.
    Gridx,
    /// AI-on-the-edge readings (one per request), keep-alive.
    Ai,
    /// AI-on-the-edge readings with a new connection per request, as the device does.
    AiNewConnection,
    /// Wattmon blocks of 100 CSV rows, keep-alive.
    Wattmon,
    /// Wattsense arrays of 10 values, keep-alive.
    Wattsense,
}

impl Scenario {
    /// Events per request.
    pub fn events_per_request(self) -> u64 {
        match self {
            Scenario::Gridx | Scenario::Ai | Scenario::AiNewConnection => 1,
            Scenario::Wattmon => 100,
            Scenario::Wattsense => 10,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Scenario::Gridx => "/gridx/events",
            Scenario::Ai | Scenario::AiNewConnection => "/ai-on-the-edge/webhook",
            Scenario::Wattmon => "/wattmon/export?token=bench-wattmon-token",
            Scenario::Wattsense => "/wattsense/values",
        }
    }
}

/// Credentials the generated requests use (they must match the server's config).
#[derive(Clone, Debug)]
pub struct Credentials {
    pub gridx_secret: String,
    pub api_key: String,
    pub wattmon_key: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            gridx_secret: "bench-secret".into(),
            api_key: "bench-key".into(),
            wattmon_key: "00:04:A3:00:00:01".into(),
        }
    }
}

/// The config section a server needs to accept these requests.
pub fn server_config(c: &Credentials) -> String {
    format!(
        "[protocols.ai-on-the-edge]\napi_keys = {{ \"{}\" = \"bench\" }}\n[protocols.gridx]\nsecrets = [\"{}\"]\n\
         [protocols.wattmon]\ntoken = \"bench-wattmon-token\"\nallowed_keys = [\"{}\"]\n[protocols.wattsense]\nauth = {{ type = \"none\" }}\n",
        c.api_key, c.gridx_secret, c.wattmon_key
    )
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Load {
    pub base: String,
    pub scenario: Scenario,
    pub concurrency: usize,
    pub duration: Duration,
    /// Total requests per second across workers (`None`: as fast as possible).
    pub rate: Option<u32>,
    pub credentials: Credentials,
    /// Where numbering starts (keep runs against one data directory unique).
    pub first: u64,
    /// Path to post to instead of the scenario's hookyard route (for other receivers).
    pub path: Option<String>,
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub sent: u64,
    pub acknowledged: u64,
    pub errors: u64,
    /// The errors by kind (`connect: …`, `send: …`, `status 503`, `timeout`, `refused: …`).
    pub error_kinds: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub latency: hdrhistogram::Histogram<u64>,
    pub events_per_request: u64,
}

impl Report {
    pub fn requests_per_second(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64()
    }

    pub fn events_per_second(&self) -> f64 {
        self.requests_per_second() * self.events_per_request as f64
    }

    /// Latency at quantile `q`, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

/// Builds the body and headers of request number `n`.
pub fn request(scenario: Scenario, c: &Credentials, n: u64) -> (Vec<u8>, Vec<(&'static str, String)>) {
    match scenario {
        Scenario::Gridx => {
            // gridX refuses events older than its freshness window: the time is now.
            let time = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let body = format!(
                r#"{{"id":"{:08x}-0000-4000-8000-{:012x}","time":"{time}","specVersion":"1.0","source":"/systems/bench","type":"ping","data":{{"message":"bench {n}"}}}}"#,
                n >> 48,
                n & 0xffff_ffff_ffff
            );
            let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(c.gridx_secret.as_bytes()).expect("any key");
            mac.update(body.as_bytes());
            let sig = format!("sha512={}", hex::encode(mac.finalize().into_bytes()));
            (body.into_bytes(), vec![("X-Signature", sig), ("Content-Type", "application/json".into())])
        }
        Scenario::Ai | Scenario::AiNewConnection => {
            let body = format!(
                r#"[{{"timestamp":"2026-01-01T00:00:00+0000","timestampLong":"{}","name":"main","rawValue":"{n}","value":"{n}","preValue":"{n}","rate":"0.000120","changeAbsolute":"0.0006","error":"no error"}}]"#,
                1_700_000_000 + n
            );
            let headers = vec![
                ("User-Agent", "ESP32 Meter reader".into()),
                ("Content-Type", "application/json".into()),
                ("APIKEY", c.api_key.clone()),
            ];
            (body.into_bytes(), headers)
        }
        Scenario::Wattmon => {
            let mut data = String::from("Time,Voltage,Current\n");
            for i in 0..100 {
                data.push_str(&format!("{},52.{},3.{}\n", n * 100 + i, i % 10, i % 7));
            }
            let md5 = hex::encode(Md5::digest(data.as_bytes()));
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("key", &c.wattmon_key)
                .append_pair("md5sum", &md5)
                .append_pair("data", &data)
                .finish();
            (body.into_bytes(), vec![("Content-Type", "application/x-www-form-urlencoded".into())])
        }
        Scenario::Wattsense => {
            let values: Vec<String> = (0..10)
                .map(|i| {
                    format!(
                        r#"{{"deviceId":"bench","property":"p{i}","timestamp":{},"payload":{i},"unit":"W"}}"#,
                        1_700_000_000_000 + n * 10 + i
                    )
                })
                .collect();
            (format!("[{}]", values.join(",")).into_bytes(), vec![("Content-Type", "application/json".into())])
        }
    }
}

/// One worker's HTTP/1.1 connection: hyper's bare client connection, no pool, no URL parsing
/// per request, the request written in one go. (A full client library cost more CPU per
/// request than the servers under test, on the same two cores.)
struct Connection {
    address: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Connection {
    fn new(base: &str) -> Self {
        let address = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
        Self { address, sender: None }
    }

    /// Sends one request; the status and body of the reply.
    async fn send(&mut self, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
        let sender = match &mut self.sender {
            Some(s) if s.is_ready() => s,
            _ => {
                let stream =
                    tokio::net::TcpStream::connect(&self.address).await.map_err(|e| format!("connect: {e}"))?;
                stream.set_nodelay(true).map_err(|e| format!("connect: {e}"))?;
                let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
                tokio::spawn(conn);
                self.sender.insert(sender)
            }
        };
        let reply = sender.send_request(request).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(format!("send: {e}"));
            }
        };
        let status = reply.status().as_u16();
        let body = reply.into_body().collect().await.map_err(|e| format!("reply body: {e}"))?.to_bytes();
        Ok((status, body))
    }

    /// Closes the connection (the next request opens a new one).
    fn close(&mut self) {
        self.sender = None;
    }
}

/// Runs the load; every worker sends until the duration is over.
pub async fn run(load: Load) -> Report {
    let counter = Arc::new(AtomicU64::new(load.first));
    let until = Instant::now() + load.duration;
    let started = Instant::now();
    let per_worker_interval = load.rate.map(|r| Duration::from_secs_f64(load.concurrency as f64 / f64::from(r.max(1))));
    // At a rate, the workers' ticks are spread evenly over one interval: started in step, all
    // of them would send at the same instant, a burst of `concurrency` requests every
    // interval instead of a steady stream.
    let mut workers = Vec::new();
    for i in 0..load.concurrency {
        let (load, counter) = (load.clone(), counter.clone());
        let ticks =
            per_worker_interval.map(|every| (started + every.mul_f64(i as f64 / load.concurrency as f64), every));
        workers.push(tokio::spawn(async move { worker(load, counter, until, ticks).await }));
    }
    let mut report = Report {
        sent: 0,
        acknowledged: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        elapsed: Duration::ZERO,
        latency: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
        events_per_request: load.scenario.events_per_request(),
    };
    for w in workers {
        let tally = w.await.expect("worker");
        report.sent += tally.sent;
        report.acknowledged += tally.ok;
        for (kind, n) in tally.errors {
            report.errors += n;
            *report.error_kinds.entry(kind).or_default() += n;
        }
        report.latency.add(tally.latency).expect("same bounds");
    }
    report.elapsed = started.elapsed();
    report
}

/// What one worker sent, what was acknowledged, its errors by kind, and their latencies.
struct Tally {
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency: hdrhistogram::Histogram<u64>,
}

/// `ticks`: at a rate, the first send's time and the interval between two.
async fn worker(load: Load, counter: Arc<AtomicU64>, until: Instant, ticks: Option<(Instant, Duration)>) -> Tally {
    let mut connection = Connection::new(&load.base);
    let path = load.path.as_deref().unwrap_or(load.scenario.path()).to_owned();
    let latency = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut tally = Tally { sent: 0, ok: 0, errors: BTreeMap::new(), latency };
    let mut ticker = ticks.map(|(first, every)| tokio::time::interval_at(first.into(), every));
    while Instant::now() < until {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let (body, headers) = request(load.scenario, &load.credentials, n);
        let mut req = hyper::Request::post(path.as_str()).header(hyper::header::HOST, connection.address.as_str());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("valid request");
        let t0 = Instant::now();
        tally.sent += 1;
        let reply = tokio::time::timeout(Duration::from_secs(10), connection.send(req)).await;
        let outcome = match reply {
            Ok(Ok((status, body))) => refusal(load.scenario, status, &body),
            Ok(Err(e)) => Some(e),
            Err(_) => {
                connection.close();
                Some("timeout".to_owned())
            }
        };
        if load.scenario == Scenario::AiNewConnection {
            connection.close();
        }
        match outcome {
            None => {
                tally.ok += 1;
                let _ = tally.latency.record(t0.elapsed().as_micros().max(1) as u64);
            }
            Some(kind) => *tally.errors.entry(kind).or_default() += 1,
        }
    }
    tally
}

/// Why a reply is not an acknowledgement: `None` for a 2xx (and for Wattmon, which answers
/// 200 with `ERROR: …`, the body `OK`).
fn refusal(scenario: Scenario, status: u16, body: &[u8]) -> Option<String> {
    if !(200..300).contains(&status) {
        return Some(format!("status {status}"));
    }
    if scenario == Scenario::Wattmon && body != b"OK" {
        let text = String::from_utf8_lossy(body);
        return Some(format!("refused: {}", text.chars().take(80).collect::<String>()));
    }
    None
}

/// How many events of `scenario` landed in the default scripts' output under `data`.
pub fn landed(scenario: Scenario, data: &Path, c: &Credentials) -> u64 {
    let lines = |rel: &str| std::fs::read_to_string(data.join(rel)).map(|t| t.lines().count() as u64).unwrap_or(0);
    match scenario {
        Scenario::Gridx => lines("gridx/events.jsonl"),
        Scenario::Ai | Scenario::AiNewConnection => lines("ai-on-the-edge/bench/webhook_log.csv").saturating_sub(1),
        Scenario::Wattmon => {
            // wattmon/<key spelled aa-bb-…>-<header digest>.csv, one file per header.
            let device = c.wattmon_key.to_ascii_lowercase().replace(':', "-");
            let files = std::fs::read_dir(data.join("wattmon")).into_iter().flatten().flatten();
            let names: Vec<String> = files.map(|f| f.file_name().to_string_lossy().into_owned()).collect();
            names
                .iter()
                .filter(|n| n.starts_with(&device))
                .map(|n| lines(&format!("wattmon/{n}")).saturating_sub(1))
                .sum()
        }
        Scenario::Wattsense => lines("wattsense/values.jsonl"),
    }
}
