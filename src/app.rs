//! Assembles the server: specs → operations and routes, scripts, stores, docs; runs it.
//!
//! [`App::build`] does everything `hookyard check` needs to report (all problems at once);
//! [`run`] serves a built app on a listener until `shutdown` resolves, so tests bind port 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::TcpAcceptor;
use poem::{EndpointExt, Route, Server, get, handler, web::Html};

use sha2::{Digest, Sha256};

use crate::admin::{Admin, AdminState};
use crate::config::credentials::CredentialNeed;
use crate::config::{self, Config, CredentialsReport};
use crate::docs::{self, Document};
use crate::ingest::{Operation, PathEndpoint, Pipeline};
use crate::metrics::{Metrics, MetricsEndpoint};
use crate::net::{Guarded, Limits};
use crate::output::{Catalog, Outputs};
use crate::plugin::Plugins;
use crate::script::{Extensions, ScriptHost};
use crate::spec::Registry;
use crate::store::{DataDir, Journal, SeenKeys, Shared};

/// A fully loaded server, not yet listening.
pub struct App {
    pub config: Config,
    pub credentials: CredentialsReport,
    pub scripts: Arc<ScriptHost>,
    paths: BTreeMap<String, Vec<Arc<Operation>>>,
    documents: BTreeMap<String, Document>,
    pub data: Arc<DataDir>,
    /// What scripts may send to (the outputs connect when the server starts).
    pub catalog: Arc<Catalog>,
}

impl App {
    /// Loads specs, credentials, the data directory and scripts; every problem is returned.
    pub fn build(mut config: Config) -> Result<Self, Vec<String>> {
        let registry = Registry::load(config.spec_dir.as_deref()).map_err(strings)?;
        // Config mistakes first: with any, no credential is stored.
        let mut errors = crate::auth::check_protocols(&mut config, &registry);
        let needs = credential_needs(&registry);
        let store = errors.is_empty();
        let credentials =
            config::fill_missing_credentials(&mut config, &needs, store).map_err(|e| vec![e.to_string()])?;
        let data = DataDir::open(&config.data_dir)
            .map_err(|e| vec![format!("data directory {}: {e}", config.data_dir.display())])?;
        let data = Arc::new(data);
        let names: Vec<String> = registry.protocols.iter().map(|p| p.name.clone()).collect();
        let plugins = Plugins::load(&config.plugins).unwrap_or_else(|e| {
            errors.extend(strings(e));
            Plugins::default()
        });
        for protocol in plugins.handled_protocols().filter(|p| !names.contains(p)) {
            errors.push(format!("[plugins] handles = [{protocol:?}]: there is no protocol {protocol}"));
        }
        let catalog = Catalog::from_settings(&config.outputs).map(Arc::new).unwrap_or_else(|e| {
            errors.push(e);
            Arc::new(Catalog::default())
        });
        let ext = Arc::new(Extensions { plugins, catalog: Some(catalog.clone()) });
        let scripts = ScriptHost::load(config.scripts_dir.as_deref(), &names, &config.script_limits, ext);
        errors.extend(scripts.as_ref().err().map(|e| strings(e.iter().collect::<Vec<_>>())).unwrap_or_default());
        let mut paths: BTreeMap<String, Vec<Arc<Operation>>> = BTreeMap::new();
        let mut documents = BTreeMap::new();
        for protocol in registry.protocols {
            let settings = config.protocol(&protocol.name);
            for op in protocol.operations {
                match Operation::build(op, &settings) {
                    Ok(op) => paths.entry(op.spec.path.clone()).or_default().push(Arc::new(op)),
                    Err(e) => {
                        let message = format!("[protocols.{}] {e}", protocol.name);
                        if !errors.contains(&message) {
                            errors.push(message);
                        }
                    }
                }
            }
            let json = serde_json::to_string_pretty(&protocol.document).unwrap_or_default();
            documents.insert(protocol.name.clone(), Document { yaml: protocol.source_text, json });
        }
        errors.extend(duplicate_routes(&paths));
        let scripts = match scripts {
            Ok(s) if errors.is_empty() => Arc::new(s),
            _ => return Err(errors),
        };
        Ok(Self { config, credentials, scripts, paths, documents, data, catalog })
    }

    /// Connects the outputs of `[outputs]` (inside a Tokio runtime).
    pub fn open_outputs(&self) -> std::io::Result<Arc<Outputs>> {
        Outputs::open(&self.config.outputs, self.data.root(), self.catalog.clone())
            .map(Arc::new)
            .map_err(std::io::Error::other)
    }

    /// How many protocols are served.
    pub fn protocol_count(&self) -> usize {
        self.documents.len()
    }

    /// The poem endpoint serving every route.
    pub fn endpoint(&self, pipeline: Arc<Pipeline>) -> impl poem::Endpoint + 'static {
        let names: Vec<String> = self.documents.keys().cloned().collect();
        let token_digest: Option<[u8; 32]> =
            self.config.admin.token.as_ref().map(|token| Sha256::digest(token.0.as_bytes()).into());
        let admin = Admin {
            state: token_digest.map(|token_digest| AdminState {
                token_digest,
                journal: pipeline.journal.clone(),
                scripts: pipeline.scripts.clone(),
                seen: pipeline.seen.clone(),
                outputs: pipeline.outputs.clone(),
                shared: pipeline.shared.clone(),
                pipeline: pipeline.clone(),
            }),
        };
        let management = docs::management(names.clone(), admin);
        let mut documents: BTreeMap<String, Document> = self
            .documents
            .iter()
            .map(|(k, d)| (k.clone(), Document { yaml: d.yaml.clone(), json: d.json.clone() }))
            .collect();
        documents.insert("management".into(), Document { yaml: management.spec_yaml(), json: management.spec() });
        let mut all_names = names;
        all_names.push("management".into());
        let mut route = Route::new()
            .at("/docs", get(docs_page).data(Arc::new(docs::DocsPage::new(all_names))))
            .at("/metrics", get(MetricsEndpoint { metrics: pipeline.metrics.clone(), token_digest }))
            .at("/openapi/:file", docs::documents_endpoint(documents));
        for (path, ops) in &self.paths {
            let body_timeout = Duration::from_millis(self.config.server_limits.body_timeout_ms.max(1));
            route = route.at(path, PathEndpoint { ops: ops.clone(), pipeline: pipeline.clone(), body_timeout });
        }
        // poem-openapi's own refusals (missing token, bad parameter) in the documented JSON shape.
        route.nest(
            "/",
            poem::IntoEndpoint::into_endpoint(management).catch_all_error(|e: poem::Error| async move {
                let response = e.into_response();
                if response.content_type().is_some_and(|c| c.starts_with("application/json")) {
                    return response;
                }
                let status = response.status();
                let text = response.into_body().into_string().await.unwrap_or_default();
                let body = serde_json::json!({ "message": text }).to_string();
                poem::Response::builder().status(status).content_type("application/json; charset=utf-8").body(body)
            }),
        )
    }
}

#[handler]
fn docs_page(page: poem::web::Data<&Arc<docs::DocsPage>>) -> Html<String> {
    Html(page.html().to_owned())
}

fn strings<E: ToString>(errors: Vec<E>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn credential_needs(registry: &Registry) -> Vec<CredentialNeed> {
    let mut needs: Vec<CredentialNeed> = Vec::new();
    for p in &registry.protocols {
        for block in p.operations.iter().flat_map(|o| &o.auth) {
            if let Some((key, kind)) = crate::auth::credential_need(block)
                && !needs.iter().any(|n| n.protocol == p.name && n.key == key)
            {
                needs.push(CredentialNeed { protocol: p.name.clone(), key, kind });
            }
        }
    }
    needs
}

fn duplicate_routes(paths: &BTreeMap<String, Vec<Arc<Operation>>>) -> Vec<String> {
    let mut errors = Vec::new();
    for (path, ops) in paths {
        for (i, a) in ops.iter().enumerate() {
            if let Some(b) = ops[i + 1..].iter().find(|b| b.spec.method == a.spec.method) {
                errors.push(format!(
                    "{} {path} is declared by both {} and {}",
                    a.spec.method, a.spec.protocol, b.spec.protocol
                ));
            }
        }
    }
    errors
}

/// Serves `app` on `listener` until `shutdown` resolves; in-flight requests get 10 s.
pub async fn run(
    listener: std::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let _lock = lock_data_dir(&app.data)?;
    let journal = Journal::open(app.data.clone(), app.config.journal.clone()).map_err(std::io::Error::other)?;
    let journal = Arc::new(journal);
    let seen = SeenKeys::new(journal.processed_keys().map_err(std::io::Error::other)?);
    let metrics = Arc::new(Metrics::new(app.data.root().join(".hookyard/journal.db")));
    let outputs = app.open_outputs()?;
    let shared = open_shared(&app, &journal).await?;
    let settler = shared.clone().map(|s| tokio::spawn(settle_stale_claims(s, journal.clone())));
    let pipeline = Arc::new(Pipeline {
        scripts: app.scripts.clone(),
        seen: Arc::new(seen),
        journal: journal.clone(),
        metrics,
        outputs,
        shared,
        large_runs: Pipeline::large_runs_limit(),
    });
    listener.set_nonblocking(true)?;
    let limits = &app.config.server_limits;
    let acceptor = Guarded::new(
        TcpAcceptor::from_std(listener)?,
        Limits {
            max_connections: limits.max_connections,
            header_timeout: Duration::from_millis(limits.header_timeout_ms.max(1)),
        },
    );
    let idle_timeout = Duration::from_millis(limits.idle_timeout_ms.max(1));
    let watcher = tokio::spawn(watch_scripts(app.scripts.clone(), app.config.reload_interval));
    let endpoint = app.endpoint(pipeline);
    let result = Server::new_with_acceptor(acceptor)
        .idle_timeout(idle_timeout)
        .run_with_graceful_shutdown(endpoint, shutdown, Some(Duration::from_secs(10)))
        .await;
    watcher.abort();
    if let Some(settler) = settler {
        settler.abort();
    }
    let closing = journal.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    result
}

/// Connects the shared journal of `[journal] postgres_url` and settles this instance's claims
/// left from before (a crash, a lost connection).
async fn open_shared(app: &App, journal: &Arc<Journal>) -> std::io::Result<Option<Arc<Shared>>> {
    let Some(url) = app.config.journal.postgres_url.clone().filter(|u| !u.0.is_empty()) else {
        return Ok(None);
    };
    let instance = app.config.journal.instance.clone().unwrap_or_else(|| default_instance(&app.data));
    let journal = journal.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let shared = Shared::open(&url.0, &instance)?;
        let settled = settle_with(&shared, &journal, Duration::ZERO)?;
        Ok::<_, String>((shared, settled))
    })
    .await
    .map_err(std::io::Error::other)?;
    let (shared, (done, released)) = opened.map_err(std::io::Error::other)?;
    tracing::info!(instance = %shared.instance, settled_done = done, released, "shared journal (PostgreSQL) connected");
    Ok(Some(Arc::new(shared)))
}

fn settle_with(shared: &Shared, journal: &Journal, min_age: Duration) -> Result<(usize, usize), String> {
    let reader = journal.reader().map_err(|e| e.to_string())?;
    shared.settle_stale(min_age, |key| crate::store::journal::query::key_processed(&reader, key).unwrap_or(false))
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
pub fn lock_data_dir(data: &DataDir) -> std::io::Result<std::fs::File> {
    let dir = data.root().join(".hookyard");
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
    file.try_lock().map_err(|_| {
        std::io::Error::other(format!("another hookyard process is using the data directory {}", data.root().display()))
    })?;
    Ok(file)
}

async fn watch_scripts(scripts: Arc<ScriptHost>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let host = scripts.clone();
        let Ok((reloaded, failed)) = tokio::task::spawn_blocking(move || host.poll()).await else {
            continue;
        };
        for name in reloaded {
            tracing::info!(protocol = %name, "script reloaded");
        }
        for e in failed {
            tracing::error!(error = %e, "script change not applied: it does not compile; the previous version keeps running");
        }
    }
}
