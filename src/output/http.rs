//! The HTTP output: POST to another URL with a timeout and retries.

use std::time::Duration;

use super::{HttpSettings, Output, redact_url};

/// Why a POST did not succeed. URLs are shown without their user-info part.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http output: cannot build the client: {0}")]
    Client(reqwest::Error),
    /// The request could not be built (a bad URL or header): not retried.
    #[error("http: {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    /// The receiver answered, but not with success (retried for 429 and 5xx).
    #[error("http: {url} answered {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("http: {url} did not answer within {ms} ms")]
    Timeout { url: String, ms: u128 },
    #[error("http: cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// Every attempt failed; the last one says how.
    #[error("{last} (after {attempts} attempts)")]
    GaveUp { last: Box<HttpError>, attempts: u32 },
}

impl HttpError {
    /// Whether another attempt may succeed: connection errors, timeouts, 429 and 5xx.
    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => status.is_server_error() || status.as_u16() == 429,
            Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::Client(_) | Self::Request { .. } | Self::GaveUp { .. } => false,
        }
    }
}

pub struct Http {
    client: reqwest::Client,
    settings: HttpSettings,
}

impl Http {
    pub fn new(settings: &HttpSettings) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("hookyard/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .build()
            .map_err(HttpError::Client)?;
        Ok(Self { client, settings: settings.clone() })
    }

    /// Sends `output` (an [`Output::Http`]); retries connection errors, timeouts, 429 and 5xx.
    pub async fn post(&self, output: &Output) -> Result<(), HttpError> {
        let Output::Http { url, timeout_ms, retries, .. } = output else {
            return Ok(());
        };
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(self.settings.timeout_ms).max(1));
        let attempts = retries.unwrap_or(self.settings.retries).saturating_add(1);
        let mut attempt = 1;
        loop {
            let error = match self.attempt(output, url, timeout).await {
                Ok(()) => return Ok(()),
                Err(e) if !e.retryable() => return Err(e),
                Err(e) => e,
            };
            if attempt >= attempts {
                return Err(HttpError::GaveUp { last: Box::new(error), attempts });
            }
            tokio::time::sleep(Duration::from_millis(250 << (attempt - 1).min(5))).await;
            attempt += 1;
        }
    }

    /// One POST of `output` to `url`.
    async fn attempt(&self, output: &Output, url: &str, timeout: Duration) -> Result<(), HttpError> {
        let Output::Http { body, content_type, headers, .. } = output else {
            return Ok(());
        };
        let mut request =
            self.client.post(url).timeout(timeout).header("content-type", content_type).body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let shown = || redact_url(url);
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(HttpError::Status { url: shown(), status: response.status() }),
            Err(e) if e.is_timeout() => Err(HttpError::Timeout { url: shown(), ms: timeout.as_millis() }),
            Err(source) if source.is_builder() => Err(HttpError::Request { url: shown(), source }),
            Err(e) => Err(HttpError::Unreachable { url: shown(), cause: root_cause(&e) }),
        }
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A receiver that answers every request with `status`; returns its URL and a counter.
    fn receiver(status: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://user:secret@{}/hook", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                seen.fetch_add(1, Ordering::SeqCst);
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (url, count)
    }

    fn post_to(url: &str, retries: u32) -> Output {
        Output::Http {
            url: url.to_owned(),
            body: b"{}".to_vec(),
            content_type: "application/json".into(),
            headers: Vec::new(),
            timeout_ms: Some(2_000),
            retries: Some(retries),
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_the_last_one_is_reported() {
        let (url, count) = receiver("503 Service Unavailable");
        let http = Http::new(&HttpSettings::default()).unwrap();
        let err = http.post(&post_to(&url, 1)).await.unwrap_err();
        let shown = redact_url(&url);
        assert_eq!(err.to_string(), format!("http: {shown} answered 503 Service Unavailable (after 2 attempts)"));
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let (url, count) = receiver("404 Not Found");
        let http = Http::new(&HttpSettings::default()).unwrap();
        let err = http.post(&post_to(&url, 3)).await.unwrap_err();
        assert!(matches!(&err, HttpError::Status { status, .. } if status.as_u16() == 404), "{err}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_receiver_is_retried() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let http = Http::new(&HttpSettings::default()).unwrap();
        let err = http.post(&post_to(&format!("http://127.0.0.1:{port}/"), 1)).await.unwrap_err();
        let HttpError::GaveUp { last, attempts: 2 } = &err else { panic!("{err}") };
        assert!(matches!(**last, HttpError::Unreachable { .. }), "{err}");
        let shown = format!("http: cannot reach http://127.0.0.1:{port}/: ");
        assert!(err.to_string().starts_with(&shown) && err.to_string().ends_with("(after 2 attempts)"), "{err}");
    }
}
