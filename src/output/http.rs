//! The HTTP output: POST to another URL with a timeout and retries.

use std::time::Duration;

use super::{HttpSettings, Output, redact_url};

pub struct Http {
    client: reqwest::Client,
    settings: HttpSettings,
}

impl Http {
    pub fn new(settings: &HttpSettings) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("hookyard/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .build()
            .unwrap_or_default();
        Self { client, settings: settings.clone() }
    }

    /// Sends `output` (an [`Output::Http`]); retries connection errors, timeouts, 429 and 5xx.
    pub async fn post(&self, output: &Output) -> Result<(), String> {
        let Output::Http { url, body, content_type, headers, timeout_ms, retries } = output else {
            return Ok(());
        };
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(self.settings.timeout_ms).max(1));
        let attempts = retries.unwrap_or(self.settings.retries) + 1;
        let shown = redact_url(url);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1).min(5))).await;
            }
            let mut request =
                self.client.post(url).timeout(timeout).header("content-type", content_type).body(body.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    last = format!("http: {shown} answered {status}");
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        return Err(last);
                    }
                }
                Err(e) if e.is_timeout() => {
                    last = format!("http: {shown} did not answer within {} ms", timeout.as_millis())
                }
                Err(e) if e.is_builder() => return Err(format!("http: {shown}: {e}")),
                Err(e) => last = format!("http: cannot reach {shown}: {}", root_cause(&e)),
            }
        }
        Err(format!("{last} (after {attempts} attempts)"))
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
