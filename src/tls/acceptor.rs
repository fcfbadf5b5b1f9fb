//! The HTTPS acceptor: TCP connections whose TLS handshake runs lazily on the connection's own
//! task (so a slow handshake never holds up accepting), under its own deadline.
//!
//! Wrapped by `net::Guarded`, whose request-head deadline starts at the first decrypted byte,
//! that is after the handshake; a handshake slower than `handshake_timeout` closes the
//! connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{Accept, TlsAcceptor as Handshaker};

/// Accepts from `inner` and speaks TLS with `config` on each connection.
pub struct TlsAcceptor<A> {
    inner: A,
    handshaker: Handshaker,
    handshake_timeout: Duration,
}

impl<A: Acceptor> TlsAcceptor<A> {
    pub fn new(inner: A, config: Arc<rustls::ServerConfig>, handshake_timeout: Duration) -> Self {
        Self { inner, handshaker: Handshaker::from(config), handshake_timeout }
    }
}

impl<A: Acceptor> Acceptor for TlsAcceptor<A>
where
    A::Io: Unpin,
{
    type Io = TlsIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, _) = self.inner.accept().await?;
        let deadline = Box::pin(tokio::time::sleep(self.handshake_timeout));
        let io = TlsIo { state: State::Handshake(Box::new(self.handshaker.accept(io)), deadline) };
        Ok((io, local, remote, Scheme::HTTPS))
    }
}

enum State<T> {
    Handshake(Box<Accept<T>>, Pin<Box<Sleep>>),
    Ready(Box<TlsStream<T>>),
    Closed,
}

/// One TLS connection: handshake first (bounded), then the decrypted stream.
pub struct TlsIo<T> {
    state: State<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> TlsIo<T> {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TlsStream<T>>> {
        if let State::Handshake(accept, deadline) = &mut self.state {
            if deadline.as_mut().poll(cx).is_ready() {
                self.state = State::Closed;
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "tls handshake too slow")));
            }
            match ready!(Pin::new(accept.as_mut()).poll(cx)) {
                Ok(stream) => self.state = State::Ready(Box::new(stream)),
                Err(e) => {
                    self.state = State::Closed;
                    tracing::debug!(error = %e, "tls handshake failed");
                    return Poll::Ready(Err(e));
                }
            }
        }
        match &mut self.state {
            State::Ready(stream) => Poll::Ready(Ok(stream)),
            _ => Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "tls connection closed"))),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_handshake(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_handshake(cx))?;
        Pin::new(stream).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_handshake(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Ready(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}
