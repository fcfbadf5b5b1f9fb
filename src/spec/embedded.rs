//! The specs, scripts and config file built into the binary: what `hookyard serve` uses with
//! no spec or script directory, and what `hookyard init` writes. Their source is
//! `src/defaults/`; the repository's `spec/` and `scripts/` are what `hookyard init` writes
//! (a test keeps them equal), so editing those files never rebuilds the server.

/// `(protocol, spec text)` for every built-in protocol.
pub const SPECS: &[(&str, &str)] = &[
    ("ai-on-the-edge", include_str!("../defaults/spec/ai-on-the-edge.yaml")),
    ("gridx", include_str!("../defaults/spec/gridx.yaml")),
    ("wattmon", include_str!("../defaults/spec/wattmon.yaml")),
    ("wattsense", include_str!("../defaults/spec/wattsense.yaml")),
];

/// `(protocol, script text)` for every built-in protocol.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("ai-on-the-edge", include_str!("../defaults/scripts/ai-on-the-edge.rhai")),
    ("gridx", include_str!("../defaults/scripts/gridx.rhai")),
    ("wattmon", include_str!("../defaults/scripts/wattmon.rhai")),
    ("wattsense", include_str!("../defaults/scripts/wattsense.rhai")),
];

/// The config file `hookyard init` writes: every setting at its default, commented.
pub const CONFIG: &str = include_str!("../defaults/hookyard.toml");
