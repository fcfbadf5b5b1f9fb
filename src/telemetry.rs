//! Logging: one line per event on stderr, every value with its control characters escaped.
//!
//! Values in log lines can come from clients (an unknown gridX `type`, a device name, a
//! refusal's reason): a newline or an escape sequence in them must not forge a log line or
//! drive the operator's terminal, so each field is written with control characters escaped
//! (`\n`, `\u{1b}`). Colours (only when stderr is a terminal) are the formatter's own.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// Installs the subscriber (`RUST_LOG` filters; `info` by default).
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .fmt_fields(Escaped::default())
        .init();
}

/// The default field format, with control characters escaped.
#[derive(Default)]
pub struct Escaped {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for Escaped {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut raw = String::new();
        self.inner.format_fields(Writer::new(&mut raw), fields)?;
        writer.write_str(&escape_controls(&raw))
    }
}

/// `text` with every control character written as its escape.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("appliance/online"), "appliance/online");
        assert_eq!(escape_controls("x\nINFO forged\u{1b}[31m"), "x\\nINFO forged\\u{1b}[31m");
        assert_eq!(escape_controls("tab\there ü"), "tab\\there ü");
    }
}
