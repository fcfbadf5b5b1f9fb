//! A dry run for the inspector: the current scripts over the processed and failed events of
//! one request, and per file what was written then beside what would be written now. Nothing
//! is written or delivered.

use poem_openapi::Object;

use crate::script::{RunReport, ScriptHost};
use crate::store::Effect;
use crate::store::journal::query::Journaled;

/// What a dry run found for one file.
#[derive(Object)]
pub struct DryRunEffect {
    pub path: String,
    /// `append` or `write`.
    pub kind: String,
    /// What was written for the event's request originally (text; none when nothing was).
    pub before: Option<String>,
    /// What the current scripts would write (text; none when nothing would be).
    pub after: Option<String>,
}

/// What the current scripts would do with an event's request.
#[derive(Object)]
pub struct DryRunResult {
    /// `processed` or `failed`.
    pub outcome: String,
    pub error: Option<String>,
    /// What the scripts would log.
    pub logs: Vec<String>,
    pub effects: Vec<DryRunEffect>,
}

/// Runs the current scripts over `items` (`None` when there is nothing to run).
pub fn run(scripts: &ScriptHost, items: &[Journaled]) -> Option<RunReport> {
    let first = items.first()?;
    let events: Vec<&crate::event::Event> = items.iter().map(|i| &i.event).collect();
    Some(scripts.run(&first.event.protocol, &events))
}

/// Each file's bytes, in the order the files were first written; a write replaces, an
/// append adds.
fn by_file(effects: &[Effect]) -> Vec<(String, &'static str, Vec<u8>)> {
    let mut files: Vec<(String, &'static str, Vec<u8>)> = Vec::new();
    for effect in effects {
        let at = match files.iter().position(|(p, _, _)| p == effect.path()) {
            Some(at) => at,
            None => {
                files.push((effect.path().to_owned(), "append", Vec::new()));
                files.len() - 1
            }
        };
        let file = &mut files[at];
        match effect {
            Effect::Append { bytes, .. } => file.2.extend_from_slice(bytes),
            Effect::Write { bytes, .. } => (file.1, file.2) = ("write", bytes.clone()),
        }
    }
    files
}

/// Before (`written`) and after (`report`), file by file.
pub fn result(written: &[Effect], report: RunReport) -> DryRunResult {
    let (before, after) = (by_file(written), by_file(&report.effects));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut effects: Vec<DryRunEffect> = before
        .iter()
        .map(|(path, kind, bytes)| {
            let now = after.iter().find(|(p, _, _)| p == path);
            DryRunEffect {
                path: path.clone(),
                kind: now.map_or(*kind, |n| n.1).into(),
                before: Some(text(bytes)),
                after: now.map(|n| text(&n.2)),
            }
        })
        .collect();
    for (path, kind, bytes) in after.iter().filter(|(p, _, _)| !before.iter().any(|(b, _, _)| b == p)) {
        effects.push(DryRunEffect { path: path.clone(), kind: (*kind).into(), before: None, after: Some(text(bytes)) });
    }
    let outputs = report.outputs.iter().flatten().map(|o| format!("would deliver: {}", o.describe()));
    let logs = report.logs.into_iter().flatten().chain(outputs).collect();
    let (outcome, error) = match report.failure {
        Some(f) => ("failed", Some(f.message)),
        None => ("processed", None),
    };
    DryRunResult { outcome: outcome.into(), error, logs, effects }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_add_up_and_a_write_replaces() {
        let effects = vec![
            Effect::Append { path: "a.csv".into(), header: None, bytes: b"1\n".to_vec() },
            Effect::Write { path: "b.json".into(), bytes: b"{}".to_vec() },
            Effect::Append { path: "a.csv".into(), header: None, bytes: b"2\n".to_vec() },
            Effect::Write { path: "b.json".into(), bytes: b"[]".to_vec() },
        ];
        let files = by_file(&effects);
        assert_eq!(files[0], ("a.csv".to_owned(), "append", b"1\n2\n".to_vec()));
        assert_eq!(files[1], ("b.json".to_owned(), "write", b"[]".to_vec()));
    }
}
