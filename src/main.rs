//! The `hookyard` binary: arguments → config → telemetry → run.

use std::io::IsTerminal;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = hookyard::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match hookyard::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookyard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
