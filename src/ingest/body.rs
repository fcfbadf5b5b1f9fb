//! Reading a request body under the route's size limit, before anything else looks at it.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use poem::Body;
use tokio::time::{Duration, Instant};

/// The body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Declared or actual size is over the limit (bytes).
    TooLarge(usize),
    /// The connection broke while reading.
    Io(String),
    /// The body did not arrive in time.
    TooSlow,
}

/// Reads `body`, refusing at once when `declared` (Content-Length) is over `limit`, and
/// stopping as soon as the bytes read pass it. The whole body must arrive within
/// `deadline`, with no pause longer than a third of it.
pub async fn read_limited(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let capacity = declared.map(|n| n as usize).unwrap_or(8 * 1024).min(limit);
    let mut buf = BytesMut::with_capacity(capacity);
    let mut stream = std::pin::pin!(body.into_bytes_stream());
    let until = Instant::now() + deadline;
    let pause = deadline / 3;
    loop {
        let next = tokio::time::timeout_at(until.min(Instant::now() + pause), stream.next()).await;
        let Ok(next) = next else { return Err(BodyError::TooSlow) };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| BodyError::Io(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
