//! The request path of every protocol route: limit → verify → validate → events → scripts → reply.
//!
//! One [`PathEndpoint`] serves one spec path and dispatches on the method; each operation
//! owns its built checkers. Nothing parses a body before its checks have passed (a form is
//! split into fields first only when its checks travel inside the form). Checks that read
//! only headers run before the body is read (a refused request sends no `100 Continue`); a
//! body read before its sender is known counts against the server's budget for bodies in
//! flight ([`Intake`]).

mod body;
mod claims;
mod derive;
mod json;
pub mod mask;
mod pipeline;
mod plan;
mod refused;
pub mod reply;
pub mod split;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use poem::http::header;
use poem::{Endpoint, Request, Response};

use crate::auth::{self, Checker};
use crate::config::{ProtocolSettings, ServerLimits};
use crate::event::Origin;
use crate::form::Form;
use crate::spec::OperationSpec;
use crate::spec::ext::{BodyKind, SCHEME_KEY, SchemePolicy};
use crate::store::journal::RequestRecord;
use crate::tls::HttpsGate;

pub use claims::{Claims, ClusterAnswer};
pub use derive::Splits;
pub use pipeline::{Pipeline, deliver};
pub use plan::{InFlight, Plan, Planned, plan};
pub use reply::{Failure, Rejection};

/// One operation, ready to serve.
pub struct Operation {
    pub spec: OperationSpec,
    checkers: Vec<Checker>,
    /// Headers kept in the journal: content type, user agent, signatures (their values masked).
    keep_headers: Vec<String>,
    /// Header and query names the checks read credentials from (lowercase), never kept.
    secret_names: Vec<String>,
    /// What a request that passed has been verified by (for the journal).
    verification: String,
    /// A header check proves the sender before the body is read (no budget needed).
    known_before_body: bool,
    /// Plain HTTP is refused (when the server has HTTPS): the spec's `x-hookyard-scheme`,
    /// or the protocol's `scheme` setting.
    require_https: bool,
}

impl Operation {
    /// Builds the operation's checks from its spec blocks and the protocol's settings.
    pub fn build(spec: OperationSpec, settings: &ProtocolSettings) -> Result<Self, auth::AuthConfigError> {
        let checkers = spec.auth.iter().map(|b| Checker::build(b, settings)).collect::<Result<Vec<_>, _>>()?;
        let mut keep_headers = vec!["content-type".to_owned(), "user-agent".to_owned(), "authorization".to_owned()];
        // Credential headers are kept by name only (their values masked): a copy as curl or
        // a fixture needs to know they were sent.
        let credential_headers = checkers.iter().filter_map(|c| c.secret_name().filter(|_| !c.reads_query()));
        keep_headers.extend(credential_headers.map(str::to_ascii_lowercase));
        keep_headers.dedup();
        let verification = match checkers.is_empty() {
            true => "no checks".to_owned(),
            false => format!("passed: {}", checkers.iter().map(Checker::describe).collect::<Vec<_>>().join("; ")),
        };
        let known_before_body = checkers.iter().any(|c| c.authenticates() && !c.needs_body());
        let scheme = match settings.get(SCHEME_KEY) {
            Some(value) => SchemePolicy::from_setting(value).map_err(|message| auth::AuthConfigError {
                key: SCHEME_KEY.into(),
                path: Vec::new(),
                message: message.into(),
            })?,
            None => spec.scheme,
        };
        let require_https = scheme == SchemePolicy::Https;
        let secret_names = checkers.iter().filter_map(Checker::secret_name).map(str::to_ascii_lowercase).collect();
        Ok(Self { spec, checkers, keep_headers, secret_names, verification, known_before_body, require_https })
    }

    /// Whether plain HTTP is refused (while the server has HTTPS).
    pub fn requires_https(&self) -> bool {
        self.require_https
    }

    /// A signature is kept shortened ([`SIGNATURE_KEPT`] characters, then `…`): enough to match
    /// it with the sender's records; that it was checked is in `verification`, and the whole
    /// of it would cost a gridX event a quarter more journal.
    fn journal_headers(&self, headers: &poem::http::HeaderMap) -> Vec<(String, String)> {
        self.keep_headers
            .iter()
            .filter_map(|name| {
                let value = headers.get(name)?;
                // A credential is kept as an empty value (the inspector shows it masked).
                let value = match mask::value(name, &String::from_utf8_lossy(value.as_bytes()), &self.secret_names) {
                    masked if masked == mask::MASK => String::new(),
                    value => value,
                };
                Some((name.clone(), value))
            })
            .collect()
    }
}

/// What every protocol route shares: how bodies must arrive, the budget for bodies in
/// flight, and whose `X-Forwarded-For` names the client.
pub struct Intake {
    pace: body::Pace,
    budget: body::Budget,
    trusted_proxies: Vec<IpNet>,
}

impl Intake {
    pub fn new(limits: &ServerLimits) -> Self {
        Self {
            pace: body::Pace {
                deadline: Duration::from_millis(limits.body_timeout_ms.max(1)),
                min_rate: limits.min_body_rate_bytes_per_s,
            },
            budget: body::Budget::new(limits.body_budget_bytes),
            trusted_proxies: limits.trusted_proxies.clone(),
        }
    }

    /// The client of `req` for logs: the peer, or what a trusted proxy forwarded.
    fn client(&self, req: &Request) -> crate::net::Client {
        let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
        let forwarded: Vec<&str> =
            req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
        crate::net::client(peer, forwarded.as_deref(), &self.trusted_proxies)
    }
}

/// All operations of one path.
pub struct PathEndpoint {
    pub ops: Vec<Arc<Operation>>,
    pub pipeline: Arc<Pipeline>,
    pub intake: Arc<Intake>,
    /// Whether requests came over HTTPS (`None`: the server has no HTTPS).
    pub https: Option<Arc<HttpsGate>>,
}

impl Endpoint for PathEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let Some(op) = self.ops.iter().find(|o| o.spec.method == req.method()).cloned() else {
            let allow: Vec<String> = self.ops.iter().map(|o| o.spec.method.to_string()).collect();
            let rejection = Rejection::MethodNotAllowed(allow.join(", "));
            let response = reply::failure(&self.ops[0].spec.reply, &rejection);
            self.refused(&self.ops[0], "", &req, &rejection, None, response.status().as_u16());
            return Ok(response);
        };
        // One log line per request with its context (a span per request cost more than the
        // line itself); the few lines logged inside carry the protocol themselves.
        let method = req.method().clone();
        let client = self.intake.client(&req);
        let (protocol, route) = (op.spec.protocol.as_str(), op.spec.path.as_str());
        let ip = client.0;
        let lockout = &self.pipeline.lockout;
        let plain = self.https.as_ref().filter(|_| op.require_https).and_then(|gate| gate.refusal(&req));
        let mut body = None;
        let outcome = match (plain, lockout.refused(ip, Instant::now())) {
            (Some(reason), _) => Err(Rejection::PlainHttp(reason)),
            (None, Some(wait)) => Err(Rejection::TooManyAttempts(wait)),
            (None, None) => handle(&op, &self.pipeline, &self.intake, &client, &mut req, &mut body).await,
        };
        count_outcome(&self.pipeline, protocol, &outcome);
        let response = match outcome {
            Ok(events) => {
                lockout.succeeded(ip);
                self.pipeline.metrics.request(protocol, route, "accepted");
                // Debug, not info: the journal, the console's log and /metrics have every one,
                // and a line per request cost ~5 % of the server's CPU at 13,000 a second.
                tracing::debug!(protocol, route, %method, outcome = "accepted", events, "request accepted");
                reply::success(&op.spec.reply, events)
            }
            Err(rejection) => {
                if matches!(rejection, Rejection::Unauthorized { .. }) && lockout.failed(ip, Instant::now()) {
                    tracing::warn!(protocol, %client, "too many failed attempts: refusing this client for a minute");
                }
                let outcome = rejection.outcome();
                self.pipeline.metrics.request(protocol, route, outcome);
                tracing::warn!(protocol, route, %method, %client, outcome, reason = %rejection.reason(), "request rejected");
                let response = reply::failure(&op.spec.reply, &rejection);
                let status = response.status().as_u16();
                self.refused(&op, &op.spec.operation_id, &req, &rejection, body.as_ref(), status);
                response
            }
        };
        Ok(response)
    }
}

impl PathEndpoint {
    /// Hands a refused request to the journal's `rejected` table (never waiting).
    fn refused(
        &self,
        op: &Operation,
        operation: &str,
        req: &Request,
        rejection: &Rejection,
        body: Option<&bytes::Bytes>,
        reply_status: u16,
    ) {
        let refused = refused::Refused {
            protocol: &op.spec.protocol,
            operation,
            secret_names: &op.secret_names,
            client: self.intake.client(req).to_string(),
            body,
            reply_status,
        };
        refused::record(&self.pipeline, req, rejection, refused);
    }
}

/// Counts the request's outcome for the health view.
fn count_outcome(pipeline: &Pipeline, protocol: &str, outcome: &Result<usize, Rejection>) {
    let outcome = match outcome {
        Ok(_) => crate::activity::Outcome::Accepted,
        Err(Rejection::Failed(_)) => crate::activity::Outcome::Failed,
        Err(_) => crate::activity::Outcome::Rejected,
    };
    pipeline.activity.outcomes.count(protocol, outcome, pipeline.clock.now_ms());
}

/// The whole path of one request; the number of events on success. The body, once read, is
/// left in `body` (for the record of a refused request).
async fn handle(
    op: &Operation,
    pipeline: &Pipeline,
    intake: &Intake,
    client: &crate::net::Client,
    req: &mut Request,
    body: &mut Option<bytes::Bytes>,
) -> Result<usize, Rejection> {
    let spec = &op.spec;
    check_media_type(spec, req.header(header::CONTENT_TYPE))?;
    let mut identities = vec![None; op.checkers.len()];
    let query = parse_query(req.uri().query());
    let headers_only = auth::Request { headers: req.headers(), body: &[], form: None, query: &query };
    run_checks(&op.checkers, &headers_only, false, &mut identities)?;
    let received = read_body(op, intake, req).await?;
    let raw = received.bytes.clone();
    *body = Some(raw.clone());
    let content_type = req.header(header::CONTENT_TYPE);
    let form = match spec.split.body_kind() {
        BodyKind::Form => Some(
            Form::parse(content_type, raw.clone()).await.map_err(|e| Rejection::Invalid(vec![format!("body: {e}")]))?,
        ),
        _ => None,
    };
    let auth_req = auth::Request { headers: req.headers(), body: &raw, form: form.as_ref(), query: &query };
    run_checks(&op.checkers, &auth_req, true, &mut identities)?;
    let source = identities.into_iter().flatten().next_back().unwrap_or_default();
    let origin = Origin {
        protocol: spec.protocol.clone(),
        operation: spec.operation_id.clone(),
        source,
        received_ms: pipeline.clock.now_ms(),
    };
    let request = RequestRecord {
        protocol: origin.protocol.clone(),
        operation: origin.operation.clone(),
        source: origin.source.clone(),
        received_ms: origin.received_ms,
        headers: op.journal_headers(req.headers()),
        verification: op.verification.clone(),
        body: raw.clone(),
        client: client.to_string(),
        // The operation's own method and route are not kept a second time (the inspector
        // takes them from the spec); a query string, or another path, is.
        method: if req.method() == spec.method { String::new() } else { req.method().to_string() },
        path: match mask::path(req.uri(), &op.secret_names) {
            path if path == spec.path => String::new(),
            path => path,
        },
        reply_status: spec.reply.success_status,
        failed_status: spec.reply.statuses.failed,
        spec: spec.digest.clone(),
        query: declared_query(spec, &query),
    };
    let input = split::Input { body: raw, form: form.as_ref(), query: &query, content_type };
    let parsed = split::split(spec, &origin, input).map_err(Rejection::Invalid)?;
    split::check_freshness(spec, &parsed.events, origin.received_ms).map_err(Rejection::Invalid)?;
    if let Some(kind) = &parsed.unknown_type {
        tracing::warn!(protocol = %spec.protocol, event_type = %kind, "acknowledging an event type the spec does not know");
    }
    let count = parsed.events.len();
    pipeline
        .process(|event| event.idempotency_key(&spec.idempotency), spec.readings.as_ref(), request, parsed.events)
        .await?;
    Ok(count)
}

/// Reads the body under the operation's limit and the intake's pace; under the budget when
/// no header check has proved the sender.
async fn read_body(op: &Operation, intake: &Intake, req: &mut Request) -> Result<body::Received, Rejection> {
    let declared = req.header(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let budget = (!op.known_before_body).then_some(&intake.budget);
    body::read_limited(req.take_body(), declared, op.spec.body_limit, intake.pace, budget).await.map_err(|e| match e {
        body::BodyError::TooLarge(limit) => Rejection::TooLarge(limit),
        body::BodyError::TooSlow => Rejection::Timeout,
        body::BodyError::Busy => Rejection::Failed(Failure::Overloaded),
        body::BodyError::Io(_) => Rejection::Invalid(vec![format!("body: {e}")]),
    })
}

/// Runs the checks that read the body (`with_body`) or only headers, in spec order; each
/// identity established is kept in `identities` (the last one names the sender).
fn run_checks(
    checkers: &[Checker],
    req: &auth::Request<'_>,
    with_body: bool,
    identities: &mut [Option<String>],
) -> Result<(), Rejection> {
    for (checker, identity) in checkers.iter().zip(identities) {
        if checker.needs_body() == with_body {
            *identity = checker.check(req).map_err(|r| Rejection::Unauthorized {
                reason: r.reason,
                reject: r.reject,
                check: checker.block(),
            })?;
        }
    }
    Ok(())
}

/// A Content-Type, when sent, must be one the spec lists (a missing one is accepted: some
/// senders send none).
fn check_media_type(spec: &OperationSpec, content_type: Option<&str>) -> Result<(), Rejection> {
    let Some(given) = content_type else { return Ok(()) };
    let essence = given.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if spec.media_types.is_empty() || spec.media_types.contains(&essence) {
        return Ok(());
    }
    Err(Rejection::UnsupportedMediaType { given: essence, accepted: spec.media_types.join(" or ") })
}

/// The query parameters `spec` declares, as JSON pairs for the journal ("" when none came):
/// never an undeclared one (Wattmon's `?token=` is a credential, not a parameter).
fn declared_query(spec: &OperationSpec, query: &[(String, String)]) -> String {
    let declared: Vec<&(String, String)> =
        query.iter().filter(|(k, _)| spec.query.iter().any(|p| p.name == *k)).collect();
    if declared.is_empty() { String::new() } else { serde_json::to_string(&declared).unwrap_or_default() }
}

/// Query pairs; a second `?` (as some devices append) is read as `&`.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    let q = q.replace('?', "&");
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if !pairs.iter().any(|(name, _)| *name == k) {
            pairs.push((k.into_owned(), v.into_owned()));
        }
    }
    pairs
}
