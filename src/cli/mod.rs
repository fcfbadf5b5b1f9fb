//! The command line: `serve`, `check`, `replay`, `validate`, `init` (a working directory to
//! edit) and `healthcheck` (for containers and monitors).

mod healthcheck;
mod init;
mod replay;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{self, App};
use crate::config::Config;
use crate::event::Origin;
use crate::form::Form;
use crate::ingest::{parse_query, split};
use crate::spec::Registry;
use crate::spec::ext::BodyKind;
use crate::store::journal::query::Filter;

#[derive(Parser)]
#[command(name = "hookyard", version, about = "Receives webhooks from meters, gateways and energy platforms")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve every protocol of the spec directory.
    Serve {
        /// Config file (default: ./hookyard.toml when it exists, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load config, specs and scripts; report every problem; exit non-zero on any.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the current scripts again over journaled events (stop the server first, except
    /// with --dry-run).
    Replay {
        /// Only events of this protocol.
        #[arg(long)]
        protocol: Option<String>,
        /// Only requests received at or after this time (RFC 3339, or Unix milliseconds).
        #[arg(long, value_parser = crate::event::parse_time)]
        since: Option<i64>,
        /// Only requests received before this time (RFC 3339, or Unix milliseconds).
        #[arg(long, value_parser = crate::event::parse_time)]
        until: Option<i64>,
        /// Only events whose processing failed.
        #[arg(long)]
        failed: bool,
        /// Print what the scripts would write; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a payload file against a protocol's spec; print each violation.
    Validate {
        protocol: String,
        method: String,
        /// Route path, optionally with a query (`/ai-on-the-edge/webhook?timestamp=1`).
        path: String,
        payload: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a working directory to edit: hookyard.toml (every default shown), spec/ and
    /// scripts/; refuses to overwrite existing files.
    Init { dir: PathBuf },
    /// GET /healthz of the configured listen address; exit 0 when it answers 200, else 1.
    Healthcheck {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs one command; the exit code tells the outcome.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(Config::load(config.as_deref())?),
        Command::Check { config } => Ok(check(Config::load(config.as_deref())?)),
        Command::Replay { protocol, since, until, failed, dry_run, config } => {
            let filter =
                Filter { protocol, since_ms: since, until_ms: until, failed_only: failed, ..Filter::default() };
            replay::run(Config::load(config.as_deref())?, replay::Options { filter, dry_run })
        }
        Command::Validate { protocol, method, path, payload, config } => {
            let config = Config::load(config.as_deref())?;
            validate(&config, &protocol, &method, &path, &payload)
        }
        Command::Init { dir } => init(&dir),
        Command::Healthcheck { config } => Ok(healthcheck(&Config::load(config.as_deref())?)),
    }
}

fn init(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let written = init::init(dir)?;
    println!("wrote {} files: {}/hookyard.toml, spec/ and scripts/", written.len(), dir.display());
    println!("edit them and start the server there: cd {} && hookyard serve", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn healthcheck(config: &Config) -> ExitCode {
    match healthcheck::check(healthcheck::target(config.listen)) {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let listen = config.listen;
    let app = match App::build(config) {
        Ok(app) => app,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            anyhow::bail!("{} problem(s) found; not starting", problems.len());
        }
    };
    if !app.credentials.generated.is_empty() {
        eprintln!(
            "hookyard: generated credentials for {} and stored them in {} (mode 0600); \
             configure your devices with them, or set your own in hookyard.toml",
            app.credentials.generated.join(", "),
            app.credentials.path.display()
        );
    }
    let runtime = server_runtime()?;
    runtime.block_on(async move {
        // Signal handlers first: a SIGTERM that arrives as soon as the port is open must
        // already mean "shut down gracefully".
        let shutdown = shutdown_signal()?;
        let listener = crate::net::listen(listen).with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(address = %listen, docs = %format!("http://{listen}/docs"), "hookyard is serving");
        app::run(listener, app, shutdown).await?;
        anyhow::Ok(())
    })?;
    tracing::info!("hookyard stopped");
    Ok(ExitCode::SUCCESS)
}

/// Threads for blocking work (journal reads of the management API, large script runs, the
/// shared journal's calls) at most; more work waits for one. Each thread holds a stack and
/// allocator memory of its own.
const BLOCKING_THREADS: usize = 16;

/// The server's runtime: one worker thread per CPU, at most [`BLOCKING_THREADS`] more, and
/// those gone after two idle seconds, so a burst's threads do not outlive it by much.
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()
}

/// Registers SIGINT/SIGTERM now; the returned future resolves on the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing requests in flight");
    })
}

fn check(config: Config) -> ExitCode {
    match App::build(config) {
        Ok(app) => {
            println!("ok: {} protocol(s), config, specs and scripts load", app.protocol_count());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                println!("error: {p}");
            }
            println!("{} problem(s) found", problems.len());
            ExitCode::FAILURE
        }
    }
}

fn validate(config: &Config, protocol: &str, method: &str, path: &str, payload: &PathBuf) -> anyhow::Result<ExitCode> {
    let registry = Registry::load(config.spec_dir.as_deref())
        .map_err(|e| anyhow::anyhow!(e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
    let spec = registry.get(protocol).with_context(|| format!("no protocol {protocol:?} in the specs"))?;
    let (route, query) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
    let op = spec
        .operations
        .iter()
        .find(|o| o.path == route && o.method.as_str().eq_ignore_ascii_case(method))
        .with_context(|| format!("{protocol} has no operation {} {route}", method.to_uppercase()))?;
    let body = std::fs::read(payload).with_context(|| format!("cannot read {}", payload.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let form = match op.split.body_kind() {
        BodyKind::Form => match runtime.block_on(Form::parse(None, body.clone().into())) {
            Ok(f) => Some(f),
            Err(e) => return Ok(report(&[format!("body: {e}")], 0)),
        },
        _ => None,
    };
    let origin =
        Origin { protocol: protocol.into(), operation: op.operation_id.clone(), source: String::new(), received_ms: 0 };
    let query = parse_query(query);
    let input = split::Input { body: body.into(), form: form.as_ref(), query: &query, content_type: None };
    Ok(match split::split(op, &origin, input) {
        Ok(parsed) => report(&[], parsed.events.len()),
        Err(violations) => report(&violations, 0),
    })
}

fn report(violations: &[String], events: usize) -> ExitCode {
    if violations.is_empty() {
        println!("valid: {events} event(s)");
        return ExitCode::SUCCESS;
    }
    for v in violations {
        println!("{v}");
    }
    ExitCode::from(1)
}
