//! Secrets kept out of the journal and the management API: header values and query
//! parameters whose names say they carry a credential (`Authorization`, `Cookie`, any name
//! with `key`, `token`, `signature`, `secret` or `password`, and the names an operation's
//! checks read their credentials from) are replaced by [`MASK`] before anything is stored.

use poem::http::HeaderMap;

/// What a secret value is shown as.
pub const MASK: &str = "••••";

/// At most this many headers of a refused request are kept, each value cut to this length.
const MAX_HEADERS: usize = 48;
const MAX_VALUE: usize = 256;

/// Whether a header or query parameter named `name` may carry a credential (`extra`: the
/// names an operation's checks read, lowercase).
pub fn is_secret(name: &str, extra: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie" | "set-cookie")
        || ["key", "token", "signature", "secret", "password", "passwd"].iter().any(|word| name.contains(word))
        || extra.contains(&name)
}

/// The value to keep for `name`: masked when it may be a secret.
pub fn value(name: &str, value: &str, extra: &[String]) -> String {
    if is_secret(name, extra) { MASK.to_owned() } else { value.chars().take(MAX_VALUE).collect() }
}

/// Every header (up to a bound), secrets masked.
pub fn headers(headers: &HeaderMap, extra: &[String]) -> Vec<(String, String)> {
    headers
        .iter()
        .take(MAX_HEADERS)
        .map(|(name, v)| {
            (name.as_str().to_owned(), value(name.as_str(), &String::from_utf8_lossy(v.as_bytes()), extra))
        })
        .collect()
}

/// The URL path with its query as received, the values of secret parameters masked.
pub fn path(uri: &poem::http::Uri, extra: &[String]) -> String {
    let path: String = uri.path().chars().take(1024).collect();
    let Some(query) = uri.query() else { return path };
    let pairs: Vec<String> = query
        .split(['&', '?'])
        .take(MAX_HEADERS)
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded: String = form_urlencoded::parse(name.as_bytes()).map(|(k, _)| k.into_owned()).collect();
            if is_secret(&decoded, extra) { format!("{name}={MASK}") } else { pair.chars().take(MAX_VALUE).collect() }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_by_name() {
        let extra = vec!["x-hub".to_owned()];
        for name in ["Authorization", "APIKEY", "X-Api-Key", "Cookie", "X-Signature", "x-auth-token", "X-Hub"] {
            assert_eq!(value(name, "s3cret", &extra), MASK, "{name}");
        }
        assert_eq!(value("content-type", "application/json", &extra), "application/json");
    }

    #[test]
    fn query_secrets_are_masked_and_the_rest_kept() {
        let uri: poem::http::Uri = "/wattmon/upload?token=abc&device=m1?key=k".parse().unwrap();
        assert_eq!(path(&uri, &[]), "/wattmon/upload?token=••••&device=m1&key=••••");
    }
}
