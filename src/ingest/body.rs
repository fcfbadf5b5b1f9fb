//! Reading a request body under the route's size limit, before anything else looks at it:
//! within a deadline and at a minimum rate, and — for a body read before its sender is known
//! (signatures, form checks) — within the server's memory budget for bodies in flight.
//!
//! The budget counts bytes: a body with a declared length takes its room before the first
//! byte is read (so no `100 Continue` goes out before there is room), one without takes room
//! as its bytes arrive. A request that finds no room within [`BUDGET_WAIT`] is refused with
//! the protocol's retryable reply; the room is given back when the request is done.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use poem::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant};

/// How long a request waits for room in the budget before it is refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);
/// How long a body may be slower than the minimum rate at its start.
pub const RATE_GRACE: Duration = Duration::from_secs(5);

/// The body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Declared or actual size is over the limit (bytes).
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The connection broke while reading.
    #[error("could not be read ({0})")]
    Io(String),
    /// The body did not arrive in time, or arrived slower than the minimum rate.
    #[error("the request body did not arrive in time")]
    TooSlow,
    /// No room in the budget for bodies in flight.
    #[error("the memory budget for bodies in flight is used up")]
    Busy,
}

/// How fast a body must arrive.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// The whole body within this; no pause longer than a third of it.
    pub deadline: Duration,
    /// After [`RATE_GRACE`], at least this many bytes per second on average (0 = no minimum).
    pub min_rate: u64,
}

/// The server-wide budget of body bytes held before their sender is known.
pub struct Budget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        Self { bytes: Arc::new(Semaphore::new(total)), total }
    }

    /// Room for `n` more bytes (a body larger than the whole budget takes all of it).
    async fn take(&self, n: usize, until: Instant) -> Result<OwnedSemaphorePermit, BodyError> {
        let n = n.clamp(1, self.total) as u32;
        let wait = tokio::time::timeout_at(until, self.bytes.clone().acquire_many_owned(n)).await;
        wait.map_err(|_| BodyError::Busy)?.map_err(|_| BodyError::Busy)
    }

    /// Grows `room` to cover `need` bytes.
    async fn cover(&self, room: &mut Option<OwnedSemaphorePermit>, need: usize) -> Result<(), BodyError> {
        let held = room.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        if need.min(self.total) <= held {
            return Ok(());
        }
        let more = self.take(need.min(self.total) - held, Instant::now() + BUDGET_WAIT).await?;
        match room {
            Some(permit) => permit.merge(more),
            None => *room = Some(more),
        }
        Ok(())
    }
}

/// A body, and the room it holds in the budget until dropped.
pub struct Received {
    pub bytes: Bytes,
    _room: Option<OwnedSemaphorePermit>,
}

/// Reads `body`, refusing at once when `declared` (Content-Length) is over `limit`, and
/// stopping as soon as the bytes read pass it; `budget` when the sender is not known yet.
pub async fn read_limited(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    pace: Pace,
    budget: Option<&Budget>,
) -> Result<Received, BodyError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let declared = declared.map(|n| n as usize);
    let mut room = None;
    if let (Some(budget), Some(n)) = (budget, declared) {
        room = Some(budget.take(n, Instant::now() + BUDGET_WAIT).await?);
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    let mut stream = std::pin::pin!(body.into_bytes_stream());
    let start = Instant::now();
    let until = start + pace.deadline;
    loop {
        let due = until.min(Instant::now() + pace.deadline / 3).min(rate_due(start, buf.len(), pace.min_rate, until));
        let Ok(next) = tokio::time::timeout_at(due, stream.next()).await else { return Err(BodyError::TooSlow) };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| BodyError::Io(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        if let Some(budget) = budget {
            budget.cover(&mut room, buf.len() + chunk.len()).await?;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Received { bytes: buf.freeze(), _room: room })
}

/// When the next byte must have arrived to keep the average rate: after the grace period,
/// `received + 1` bytes at `rate` bytes a second.
fn rate_due(start: Instant, received: usize, rate: u64, otherwise: Instant) -> Instant {
    if rate == 0 {
        return otherwise;
    }
    start + RATE_GRACE + Duration::from_secs_f64((received + 1) as f64 / rate as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_deadline_moves_with_the_bytes_received() {
        let start = Instant::now();
        let far = start + Duration::from_secs(3600);
        assert_eq!(rate_due(start, 0, 0, far), far, "no minimum");
        assert_eq!(rate_due(start, 1023, 1024, far), start + RATE_GRACE + Duration::from_secs(1));
        assert_eq!(rate_due(start, 2047, 1024, far), start + RATE_GRACE + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn room_is_taken_up_to_the_budget_and_given_back() {
        let budget = Budget::new(100);
        let mut room = None;
        budget.cover(&mut room, 60).await.unwrap();
        budget.cover(&mut room, 150).await.unwrap();
        assert_eq!(room.as_ref().map(OwnedSemaphorePermit::num_permits), Some(100), "never more than all");
        let started = std::time::Instant::now();
        assert!(matches!(budget.cover(&mut None, 1).await, Err(BodyError::Busy)));
        assert!(started.elapsed() >= BUDGET_WAIT);
        drop(room);
        budget.cover(&mut None, 100).await.unwrap();
    }
}
