//! Connection hygiene on the public internet: bounds on open connections (in all and per
//! client address), a deadline for each request head (slowloris), HTTP/2 only when switched
//! on, and who a client is behind a trusted proxy.
//!
//! The acceptor waits for a free slot before accepting (further clients queue in the
//! kernel's backlog, [`listen`]'s 4,096 deep); a connection from an address that holds its
//! share already is closed at once. A request head's timer starts at its first byte and
//! stops at the blank line that ends it (`\r\n\r\n`); a slower head closes the connection.
//! A connection opening with the HTTP/2 preface is closed when HTTP/2 is off, and otherwise
//! has no head deadline after the preface (frames have no blank line; the idle timeout
//! applies). Slow bodies are cut by the body reader (`ingest::body`). Refusals are logged
//! with the address, one line a second.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections the kernel queues for the acceptor until it takes them (capped by the
/// system's `net.core.somaxconn`, 4096 on current Linux). The standard library's 128 was
/// overrun by a burst of reconnects (an attacker's, or many devices after an outage): the
/// kernel drops the SYNs beyond it, and a client dropped so retries only a second later.
const BACKLOG: i32 = 4096;

/// A TCP socket listening on `address` with [`BACKLOG`] (and `SO_REUSEADDR`, as the standard
/// library's `bind` sets it on Unix).
pub fn listen(address: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// What an HTTP/2 connection starts with (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Limits applied to every connection.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Open connections from one address (trusted proxies are exempt).
    pub per_client: usize,
    pub header_timeout: Duration,
    /// Whether a connection may speak HTTP/2 (by prior knowledge).
    pub http2: bool,
    pub trusted_proxies: Vec<IpNet>,
}

/// Wraps an acceptor with [`Limits`].
pub struct Guarded<A> {
    inner: A,
    slots: Arc<Semaphore>,
    clients: Arc<Clients>,
    header_timeout: Duration,
    http2: bool,
}

impl<A: Acceptor> Guarded<A> {
    pub fn new(inner: A, limits: Limits) -> Self {
        let clients = Clients {
            open: Mutex::new(HashMap::new()),
            cap: limits.per_client.max(1),
            exempt: limits.trusted_proxies,
            log: Mutex::new(RefusalLog::default()),
        };
        Self {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            clients: Arc::new(clients),
            header_timeout: limits.header_timeout,
            http2: limits.http2,
        }
    }
}

impl<A: Acceptor> Acceptor for Guarded<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let permit = self.slots.clone().acquire_owned().await.map_err(io::Error::other)?;
            let (io, local, remote, scheme) = self.inner.accept().await?;
            let ip = remote.as_socket_addr().map(|a| a.ip().to_canonical());
            let Some(slot) = Clients::admit(&self.clients, ip) else {
                self.clients.refused(ip, "too many connections from this address");
                continue;
            };
            let guarded = GuardedIo {
                inner: io,
                _permit: permit,
                slot,
                peer: ip,
                timeout: self.header_timeout,
                head: Head::Idle,
                matched: 0,
                preface: Preface::Checking(0),
                http2: self.http2,
            };
            return Ok((guarded, local, remote, scheme));
        }
    }
}

/// Open connections per address, and the refusal log.
struct Clients {
    open: Mutex<HashMap<IpAddr, usize>>,
    cap: usize,
    exempt: Vec<IpNet>,
    log: Mutex<RefusalLog>,
}

/// Refusals since the last log line (at most one line a second, whatever an attacker does).
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl Clients {
    /// A slot for one more connection from `ip`, unless it holds its share already.
    fn admit(this: &Arc<Self>, ip: Option<IpAddr>) -> Option<ClientSlot> {
        let counted = ip.filter(|ip| !this.exempt.iter().any(|net| net.contains(ip)));
        if let Some(ip) = counted {
            let mut open = lock(&this.open);
            let n = open.entry(ip).or_default();
            if *n >= this.cap {
                return None;
            }
            *n += 1;
        }
        Some(ClientSlot { clients: this.clone(), ip: counted })
    }

    fn release(&self, ip: IpAddr) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }

    fn refused(&self, ip: Option<IpAddr>, reason: &str) {
        let mut log = lock(&self.log);
        log.unlogged += 1;
        if log.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let client = Client(ip);
            tracing::warn!(%client, reason, refused = log.unlogged, "connection refused");
            *log = RefusalLog { last: Some(Instant::now()), unlogged: 0 };
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One counted connection of an address; given back when the connection ends.
struct ClientSlot {
    clients: Arc<Clients>,
    ip: Option<IpAddr>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.clients.release(ip);
        }
    }
}

/// A client's address for logs: the peer, or `unknown`.
#[derive(Clone, Copy, Debug)]
pub struct Client(pub Option<IpAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Who sent a request: the peer, or, when the peer is a trusted proxy, the last address of
/// `X-Forwarded-For` that is not one (proxies append, so earlier entries are the client's word).
pub fn client(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpNet]) -> Client {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(peer) = peer.map(|ip| ip.to_canonical()) else { return Client(None) };
    let Some(list) = forwarded_for.filter(|_| is_trusted(&peer)) else { return Client(Some(peer)) };
    let mut hops = list.rsplit(',').map(|hop| hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()));
    let mut last = peer;
    while let Some(Ok(ip)) = hops.next() {
        last = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Client(Some(last))
}

enum Head {
    /// Between requests: no head deadline (the idle timeout applies).
    Idle,
    /// Reading a head that must be complete by the deadline.
    Reading(Pin<Box<Sleep>>),
    /// Head complete; body and response under way.
    Done,
    /// An HTTP/2 connection past its preface: frames, no heads to time.
    Http2,
}

/// How far the connection's first bytes match the HTTP/2 preface.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Preface {
    Checking(usize),
    Http1,
    Http2,
}

/// A connection holding one slot, with the head deadline.
pub struct GuardedIo<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    slot: ClientSlot,
    peer: Option<IpAddr>,
    timeout: Duration,
    head: Head,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: usize,
    preface: Preface,
    http2: bool,
}

impl<T> GuardedIo<T> {
    fn observe(&mut self, bytes: &[u8]) {
        const END: &[u8] = b"\r\n\r\n";
        for &b in bytes {
            if matches!(self.head, Head::Idle) {
                self.head = Head::Reading(Box::pin(tokio::time::sleep_until(Instant::now() + self.timeout)));
                self.matched = 0;
            }
            if !matches!(self.head, Head::Reading(_)) {
                continue;
            }
            self.matched = if b == END[self.matched] {
                self.matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            if self.matched == END.len() {
                self.head = Head::Done;
                self.matched = 0;
            }
        }
    }

    /// Follows the first bytes of the connection; an error when it is HTTP/2 and that is off.
    fn check_preface(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Preface::Checking(n) = self.preface else { return Ok(()) };
        let take = (H2_PREFACE.len() - n).min(bytes.len());
        self.preface = if bytes[..take] != H2_PREFACE[n..n + take] {
            Preface::Http1
        } else if n + take < H2_PREFACE.len() {
            Preface::Checking(n + take)
        } else if self.http2 {
            self.head = Head::Http2;
            Preface::Http2
        } else {
            self.slot.clients.refused(self.peer, "HTTP/2 is off ([server] http2)");
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "HTTP/2 is off"));
        };
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Head::Reading(deadline) = &mut self.head
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.slot.clients.refused(self.peer, "request head too slow");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head too slow")));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let fresh = &buf.filled()[before..];
            if let Err(e) = self.check_preface(fresh) {
                return Poll::Ready(Err(e));
            }
            if !matches!(self.head, Head::Done | Head::Http2) {
                self.observe(fresh);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        // A response is going out: the next bytes read start a new head.
        if matches!(self.head, Head::Done) {
            self.head = Head::Idle;
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(cap: usize, exempt: &[&str]) -> Arc<Clients> {
        Arc::new(Clients {
            open: Mutex::new(HashMap::new()),
            cap,
            exempt: exempt.iter().map(|n| n.parse().unwrap()).collect(),
            log: Mutex::new(RefusalLog::default()),
        })
    }

    fn io(http2: bool) -> GuardedIo<()> {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let slot = Clients::admit(&clients(1, &[]), None).unwrap();
        GuardedIo {
            inner: (),
            _permit: permit,
            slot,
            peer: None,
            timeout: Duration::from_secs(1),
            head: Head::Idle,
            matched: 0,
            preface: Preface::Checking(0),
            http2,
        }
    }

    #[tokio::test]
    async fn the_head_ends_at_the_blank_line_even_split_across_reads() {
        let mut g = io(false);
        g.observe(b"POST / HTTP/1.1\r\nHost: x\r");
        assert!(matches!(g.head, Head::Reading(_)));
        g.observe(b"\n\r");
        assert!(matches!(g.head, Head::Reading(_)));
        g.observe(b"\nbody bytes \r\n\r\n");
        assert!(matches!(g.head, Head::Done), "body bytes do not restart the head");
    }

    #[tokio::test]
    async fn the_h2_preface_is_recognised_across_reads_and_refused_unless_allowed() {
        let mut g = io(true);
        g.check_preface(&H2_PREFACE[..5]).unwrap();
        assert_eq!(g.preface, Preface::Checking(5));
        g.check_preface(&H2_PREFACE[5..]).unwrap();
        assert_eq!(g.preface, Preface::Http2);
        assert!(matches!(g.head, Head::Http2));
        assert!(io(false).check_preface(H2_PREFACE).is_err());
        let mut h1 = io(false);
        h1.check_preface(b"POST / HTTP/1.1\r\n").unwrap();
        assert_eq!(h1.preface, Preface::Http1);
    }

    #[test]
    fn one_address_gets_its_share_and_a_closed_connection_gives_it_back() {
        let c = clients(2, &["10.0.0.0/8"]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let (s1, _s2) = (Clients::admit(&c, Some(a)).unwrap(), Clients::admit(&c, Some(a)).unwrap());
        assert!(Clients::admit(&c, Some(a)).is_none());
        assert!(Clients::admit(&c, Some("192.0.2.2".parse().unwrap())).is_some(), "another address is not held");
        drop(s1);
        assert!(Clients::admit(&c, Some(a)).is_some());
        let proxy = Some("10.1.2.3".parse().unwrap());
        let held: Vec<_> = (0..5).map(|_| Clients::admit(&c, proxy).unwrap()).collect();
        assert_eq!(held.len(), 5, "a trusted proxy is not capped");
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let shown = |peer, xff| client(ip(peer), xff, &trusted).to_string();
        assert_eq!(shown("192.0.2.9", Some("198.51.100.1")), "192.0.2.9");
        assert_eq!(shown("10.0.0.1", Some("203.0.113.5, 198.51.100.1, 10.0.0.2")), "198.51.100.1");
        assert_eq!(shown("10.0.0.1", Some("nonsense")), "10.0.0.1");
        assert_eq!(shown("10.0.0.1", None), "10.0.0.1");
        assert_eq!(client(None, None, &trusted).to_string(), "unknown");
    }
}
