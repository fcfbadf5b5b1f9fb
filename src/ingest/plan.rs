//! Which events of a request run and which are duplicates, and each event's outcome after
//! the run: one record per event, in request order. Pure: no I/O, no clock; the dedup
//! memory is asked through a closure.

use crate::event::Event;
use crate::script::RunReport;
use crate::spec::readings::ReadingsSpec;
use crate::store::Claim;
use crate::store::journal::{EventRecord, Status};

/// One event of a request and what became of it.
#[derive(Debug)]
pub struct Planned {
    pub event: Event,
    pub key: Option<String>,
    /// `Processed` while it is to run (and once it ran), `Duplicate` when skipped, `Failed`.
    pub status: Status,
    pub error: Option<String>,
    /// What the script logged while handling it.
    pub logs: Vec<String>,
    /// Whether it goes to the script (false for duplicates).
    runs: bool,
}

/// A key of the request is being processed by another request right now.
#[derive(Debug, PartialEq, Eq)]
pub struct InFlight;

/// Every event of one request, in order.
#[derive(Debug)]
pub struct Plan(Vec<Planned>);

/// Plans `events`: an event runs unless its key was processed before or already appeared in
/// this request. `claim` is asked once per distinct key, in order; an in-flight key stops
/// the planning (the caller's claims give back what was claimed before it).
pub fn plan(
    events: Vec<Event>,
    key_of: impl Fn(&Event) -> Option<String>,
    mut claim: impl FnMut(&str) -> Claim,
) -> Result<Plan, InFlight> {
    let mut planned: Vec<Planned> = Vec::with_capacity(events.len());
    let mut in_request = std::collections::HashSet::new();
    for event in events {
        let key = key_of(&event);
        let runs = match &key {
            None => true,
            Some(k) if !in_request.insert(k.clone()) => false,
            Some(k) => match claim(k) {
                Claim::New => true,
                Claim::Seen => false,
                Claim::InFlight => return Err(InFlight),
            },
        };
        let status = if runs { Status::Processed } else { Status::Duplicate };
        planned.push(Planned { event, key, status, error: None, logs: Vec::new(), runs });
    }
    Ok(Plan(planned))
}

impl Plan {
    /// The events that go to the script, in order (a run report's n-th entry is the n-th).
    pub fn to_run(&self) -> Vec<&Event> {
        self.running().map(|p| &p.event).collect()
    }

    /// How many events go to the script.
    pub fn running_count(&self) -> usize {
        self.running().count()
    }

    /// The idempotency keys of the events that run, in the same order.
    pub fn running_keys(&self) -> Vec<Option<String>> {
        self.running().map(|p| p.key.clone()).collect()
    }

    fn running(&self) -> impl Iterator<Item = &Planned> {
        self.0.iter().filter(|p| p.runs)
    }

    /// Events whose key another instance processed meanwhile become duplicates.
    pub fn skip(&mut self, done_elsewhere: &[String]) {
        for p in self.0.iter_mut().filter(|p| p.key.as_ref().is_some_and(|k| done_elsewhere.contains(k))) {
            p.runs = false;
            p.status = Status::Duplicate;
        }
    }

    /// Takes each running event's outcome from the script's report: the first
    /// `report.processed` succeeded, the next one failed with the report's failure, the rest
    /// were not processed.
    pub fn settle(&mut self, report: &RunReport) {
        for (n, p) in self.0.iter_mut().filter(|p| p.runs).enumerate() {
            p.logs = report.logs.get(n).cloned().unwrap_or_default();
            if n < report.processed {
                continue;
            }
            p.status = Status::Failed;
            p.error = Some(match &report.failure {
                Some(f) if n == report.processed => f.message.clone(),
                _ => "not processed: an earlier event of the request failed".into(),
            });
        }
    }

    /// Keys of the events processed now.
    pub fn processed_keys(&self) -> Vec<String> {
        self.running().filter(|p| p.status == Status::Processed).filter_map(|p| p.key.clone()).collect()
    }

    /// Each event's status, in request order.
    pub fn outcomes(&self) -> impl Iterator<Item = Status> + '_ {
        self.0.iter().map(|p| p.status)
    }

    /// How many events ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.0.iter().filter(|p| p.status == status).count()
    }

    /// The journal's records of the events, with the readings of the processed ones as the
    /// operation's `x-hookyard-readings` block says. Their JSON form only when `with_data`:
    /// the journal keeps no copy of events it derives again from the body, and building it
    /// costs a 100-row block a hundred serializations.
    pub fn into_records(self, readings: Option<&ReadingsSpec>, with_data: bool) -> Vec<EventRecord> {
        self.0
            .into_iter()
            .map(|p| EventRecord {
                readings: match (readings.and_then(|r| r.series.as_ref()), p.status) {
                    (Some(series), Status::Processed) => series.extract(&p.event),
                    _ => Vec::new(),
                },
                image: p.status == Status::Processed && readings.is_some_and(|r| r.image) && p.event.blob.is_some(),
                index: p.event.index,
                data: if with_data { p.event.to_json_string() } else { String::new() },
                blob: p.event.blob.is_some(),
                key: p.key,
                outcome: p.status,
                error: p.error,
                logs: p.logs,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::Origin;
    use crate::script::{FailureKind, RunFailure};

    fn events(keys: &[Option<&str>]) -> Vec<Event> {
        let origin = Origin { protocol: "p".into(), operation: "o".into(), source: String::new(), received_ms: 0 };
        keys.iter().enumerate().map(|(i, k)| origin.event(i, json!({ "k": k }), serde_json::Map::new())).collect()
    }

    fn key_of(e: &Event) -> Option<String> {
        e.data["k"].as_str().map(str::to_owned)
    }

    fn report(processed: usize, failure: Option<usize>, logs: usize) -> RunReport {
        let mut r = RunReport::empty();
        r.processed = processed;
        r.failure = failure.map(|index| RunFailure { index, kind: FailureKind::Script, message: "boom".into() });
        r.logs = (0..logs).map(|n| vec![format!("line {n}")]).collect();
        r
    }

    #[test]
    fn seen_and_repeated_keys_are_duplicates_and_each_key_is_claimed_once() {
        let mut asked = Vec::new();
        let plan = plan(events(&[Some("a"), Some("old"), None, Some("a")]), key_of, |k| {
            asked.push(k.to_owned());
            if k == "old" { Claim::Seen } else { Claim::New }
        })
        .unwrap();
        assert_eq!(asked, ["a", "old"]);
        let indexes: Vec<usize> = plan.to_run().iter().map(|e| e.index).collect();
        assert_eq!(indexes, [0, 2]);
        assert_eq!(plan.running_keys(), [Some("a".to_string()), None]);
        assert_eq!(plan.count(Status::Duplicate), 2);
    }

    #[test]
    fn an_in_flight_key_stops_the_plan() {
        let result =
            plan(events(&[Some("a"), Some("b")]), key_of, |k| if k == "b" { Claim::InFlight } else { Claim::New });
        assert_eq!(result.unwrap_err(), InFlight);
    }

    #[test]
    fn settle_fails_the_failing_event_and_the_later_ones_and_keeps_the_logs_in_place() {
        let mut plan = plan(events(&[Some("a"), Some("dup"), Some("b"), Some("c")]), key_of, |k| {
            if k == "dup" { Claim::Seen } else { Claim::New }
        })
        .unwrap();
        plan.settle(&report(1, Some(1), 2));
        let records = plan_records(plan);
        let got: Vec<(usize, Status, Option<&str>, usize)> =
            records.iter().map(|r| (r.index, r.outcome, r.error.as_deref(), r.logs.len())).collect();
        assert_eq!(
            got,
            [
                (0, Status::Processed, None, 1),
                (1, Status::Duplicate, None, 0),
                (2, Status::Failed, Some("boom"), 1),
                (3, Status::Failed, Some("not processed: an earlier event of the request failed"), 0),
            ]
        );
    }

    #[test]
    fn keys_done_elsewhere_are_skipped_and_only_processed_keys_are_reported() {
        let mut plan = plan(events(&[Some("a"), Some("b"), Some("c")]), key_of, |_| Claim::New).unwrap();
        plan.skip(&["b".to_string()]);
        assert_eq!(plan.to_run().len(), 2);
        plan.settle(&report(1, Some(1), 2));
        assert_eq!(plan.processed_keys(), ["a".to_string()]);
        assert_eq!((plan.count(Status::Duplicate), plan.count(Status::Failed)), (1, 1));
    }

    fn plan_records(plan: Plan) -> Vec<EventRecord> {
        plan.into_records(None, true)
    }

    #[test]
    fn records_carry_the_events_json_only_when_asked() {
        let with = plan(events(&[Some("a")]), key_of, |_| Claim::New).unwrap().into_records(None, true);
        let data: serde_json::Value = serde_json::from_str(&with[0].data).unwrap();
        assert_eq!(data["data"], json!({ "k": "a" }));
        let without = plan(events(&[Some("a")]), key_of, |_| Claim::New).unwrap().into_records(None, false);
        assert_eq!((without[0].data.as_str(), without[0].key.as_deref()), ("", Some("a")));
    }
}
