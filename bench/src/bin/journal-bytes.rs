//! `journal-bytes`: what hookyard's journal holds per event. Folds the write-ahead log into
//! the database (`PRAGMA wal_checkpoint(TRUNCATE)`; the server may keep running, idle), then
//! prints `{"journal_bytes": …, "journal_events": …}` — the bytes of the pages in use and the events
//! journaled — and, with `--since <file>`, `journal_bytes_per_event` over what was added
//! since the figures that file holds (which it then replaces), so one journal serves
//! scenario after scenario. Run it after the server's checkpoint (about a second after the
//! last request), which is what drops the effects' bytes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The server's data directory (the journal is `.hookyard/journal.db` in it).
    data: PathBuf,
    /// A file with the previous figures (absent: from an empty journal).
    #[arg(long)]
    since: Option<PathBuf>,
}

fn figures(data: &std::path::Path) -> rusqlite::Result<(i64, i64)> {
    let conn = rusqlite::Connection::open(data.join(".hookyard/journal.db"))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let one = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    let used = (one("PRAGMA page_count")? - one("PRAGMA freelist_count")?) * one("PRAGMA page_size")?;
    Ok((used, one("SELECT COUNT(*) FROM events")?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (bytes, events) = figures(&args.data)?;
    let mut out = json!({ "journal_bytes": bytes, "journal_events": events });
    if let Some(since) = &args.since {
        let before: Value = std::fs::read(since).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let (b0, e0) = (before["journal_bytes"].as_i64().unwrap_or(0), before["journal_events"].as_i64().unwrap_or(0));
        if events > e0 {
            out["journal_bytes_per_event"] = json!(((bytes - b0) as f64 / (events - e0) as f64).round());
        }
        std::fs::write(since, json!({ "journal_bytes": bytes, "journal_events": events }).to_string())?;
    }
    println!("{out}");
    Ok(())
}
