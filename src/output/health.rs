//! How each output has fared since start: deliveries that went out and that failed, and the
//! last failure's text and time, with credentials and query strings taken out of any URL in
//! it. SQL counts one per request's transaction, MQTT and HTTP one per message.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The outputs, in the order they are shown.
pub const KINDS: [&str; 3] = ["sql", "mqtt", "http"];

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<(String, i64)>>,
}

/// One output's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputStatus {
    pub kind: &'static str,
    pub delivered: u64,
    pub failed: u64,
    /// The last failure (scrubbed of secrets) and when it happened (Unix ms).
    pub last_error: Option<(String, i64)>,
}

/// The counters of every output.
#[derive(Default)]
pub struct OutputHealth {
    counters: [Counters; 3],
}

impl OutputHealth {
    fn of(&self, kind: &str) -> &Counters {
        let at = KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len() - 1);
        &self.counters[at]
    }

    /// One delivery of `kind` went out.
    pub fn delivered(&self, kind: &str) {
        self.of(kind).delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// One delivery of `kind` failed with `error` at `at_ms`.
    pub fn failed(&self, kind: &str, error: &str, at_ms: i64) {
        let counters = self.of(kind);
        counters.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = counters.last_error.lock() {
            *last = Some((scrub(error), at_ms));
        }
    }

    /// The figures of `kind` now.
    pub fn status(&self, kind: &'static str) -> OutputStatus {
        let c = self.of(kind);
        OutputStatus {
            kind,
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            last_error: c.last_error.lock().ok().and_then(|l| l.clone()),
        }
    }
}

/// `text` with the user-info (`user:password@`) and the query string of every URL in it
/// replaced by `…`.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        rest = &rest[at + 3..];
        let end = rest.find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>')).unwrap_or(rest.len());
        // Punctuation after a URL ends the sentence, not the URL.
        let end = rest[..end].trim_end_matches([':', ',', ';', '.']).len();
        let (url, after) = rest.split_at(end);
        let authority_end = url.find('/').unwrap_or(url.len());
        let url = match url[..authority_end].rfind('@') {
            Some(a) => format!("…@{}", &url[a + 1..]),
            None => url.to_owned(),
        };
        match url.split_once('?') {
            Some((path, _)) => out.push_str(&format!("{path}?…")),
            None => out.push_str(&url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_and_query_strings() {
        assert_eq!(
            scrub(
                "http: cannot reach https://u:pw@example.org/hook?token=abc: refused (for url (https://u:pw@example.org/hook?token=abc))"
            ),
            "http: cannot reach https://…@example.org/hook?…: refused (for url (https://…@example.org/hook?…))"
        );
        assert_eq!(scrub("mqtt: broker gone"), "mqtt: broker gone");
        assert_eq!(scrub("see http://example.org/a@b"), "see http://example.org/a@b");
    }

    #[test]
    fn counts_and_the_last_error_are_kept_per_output() {
        let health = OutputHealth::default();
        health.delivered("mqtt");
        health.failed("http", "http: https://a:b@h/x answered 500", 7);
        assert_eq!(health.status("mqtt").delivered, 1);
        let http = health.status("http");
        assert_eq!((http.delivered, http.failed), (0, 1));
        assert_eq!(http.last_error, Some(("http: https://…@h/x answered 500".into(), 7)));
        assert_eq!(health.status("sql").last_error, None);
    }
}
