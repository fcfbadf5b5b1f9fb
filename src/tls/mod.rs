//! HTTPS beside the plain listener: certificate files reloaded when they change, or automatic
//! certificates over ACME (instant-acme, HTTP-01 answered on the plain listener).
//!
//! Start-up never waits for ACME: a cached certificate is served at once, and until one
//! exists HTTPS refuses handshakes while `/healthz` says "certificate pending". The crypto
//! provider (aws-lc-rs) is chosen explicitly, so nothing panics for want of a default one.
//! `acceptor.rs` is the TLS acceptor `net::Guarded` wraps, `store.rs` the swappable
//! certificate and the status, `files.rs` the file watcher, `acme.rs` ordering and renewal,
//! `cache.rs` `<data>/acme/`, `shared.rs` the certificate shared through PostgreSQL, and
//! `scheme.rs` the per-protocol HTTPS requirement.

mod acceptor;
mod acme;
mod cache;
mod files;
mod scheme;
mod shared;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;

pub use acceptor::{TlsAcceptor, TlsIo};
pub use acme::Challenges;
pub use scheme::{HttpsGate, base_url, https_base};
pub use store::{CertStore, Loaded, TlsStatus};

use crate::config::{CertSource, Config};
use crate::metrics::Metrics;

/// Why HTTPS could not be set up, or a certificate not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Pem(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("acme: {0}")]
    Acme(String),
    #[error("shared certificate store: {0}")]
    Shared(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every TLS connection the server makes or takes.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process default, for the clients that ask rustls for one (ACME,
/// outputs); a default someone already installed is kept.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// HTTPS while the server runs: the rustls config to accept with, the status, the tasks
/// that keep the certificate current.
pub struct Tls {
    pub server_config: Arc<rustls::ServerConfig>,
    pub status: TlsStatus,
    pub handshake_timeout: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Tls {
    /// Sets HTTPS up from `[tls]` (`None` when off): certificate files are read now (an
    /// unreadable pair stops the start); ACME serves its cache and orders in the background.
    pub async fn start(
        config: &Config,
        metrics: Arc<Metrics>,
        challenges: Challenges,
    ) -> Result<Option<Self>, TlsError> {
        let Some(source) = config.tls.source() else { return Ok(None) };
        let provider = provider();
        let certs = Arc::new(CertStore::default());
        let status = TlsStatus::new(Some(metrics));
        let task = match source {
            CertSource::Files { cert, key } => {
                let watch = files::Watch { cert, key, certs: certs.clone(), status: status.clone() };
                watch.load_now(&provider)?;
                tokio::spawn(watch.run(provider.clone(), config.reload_interval))
            }
            CertSource::Acme { domains, contact, directory, ca_root } => {
                let order = acme::Settings { domains, contact, directory, ca_root };
                let cache = cache::Cache::open(&config.data_dir)?;
                let url = config.journal.postgres_url.clone().filter(|u| !u.0.is_empty());
                let shared = url.map(|url| Arc::new(shared::Shared::new(url)));
                if let Some(shared) = &shared {
                    challenges.share(shared.clone());
                }
                let manager =
                    acme::Manager { order, cache, shared, challenges, certs: certs.clone(), status: status.clone() };
                manager.serve_cached(&provider);
                tokio::spawn(manager.run(provider.clone()))
            }
        };
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(certs);
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let handshake_timeout = Duration::from_millis(config.tls.handshake_timeout_ms.max(1));
        Ok(Some(Self { server_config: Arc::new(server_config), status, handshake_timeout, task }))
    }

    /// Stops keeping the certificate current.
    pub fn stop(&self) {
        self.task.abort();
    }
}
