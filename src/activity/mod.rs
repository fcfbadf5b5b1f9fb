//! What the console's health page needs beyond the journal, kept in memory: per-minute
//! counts of refused requests and of failures the journal never saw (`outcomes.rs`), and when
//! each source was last seen (`sources.rs`).
//!
//! Rejected requests are not journaled, so their counts start again at zero when the server
//! restarts; accepted and failed requests are counted from the journal. Both structures are
//! bounded: one day of minutes per protocol (protocol names come from the specs only), and at
//! most [`sources::MAX_SOURCES`] sources.

pub mod outcomes;
pub mod sources;

pub use outcomes::{Minute, Outcome, Outcomes};
pub use sources::{SourceSeen, Sources};

/// The in-memory activity of the running server.
#[derive(Default)]
pub struct Activity {
    pub outcomes: Outcomes,
    pub sources: Sources,
}

/// The current Unix time in milliseconds (0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
