//! The idempotency keys one run of events holds: claimed in the dedup memory and, with a
//! shared journal, in PostgreSQL.
//!
//! A [`Claims`] has one exit: [`Claims::commit`] marks the processed keys done and gives the
//! others back; dropping it without a commit gives every key back (locally at once, in the
//! shared journal from a blocking thread). So no early return can leave a key claimed, and
//! no path has to remember to release by hand.

use std::collections::HashSet;
use std::sync::Arc;

use crate::store::shared::{LedgerRow, SharedClaim};
use crate::store::{Claim, SeenKeys, Shared};

/// What the shared journal said about the locally claimed keys.
#[derive(Debug, PartialEq, Eq)]
pub enum ClusterAnswer {
    /// Every key is ours now, except these, which another instance already processed (they
    /// are no longer held by this `Claims`).
    Ours { done_elsewhere: Vec<String> },
    /// At least one key is being processed by another instance (nothing is held there now).
    BusyElsewhere,
}

/// Keys held for one run; released on drop unless committed.
pub struct Claims {
    seen: Arc<SeenKeys>,
    shared: Option<Arc<Shared>>,
    /// Claimed in the dedup memory, in claim order.
    local: Vec<String>,
    /// Claimed in the shared journal (a subset of `local`).
    cluster: Vec<String>,
}

impl Claims {
    pub fn new(seen: Arc<SeenKeys>, shared: Option<Arc<Shared>>) -> Self {
        Self { seen, shared, local: Vec::new(), cluster: Vec::new() }
    }

    /// Claims `key` in the dedup memory; a [`Claim::New`] key is held from now on.
    pub fn claim(&mut self, key: &str) -> Claim {
        let claim = self.seen.claim(key);
        if claim == Claim::New {
            self.local.push(key.to_owned());
        }
        claim
    }

    /// The keys held in the dedup memory.
    pub fn held(&self) -> &[String] {
        &self.local
    }

    /// Claims the held keys in the shared journal too (nothing to do without one).
    pub async fn claim_cluster(&mut self) -> Result<ClusterAnswer, crate::store::shared::SharedError> {
        let Some(shared) = self.shared.clone() else { return Ok(ClusterAnswer::Ours { done_elsewhere: Vec::new() }) };
        if self.local.is_empty() {
            return Ok(ClusterAnswer::Ours { done_elsewhere: Vec::new() });
        }
        let asked = self.local.clone();
        let answers = tokio::task::spawn_blocking(move || shared.claim(&asked))
            .await
            .unwrap_or(Err(crate::store::shared::SharedError::Closed))?;
        let mut done_elsewhere = Vec::new();
        for (key, answer) in self.local.iter().zip(&answers) {
            match answer {
                SharedClaim::New => self.cluster.push(key.clone()),
                SharedClaim::Done => done_elsewhere.push(key.clone()),
                SharedClaim::Claimed => {}
            }
        }
        if answers.contains(&SharedClaim::Claimed) {
            return Ok(ClusterAnswer::BusyElsewhere);
        }
        // Processed elsewhere: remembered as seen here, and no longer ours to settle.
        self.seen.commit(&done_elsewhere);
        self.local.retain(|k| !done_elsewhere.contains(k));
        Ok(ClusterAnswer::Ours { done_elsewhere })
    }

    /// After the local journal committed: `processed` keys (held ones) are done, every other
    /// held key is given back; the ledger rows go to the shared journal with them. Failures
    /// of the shared journal are left to the stale-claim settling.
    pub async fn commit(mut self, processed: &[String], ledger: Vec<LedgerRow>) {
        let local = std::mem::take(&mut self.local);
        let cluster = std::mem::take(&mut self.cluster);
        // Sets, not scans: a 100-row block holds 100 keys.
        let processed: HashSet<&str> = processed.iter().map(String::as_str).collect();
        let (done, released): (Vec<String>, Vec<String>) =
            local.into_iter().partition(|k| processed.contains(k.as_str()));
        self.seen.commit(&done);
        self.seen.release(&released);
        let Some(shared) = self.shared.clone() else { return };
        let clustered: HashSet<&str> = cluster.iter().map(String::as_str).collect();
        let done: Vec<String> = done.into_iter().filter(|k| clustered.contains(k.as_str())).collect();
        let kept: HashSet<&str> = done.iter().map(String::as_str).collect();
        let released: Vec<String> = cluster.iter().filter(|k| !kept.contains(k.as_str())).cloned().collect();
        if done.is_empty() && released.is_empty() && ledger.is_empty() {
            return;
        }
        let settled = tokio::task::spawn_blocking(move || shared.settle(&done, &released, &ledger)).await;
        if let Ok(Err(e)) = settled {
            tracing::warn!(error = %e, "could not settle keys in the shared journal; will retry from the local journal");
        }
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        self.seen.release(&self.local);
        let cluster = std::mem::take(&mut self.cluster);
        let Some(shared) = self.shared.clone().filter(|_| !cluster.is_empty()) else { return };
        let release = move || {
            if let Err(e) = shared.settle(&[], &cluster, &[]) {
                tracing::warn!(error = %e, "could not release keys in the shared journal; will retry from the local journal");
            }
        };
        // PostgreSQL calls block: never on an async thread.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_not_committed_are_released_on_drop() {
        let seen = Arc::new(SeenKeys::default());
        {
            let mut claims = Claims::new(seen.clone(), None);
            assert_eq!(claims.claim("a"), Claim::New);
            assert_eq!(claims.claim("a"), Claim::InFlight);
            assert_eq!(claims.held(), ["a".to_string()]);
        }
        assert_eq!(seen.claim("a"), Claim::New, "a dropped claim is given back");
    }

    #[tokio::test]
    async fn commit_marks_processed_keys_seen_and_releases_the_rest() {
        let seen = Arc::new(SeenKeys::default());
        let mut claims = Claims::new(seen.clone(), None);
        claims.claim("done");
        claims.claim("failed");
        claims.commit(&["done".to_string()], Vec::new()).await;
        assert_eq!(seen.claim("done"), Claim::Seen);
        assert_eq!(seen.claim("failed"), Claim::New);
    }
}
