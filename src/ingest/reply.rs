//! Answers in each protocol's own style: JSON `{"status","message"}` or plain `OK`/`ERROR: …`.
//!
//! This is the one place where outcomes map to HTTP statuses.

use poem::Response;
use poem::http::{StatusCode, header};
use serde_json::json;

use crate::script::FailureKind;
use crate::spec::ext::{Reject, ReplySpec, ReplyStyle};

/// Why a request was not acknowledged.
#[derive(Debug)]
pub enum Rejection {
    TooLarge(usize),
    Unauthorized {
        reason: String,
        reject: Reject,
        /// The spec block that refused it (`hmac`, `api-key-header`, …).
        check: &'static str,
    },
    Invalid(Vec<String>),
    /// The body did not arrive in time (slow client).
    Timeout,
    /// The Content-Type is not one the operation takes (the accepted ones listed).
    UnsupportedMediaType {
        given: String,
        accepted: String,
    },
    /// Processing failed after the request was accepted (script, store): retryable.
    Failed(Failure),
    MethodNotAllowed(String),
    /// Too many failed credential attempts from this client: retry after this many seconds.
    TooManyAttempts(u64),
    /// Plain HTTP to a protocol that takes HTTPS only (the reason names the HTTPS URL).
    PlainHttp(String),
}

impl Rejection {
    /// A short, stable label for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::TooLarge(_) => "too_large",
            Rejection::Unauthorized { .. } => "unauthorized",
            Rejection::Invalid(_) => "invalid",
            Rejection::Timeout => "timeout",
            Rejection::UnsupportedMediaType { .. } => "unsupported_media_type",
            Rejection::Failed(_) => "failed",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::TooManyAttempts(_) => "too_many_attempts",
            Rejection::PlainHttp(_) => "plain_http",
        }
    }

    /// Which check refused the request: a spec block's name, or the server's own step.
    pub fn check(&self) -> &'static str {
        match self {
            Rejection::TooLarge(_) => "body-limit",
            Rejection::Unauthorized { check, .. } => check,
            Rejection::Invalid(_) => "schema",
            Rejection::Timeout => "body-timeout",
            Rejection::UnsupportedMediaType { .. } => "media-type",
            Rejection::Failed(_) => "processing",
            Rejection::MethodNotAllowed(_) => "method",
            Rejection::TooManyAttempts(_) => "lockout",
            Rejection::PlainHttp(_) => "https",
        }
    }

    /// The reason as told to the client (never a secret, never the payload).
    pub fn reason(&self) -> String {
        match self {
            Rejection::TooLarge(limit) => format!("request body is larger than {limit} bytes"),
            Rejection::Unauthorized { reason, reject, .. } => reject.message.clone().unwrap_or_else(|| reason.clone()),
            Rejection::Invalid(v) if v.len() == 1 => format!("invalid request: {}", v[0]),
            Rejection::Invalid(v) => {
                format!("invalid request: {} problems: {}", v.len(), v.join("; "))
            }
            Rejection::Failed(why) => why.to_string(),
            Rejection::Timeout => "the request body did not arrive in time".into(),
            Rejection::UnsupportedMediaType { given, accepted } => {
                format!("Content-Type {given} is not accepted here (send {accepted})")
            }
            Rejection::MethodNotAllowed(allow) => format!("method not allowed (allowed: {allow})"),
            Rejection::PlainHttp(reason) => reason.clone(),
            Rejection::TooManyAttempts(wait) => {
                format!("too many failed attempts from this address; retry in {wait} s")
            }
        }
    }
}

/// Why accepted data could not be processed now: each kind is retryable (the sender's retry,
/// or a replay, can complete it), and metrics count the kinds apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The script, a handler plugin or an output failed on event `index`.
    #[error("processing failed: {kind} at event {index} (see the server log)")]
    Event { index: usize, kind: FailureKind },
    /// The journal could not commit, or the data directory refused a write.
    #[error("processing failed: data could not be stored")]
    Journal,
    /// The disk is below `[journal] min_free_disk_mb`: nothing new is taken until it has room.
    #[error("processing paused: the server's disk is nearly full; retry later")]
    DiskFull,
    /// A key of this request is being processed by another request right now.
    #[error("the same data is being processed by another request; retry")]
    Busy,
    /// A key of this request is claimed by another instance of the shared journal.
    #[error("the same data is being processed by another instance; retry")]
    BusyElsewhere,
    /// The shared journal (PostgreSQL) could not be reached to claim the keys.
    #[error("processing failed: the shared journal is unreachable; retry")]
    SharedUnreachable,
    /// The memory budget for bodies in flight stayed used up while the request waited.
    #[error("the server is busy receiving other requests; retry")]
    Overloaded,
    /// A processing thread stopped (a panic in a script host call).
    #[error("processing stopped unexpectedly; retry")]
    Stopped,
}

impl Failure {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Event { kind: FailureKind::Script, .. } => "script",
            Failure::Event { kind: FailureKind::Plugin { .. }, .. } => "plugin",
            Failure::Event { kind: FailureKind::Output, .. } => "output",
            Failure::Journal => "journal",
            Failure::DiskFull => "disk_full",
            Failure::Busy => "busy",
            Failure::BusyElsewhere => "busy_elsewhere",
            Failure::SharedUnreachable => "shared_unreachable",
            Failure::Overloaded => "overloaded",
            Failure::Stopped => "stopped",
        }
    }
}

/// The success reply of an operation.
pub fn success(spec: &ReplySpec, events: usize) -> Response {
    let status = StatusCode::from_u16(spec.success_status).unwrap_or(StatusCode::OK);
    match spec.style {
        ReplyStyle::Text => text(status, "OK".into()),
        ReplyStyle::Json if status == StatusCode::NO_CONTENT || spec.success_message.is_none() => {
            Response::builder().status(status).finish()
        }
        ReplyStyle::Json => {
            let message = spec.success_message.clone().unwrap_or_default().replace("{events}", &events.to_string());
            json_body(status, json!({"status": "success", "message": message}))
        }
    }
}

/// The failure reply of an operation.
pub fn failure(spec: &ReplySpec, rejection: &Rejection) -> Response {
    let s = &spec.statuses;
    let code = match rejection {
        Rejection::TooLarge(_) => s.too_large,
        Rejection::Unauthorized { reject, .. } => reject.status.unwrap_or(s.unauthorized),
        Rejection::Invalid(_) => s.invalid,
        Rejection::Timeout => s.timeout,
        Rejection::UnsupportedMediaType { .. } => s.unsupported_media_type,
        Rejection::Failed(_) => s.failed,
        Rejection::MethodNotAllowed(_) => s.method_not_allowed,
        // A text-style protocol (Wattmon) tells everything in the body, under its own status.
        Rejection::TooManyAttempts(_) if spec.style == ReplyStyle::Text => s.unauthorized,
        Rejection::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS.as_u16(),
        Rejection::PlainHttp(_) => StatusCode::FORBIDDEN.as_u16(),
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = match (rejection, spec.style) {
        (Rejection::Unauthorized { reject, .. }, _) if reject.empty_body => Response::builder().status(status).finish(),
        (_, ReplyStyle::Text) => text(status, format!("ERROR: {}", rejection.reason())),
        (Rejection::Invalid(v), ReplyStyle::Json) => {
            json_body(status, json!({"status": "error", "message": rejection.reason(), "violations": v}))
        }
        (_, ReplyStyle::Json) => json_body(status, json!({"status": "error", "message": rejection.reason()})),
    };
    if let Rejection::MethodNotAllowed(allow) = rejection
        && let Ok(value) = allow.parse()
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    if let Rejection::TooManyAttempts(wait) = rejection {
        response.headers_mut().insert(header::RETRY_AFTER, (*wait).into());
    }
    response
}

fn text(status: StatusCode, body: String) -> Response {
    Response::builder().status(status).content_type("text/plain; charset=utf-8").body(body)
}

fn json_body(status: StatusCode, value: serde_json::Value) -> Response {
    Response::builder().status(status).content_type("application/json").body(value.to_string())
}
