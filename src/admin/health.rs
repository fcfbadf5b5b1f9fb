//! `/healthz`: whether the server is up, which protocols it serves, and whether anything is
//! degraded (a script change that does not compile, so an older version keeps running; an
//! HTTPS certificate pending).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

/// Problems that leave the server serving, but not as configured: protocol → reason.
#[derive(Clone, Default)]
pub struct Problems(Arc<Mutex<BTreeMap<String, String>>>);

impl Problems {
    /// Records (or replaces) the problem of `protocol`.
    pub fn set(&self, protocol: &str, reason: String) {
        self.lock().insert(protocol.to_owned(), reason);
    }

    /// Keeps only the problems of `protocols` (the others were mended).
    pub fn retain(&self, protocols: &[String]) {
        self.lock().retain(|p, _| protocols.contains(p));
    }

    fn all(&self) -> Vec<String> {
        self.lock().iter().map(|(p, why)| format!("{p}: {why}")).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Health of the running server.
#[derive(Object)]
struct Health {
    /// `ok` while the server serves as configured; `degraded` while something is not applied
    /// (see `problems`).
    status: String,
    /// What is degraded, one sentence each.
    problems: Vec<String>,
    /// Protocols loaded from the spec directory.
    protocols: Vec<String>,
    /// The server's version.
    version: String,
    /// HTTPS, when `[tls]` is on: the certificate served and until when, or
    /// `certificate pending`.
    #[oai(skip_serializing_if_is_none)]
    tls: Option<String>,
}

/// The health endpoint.
pub struct HealthApi {
    pub protocols: Vec<String>,
    pub problems: Problems,
    /// The HTTPS status, when `[tls]` is on.
    pub tls: Option<crate::tls::TlsStatus>,
}

#[OpenApi]
impl HealthApi {
    /// Whether the server is up, which protocols it serves, and what is degraded.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Health> {
        let mut problems = self.problems.all();
        problems.extend(self.tls.as_ref().and_then(|t| t.problem()));
        Json(Health {
            status: if problems.is_empty() { "ok" } else { "degraded" }.into(),
            problems,
            protocols: self.protocols.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            tls: self.tls.as_ref().map(|t| t.summary()),
        })
    }
}
