//! Refused requests handed to the journal's `rejected` table: what the client was told and
//! why, from whom, with the headers and the query masked ([`super::mask`]) and the first
//! 4 KiB of the body when it was read. Handing over never waits: when the writer's queue is
//! full the record is dropped and counted (`hookyard_rejected_dropped_total`).

use bytes::Bytes;
use poem::Request;
use poem::http::header;

use super::{Failure, Pipeline, Rejection, mask};
use crate::store::journal::RejectedRecord;

/// What is known of a refused request.
pub struct Refused<'a> {
    pub protocol: &'a str,
    pub operation: &'a str,
    /// Header and query names the operation's checks read credentials from.
    pub secret_names: &'a [String],
    pub client: String,
    pub body: Option<&'a Bytes>,
    pub reply_status: u16,
}

/// Whether the journal has the request already (its events, failed): then it is not a
/// refused request.
fn journaled(rejection: &Rejection) -> bool {
    matches!(rejection, Rejection::Failed(Failure::Event { .. }))
}

/// Records `rejection` of `req` (unless the journal has the request as events).
pub fn record(pipeline: &Pipeline, req: &Request, rejection: &Rejection, refused: Refused<'_>) {
    if journaled(rejection) {
        return;
    }
    let declared = req.header(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
    let record = RejectedRecord {
        received_ms: pipeline.clock.now_ms(),
        protocol: refused.protocol.to_owned(),
        operation: refused.operation.to_owned(),
        path: mask::path(req.uri(), refused.secret_names),
        client: refused.client,
        check: rejection.check().to_owned(),
        reason: rejection.reason(),
        reply_status: refused.reply_status,
        headers: mask::headers(req.headers(), refused.secret_names),
        size: declared,
        ..RejectedRecord::default()
    };
    let record = match refused.body {
        Some(body) => record.with_body(body),
        None => record,
    };
    if !pipeline.journal.reject(record) {
        pipeline.metrics.rejected_dropped();
    }
}
