//! hookyard: a receiver for the data meters, gateways and energy platforms push over HTTP.
//!
//! Specs in `spec/` drive the routes and validators; requests are verified over their raw
//! bytes, validated, split into [`event::Event`]s and handed to Rhai scripts that decide where
//! data lands. See `ARCHITECTURE.md` for the map of the rooms below.

pub mod activity;
pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod docs;
pub mod event;
pub mod form;
pub mod ingest;
pub mod lockout;
pub mod meters;
pub mod metrics;
pub mod net;
pub mod output;
pub mod plugin;
pub mod replay;
pub mod script;
pub mod secret;
pub mod services;
pub mod spec;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use app::{App, run};
pub use config::Config;
