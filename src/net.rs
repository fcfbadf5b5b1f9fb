//! Connection hygiene on the public internet: a bound on open connections, and a deadline
//! for each request head so slow clients (slowloris) cannot hold connections.
//!
//! The acceptor waits for a free slot before accepting (further clients queue in the
//! kernel's backlog). Each connection's reads are watched: the timer starts at the first byte
//! of a request head and stops at the blank line that ends it (`\r\n\r\n`); a head that takes
//! longer than the deadline closes the connection. Slow bodies are cut off by the body reader
//! (`ingest::body`), and idle keep-alive connections by the server's idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Limits applied to every connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Wraps an acceptor with [`Limits`].
pub struct Guarded<A> {
    inner: A,
    slots: Arc<Semaphore>,
    header_timeout: Duration,
}

impl<A: Acceptor> Guarded<A> {
    pub fn new(inner: A, limits: Limits) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            header_timeout: limits.header_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for Guarded<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let permit = self.slots.clone().acquire_owned().await.map_err(io::Error::other)?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let guarded =
            GuardedIo { inner: io, _permit: permit, timeout: self.header_timeout, head: Head::Idle, matched: 0 };
        Ok((guarded, local, remote, scheme))
    }
}

enum Head {
    /// Between requests: no head deadline (the idle timeout applies).
    Idle,
    /// Reading a head that must be complete by the deadline.
    Reading(Pin<Box<Sleep>>),
    /// Head complete; body and response under way.
    Done,
}

/// A connection holding one slot, with the head deadline.
pub struct GuardedIo<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    timeout: Duration,
    head: Head,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: usize,
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
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Head::Reading(deadline) = &mut self.head
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head too slow")));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && !matches!(self.head, Head::Done)
        {
            self.observe(&buf.filled()[before..]);
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

    fn io() -> GuardedIo<()> {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        GuardedIo { inner: (), _permit: permit, timeout: Duration::from_secs(1), head: Head::Idle, matched: 0 }
    }

    #[tokio::test]
    async fn the_head_ends_at_the_blank_line_even_split_across_reads() {
        let mut g = io();
        g.observe(b"POST / HTTP/1.1\r\nHost: x\r");
        assert!(matches!(g.head, Head::Reading(_)));
        g.observe(b"\n\r");
        assert!(matches!(g.head, Head::Reading(_)));
        g.observe(b"\nbody bytes \r\n\r\n");
        assert!(matches!(g.head, Head::Done), "body bytes do not restart the head");
    }
}
