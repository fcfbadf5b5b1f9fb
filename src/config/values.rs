//! Values the config sections share, parsed once (`listen` addresses of the plain and the
//! HTTPS listener).

use std::net::SocketAddr;

/// A `listen` value that is not a socket address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an address like 127.0.0.1:8080")]
pub struct NotAnAddress(String);

/// The address to listen on, parsed (the only place a user writes one).
pub(super) fn parse_listen(text: &str) -> Result<SocketAddr, NotAnAddress> {
    text.parse().map_err(|_| NotAnAddress(text.to_owned()))
}
