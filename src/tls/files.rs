//! Certificate files (`cert_file`, `key_file`): read at start, read again when their bytes
//! change, and swapped in without a restart. A changed pair that does not load (a key written
//! before its certificate, a typo) leaves the previous certificate served and is logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;

use super::TlsError;
use super::store::{CertStore, Loaded, TlsStatus};

/// The pair of files and where a loaded pair goes.
pub struct Watch {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub certs: Arc<CertStore>,
    pub status: TlsStatus,
}

impl Watch {
    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|source| TlsError::Read { path: path.clone(), source });
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    fn install(&self, loaded: &Loaded) {
        self.certs.set(loaded.key.clone());
        self.status.serving(loaded);
    }

    /// Loads the pair now (at start: a pair that does not load stops the start).
    pub fn load_now(&self, provider: &CryptoProvider) -> Result<(), TlsError> {
        let (cert, key) = self.read()?;
        let loaded = Loaded::from_pem(&cert, &key, provider)
            .map_err(|e| TlsError::Pem(format!("{} and {}: {e}", self.cert.display(), self.key.display())))?;
        self.install(&loaded);
        Ok(())
    }

    /// Polls the files every `every`; a changed pair that loads replaces the served one.
    pub async fn run(self, provider: Arc<CryptoProvider>, every: Duration) {
        let mut seen = self.read().ok();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = match self.read() {
                Ok(pair) => pair,
                Err(e) => {
                    if seen.take().is_some() {
                        tracing::warn!(error = %e, "certificate files unreadable; the loaded certificate is still served");
                    }
                    continue;
                }
            };
            if seen.as_ref() == Some(&now) {
                continue;
            }
            match Loaded::from_pem(&now.0, &now.1, &provider) {
                Ok(loaded) => {
                    self.install(&loaded);
                    tracing::info!(names = %loaded.names.join(", "), "certificate files reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "changed certificate files do not load; the previous certificate is still served")
                }
            }
            seen = Some(now);
        }
    }
}
