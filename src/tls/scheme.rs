//! Whether a request came over HTTPS, for protocols whose spec says `x-hookyard-scheme:
//! https`: over the TLS listener, or through a trusted reverse proxy that says so in
//! `X-Forwarded-Proto`. A plain request to such a protocol is refused with the HTTPS URL to
//! use instead.

use std::net::IpAddr;

use poem::Request;
use poem::http::header;
use poem::http::uri::Scheme;

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

    #[test]
    fn the_port_is_taken_off_names_and_bracketed_addresses_only() {
        assert_eq!(strip_port("hooks.example.org:8080"), "hooks.example.org");
        assert_eq!(strip_port("hooks.example.org"), "hooks.example.org");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
