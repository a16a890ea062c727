//! The listener's own limits, before any byte reaches HTTP parsing: a cap on concurrent
//! connections, and a deadline for a connection's first request head (slowloris). Idle
//! keep-alive connections are closed by the server's idle timeout (`http.keep_alive_seconds`).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    http::uri::Scheme,
    listener::{Acceptor, TcpAcceptor},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};

/// File descriptors kept free for everything but client connections (database and Redis pools,
/// logs, outgoing HTTP).
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft file-descriptor limit to the hard one and returns how many connections may be
/// served at once: `configured`, or fewer when the limit would not allow that many (running out
/// of descriptors would stall the accept loop and the probes).
pub(crate) fn connection_cap(configured: usize) -> usize {
    let Ok(limit) = rlimit::increase_nofile_limit(u64::MAX) else { return configured };
    let allowed = usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX).max(16);
    if allowed < configured {
        tracing::warn!(
            configured,
            allowed,
            descriptor_limit = limit,
            "http.max_connections lowered to fit the file-descriptor limit"
        );
    }
    configured.min(allowed)
}

/// Accepts at most `max_connections` at once (the rest wait in the kernel's backlog) and gives
/// each connection `head_timeout` to deliver its first request head.
pub(crate) struct GuardedAcceptor {
    inner: TcpAcceptor,
    permits: Arc<Semaphore>,
    head_timeout: Duration,
}

impl GuardedAcceptor {
    pub(crate) fn new(inner: TcpAcceptor, max_connections: usize, head_timeout: Duration) -> Self {
        Self { inner, permits: Arc::new(Semaphore::new(max_connections)), head_timeout }
    }
}

impl Acceptor for GuardedAcceptor {
    type Io = GuardedStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let permit = self.permits.clone().acquire_owned().await.map_err(io::Error::other)?;
        loop {
            match self.inner.accept().await {
                Ok((io, local, remote, scheme)) => {
                    let head = Some(Box::pin(tokio::time::sleep(self.head_timeout)));
                    return Ok((GuardedStream { io, head, matched: 0, _permit: permit }, local, remote, scheme));
                }
                // Out of file descriptors, or a connection reset before accept: the server's
                // loop would retry at once and burn a core; wait a little instead.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A connection holding one of the acceptor's permits until it closes.
pub(crate) struct GuardedStream {
    io: TcpStream,
    /// Running until the first request head is complete; then `None`.
    head: Option<Pin<Box<Sleep>>>,
    /// How much of the head's end (`\r\n\r\n`) the bytes so far end with.
    matched: u8,
    _permit: OwnedSemaphorePermit,
}

impl GuardedStream {
    /// Follows the bytes read for the blank line that ends the request head.
    fn scan(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.matched = match (self.matched, byte) {
                (0 | 2, b'\r') => self.matched + 1,
                (1 | 3, b'\n') => self.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.matched == 4 {
                self.head = None;
                return;
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.head.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.head.is_some() && matches!(read, Poll::Ready(Ok(()))) {
            this.scan(&buf.filled()[before..]);
        }
        read
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
