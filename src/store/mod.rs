//! Where data lands: the journal, files in the data directory (with the writer's kept append
//! handles), the dedup memory, and the journal shared with other instances in PostgreSQL.

pub mod dedup;
pub mod effects;
pub mod files;
pub mod handles;
pub mod journal;
pub mod shared;

pub use dedup::{Claim, SeenKeys};
pub use effects::Effect;
pub use files::{DataDir, StoreError, safe_relative_path};
pub use journal::Journal;
pub use shared::Shared;
