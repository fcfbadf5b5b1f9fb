//! A journaled request as a curl command line: the method, the URL path as received, the
//! kept headers and the exact body. Credentials are never in the journal, so they appear as
//! shell variables (`$HOOKYARD_API_KEY`, `$HOOKYARD_SIGNATURE`, …) for the user to set; a
//! body that is not text travels as base64 through `base64 -d`.

use base64::Engine as _;

use crate::ingest::mask::MASK;
use crate::store::journal::query::Detail;

/// The shell variable standing for the masked value of header or parameter `name`.
fn placeholder(name: &str) -> &'static str {
    let name = name.to_ascii_lowercase();
    if name.contains("sig") {
        "$HOOKYARD_SIGNATURE"
    } else if name == "authorization" {
        "$HOOKYARD_AUTHORIZATION"
    } else if name.contains("key") {
        "$HOOKYARD_API_KEY"
    } else if name.contains("token") {
        "$HOOKYARD_TOKEN"
    } else {
        "$HOOKYARD_SECRET"
    }
}

/// `text` in single quotes for a POSIX shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `text` in double quotes, where only `$HOOKYARD_…` placeholders expand.
fn double_quoted(text: &str) -> String {
    let escaped = text.replace('\\', r"\\").replace('"', "\\\"").replace('`', "\\`").replace("$", "\\$");
    let placeholders = escaped.replace("\\$HOOKYARD_", "$HOOKYARD_").replace("\\${HOOKYARD_", "${HOOKYARD_");
    format!("\"{placeholders}\"")
}

/// The URL path with masked query values as placeholders.
fn url(detail: &Detail, host: &str) -> String {
    let path = if detail.path.is_empty() { format!("/{}", detail.summary.protocol) } else { detail.path.clone() };
    let (path, query) = path.split_once('?').map_or((path.as_str(), None), |(p, q)| (p, Some(q)));
    let query = query.map(|q| {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, MASK)) => format!("{name}={}", placeholder(name)),
                _ => pair.to_owned(),
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("${{HOOKYARD_URL:-http://{host}}}{path}{}", query.unwrap_or_default())
}

/// The curl command line of `detail`'s request, reaching this server at `host`.
pub fn command(detail: &Detail, host: &str) -> String {
    let method = if detail.method.is_empty() { "POST" } else { detail.method.as_str() };
    let mut lines = vec![format!("curl -sS -X {method} {}", double_quoted(&url(detail, host)))];
    for (name, value) in &detail.headers {
        let value = if value == MASK { placeholder(name).to_owned() } else { value.clone() };
        lines.push(format!("  -H {}", double_quoted(&format!("{name}: {value}"))));
    }
    match std::str::from_utf8(&detail.body) {
        Ok(text) => lines.push(format!("  --data-binary {}", quoted(text))),
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&detail.body);
            lines.insert(0, format!("printf %s {} | base64 -d |", quoted(&encoded)));
            lines.push("  --data-binary @-".into());
        }
    }
    lines.join(" \\\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_placeholders_and_nothing_else_expands() {
        assert_eq!(double_quoted("X-Signature: $HOOKYARD_SIGNATURE"), "\"X-Signature: $HOOKYARD_SIGNATURE\"");
        assert_eq!(double_quoted("a $(rm) `x` \"q\""), "\"a \\$(rm) \\`x\\` \\\"q\\\"\"");
        assert_eq!(quoted("it's"), "'it'\\''s'");
    }
}
