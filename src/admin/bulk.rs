//! Bulk replay over the log's filter (`POST /api/replay`): each selected event through the
//! pipeline again, or, for a dry run, through the current scripts only (counted, nothing
//! written or delivered).

use super::{ReplayResult, ReplaySummary, result};
use crate::ingest::Pipeline;
use crate::replay::{DryRun, Replayed, Tally, dry_run, replay_event};
use crate::store::journal::query::Journaled;

/// At most this many results are listed.
const SHOWN: usize = 1000;

/// A bulk replay under way.
#[derive(Default)]
pub struct Run {
    pub dry_run: bool,
    pub count: u64,
    pub tally: Tally,
    pub results: Vec<ReplayResult>,
}

impl Run {
    /// Replays (or dry-runs) one event.
    pub async fn one(&mut self, pipeline: &Pipeline, item: &Journaled) {
        self.count += 1;
        let r = if self.dry_run {
            let scripts = pipeline.scripts.clone();
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let run = || dry_run(&scripts, item);
            // The script runs here; on a multi-threaded runtime this thread's other work moves.
            let outcome = if multi_thread { tokio::task::block_in_place(run) } else { run() };
            match outcome {
                DryRun::WouldWrite(_) => Replayed::Processed,
                DryRun::WouldFail(why) => Replayed::Failed(why),
            }
        } else {
            replay_event(pipeline, item).await
        };
        self.tally.add(&r);
        if self.results.len() < SHOWN {
            self.results.push(result(item.event_id, r));
        }
    }

    pub fn summary(self) -> ReplaySummary {
        ReplaySummary {
            processed: self.tally.processed as u64,
            failed: self.tally.failed as u64,
            skipped: self.tally.skipped as u64,
            count: self.count,
            dry_run: self.dry_run,
            results: self.results,
        }
    }
}
