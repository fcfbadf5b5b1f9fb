//! `hookyard healthcheck`: asks the server of a config for `GET /healthz` on its plain
//! listener and exits 0 when it answers 200 — for a container's `HEALTHCHECK` or a monitor.
//! No HTTP client library: one request, one status line, a deadline on every step.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Connecting, sending and reading each get at most this long.
const DEADLINE: Duration = Duration::from_secs(3);

/// Why the server did not count as healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("cannot reach hookyard at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("no answer from hookyard at {addr}: {source}")]
    Exchange { addr: SocketAddr, source: std::io::Error },
    #[error("hookyard at {addr} answered {status:?} to GET /healthz")]
    Status { addr: SocketAddr, status: String },
}

/// The address to ask: the listen address, with a wildcard one replaced by loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// GETs `/healthz` of `addr`; `Ok` with the reply body when the status is 200.
pub fn check(addr: SocketAddr) -> Result<String, HealthcheckError> {
    let mut stream =
        TcpStream::connect_timeout(&addr, DEADLINE).map_err(|source| HealthcheckError::Connect { addr, source })?;
    let reply = exchange(&mut stream, addr).map_err(|source| HealthcheckError::Exchange { addr, source })?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((reply.as_str(), ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body.to_owned())
    } else {
        Err(HealthcheckError::Status { addr, status: status.to_owned() })
    }
}

fn exchange(stream: &mut TcpStream, addr: SocketAddr) -> std::io::Result<String> {
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut reply = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
