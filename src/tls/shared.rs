//! The ACME certificate shared by the instances of one PostgreSQL journal: one instance orders
//! at a time (a session advisory lock per domain set), the others take its certificate from
//! the `hookyard_tls_certificates` table. Open HTTP-01 challenges are in
//! `hookyard_acme_challenges`, so whichever instance the CA reaches can answer them. The lock is held by a connection of its own and is
//! released when that connection closes, so a crashed instance never keeps it.

use tokio_postgres::{Client, NoTls};

use super::TlsError;
use crate::secret::Secret;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS hookyard_tls_certificates (
    name TEXT PRIMARY KEY,
    chain TEXT NOT NULL,
    private_key TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS hookyard_acme_challenges (
    token TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// The shared store of `[journal] postgres_url`.
pub struct Shared {
    url: Secret,
}

/// The ordering lock of one domain set; released when dropped (its connection closes).
pub struct OrderLock {
    client: Client,
}

impl Shared {
    pub fn new(url: Secret) -> Self {
        Self { url }
    }

    async fn connect(&self) -> Result<Client, TlsError> {
        // The URL may hold a password: errors say what failed, never the URL.
        let (client, connection) =
            tokio_postgres::connect(&self.url.0, NoTls).await.map_err(|e| TlsError::Shared(format!("connect: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client.batch_execute(SCHEMA).await.map_err(db)?;
        Ok(client)
    }

    /// The stored chain and key of `name`, if any.
    pub async fn fetch(&self, name: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>, TlsError> {
        let client = self.connect().await?;
        let row = client
            .query_opt("SELECT chain, private_key FROM hookyard_tls_certificates WHERE name = $1", &[&name])
            .await
            .map_err(db)?;
        Ok(row.map(|r| (r.get::<_, String>(0).into_bytes(), r.get::<_, String>(1).into_bytes())))
    }

    /// The ordering lock of `name`, or `None` while another instance holds it.
    pub async fn try_lock(&self, name: &str) -> Result<Option<OrderLock>, TlsError> {
        let client = self.connect().await?;
        let key = format!("hookyard-acme:{name}");
        let row =
            client.query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&key]).await.map_err(db)?;
        Ok(row.get::<_, bool>(0).then_some(OrderLock { client }))
    }

    /// Stores the certificate of `name` (under its lock).
    pub async fn store(
        &self,
        lock: &OrderLock,
        name: &str,
        chain: &[u8],
        key: &[u8],
        not_after: i64,
    ) -> Result<(), TlsError> {
        let (chain, key) = (String::from_utf8_lossy(chain).into_owned(), String::from_utf8_lossy(key).into_owned());
        lock.client
            .execute(
                "INSERT INTO hookyard_tls_certificates (name, chain, private_key, not_after) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET chain = $2, private_key = $3, not_after = $4, updated_at = now()",
                &[&name, &chain, &key, &not_after],
            )
            .await
            .map_err(db)?;
        Ok(())
    }
}

impl Shared {
    /// The key authorization of an open challenge of any instance.
    pub async fn challenge(&self, token: &str) -> Result<Option<String>, TlsError> {
        let client = self.connect().await?;
        let row = client
            .query_opt("SELECT key_authorization FROM hookyard_acme_challenges WHERE token = $1", &[&token])
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn open_challenge(&self, token: &str, key_authorization: &str) -> Result<(), TlsError> {
        let client = self.connect().await?;
        // Challenges left by an instance that stopped mid-order are of no use after a day.
        client
            .execute("DELETE FROM hookyard_acme_challenges WHERE created_at < now() - interval '1 day'", &[])
            .await
            .map_err(db)?;
        client
            .execute(
                "INSERT INTO hookyard_acme_challenges (token, key_authorization) VALUES ($1, $2)
                 ON CONFLICT (token) DO UPDATE SET key_authorization = $2",
                &[&token, &key_authorization],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    pub async fn close_challenges(&self, tokens: &[String]) -> Result<(), TlsError> {
        let client = self.connect().await?;
        client.execute("DELETE FROM hookyard_acme_challenges WHERE token = ANY($1)", &[&tokens]).await.map_err(db)?;
        Ok(())
    }
}

fn db(e: tokio_postgres::Error) -> TlsError {
    TlsError::Shared(e.to_string())
}
