//! The specs and scripts built into the binary: what `hookyard serve` uses with no spec or
//! script directory. They are the files of `spec/` and `scripts/` at build time.

/// `(protocol, spec text)` for every built-in protocol.
pub const SPECS: &[(&str, &str)] = &[
    ("ai-on-the-edge", include_str!("../../spec/ai-on-the-edge.yaml")),
    ("gridx", include_str!("../../spec/gridx.yaml")),
    ("wattmon", include_str!("../../spec/wattmon.yaml")),
    ("wattsense", include_str!("../../spec/wattsense.yaml")),
];

/// `(protocol, script text)` for every built-in protocol.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("ai-on-the-edge", include_str!("../../scripts/ai-on-the-edge.rhai")),
    ("gridx", include_str!("../../scripts/gridx.rhai")),
    ("wattmon", include_str!("../../scripts/wattmon.rhai")),
    ("wattsense", include_str!("../../scripts/wattsense.rhai")),
];
