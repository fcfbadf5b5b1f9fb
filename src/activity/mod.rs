//! What the health view shows, kept in memory so a chart costs no journal scan: per-minute
//! counts of accepted, refused and failed requests per protocol (`outcomes.rs`), and when each
//! source was last seen (`sources.rs`).
//!
//! Both are fed by the request path and seeded from the journal at start-up; refused requests
//! are not journaled, so their counts start again at zero when the server restarts. Both are
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
