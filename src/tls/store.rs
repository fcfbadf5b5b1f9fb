//! The certificate being served: a rustls resolver whose certificate can be swapped while
//! connections come in, PEM pairs read and checked, and the status `/healthz` reports.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;
use crate::metrics::Metrics;

/// A certificate chain with its key, parsed and checked, and what it covers.
#[derive(Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names of the leaf.
    pub names: Vec<String>,
}

impl Loaded {
    /// Parses a PEM chain (leaf first) and its PEM private key; refuses a key that does not
    /// belong to the leaf.
    pub fn from_pem(chain: &[u8], key: &[u8], provider: &CryptoProvider) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
        let Some(leaf) = certs.first() else {
            return Err(TlsError::Pem("certificate: no CERTIFICATE block".into()));
        };
        let (not_before, not_after, names) = leaf_facts(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
        let key = CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::Pem(format!("key pair: {e}")))?;
        Ok(Self { key: Arc::new(key), not_before, not_after, names })
    }

    /// Whether the leaf names every one of `domains`.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains.iter().all(|d| self.names.iter().any(|n| n.eq_ignore_ascii_case(d)))
    }

    /// When to renew: a third of the lifetime before the end.
    pub fn renew_at(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before).max(0) / 3
    }
}

fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(i64, i64, Vec<String>), TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    Ok((validity.not_before.timestamp(), validity.not_after.timestamp(), names))
}

/// The resolver handed to rustls: the current certificate, swapped in place.
#[derive(Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").field("loaded", &self.get().is_some()).finish()
    }
}

impl CertStore {
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

/// What `/healthz` says about HTTPS, and the expiry metric kept with it.
#[derive(Clone)]
pub struct TlsStatus {
    inner: Arc<Mutex<State>>,
    metrics: Option<Arc<Metrics>>,
}

#[derive(Default)]
struct State {
    /// Why no certificate is served yet (or why the last renewal failed).
    pending: Option<String>,
    /// The served certificate: its names and expiry.
    serving: Option<(Vec<String>, i64)>,
}

impl TlsStatus {
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self { inner: Arc::default(), metrics }
    }

    /// A certificate is being served from now on.
    pub fn serving(&self, loaded: &Loaded) {
        let mut state = self.lock();
        state.serving = Some((loaded.names.clone(), loaded.not_after));
        state.pending = None;
        if let Some(m) = &self.metrics {
            m.tls_expiry(loaded.not_after);
        }
    }

    /// No certificate yet, or a renewal failed: `why` in words.
    pub fn pending(&self, why: String) {
        self.lock().pending = Some(why);
    }

    /// A problem sentence for `/healthz` while a certificate is pending.
    pub fn problem(&self) -> Option<String> {
        let state = self.lock();
        match (&state.serving, &state.pending) {
            (None, Some(why)) => Some(format!("tls: certificate pending: {why}; HTTPS refuses handshakes until then")),
            (None, None) => Some("tls: certificate pending".into()),
            (Some(_), Some(why)) => Some(format!("tls: certificate renewal failed: {why}; the current one is served")),
            (Some(_), None) => None,
        }
    }

    /// One line on what is served, for `/healthz`.
    pub fn summary(&self) -> String {
        let state = self.lock();
        match &state.serving {
            Some((names, not_after)) => {
                let until = time::OffsetDateTime::from_unix_timestamp(*not_after)
                    .ok()
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_default();
                format!("serving a certificate for {} until {until}", names.join(", "))
            }
            None => "certificate pending".into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
