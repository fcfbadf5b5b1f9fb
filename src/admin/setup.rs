//! The setup page's API: per protocol what to paste into the device or platform (the URL as
//! this server is reached, the header names, which credential), the credentials themselves
//! after the admin token is entered again, and a correctly signed test request sent over
//! loopback HTTP to this server's own listener, through the real route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::samples::{self, SampleError};
use super::{AdminAuth, AdminError, AdminState, Shared, describe, guard, internal, message};
use crate::config::ProtocolSettings;
use crate::ingest::Operation;
use crate::lockout::Lockout;

/// What the setup API knows about the served protocols and this server.
pub struct Setup {
    pub protocols: Vec<ProtocolSetup>,
    /// Whose `X-Forwarded-Proto`/`X-Forwarded-Host` name the URL (`[server] trusted_proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// This server's own plain listener, where test requests go.
    pub listener: Option<SocketAddr>,
    /// The HTTPS listener (`[tls] listen`), where test requests of HTTPS-only protocols go.
    pub tls_listener: Option<SocketAddr>,
    /// Wrong tokens entered to reveal credentials, per client: counted apart from the
    /// management API's lockout, which a right bearer token resets.
    pub reveal_lockout: Lockout,
}

/// One served protocol: its title, operations and settings (credentials included).
pub struct ProtocolSetup {
    pub name: String,
    pub title: String,
    pub operations: Vec<Arc<Operation>>,
    pub settings: ProtocolSettings,
}

/// The setup part of the management API.
pub struct SetupApi {
    pub state: Shared,
    pub setup: Arc<Setup>,
}

/// The credential an operation checks (never its value).
#[derive(Object)]
pub struct CredentialShown {
    /// api-key, hmac-secret, url-token, basic, bearer, header or none.
    pub kind: String,
    /// The key of `[protocols.<name>]` that holds it.
    pub config_key: String,
    /// Set in the config, or generated and kept in the credentials file.
    pub configured: bool,
}

/// One operation: where to send and what to set.
#[derive(Object)]
pub struct OperationSetup {
    pub operation: String,
    pub method: String,
    /// Absolute, as this server is reached (a URL token shown as `<token>`).
    pub url: String,
    /// The request headers its checks read.
    pub headers: Vec<String>,
    pub credential: Option<CredentialShown>,
}

/// One protocol's setup.
#[derive(Object)]
pub struct ProtocolSetupShown {
    pub protocol: String,
    pub title: String,
    pub operations: Vec<OperationSetup>,
    pub notes: Vec<String>,
}

/// The admin token, entered again.
#[derive(Object)]
pub struct Reconfirm {
    pub token: String,
}

/// A credential's name and value.
#[derive(Object)]
pub struct NamedValue {
    pub name: String,
    pub value: String,
}

/// A protocol's configured credentials.
#[derive(Object)]
pub struct Revealed {
    pub credentials: Vec<NamedValue>,
}

/// What the test request got back.
#[derive(Object)]
pub struct TestOutcome {
    /// The HTTP status of the reply.
    pub status: u16,
    /// The reply body (at most 4 KiB).
    pub reply: String,
    /// The journaled request, when it was journaled.
    pub request_id: Option<i64>,
    pub operation: String,
    pub url: String,
}

impl Setup {
    fn protocol(&self, name: &str) -> Result<&ProtocolSetup, AdminError> {
        self.protocols
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| AdminError::NotFound(message(format!("no protocol {name}"))))
    }
}

fn shown(p: &ProtocolSetup, base: &str, tls_port: Option<u16>) -> ProtocolSetupShown {
    let mut notes: Vec<String> = Vec::new();
    let operations =
        p.operations
            .iter()
            .map(|op| {
                let blocks = &op.spec.auth;
                for note in blocks.iter().filter_map(|b| describe::note(b, &p.settings)) {
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
                OperationSetup {
                    operation: op.spec.operation_id.clone(),
                    method: op.spec.method.to_string(),
                    url: format!("{}{}", op_base(op, base, tls_port), path_shown(&op.spec.auth, &op.spec.path)),
                    headers: blocks.iter().flat_map(|b| describe::headers(b, &p.settings)).collect(),
                    credential: blocks
                        .iter()
                        .find_map(|b| describe::credential(b, &p.settings))
                        .map(|c| CredentialShown { kind: c.kind, config_key: c.config_key, configured: c.configured }),
                }
            })
            .collect();
    ProtocolSetupShown { protocol: p.name.clone(), title: p.title.clone(), operations, notes }
}

/// Where `op` is reached: HTTPS at the TLS listener when it refuses plain HTTP.
fn op_base(op: &Operation, base: &str, tls_port: Option<u16>) -> String {
    if op.requires_https() { crate::tls::https_base(base, tls_port) } else { base.to_owned() }
}

/// The URL of `op` with its configured URL token, for an operation that takes one.
fn token_url(op: &Operation, settings: &ProtocolSettings, base: &str) -> Option<String> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for block in &op.spec.auth {
        if let crate::spec::ext::AuthBlock::QueryToken { parameter, token, .. } = block {
            query.append_pair(parameter, settings.get(token)?.as_str()?);
            any = true;
        }
    }
    any.then(|| format!("{base}{}?{}", op.spec.path, query.finish()))
}

/// The path with a placeholder for a URL token.
fn path_shown(blocks: &[crate::spec::ext::AuthBlock], path: &str) -> String {
    let tokens: Vec<String> = blocks
        .iter()
        .filter_map(|b| match b {
            crate::spec::ext::AuthBlock::QueryToken { parameter, .. } => Some(format!("{parameter}=<token>")),
            _ => None,
        })
        .collect();
    if tokens.is_empty() { path.to_owned() } else { format!("{path}?{}", tokens.join("&")) }
}

/// The admin token entered again: compared in constant time, wrong ones counted by `lockout`
/// (ten within a minute refuse the client for a minute).
fn reconfirm(state: &AdminState, lockout: &Lockout, token: &str, req: &poem::Request) -> Result<(), AdminError> {
    super::guard::check_token_with(state, lockout, token, req)
}

/// The loopback address of `listener` (an unspecified address is reached over loopback).
fn loopback(listener: SocketAddr) -> SocketAddr {
    match listener.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listener.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listener.port()),
        _ => listener,
    }
}

fn refused(e: SampleError) -> AdminError {
    AdminError::BadRequest(message(e.to_string()))
}

/// Where a test request to `op` goes: the plain listener, or the HTTPS one when the
/// operation refuses plain HTTP and the server has it (a certificate for the public name is
/// not checked on this loopback connection to the server's own port); behind a proxy, plain
/// with `X-Forwarded-Proto: https` (which counts only when loopback is a trusted proxy).
struct Route {
    url: String,
    https: bool,
    forwarded_https: bool,
}

impl Setup {
    fn route(&self, op: &Operation, path_and_query: &str) -> Result<Route, AdminError> {
        let tls = self.tls_listener.filter(|_| op.requires_https()).map(loopback);
        if let Some(tls) = tls {
            return Ok(Route { url: format!("https://{tls}{path_and_query}"), https: true, forwarded_https: false });
        }
        let plain = self.listener.map(loopback).ok_or_else(|| {
            AdminError::NotFound(message("this server has no plain listener to send a test request to"))
        })?;
        let url = format!("http://{plain}{path_and_query}");
        Ok(Route { url, https: false, forwarded_https: op.requires_https() })
    }
}

/// Sends `signed` along `route`; (status, reply).
async fn send(route: &Route, op: &Operation, signed: &samples::Signed) -> Result<(u16, String), AdminError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .tls_danger_accept_invalid_certs(route.https)
        .build()
        .map_err(|e| AdminError::Internal(message(format!("the test request could not be prepared: {e}"))))?;
    let method = reqwest::Method::from_bytes(op.spec.method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut request = client.request(method, &route.url).header("content-type", signed.content_type);
    if route.forwarded_https {
        request = request.header("x-forwarded-proto", "https");
    }
    for (name, value) in &signed.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request
        .body(signed.body.clone())
        .send()
        .await
        .map_err(|e| AdminError::Internal(message(format!("the test request was not answered: {e}"))))?;
    let status = response.status().as_u16();
    let mut reply = response.text().await.unwrap_or_default();
    if reply.len() > 4096 {
        let cut = (0..=4096).rev().find(|&i| reply.is_char_boundary(i)).unwrap_or(0);
        reply.truncate(cut);
    }
    Ok((status, reply))
}

/// The journaled request of `protocol` with exactly `body`, received at or after `since_ms`.
fn journaled_id(state: &AdminState, protocol: &str, since_ms: i64, body: &[u8]) -> Result<Option<i64>, AdminError> {
    let conn = state.pipeline.journal.reader().map_err(internal)?;
    crate::store::journal::stats::request_with_body(&conn, protocol, since_ms, body).map_err(internal)
}

#[OpenApi]
impl SetupApi {
    /// What to configure on each device or platform: URLs as this server is reached, header
    /// names and which credential (never its value).
    #[oai(path = "/api/setup", method = "get")]
    async fn setup(&self, req: &poem::Request, auth: AdminAuth) -> Result<Json<Vec<ProtocolSetupShown>>, AdminError> {
        guard(&self.state, &auth, req)?;
        let base = crate::tls::base_url(req, &self.setup.trusted_proxies);
        let tls_port = self.setup.tls_listener.map(|a| a.port());
        Ok(Json(self.setup.protocols.iter().map(|p| shown(p, &base, tls_port)).collect()))
    }

    /// A protocol's configured credentials; the admin token must be entered again (a wrong
    /// one counts towards the lockout).
    #[oai(path = "/api/setup/:protocol/reveal", method = "post")]
    async fn reveal(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        protocol: Path<String>,
        body: Json<Reconfirm>,
    ) -> Result<Json<Revealed>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        reconfirm(state, &self.setup.reveal_lockout, &body.0.token, req)?;
        let p = self.setup.protocol(&protocol.0)?;
        let mut credentials: Vec<NamedValue> = Vec::new();
        for block in p.operations.iter().flat_map(|op| &op.spec.auth) {
            for (name, value) in describe::revealed(block, &p.settings) {
                if !credentials.iter().any(|c| c.name == name) {
                    credentials.push(NamedValue { name, value });
                }
            }
        }
        let base = crate::tls::base_url(req, &self.setup.trusted_proxies);
        let tls_port = self.setup.tls_listener.map(|a| a.port());
        for op in &p.operations {
            if let Some(url) = token_url(op, &p.settings, &op_base(op, &base, tls_port)) {
                credentials.push(NamedValue { name: format!("url ({})", op.spec.operation_id), value: url });
            }
        }
        tracing::info!(protocol = %p.name, "setup: credentials revealed");
        Ok(Json(Revealed { credentials }))
    }

    /// Sends a correctly signed sample through the protocol's real route (loopback HTTP to
    /// this server's own listener); the event is processed and journaled like any other.
    #[oai(path = "/api/setup/:protocol/test", method = "post")]
    async fn test(
        &self,
        req: &poem::Request,
        auth: AdminAuth,
        protocol: Path<String>,
    ) -> Result<Json<TestOutcome>, AdminError> {
        let state = guard(&self.state, &auth, req)?;
        let p = self.setup.protocol(&protocol.0)?;
        let now = crate::activity::now_ms();
        let sample = samples::sample(&p.name, now, rand::random::<u128>()).map_err(refused)?;
        let op = p.operations.iter().find(|o| o.spec.operation_id == sample.operation).ok_or_else(|| {
            refused(SampleError::NoOperation { protocol: p.name.clone(), operation: sample.operation })
        })?;
        let signed = samples::sign(&op.spec, &p.settings, sample.body).map_err(refused)?;
        let route = self.setup.route(op, &signed.path_and_query)?;
        let (status, reply) = send(&route, op, &signed).await?;
        let request_id = journaled_id(state, &p.name, now, &signed.body)?;
        let url = route.url.split('?').next().unwrap_or_default().to_owned();
        Ok(Json(TestOutcome { status, reply, request_id, operation: op.spec.operation_id.clone(), url }))
    }
}
