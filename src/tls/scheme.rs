//! Whether a request came over HTTPS, for protocols whose spec says `x-hookyard-scheme:
//! https`: over the TLS listener, or through a trusted reverse proxy that says so in
//! `X-Forwarded-Proto`. A plain request to such a protocol is refused with the HTTPS URL to
//! use instead.

use std::net::IpAddr;

use poem::Request;
use poem::http::uri::Scheme;
use poem::http::{HeaderMap, header};

use ipnet::IpNet;

use crate::config::Config;

/// The HTTPS requirement of a running server; present when HTTPS is on (`[tls]`) or a
/// trusted proxy terminates it (`[server] trusted_proxies`).
pub struct HttpsGate {
    /// The port of the TLS listener (`None` behind a proxy: its own port, 443, applies).
    port: Option<u16>,
    trusted: Vec<IpNet>,
}

impl HttpsGate {
    pub fn from_config(config: &Config) -> Option<Self> {
        let trusted = config.server_limits.trusted_proxies.clone();
        let port = config.tls.listen.map(|a| a.port());
        (port.is_some() || !trusted.is_empty()).then_some(Self { port, trusted })
    }

    /// `None` when `req` came over HTTPS; otherwise the reason to refuse it, naming the URL.
    pub fn refusal(&self, req: &Request) -> Option<String> {
        if self.came_over_https(req) {
            return None;
        }
        Some(format!("plain HTTP is refused here: send to {}", self.https_url(req)))
    }

    /// Whether `req` came over HTTPS: over the TLS listener, or as a trusted proxy says.
    pub fn came_over_https(&self, req: &Request) -> bool {
        *req.scheme() == Scheme::HTTPS || self.forwarded_https(req)
    }

    fn forwarded_https(&self, req: &Request) -> bool {
        let Some(peer) = req.remote_addr().as_socket_addr().map(|a| a.ip()) else { return false };
        self.trusts(peer)
            && req
                .header("x-forwarded-proto")
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }

    fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// The same request's URL over HTTPS: the host it was sent to, the TLS port.
    fn https_url(&self, req: &Request) -> String {
        let name = strip_port(req.header(header::HOST).unwrap_or("localhost"));
        let port = match self.port {
            Some(443) | None => String::new(),
            Some(p) => format!(":{p}"),
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("https://{name}{port}{path}")
    }
}

/// Where `req` was sent, as `scheme://host[:port]`: HTTPS over the TLS listener or when a
/// trusted proxy says so in `X-Forwarded-Proto`; the host of a trusted proxy's
/// `X-Forwarded-Host`, else the `Host` header (a host with characters no host name has is
/// replaced by `localhost`).
pub fn base_url(req: &Request, trusted: &[IpNet]) -> String {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let authority = req.uri().authority().map(|a| a.as_str());
    origin(peer, *req.scheme() == Scheme::HTTPS, req.headers(), authority, trusted)
}

/// `base` (from [`base_url`]) for an HTTPS-only protocol: unchanged when it is HTTPS already,
/// else the same host at the TLS listener's `port` (none: unchanged, no HTTPS here).
pub fn https_base(base: &str, port: Option<u16>) -> String {
    match (base.strip_prefix("http://"), port) {
        (Some(host), Some(443)) => format!("https://{}", strip_port(host)),
        (Some(host), Some(port)) => format!("https://{}:{port}", strip_port(host)),
        _ => base.to_owned(),
    }
}

/// [`base_url`] from the request's parts: the peer, whether it came over TLS, its headers and
/// the URI's authority (HTTP/2 sends no `Host`).
fn origin(peer: Option<IpAddr>, tls: bool, headers: &HeaderMap, authority: Option<&str>, trusted: &[IpNet]) -> String {
    let proxied = peer.map(|ip| ip.to_canonical()).is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = |name: &str| {
        header(name).filter(|_| proxied).and_then(|v| v.split(',').next()).map(str::trim).filter(|v| !v.is_empty())
    };
    let https = tls || forwarded("x-forwarded-proto").is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let host = forwarded("x-forwarded-host")
        .or_else(|| header(header::HOST.as_str()))
        .or(authority)
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)))
        .unwrap_or("localhost");
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// `example.org:8080` → `example.org`, `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if port.bytes().all(|b| b.is_ascii_digit()) && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (poem::http::HeaderName::from_static(n), poem::http::HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn the_base_url_trusts_forwarded_headers_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxied = headers(&[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "hooks.example.org"),
        ]);
        let (proxy, stranger) = (Some("10.0.0.1".parse().unwrap()), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(origin(proxy, false, &proxied, None, &trusted), "https://hooks.example.org");
        assert_eq!(origin(stranger, false, &proxied, None, &trusted), "http://10.0.0.5:8080");
        assert_eq!(origin(stranger, true, &headers(&[]), Some("[::1]:8443"), &trusted), "https://[::1]:8443");
        assert_eq!(origin(stranger, false, &headers(&[("host", "a<b")]), None, &trusted), "http://localhost");
    }

    #[test]
    fn an_https_only_protocol_is_shown_at_the_tls_port() {
        assert_eq!(https_base("http://hooks.example.org:8080", Some(8443)), "https://hooks.example.org:8443");
        assert_eq!(https_base("http://[::1]:8080", Some(443)), "https://[::1]");
        assert_eq!(https_base("https://hooks.example.org", Some(8443)), "https://hooks.example.org");
        assert_eq!(https_base("http://hooks.example.org", None), "http://hooks.example.org");
    }

    #[test]
    fn the_port_is_taken_off_names_and_bracketed_addresses_only() {
        assert_eq!(strip_port("hooks.example.org:8080"), "hooks.example.org");
        assert_eq!(strip_port("hooks.example.org"), "hooks.example.org");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
