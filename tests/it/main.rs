//! Integration tests: every protocol through the real HTTP server, asserting what a user
//! would check — the status, the reply body, and the bytes that landed on disk.

mod admin;
mod ai_on_the_edge;
mod bad_input;
mod batch_scripts;
mod bench_smoke;
mod cli;
mod config;
mod docs;
mod durability;
mod fuzz;
mod gridx;
mod hardening;
mod helpers;
mod house;
mod metrics;
mod outputs;
mod packaging;
mod plugins;
mod properties;
mod protocols;
mod public;
mod replay;
mod retention;
mod scale_out;
mod schemathesis;
mod scripts;
mod slow;
mod tls;
mod wattmon;
mod wattsense;
