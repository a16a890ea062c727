//! Serving HTTP: our own accept loop around hyper's connection driver, with the listener's own
//! limits before any byte reaches HTTP parsing: a cap on concurrent connections, a deadline for
//! a connection's first request head (slowloris), and an idle timeout.
//!
//! Why not poem's `Server`: it splits each connection into two
//! halves behind a lock (no vectored writes), and keeps its idle timeout with a task per
//! connection that is woken on every read and write. Here the deadlines are timers checked only
//! when a read or write has to wait, and poem is the application behind the hyper service.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::Either;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
};
use poem::{
    Endpoint, Response,
    http::{HeaderMap, Method, Uri, uri::Scheme},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    time::{Instant, Sleep},
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

/// What a listener allows each connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub(crate) max_connections: usize,
    /// From accepting a connection until its first request head is complete.
    pub(crate) head_timeout: Duration,
    /// Without a byte read or written, after the first request head.
    pub(crate) idle_timeout: Duration,
}

/// Answers requests that need nothing but their head before poem sees them: no poem request
/// is built for them and no layer of the app runs (the shortcut does what those would do for
/// it). Everything it declines goes to the app.
pub(crate) trait Shortcut: Send + Sync + 'static {
    /// The whole answer to a request, or `None` to hand it to the app.
    fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response>;
}

/// No shortcut: every request goes to the app.
impl Shortcut for () {
    fn answer(&self, _: &Method, _: &Uri, _: &HeaderMap) -> Option<Response> {
        None
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets every
/// connection finish its request in flight (idle keep-alive connections close at once) and cuts
/// what is still open after `grace`.
pub(crate) async fn serve<E, S>(
    listener: TcpListener,
    limits: Limits,
    app: E,
    shortcut: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
    S: Shortcut,
{
    let local = LocalAddr(listener.local_addr()?.into());
    let app = Arc::new((app, shortcut));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let (cut, cut_off) = watch::channel(false);
    let mut http = auto::Builder::new(TokioExecutor::new());
    // HTTP/2 (prior knowledge, behind a proxy) with the limits poem's server set.
    http.http2().max_pending_accept_reset_streams(20).max_header_list_size(16 * 1024);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &permits, limits) => accepted?,
        };
        let service = {
            let app = app.clone();
            let local = local.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                if let Some(response) = app.1.answer(request.method(), request.uri(), request.headers()) {
                    return Either::Left(std::future::ready(Ok::<_, Infallible>(HyperResponse::from(response))));
                }
                let app = app.clone();
                let request = poem::Request::from((request, local.clone(), remote.clone(), Scheme::HTTP));
                // Boxed: hyper moves the future it is given, and the app's is large; unboxed, every
                // shortcut answer would be moved at that size (4 % of a JWKS request's CPU).
                Either::Right(Box::pin(async move { Ok(HyperResponse::from(app.0.get_response(request).await)) }))
            })
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service).into_owned());
        let mut cut_off = cut_off.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                _ = cut_off.wait_for(|cut| *cut) => {}
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(seconds = grace.as_secs(), "connections still open after the grace period are cut");
        let _ = cut.send(true);
    }
    Ok(())
}

/// What hyper sends: poem's response with its body.
type HyperResponse = hyper::Response<http_body_util::combinators::BoxBody<bytes::Bytes, io::Error>>;

/// Waits for a free permit, then for a connection.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    limits: Limits,
) -> io::Result<(GuardedStream, RemoteAddr)> {
    // Fails only if the semaphore were closed, which nothing does.
    let permit = permits.clone().acquire_owned().await.map_err(io::Error::other)?;
    loop {
        match listener.accept().await {
            Ok((io, remote)) => return Ok((GuardedStream::new(io, permit, limits), RemoteAddr(remote.into()))),
            // Out of file descriptors, or a connection reset before accept: retrying at once
            // would burn a core; wait a little instead.
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection holding one of the listener's permits until it closes, and closed by a read or
/// write that would wait past its deadline: the head timeout until its first request head is
/// complete, then the idle timeout after its last read or write.
pub(crate) struct GuardedStream {
    io: TcpStream,
    /// Wakes a waiting read or write at the deadline it was set to; moved on lazily, only when
    /// it fires (per request it costs a clock reading per read and write, no timer update).
    deadline: Pin<Box<Sleep>>,
    /// The last read or write; `None` until the first request head is complete.
    last_activity: Option<Instant>,
    /// How much of the head's end (`\r\n\r\n`) the bytes so far end with.
    matched: u8,
    idle_timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl GuardedStream {
    fn new(io: TcpStream, permit: OwnedSemaphorePermit, limits: Limits) -> Self {
        Self {
            io,
            deadline: Box::pin(tokio::time::sleep(limits.head_timeout)),
            last_activity: None,
            matched: 0,
            idle_timeout: limits.idle_timeout,
            _permit: permit,
        }
    }

    /// Follows the bytes read for the blank line that ends the first request head.
    fn scan(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.matched = match (self.matched, byte) {
                (0 | 2, b'\r') => self.matched + 1,
                (1 | 3, b'\n') => self.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.matched == 4 {
                // From here the idle timeout counts; the deadline may only ever be too early.
                let now = Instant::now();
                self.last_activity = Some(now);
                self.deadline.as_mut().reset(now + self.idle_timeout);
                return;
            }
        }
    }

    /// A write that has to wait (a client that does not read its answers) is bounded by the
    /// same deadline as a read.
    fn after_write(&mut self, cx: &mut Context<'_>, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(_)) => self.active(),
            Poll::Pending => {
                if let Some(error) = self.deadline_passed(cx) {
                    return Poll::Ready(Err(error));
                }
            }
            Poll::Ready(Err(_)) => {}
        }
        written
    }

    fn active(&mut self) {
        if self.last_activity.is_some() {
            self.last_activity = Some(Instant::now());
        }
    }

    /// Called when a read or write has to wait: the error that closes the connection once its
    /// deadline has passed; before, `None`, and the deadline wakes this task when it comes.
    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let due = match self.last_activity {
                Some(last) => last + self.idle_timeout,
                None => self.deadline.deadline(),
            };
            if due <= Instant::now() {
                let what = if self.last_activity.is_some() { "connection idle" } else { "request head not received" };
                return Some(io::Error::new(io::ErrorKind::TimedOut, format!("{what} in time")));
            }
            self.deadline.as_mut().reset(due);
        }
        None
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.last_activity.is_none() {
                    this.scan(&buf.filled()[before..]);
                } else {
                    this.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.deadline_passed(cx).map_or(Poll::Pending, |error| Poll::Ready(Err(error))),
            failed => failed,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, written)
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
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
