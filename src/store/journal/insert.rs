//! Recording one submission in the writer's transaction: the request (its body deflated
//! when that pays, its events' data left to be derived again from it), its events, their
//! processed keys (the recent tier, `tiers.rs`; a bulk load writes `processed_keys`), and
//! its effects (their bytes in `effect_bytes` until their checkpoint).

use rusqlite::{OptionalExtension, Transaction, params};

use super::packed::Packer;
use super::tiers::Tiers;
use super::{EventRecord, JournalError, RequestRecord, Status, Submission, Target};
use super::{keys, texts};
use crate::store::dedup::digest;

/// Where the keys a transaction processes go, and what it added: the tiers' recent table
/// (the server: the writer hands `added` to the tiers once the transaction committed), or
/// with no tiers straight into `processed_keys` (a bulk load).
pub struct KeyWrites<'t> {
    pub tiers: Option<&'t Tiers>,
    /// (digest, event, receive time) of each key remembered so far.
    pub added: Vec<([u8; 16], i64, i64)>,
    /// The `keys_recent` row (`seq`) and event of each key remembered so far in the recent tier.
    rows: Vec<(i64, i64)>,
    /// Whether the journal may hold a failed event a processed key supersedes: asked once a
    /// transaction (almost always "no"), true once this transaction records a failure.
    failures: Option<bool>,
}

impl<'t> KeyWrites<'t> {
    pub fn new(tiers: Option<&'t Tiers>) -> Self {
        Self { tiers, added: Vec::new(), rows: Vec::new(), failures: None }
    }

    /// An event of this transaction failed.
    fn failed(&mut self) {
        self.failures = Some(true);
    }

    /// Whether any failed event is in the journal (one probe of the index of failed keys).
    fn any_failed(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<bool> {
        if let Some(any) = self.failures {
            return Ok(any);
        }
        let any = tx.query_row(ANY_FAILED, [], |r| r.get(0))?;
        self.failures = Some(any);
        Ok(any)
    }
}

/// Whether the journal holds a failed event with a key (a walk of `events_failed_key`).
pub(super) const ANY_FAILED: &str =
    "SELECT EXISTS (SELECT 1 FROM events WHERE status = 'failed' AND idem_key IS NOT NULL)";

/// What one submission wrote: its event rows and the id range of its effects.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub request_id: i64,
    /// The reply status recorded for the request.
    pub reply_status: u16,
    /// For a new request: its status should it fail after all.
    pub failed_status: Option<u16>,
    pub event_ids: Vec<i64>,
    /// The idempotency key of each event (by position).
    pub keys: Vec<Option<String>>,
    /// The recent tier's rows (`seq`, event) of the keys it processed: what a failed write
    /// takes back.
    pub key_rows: Vec<(i64, i64)>,
    pub effects: Option<(i64, i64)>,
}

pub fn insert_submission(
    tx: &Transaction<'_>,
    s: &Submission,
    packer: &mut Packer,
    keys: &mut KeyWrites<'_>,
) -> Result<Recorded, JournalError> {
    let first_row = keys.rows.len();
    let (request_id, event_ids, reply_status, failed_status) = match &s.target {
        Target::New(request) => {
            let (request_id, ids, status) = insert_request(tx, request, &s.events, packer, keys)?;
            (request_id, ids, status, Some(request.failed_status))
        }
        Target::Replay { event_id, request_id } => {
            update_replayed(tx, *event_id, *request_id, s.events.first(), keys)?;
            (*request_id, vec![*event_id], 0, None)
        }
    };
    let key_rows = keys.rows[first_row..].to_vec();
    let keys = s.events.iter().map(|e| e.key.clone()).collect();
    let mut range: Option<(i64, i64)> = None;
    for effect in &s.effects {
        let id = insert_effect(tx, request_id, effect)?;
        range = Some((range.map_or(id, |r| r.0), id));
    }
    Ok(Recorded { request_id, reply_status, failed_status, event_ids, keys, key_rows, effects: range })
}

/// One effect: its row (kind, size, digest, and its path: as the id of the text for an
/// append, whose file many effects share; on the row for a whole-file write, whose path is
/// often the request's own, as an image named by its time), and its bytes in
/// `effect_bytes` until the checkpoint that makes them durable.
fn insert_effect(tx: &Transaction<'_>, request_id: i64, effect: &crate::store::Effect) -> rusqlite::Result<i64> {
    let (kind, header, bytes) = effect.parts();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    let (path, path_id) = match effect {
        crate::store::Effect::Append { path, .. } => ("", Some(texts::intern(tx, path)?)),
        _ => (effect.path(), None),
    };
    tx.prepare_cached(
        "INSERT INTO effects (request_id, path, kind, header, bytes, size, digest, path_id)
         VALUES (?1, ?2, ?3, NULL, x'', ?4, ?5, ?6)",
    )?
    .execute(params![request_id, path, kind, bytes.len() as i64, &digest[..16], path_id])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO effect_bytes (id, header, bytes) VALUES (?1, ?2, ?3)")?
        .execute(params![id, header, bytes])?;
    Ok(id)
}

fn insert_request(
    tx: &Transaction<'_>,
    r: &RequestRecord,
    events: &[EventRecord],
    packer: &mut Packer,
    keys: &mut KeyWrites<'_>,
) -> Result<(i64, Vec<i64>, u16), JournalError> {
    let failed = events.iter().any(|e| e.outcome == Status::Failed);
    let reply_status = if failed { r.failed_status } else { r.reply_status };
    let (body, spec) = kept(r, events);
    let derived = !spec.is_empty();
    let (body, packed) = packer.pack(body);
    let headers = serde_json::to_string(&r.headers).unwrap_or_default();
    let headers_id = texts::headers(tx, &headers)?;
    let shape = texts::Shape {
        spec,
        client: &r.client,
        verification_id: texts::intern(tx, &r.verification)?,
        headers_id: headers_id.unwrap_or(0),
    };
    let shape_id = texts::shape(tx, &shape)?;
    let headers = if headers_id.is_some() { "" } else { headers.as_str() };
    tx.prepare_cached(
        "INSERT INTO requests (protocol, operation, source, received_ms, headers, verification, body,
                               reply_status, method, path, query, packed, size, shape_id)
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        r.protocol,
        r.operation,
        r.source,
        r.received_ms,
        headers,
        body,
        reply_status,
        r.method,
        r.path,
        r.query,
        packed,
        r.body.len() as i64,
        shape_id
    ])?;
    let request_id = tx.last_insert_rowid();
    let ids = insert_events(tx, (request_id, r), events, derived, keys)?;
    Ok((request_id, ids, reply_status))
}

/// The body and the spec version a request row keeps. A request that brought nothing new (a
/// resend, a replayed capture) costs a row, not a copy of its body: its events point at the
/// ones that processed their keys. With the body kept and the spec version recorded, the
/// events are derived again from the body when they are needed: their data is not stored a
/// second time (an empty spec: they keep it).
fn kept<'r>(r: &'r RequestRecord, events: &[EventRecord]) -> (&'r [u8], &'r str) {
    match nothing_new(events.iter().map(|e| e.outcome)) {
        true => (&[], ""),
        false => (r.body.as_ref(), r.spec.as_str()),
    }
}

/// Whether a request of events with these `outcomes` brought nothing new: its body is not
/// kept, so its events cannot be derived again from it.
fn nothing_new(mut outcomes: impl Iterator<Item = Status>) -> bool {
    let first = outcomes.next();
    first == Some(Status::Duplicate) && outcomes.all(|o| o == Status::Duplicate)
}

/// Whether the journal keeps the JSON form ([`EventRecord::data`]) of the events of a request
/// split by spec version `spec` (empty: none recorded) with these `outcomes`: only when it
/// cannot derive them again from the body.
pub fn keeps_event_data(spec: &str, outcomes: impl Iterator<Item = Status>) -> bool {
    spec.is_empty() || nothing_new(outcomes)
}

/// The event rows of a request (its id and record); a duplicate points at the event that
/// processed its key instead of keeping its data, and `derived` events (from the kept body)
/// keep none. Keys are kept without the request's names (`keys::stored`).
fn insert_events(
    tx: &Transaction<'_>,
    (request_id, r): (i64, &RequestRecord),
    events: &[EventRecord],
    derived: bool,
    keys: &mut KeyWrites<'_>,
) -> Result<Vec<i64>, JournalError> {
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (request_id, idx, idem_key, data, blob, status, error, logs, duplicate_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut ids = Vec::with_capacity(events.len());
    for e in events {
        let logs = (!e.logs.is_empty()).then(|| serde_json::to_string(&e.logs).unwrap_or_default());
        let original = match (e.outcome, &e.key) {
            (Status::Duplicate, Some(key)) => processed_event(tx, key, keys)?,
            _ => None,
        };
        let data = if derived || original.is_some() { "" } else { e.data.as_str() };
        let key = e.key.as_deref().map(|k| keys::stored(&r.protocol, &r.operation, k));
        let row = params![request_id, e.index as i64, key, data, e.blob, e.outcome.as_str(), e.error, logs, original];
        insert_event.execute(row)?;
        let event_id = tx.last_insert_rowid();
        ids.push(event_id);
        if e.outcome == Status::Failed {
            keys.failed();
        }
        if let (Status::Processed, Some(full), Some(key)) = (e.outcome, &e.key, key) {
            remember_key(tx, (full, key), event_id, r.received_ms, keys)?;
        }
    }
    Ok(ids)
}

fn update_replayed(
    tx: &Transaction<'_>,
    event_id: i64,
    request_id: i64,
    record: Option<&EventRecord>,
    keys: &mut KeyWrites<'_>,
) -> Result<(), JournalError> {
    let Some(e) = record else { return Ok(()) };
    let logs = (!e.logs.is_empty()).then(|| serde_json::to_string(&e.logs).unwrap_or_default());
    tx.execute(
        "UPDATE events SET status = ?2, error = ?3, logs = ?4 WHERE id = ?1",
        params![event_id, e.outcome.as_str(), e.error, logs],
    )?;
    if e.outcome == Status::Failed {
        keys.failed();
    }
    if let (Status::Processed, Some(key)) = (e.outcome, &e.key) {
        let (received_ms, protocol, operation): (i64, String, String) = tx.query_row(
            "SELECT received_ms, protocol, operation FROM requests WHERE id = ?1",
            params![request_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        remember_key(tx, (key, keys::stored(&protocol, &operation, key)), event_id, received_ms, keys)?;
    }
    Ok(())
}

/// The event that processed `key`, if the journal still has it (its key may outlive it:
/// keys are kept for the whole dedup window, requests may be pruned earlier by size).
fn processed_event(tx: &Transaction<'_>, key: &str, keys: &KeyWrites<'_>) -> rusqlite::Result<Option<i64>> {
    let digest = digest(key);
    // A key committed before is in the tiers (or, for a bulk load, the table this transaction
    // writes); only one processed earlier in this transaction (a request that repeats a key)
    // is not yet, and is looked for among its keys.
    let committed = match keys.tiers {
        Some(tiers) => tiers.event_of(tx, &digest)?,
        None => super::tiers::stored_event(tx, &digest)?,
    };
    let event = committed.or_else(|| keys.added.iter().rev().find(|k| k.0 == digest).map(|k| k.1));
    let Some(event) = event else { return Ok(None) };
    tx.prepare_cached("SELECT id FROM events WHERE id = ?1")?.query_row([event], |row| row.get(0)).optional()
}

/// A key was processed (the event row says so): it goes into the recent tier (or, for a
/// bulk load, `processed_keys`), and earlier failed attempts with it become `superseded`
/// (one probe of the small index of failed keys, which holds keys as stored: `(full, stored)`).
fn remember_key(
    tx: &Transaction<'_>,
    key: (&str, &str),
    event_id: i64,
    received_ms: i64,
    keys: &mut KeyWrites<'_>,
) -> rusqlite::Result<()> {
    let digest = digest(key.0);
    if keys.tiers.is_some() {
        tx.prepare_cached("INSERT INTO keys_recent (digest, event_id, received_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![&digest[..], event_id, received_ms])?;
        keys.rows.push((tx.last_insert_rowid(), event_id));
    } else {
        tx.prepare_cached("INSERT OR IGNORE INTO processed_keys (digest, event_id, received_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![&digest[..], event_id, received_ms])?;
    }
    keys.added.push((digest, event_id, received_ms));
    if keys.any_failed(tx)? {
        tx.prepare_cached(
            "UPDATE events SET status = 'superseded' WHERE idem_key = ?1 AND status = 'failed' AND id != ?2",
        )?
        .execute(params![key.1, event_id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_is_kept_only_where_the_body_cannot_give_the_events_again() {
        use Status::{Duplicate, Failed, Processed};
        assert!(!keeps_event_data("spec", [Processed, Duplicate, Failed].into_iter()), "derived from the body");
        assert!(keeps_event_data("", [Processed].into_iter()), "no spec version recorded");
        assert!(keeps_event_data("spec", [Duplicate, Duplicate].into_iter()), "only duplicates: no body kept");
        assert!(!keeps_event_data("spec", std::iter::empty()), "no events");
    }
}
