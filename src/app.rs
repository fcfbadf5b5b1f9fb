//! Assembles the server: specs → operations and routes, scripts, docs; runs it.
//!
//! [`App::build`] does everything `hookyard check` needs to report (all problems at once);
//! [`run`] opens the app's [`Services`] and serves it on a listener until `shutdown`
//! resolves, so tests bind port 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, AcceptorExt, TcpAcceptor};
use poem::{EndpointExt, Route, Server, get, handler, web::Html};

use sha2::{Digest, Sha256};

use crate::admin::health::{HealthApi, Problems};
use crate::admin::session::SessionApi;
use crate::admin::sessions::Sessions;
use crate::admin::{self, Admin, AdminState};
use crate::config::credentials::CredentialNeed;
use crate::config::{self, Config, CredentialsReport};
use crate::console;
use crate::docs::{self, Document};
use crate::ingest::{Intake, Operation, PathEndpoint, Pipeline};
use crate::net::{Guarded, Limits};
use crate::output::Catalog;
use crate::plugin::Plugins;
use crate::script::{Extensions, ScriptHost};
use crate::services::{Services, ServicesError};
use crate::spec::Registry;
use crate::store::DataDir;
use crate::tls::{Challenges, HttpsGate, Tls, TlsAcceptor, TlsStatus};

/// The operations of each route path.
type Paths = BTreeMap<String, Vec<Arc<Operation>>>;

/// A fully loaded server, not yet listening.
pub struct App {
    pub config: Config,
    pub credentials: CredentialsReport,
    pub scripts: Arc<ScriptHost>,
    paths: Paths,
    documents: BTreeMap<String, Document>,
    pub data: Arc<DataDir>,
    /// What scripts may send to (the outputs connect when the server starts).
    pub catalog: Arc<Catalog>,
    /// The operations' splits, for deriving journaled events again from their bodies.
    pub splits: Arc<crate::ingest::Splits>,
}

impl App {
    /// Loads specs, credentials, the data directory and scripts; every problem is returned.
    pub fn build(mut config: Config) -> Result<Self, Vec<String>> {
        let registry = Registry::load(config.spec_dir.as_deref()).map_err(strings)?;
        // Config mistakes first: with any, no credential is stored.
        let mut errors = crate::auth::check_protocols(&mut config, &registry);
        errors.extend(registry.dedup_window_problems(&config));
        let needs = credential_needs(&registry);
        let store = errors.is_empty();
        let credentials =
            config::fill_missing_credentials(&mut config, &needs, store).map_err(|e| vec![e.to_string()])?;
        let data = DataDir::open(&config.data_dir)
            .map_err(|e| vec![format!("data directory {}: {e}", config.data_dir.display())])?;
        let data = Arc::new(data);
        let names: Vec<String> = registry.protocols.iter().map(|p| p.name.clone()).collect();
        let operations = registry
            .protocols
            .iter()
            .map(|p| (p.name.clone(), p.operations.iter().map(|o| o.operation_id.clone()).collect()))
            .collect();
        let plugins = Plugins::load(&config.plugins, &operations).unwrap_or_else(|e| {
            errors.extend(strings(e));
            Plugins::default()
        });
        let catalog = Catalog::from_settings(&config.outputs).map(Arc::new).unwrap_or_else(|e| {
            errors.push(e.to_string());
            Arc::new(Catalog::default())
        });
        let ext = Arc::new(Extensions { plugins, catalog: Some(catalog.clone()) });
        let scripts = ScriptHost::load(config.scripts_dir.as_deref(), &names, &config.script_limits, ext);
        errors.extend(scripts.as_ref().err().map(|e| strings(e.iter().collect::<Vec<_>>())).unwrap_or_default());
        let (paths, documents) = routes(registry, &config, &mut errors);
        let scripts = match scripts {
            Ok(s) if errors.is_empty() => Arc::new(s),
            _ => return Err(errors),
        };
        let splits = Arc::new(crate::ingest::Splits::new(paths.values().flatten()));
        Ok(Self { config, credentials, scripts, paths, documents, data, catalog, splits })
    }

    /// Opens the services this app runs on (inside a Tokio runtime): lock, journal, outputs…
    pub async fn open_services(&self) -> Result<Services, ServicesError> {
        Services::open(&self.config, &self.data, self.scripts.clone(), self.catalog.clone()).await
    }

    /// How many protocols are served.
    pub fn protocol_count(&self) -> usize {
        self.documents.len()
    }

    /// The poem endpoint serving every route; `problems` is what `/healthz` reports, with the
    /// HTTPS status of `tls`.
    pub fn endpoint(
        &self,
        pipeline: Arc<Pipeline>,
        problems: Problems,
        tls: TlsParts,
    ) -> impl poem::Endpoint + 'static {
        let names: Vec<String> = self.documents.keys().cloned().collect();
        let token_digest: Option<[u8; 32]> =
            self.config.admin.token.as_ref().map(|token| Sha256::digest(token.0.as_bytes()).into());
        let enabled = token_digest.is_some();
        let https = HttpsGate::from_config(&self.config).map(Arc::new);
        let state: admin::Shared = Arc::new(token_digest.map(|token_digest| AdminState {
            token_digest,
            pipeline: pipeline.clone(),
            sessions: Sessions::new(self.config.admin.session_hours),
            https: https.clone(),
            splits: self.splits.clone(),
        }));
        let admin = Admin { state: state.clone() };
        let health = HealthApi { protocols: names.clone(), problems, tls: tls.status };
        let views = self.views(&admin.state, tls.listener);
        let management = admin::service(health, SessionApi { state: state.clone() }, admin, views);
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
            .at("/openapi/:file", docs::documents_endpoint(documents))
            .at("/.well-known/acme-challenge/:token", get(acme_challenge).data(tls.challenges))
            .nest("/console", console::endpoint(state));
        if !enabled {
            // Without a token nothing behind it exists: 404 before any token check.
            route = route.at("/api/*rest", admin_disabled).at("/metrics", admin_disabled);
        }
        let intake = Arc::new(Intake::new(&self.config.server_limits));
        for (path, ops) in &self.paths {
            let (ops, pipeline, intake, https) = (ops.clone(), pipeline.clone(), intake.clone(), https.clone());
            route = route.at(path, PathEndpoint { ops, pipeline, intake, https });
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

impl App {
    /// The health and setup APIs over `state`; test requests go to `listener`.
    fn views(&self, state: &admin::Shared, listener: Option<std::net::SocketAddr>) -> admin::Views {
        let protocols = self
            .documents
            .iter()
            .map(|(name, document)| admin::setup::ProtocolSetup {
                name: name.clone(),
                title: title(&document.json).unwrap_or_else(|| name.clone()),
                operations: self.paths.values().flatten().filter(|op| op.spec.protocol == *name).cloned().collect(),
                settings: self.config.protocol(name),
            })
            .collect();
        let trusted_proxies = self.config.server_limits.trusted_proxies.clone();
        admin::Views {
            stats: admin::stats::StatsApi { state: state.clone(), protocols: self.documents.keys().cloned().collect() },
            outputs: admin::outputs::OutputsApi {
                state: state.clone(),
                outputs: admin::outputs::configured(&self.config.outputs),
                retention: self.config.journal.clone(),
            },
            setup: admin::setup::SetupApi {
                state: state.clone(),
                setup: Arc::new(admin::setup::Setup {
                    protocols,
                    trusted_proxies,
                    listener,
                    tls_listener: self.config.tls.listen,
                    reveal_lockout: crate::lockout::Lockout::new(self.config.server_limits.max_failed_attempts),
                }),
            },
        }
    }
}

/// `info.title` of a spec document (JSON text).
fn title(json: &str) -> Option<String> {
    let document: serde_json::Value = serde_json::from_str(json).ok()?;
    document.pointer("/info/title")?.as_str().map(str::to_owned)
}

/// The management API and `/metrics` without an admin token configured.
#[handler]
fn admin_disabled() -> poem::Response {
    let body = serde_json::json!({ "message": "the management API is disabled: set [admin] token" }).to_string();
    poem::Response::builder()
        .status(poem::http::StatusCode::NOT_FOUND)
        .content_type("application/json; charset=utf-8")
        .body(body)
}

/// Every protocol's operations by path, and its documents; what cannot be built goes to
/// `errors` (each problem once).
fn routes(registry: Registry, config: &Config, errors: &mut Vec<String>) -> (Paths, BTreeMap<String, Document>) {
    let mut paths = Paths::new();
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
    (paths, documents)
}

/// What the endpoint shows of HTTPS: the status for `/healthz`, the open ACME challenges.
#[derive(Clone, Default)]
pub struct TlsParts {
    pub status: Option<TlsStatus>,
    pub challenges: Challenges,
    /// The plain listener's bound address (where the setup page's test requests go).
    pub listener: Option<std::net::SocketAddr>,
}

/// An HTTP-01 challenge's key authorization, while its order waits for validation.
#[handler]
async fn acme_challenge(
    poem::web::Path(token): poem::web::Path<String>,
    challenges: poem::web::Data<&Challenges>,
) -> poem::Response {
    match challenges.answer(&token).await {
        Some(answer) => poem::Response::builder().content_type("application/octet-stream").body(answer),
        None => poem::Response::builder().status(poem::http::StatusCode::NOT_FOUND).body("no such challenge"),
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

fn duplicate_routes(paths: &Paths) -> Vec<String> {
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

/// Serves `app` on `listener` (and on `[tls] listen` over HTTPS) until `shutdown` resolves;
/// in-flight requests get 10 s.
pub async fn run(
    listener: std::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    crate::tls::install_default_provider();
    let services = app.open_services().await.map_err(std::io::Error::other)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr().ok();
    let plain = TcpAcceptor::from_std(listener)?;
    let limits = &app.config.server_limits;
    let limits = Limits {
        max_connections: limits.max_connections,
        per_client: limits.max_connections_per_client,
        header_timeout: Duration::from_millis(limits.header_timeout_ms.max(1)),
        http2: limits.http2,
        trusted_proxies: limits.trusted_proxies.clone(),
    };
    let challenges = Challenges::default();
    let tls = Tls::start(&app.config, services.pipeline.metrics.clone(), challenges.clone())
        .await
        .map_err(std::io::Error::other)?;
    let problems = Problems::default();
    let watcher = tokio::spawn(watch_scripts(app.scripts.clone(), app.config.reload_interval, problems.clone()));
    let parts = TlsParts { status: tls.as_ref().map(|t| t.status.clone()), challenges, listener: bound };
    let endpoint = app.endpoint(services.pipeline.clone(), problems, parts);
    seed_in_background(services.pipeline.clone());
    let backfill =
        tokio::spawn(crate::store::journal::backfill::run(services.pipeline.journal.clone(), app.splits.clone()));
    let server = &app.config.server_limits;
    let options = ServeOptions {
        idle_timeout: Duration::from_millis(server.idle_timeout_ms.max(1)),
        max_streams: server.http2_max_streams,
    };
    let result = match (&tls, app.config.tls.listen) {
        (Some(tls), Some(address)) => {
            let secure = crate::net::listen(address)?;
            secure.set_nonblocking(true)?;
            let secure =
                TlsAcceptor::new(TcpAcceptor::from_std(secure)?, tls.server_config.clone(), tls.handshake_timeout);
            tracing::info!(%address, "HTTPS listening");
            serve(Guarded::new(plain.combine(secure), limits), options, endpoint, shutdown).await
        }
        _ => serve(Guarded::new(plain, limits), options, endpoint, shutdown).await,
    };
    if let Some(tls) = &tls {
        tls.stop();
    }
    watcher.abort();
    backfill.abort();
    services.close().await;
    result
}

/// Adds the journal's last day to the health view's counts, off the start-up path.
fn seed_in_background(pipeline: Arc<Pipeline>) {
    let started = crate::activity::now_ms();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::services::seed_outcomes(&pipeline, started) {
            tracing::warn!(error = %e, "the health view's counts of the last day could not be read from the journal");
        }
    });
}

/// One server over `acceptor` (the plain listener, or it and the TLS one under one guard).
/// How the server treats its connections.
struct ServeOptions {
    idle_timeout: Duration,
    /// Concurrent streams of one HTTP/2 connection (when `[server] http2` lets one in).
    max_streams: u32,
}

async fn serve<A: Acceptor + 'static>(
    acceptor: A,
    options: ServeOptions,
    endpoint: impl poem::Endpoint + 'static,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .idle_timeout(options.idle_timeout)
        .http2_max_concurrent_streams(options.max_streams)
        .run_with_graceful_shutdown(endpoint, shutdown, Some(Duration::from_secs(10)))
        .await
}

/// Reloads changed scripts; a change that does not compile is reported in `/healthz` until a
/// later change of that script loads.
async fn watch_scripts(scripts: Arc<ScriptHost>, every: Duration, problems: Problems) {
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
        for (name, e) in failed {
            tracing::error!(error = %e, "script change not applied: it does not compile; the previous version keeps running");
            problems.set(&name, format!("script change not applied: {e}; the previous version keeps running"));
        }
        problems.retain(&scripts.broken());
    }
}
