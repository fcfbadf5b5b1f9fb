//! Automatic certificates over ACME (instant-acme): the account and the last certificate kept
//! in `<data>/acme/`, HTTP-01 challenges answered on the plain listener, renewal when a third
//! of the lifetime is left, and a growing pause after a failure.
//!
//! Nothing here blocks the start: the cached certificate is served at once and the ordering
//! runs as a background task. With a shared PostgreSQL journal, `shared.rs` makes one
//! instance order at a time and the others take its certificate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::crypto::CryptoProvider;

use super::TlsError;
use super::cache::Cache;
use super::shared::Shared;
use super::store::{CertStore, Loaded, TlsStatus};

/// The first pause after a failed order; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// One whole order (account, challenges, finalize, download) at most this long.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);
/// The ACME problem of an account the CA does not know (a test CA restarted, a deleted account).
const NO_ACCOUNT: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// What to order, from `[tls]`.
pub struct Settings {
    pub domains: Vec<String>,
    pub contact: Vec<String>,
    pub directory: String,
    pub ca_root: Option<PathBuf>,
}

/// HTTP-01 tokens and their key authorizations, answered at
/// `/.well-known/acme-challenge/<token>` while an order waits for validation. With a shared
/// journal they are in PostgreSQL too, so the CA may reach any instance.
#[derive(Clone)]
pub struct Challenges {
    local: Arc<Mutex<HashMap<String, String>>>,
    shared: Arc<OnceLock<Arc<Shared>>>,
    /// One PostgreSQL look-up at a time for tokens this instance does not know.
    lookups: Arc<tokio::sync::Semaphore>,
}

impl Default for Challenges {
    fn default() -> Self {
        Self { local: Arc::default(), shared: Arc::default(), lookups: Arc::new(tokio::sync::Semaphore::new(1)) }
    }
}

impl Challenges {
    /// Looks tokens this instance does not know up in `shared` from now on.
    pub fn share(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }

    /// The key authorization of `token`, while its challenge is open (here or, with a shared
    /// journal, on another instance).
    pub async fn answer(&self, token: &str) -> Option<String> {
        if let Some(answer) = self.lock().get(token).cloned() {
            return Some(answer);
        }
        let shared = self.shared.get()?;
        if !is_token(token) {
            return None;
        }
        let _one = self.lookups.acquire().await.ok()?;
        shared.challenge(token).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "an ACME challenge could not be looked up in the shared journal");
            None
        })
    }

    async fn open(&self, token: String, key_authorization: String) -> Result<(), TlsError> {
        if let Some(shared) = self.shared.get() {
            shared.open_challenge(&token, &key_authorization).await?;
        }
        self.lock().insert(token, key_authorization);
        Ok(())
    }

    async fn close(&self, tokens: &[String]) {
        self.lock().retain(|t, _| !tokens.contains(t));
        if let Some(shared) = self.shared.get()
            && let Err(e) = shared.close_challenges(tokens).await
        {
            tracing::warn!(error = %e, "ACME challenges could not be removed from the shared journal");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An ACME token: base64url, of a sensible length (anything else is not looked up).
fn is_token(token: &str) -> bool {
    (16..=128).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Keeps the ACME certificate current.
pub struct Manager {
    pub order: Settings,
    pub cache: Cache,
    pub shared: Option<Arc<Shared>>,
    pub challenges: Challenges,
    pub certs: Arc<CertStore>,
    pub status: TlsStatus,
}

/// The account as kept on disk, with the directory it belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl Manager {
    fn install(&self, loaded: &Loaded) {
        self.certs.set(loaded.key.clone());
        self.status.serving(loaded);
    }

    /// The cached certificate, when it loads and covers the configured domains.
    fn cached(&self, provider: &CryptoProvider) -> Option<Loaded> {
        let (chain, key) = self.cache.certificate()?;
        match Loaded::from_pem(&chain, &key, provider) {
            Ok(loaded) if loaded.covers(&self.order.domains) => Some(loaded),
            Ok(_) => {
                tracing::info!("the cached certificate does not cover every configured domain; ordering a new one");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the cached certificate does not load; ordering a new one");
                None
            }
        }
    }

    /// Serves the cached certificate now, or says that one is pending.
    pub fn serve_cached(&self, provider: &CryptoProvider) {
        match self.cached(provider) {
            Some(loaded) => {
                self.install(&loaded);
                tracing::info!(names = %loaded.names.join(", "), "serving the cached certificate");
            }
            None => {
                self.status.pending("not issued yet".into());
                tracing::warn!(domains = %self.order.domains.join(", "), "certificate pending: ordering one over ACME; HTTPS refuses handshakes until then");
            }
        }
    }

    /// Orders when there is no certificate or renewal is due; sleeps until then otherwise.
    pub async fn run(self, provider: Arc<CryptoProvider>) {
        let mut current = self.cached(&provider);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let due = current.as_ref().map_or(0, Loaded::renew_at) - now();
            if due > 0 {
                tokio::time::sleep(Duration::from_secs(due.unsigned_abs())).await;
                continue;
            }
            match tokio::time::timeout(ORDER_TIMEOUT, self.obtain(&provider)).await {
                Ok(Ok(loaded)) => {
                    self.install(&loaded);
                    tracing::info!(names = %loaded.names.join(", "), not_after = loaded.not_after, "certificate issued");
                    current = Some(loaded);
                    backoff = FIRST_BACKOFF;
                }
                outcome => {
                    let why = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} s", ORDER_TIMEOUT.as_secs()),
                    };
                    tracing::warn!(error = %why, retry_in_s = backoff.as_secs(), "certificate order failed");
                    self.status.pending(why);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// A fresh certificate: from the shared store when another instance has one, else ordered.
    async fn obtain(&self, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
        let Some(shared) = &self.shared else {
            return self.order_and_keep(provider).await;
        };
        let name = self.order.domains.join(",");
        if let Some(loaded) = self.adopt(shared, &name, provider).await? {
            return Ok(loaded);
        }
        let Some(lock) = shared.try_lock(&name).await? else {
            return Err(TlsError::Shared(
                "another instance is ordering this certificate; its certificate will be used".into(),
            ));
        };
        // Another instance may have finished between the look and the lock.
        if let Some(loaded) = self.adopt(shared, &name, provider).await? {
            return Ok(loaded);
        }
        let loaded = self.order_and_keep(provider).await?;
        let (chain, key) = self.cache.certificate().unwrap_or_default();
        shared.store(&lock, &name, &chain, &key, loaded.not_after).await?;
        Ok(loaded)
    }

    /// The shared certificate of `name`, when it is not yet due for renewal (kept in the cache).
    async fn adopt(&self, shared: &Shared, name: &str, provider: &CryptoProvider) -> Result<Option<Loaded>, TlsError> {
        let Some((chain, key)) = shared.fetch(name).await? else { return Ok(None) };
        let loaded = Loaded::from_pem(&chain, &key, provider)?;
        if !loaded.covers(&self.order.domains) || loaded.renew_at() <= now() {
            return Ok(None);
        }
        self.cache.save_certificate(&chain, &key)?;
        tracing::info!(names = %loaded.names.join(", "), "using the certificate another instance ordered");
        Ok(Some(loaded))
    }

    async fn order_and_keep(&self, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
        let (chain, key) = self.order().await?;
        let loaded = Loaded::from_pem(chain.as_bytes(), key.as_bytes(), provider)?;
        self.cache.save_certificate(chain.as_bytes(), key.as_bytes())?;
        Ok(loaded)
    }

    /// One ACME order over HTTP-01: the chain and private key (PEM).
    async fn order(&self) -> Result<(String, String), TlsError> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = self.order.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = match account.new_order(&NewOrder::new(&ids)).await {
            Ok(order) => order,
            Err(instant_acme::Error::Api(problem)) if problem.r#type.as_deref() == Some(NO_ACCOUNT) => {
                self.cache.forget_account();
                return Err(TlsError::Acme(format!("{problem}; a new account is made on the next attempt")));
            }
            Err(e) => return Err(acme(e)),
        };
        let mut tokens = Vec::new();
        let answered = self.answer_challenges(&mut order, &mut tokens).await;
        let ready = match answered {
            Ok(()) => order.poll_ready(&retry()).await.map_err(acme),
            Err(e) => Err(e),
        };
        self.challenges.close(&tokens).await;
        let status = ready?;
        if status != OrderStatus::Ready {
            let why = order.state().error.as_ref().map(ToString::to_string).unwrap_or_else(|| format!("{status:?}"));
            return Err(TlsError::Acme(format!("the order was not validated: {why}")));
        }
        let key = order.finalize().await.map_err(acme)?;
        let chain = order.poll_certificate(&retry()).await.map_err(acme)?;
        Ok((chain, key))
    }

    async fn answer_challenges(
        &self,
        order: &mut instant_acme::Order,
        tokens: &mut Vec<String>,
    ) -> Result<(), TlsError> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(acme)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(TlsError::Acme(format!("authorization is {other:?}"))),
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| TlsError::Acme("the CA offers no http-01 challenge".into()))?;
            let answer = challenge.key_authorization().as_str().to_owned();
            self.challenges.open(challenge.token.clone(), answer).await?;
            tokens.push(challenge.token.clone());
            challenge.set_ready().await.map_err(acme)?;
        }
        Ok(())
    }

    /// The stored account of this directory, or a new one (stored).
    async fn account(&self) -> Result<Account, TlsError> {
        let builder = || match &self.order.ca_root {
            Some(root) => Account::builder_with_root(root).map_err(acme),
            None => Account::builder().map_err(acme),
        };
        let stored = self.cache.account().and_then(|json| serde_json::from_slice::<StoredAccount>(&json).ok());
        if let Some(stored) = stored.filter(|s| s.directory == self.order.directory) {
            return builder()?.from_credentials(stored.credentials).await.map_err(acme);
        }
        let contact: Vec<&str> = self.order.contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) = builder()?.create(&new, self.order.directory.clone(), None).await.map_err(acme)?;
        let stored = StoredAccount { directory: self.order.directory.clone(), credentials };
        let json = serde_json::to_vec(&stored).map_err(|e| TlsError::Acme(format!("account: {e}")))?;
        self.cache.save_account(&json)?;
        tracing::info!(directory = %self.order.directory, "ACME account created");
        Ok(account)
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy::new().timeout(Duration::from_secs(60))
}

fn acme(e: instant_acme::Error) -> TlsError {
    TlsError::Acme(e.to_string())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
