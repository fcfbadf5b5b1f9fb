//! `[tls]`: HTTPS beside the plain listener, with certificate files or automatic certificates
//! over ACME, and the checks that refuse contradictory or incomplete settings at load.
//!
//! Either `cert_file` + `key_file` (PEM, reloaded when they change) or `acme_domains` (with
//! `acme_contact`, `acme_directory`, `acme_ca_root`); never both, never neither.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::problems::Problem;

/// Let's Encrypt's production directory, the default `acme_directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The `[tls]` section as written; `listen` unset means the section is absent (no HTTPS).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Where HTTPS listens, e.g. `0.0.0.0:443` (the plain `listen` stays for HTTP-01
    /// challenges and plain-HTTP devices).
    #[serde(deserialize_with = "address")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain (leaf first); reloaded when the file changes.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`; reloaded when the file changes.
    pub key_file: Option<PathBuf>,
    /// Domains to get a certificate for over ACME (HTTP-01 on the plain listener).
    pub acme_domains: Vec<String>,
    /// Contact addresses for the ACME account (`mailto:you@example.org`).
    pub acme_contact: Vec<String>,
    /// The ACME directory URL (default: Let's Encrypt production).
    pub acme_directory: String,
    /// A PEM root certificate to trust for `acme_directory` (private or test CAs).
    pub acme_ca_root: Option<PathBuf>,
    /// A TLS handshake must complete within this time (then the request-head deadline starts).
    pub handshake_timeout_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            cert_file: None,
            key_file: None,
            acme_domains: Vec::new(),
            acme_contact: Vec::new(),
            acme_directory: LETS_ENCRYPT.to_owned(),
            acme_ca_root: None,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// Where the certificate comes from, once the section has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    Files { cert: PathBuf, key: PathBuf },
    Acme { domains: Vec<String>, contact: Vec<String>, directory: String, ca_root: Option<PathBuf> },
}

impl TlsSettings {
    /// Whether HTTPS is configured.
    pub fn enabled(&self) -> bool {
        self.listen.is_some()
    }

    /// The certificate source of a checked section (`None` when HTTPS is off).
    pub fn source(&self) -> Option<CertSource> {
        self.listen?;
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            return Some(CertSource::Files { cert: cert.clone(), key: key.clone() });
        }
        Some(CertSource::Acme {
            domains: self.acme_domains.clone(),
            contact: self.acme_contact.clone(),
            directory: self.acme_directory.clone(),
            ca_root: self.acme_ca_root.clone(),
        })
    }
}

fn address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    super::values::parse_listen(&text).map(Some).map_err(serde::de::Error::custom)
}

/// Settings that contradict each other or are incomplete, each at its key.
pub(super) fn check(tls: &TlsSettings) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut refuse = |key: &str, message: &str| {
        let mut path = vec!["tls".to_owned()];
        if !key.is_empty() {
            path.push(key.to_owned());
        }
        problems.push(Problem { path, message: message.to_owned() });
    };
    if tls.listen.is_none() {
        refuse("", "listen is missing (the HTTPS address, e.g. \"0.0.0.0:443\")");
    }
    if tls.handshake_timeout_ms == 0 {
        refuse("handshake_timeout_ms", "must be at least 1");
    }
    let files = tls.cert_file.is_some() || tls.key_file.is_some();
    let acme = !tls.acme_domains.is_empty();
    let acme_only = !tls.acme_contact.is_empty() || tls.acme_ca_root.is_some() || tls.acme_directory != LETS_ENCRYPT;
    match (files, acme) {
        (true, true) => refuse("acme_domains", "set either cert_file/key_file or acme_domains, not both"),
        (true, false) if tls.cert_file.is_none() => refuse("key_file", "key_file is set but cert_file is missing"),
        (true, false) if tls.key_file.is_none() => refuse("cert_file", "cert_file is set but key_file is missing"),
        (true, false) if acme_only => refuse("cert_file", "acme_* keys have no effect with cert_file/key_file"),
        (false, false) => refuse("", "needs cert_file and key_file, or acme_domains"),
        _ => {}
    }
    if acme {
        check_acme(tls, &mut refuse);
    }
    problems
}

fn check_acme(tls: &TlsSettings, refuse: &mut impl FnMut(&str, &str)) {
    if let Some(bad) = tls.acme_domains.iter().find(|d| !is_domain(d)) {
        refuse("acme_domains", &format!("{bad:?} is not a domain name (HTTP-01 needs one, no wildcard or IP)"));
    }
    if let Some(bad) = tls.acme_contact.iter().find(|c| !c.starts_with("mailto:") || c.len() <= 7) {
        refuse("acme_contact", &format!("{bad:?} must be a mailto: address"));
    }
    if !tls.acme_directory.starts_with("https://") {
        refuse("acme_directory", "must be an https:// URL");
    }
}

/// A DNS name HTTP-01 can validate: dot-separated labels of letters, digits and '-'.
fn is_domain(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && !name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_names_not_wildcards_or_addresses() {
        assert!(is_domain("hooks.example.org"));
        assert!(!is_domain("*.example.org"));
        assert!(!is_domain("localhost"));
        assert!(!is_domain("a..b"));
        assert!(!is_domain("127.0.0.1"));
    }
}
