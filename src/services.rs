//! The services behind a built app, opened once in one order and owned in one place: the
//! data-directory lock, the journal (with its start-up redo), the dedup memory, metrics,
//! outputs and the shared journal. `serve` and `hookyard replay` both open them here
//! (through `App::open_services`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::ingest::Pipeline;
use crate::metrics::Metrics;
use crate::output::{Catalog, Outputs};
use crate::script::ScriptHost;
use crate::store::dedup::CACHE_KEYS;
use crate::store::journal::{JournalError, query};
use crate::store::shared::SharedError;
use crate::store::{DataDir, Journal, SeenKeys, Shared};

/// A service could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("another hookyard process is using the data directory {0}")]
    Locked(String),
    #[error("cannot lock the data directory: {0}")]
    Lock(std::io::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("outputs: {0}")]
    Outputs(#[from] crate::output::OutputError),
    #[error(transparent)]
    Shared(#[from] SharedError),
    #[error("a start-up task stopped unexpectedly")]
    Stopped,
}

/// The open services; [`Services::close`] ends them in order.
pub struct Services {
    pub pipeline: Arc<Pipeline>,
    settler: Option<tokio::task::JoinHandle<()>>,
    _lock: std::fs::File,
}

impl Services {
    /// Opens every service (inside a Tokio runtime). The journal's redo has run when this
    /// returns, so the data directory is consistent before anything is served.
    pub async fn open(
        config: &Config,
        data: &Arc<DataDir>,
        scripts: Arc<ScriptHost>,
        catalog: Arc<Catalog>,
    ) -> Result<Self, ServicesError> {
        let lock = lock_data_dir(data)?;
        let (opening, retention, clock) = (data.clone(), config.journal.clone(), config.clock.clone());
        let journal = tokio::task::spawn_blocking(move || Journal::open(opening, retention, clock))
            .await
            .map_err(|_| ServicesError::Stopped)??;
        let journal = Arc::new(journal);
        let seen = SeenKeys::on_disk(journal.key_index(), CACHE_KEYS);
        let metrics = Arc::new(Metrics::new(data.root().join(".hookyard/journal.db")));
        let outputs = Outputs::open(&config.outputs, data.root(), catalog)?;
        let shared = open_shared(config, data, &journal).await?;
        let settler = shared.clone().map(|s| tokio::spawn(settle_stale_claims(s, journal.clone())));
        let pipeline = Arc::new(Pipeline {
            scripts,
            seen: Arc::new(seen),
            journal,
            metrics,
            outputs: Arc::new(outputs),
            shared,
            large_runs: Pipeline::large_runs_limit(),
            lockout: Arc::new(crate::lockout::Lockout::new(config.server_limits.max_failed_attempts)),
            activity: Arc::default(),
            clock: config.clock.clone(),
        });
        seed_sources(&pipeline)?;
        Ok(Self { pipeline, settler, _lock: lock })
    }

    /// Stops the stale-claim settling and closes the journal after a final checkpoint.
    pub async fn close(self) {
        if let Some(settler) = &self.settler {
            settler.abort();
        }
        let journal = self.pipeline.journal.clone();
        let _ = tokio::task::spawn_blocking(move || journal.close()).await;
    }
}

/// The sources of the journal's latest requests, as last seen before this start.
fn seed_sources(pipeline: &Pipeline) -> Result<(), ServicesError> {
    let reader = pipeline.journal.reader()?;
    for (protocol, source, at_ms) in crate::store::journal::stats::recent_arrivals(&reader)? {
        pipeline.seen(&protocol, &source, at_ms);
    }
    Ok(())
}

/// Adds the journal's accepted and failed requests of the day before `until_ms` to the
/// per-minute counters of the health view (run in the background after start-up: on a large
/// journal the scan takes seconds).
pub fn seed_outcomes(pipeline: &Pipeline, until_ms: i64) -> Result<(), JournalError> {
    const MINUTE: i64 = 60_000;
    let from = (until_ms - crate::activity::outcomes::MINUTES as i64 * MINUTE).div_euclid(MINUTE) * MINUTE;
    // 10,000 requests a query, each its own read: one query over a busy day (or over ten
    // minutes that held two million requests) kept one snapshot for seconds, and no
    // checkpoint could copy the WAL past it meanwhile. A minute split over two chunks sums.
    const CHUNK: i64 = 10_000;
    // A pause between two reads: the WAL restarts only when no read is under way, and reads
    // back to back held it from restarting for the whole seeding (~2 s on a 10 M journal).
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
    let started = std::time::Instant::now();
    let reader = pipeline.journal.reader()?;
    let ids = crate::store::journal::stats::ids_since(&reader, from)?;
    let mut at = ids.start;
    while at < ids.end {
        if at > ids.start {
            std::thread::sleep(PAUSE);
        }
        let to = (at + CHUNK).min(ids.end);
        for b in crate::store::journal::stats::buckets(&reader, at..to, from, until_ms, MINUTE)? {
            let minute = from / MINUTE + b.bucket;
            let counts = crate::activity::Minute { minute, accepted: b.accepted, rejected: 0, failed: b.failed };
            pipeline.activity.outcomes.add(&b.protocol, counts);
        }
        at = to;
    }
    let ms = started.elapsed().as_millis() as u64;
    tracing::debug!(requests = ids.end - ids.start, ms, "the health view's last day read from the journal");
    Ok(())
}

/// Connects the shared journal of `[journal] postgres_url` and settles this instance's claims
/// left from before (a crash, a lost connection).
async fn open_shared(
    config: &Config,
    data: &DataDir,
    journal: &Arc<Journal>,
) -> Result<Option<Arc<Shared>>, ServicesError> {
    let Some(url) = config.journal.postgres_url.clone().filter(|u| !u.0.is_empty()) else {
        return Ok(None);
    };
    let instance = config.journal.instance.clone().unwrap_or_else(|| default_instance(data));
    let journal = journal.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let shared = Shared::open(&url.0, &instance)?;
        let settled = settle_with(&shared, &journal, Duration::ZERO)?;
        Ok::<_, SharedError>((shared, settled))
    })
    .await
    .map_err(|_| ServicesError::Stopped)?;
    let (shared, (done, released)) = opened?;
    tracing::info!(instance = %shared.instance, settled_done = done, released, "shared journal (PostgreSQL) connected");
    Ok(Some(Arc::new(shared)))
}

/// Settles this instance's claims older than `min_age` from the local journal; a key whose
/// local state cannot be read stops the settling (it is neither done nor released).
pub fn settle_with(shared: &Shared, journal: &Journal, min_age: Duration) -> Result<(usize, usize), SharedError> {
    let reader = journal.reader()?;
    shared.settle_stale(min_age, |key| query::key_processed(&reader, key))
}

/// Every 30 s: settle claims this instance has held for over two minutes.
async fn settle_stale_claims(shared: Arc<Shared>, journal: Arc<Journal>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (s, j) = (shared.clone(), journal.clone());
        match tokio::task::spawn_blocking(move || settle_with(&s, &j, Duration::from_secs(120))).await {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((done, released))) => tracing::info!(done, released, "settled stale claims in the shared journal"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot settle stale claims yet"),
            Err(_) => {}
        }
    }
}

/// Host name and data directory: unique per instance unless configured.
pub fn default_instance(data: &DataDir) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    format!("{}:{}", host.trim(), data.root().display())
}

/// Holds `<data>/.hookyard/lock` exclusively: one process per data directory.
pub fn lock_data_dir(data: &DataDir) -> Result<std::fs::File, ServicesError> {
    let dir = data.state_dir().map_err(ServicesError::Lock)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(ServicesError::Lock)?;
    file.try_lock().map_err(|_| ServicesError::Locked(data.root().display().to_string()))?;
    Ok(file)
}
