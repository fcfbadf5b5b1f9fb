//! Where data lands: files in the data directory, and the memory of processed keys.

pub mod dedup;
pub mod files;

pub use dedup::{Claim, SeenKeys};
pub use files::{DataDir, StoreError, Touched, safe_relative_path};
