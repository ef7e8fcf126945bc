//! The HTTP accept loop: at most `max_connections` connections at once (the rest wait in the
//! listen backlog), a deadline for each request head, a deadline for connections that move no
//! bytes, HTTP/1.1 and HTTP/2 on one port (prior knowledge in plain HTTP, ALPN over TLS, see
//! `tls.rs`), and a graceful drain. A TLS handshake runs in the connection's own task, within
//! the request-head deadline.
//!
//! The requests an HTTP/1.1 client pipelines have their files fetched ahead of their turn
//! (`lookahead.rs`).
//!
//! Timeouts, per connection:
//! - HTTP/1: a request head must arrive whole within `header_timeout`, counted from when the
//!   connection is ready for it (so this is also the keep-alive idle timeout);
//! - any protocol: a connection on which no handler is running and no byte has moved either way
//!   for `idle_timeout` is closed. That catches a client that never sends its first byte, an
//!   idle HTTP/2 connection, and a client that stops reading its response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::zerocopy::{self, ZeroCopy};

/// Bounds on the connections `cairn serve` holds.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Longest time a client may take to send one request head (HTTP/1).
    pub header_timeout: Duration,
    /// Longest time a connection may sit with no handler running and no byte moving.
    pub idle_timeout: Duration,
    /// Serve HTTPS with this certificate and key; plain HTTP when `None`.
    pub tls: Option<super::tls::TlsFiles>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// Pause after an accept error (out of descriptors, mostly) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// Concurrent streams on one HTTP/2 connection.
const H2_STREAMS: u32 = 128;

/// When a connection last moved bytes, and how many of its requests are being handled.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    handlers: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            handlers: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has been idle (zero while a handler runs).
    fn idle_for(&self) -> Duration {
        if self.handlers.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Counts a running handler for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.handlers.fetch_add(1, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handlers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that records when bytes move on it.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// On a plain connection, the file ranges its responses send from the store
    /// (`zerocopy.rs`).
    zero_copy: Option<ZeroCopy>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let result = match &this.zero_copy {
            Some(zero_copy) => zerocopy::poll_write_vectored(
                &mut this.stream,
                zero_copy,
                cx,
                &[std::io::IoSlice::new(data)],
            ),
            None => Pin::new(&mut this.stream).poll_write(cx, data),
        };
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let result = match &this.zero_copy {
            Some(zero_copy) => zerocopy::poll_write_vectored(&mut this.stream, zero_copy, cx, bufs),
            None => Pin::new(&mut this.stream).poll_write_vectored(cx, bufs),
        };
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Resolves once `activity` has been idle for `limit`.
async fn idle(activity: &Activity, limit: Duration) {
    loop {
        let idle = activity.idle_for();
        if idle >= limit {
            return;
        }
        tokio::time::sleep(limit - idle).await;
    }
}

/// Serve `router` on `listener` within `limits` until `shutdown` resolves, then stop accepting
/// and wait for the open connections to finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Body frames written as they are, never copied into a buffer: what lets a frame
        // stand for a file's range (`zerocopy.rs`).
        .writev(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS);
    let builder = Arc::new(builder);
    let tls = match &limits.tls {
        Some(files) => Some(files.acceptor().map_err(std::io::Error::other)?),
        None => None,
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        // Files are sent by the kernel only where the node's bytes go to the socket as they
        // are: not under TLS.
        let zero_copy = tls.is_none().then(ZeroCopy::default);
        let watched = Watched {
            stream,
            activity: activity.clone(),
            zero_copy: zero_copy.clone(),
        };
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            activity,
            remote,
            idle_timeout: limits.idle_timeout,
            watcher: graceful.watcher(),
            zero_copy,
        };
        let (tls, handshake_timeout) = (tls.clone(), limits.header_timeout);
        tokio::spawn(async move {
            match tls {
                None => connection.serve(watched, false).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(watched)).await {
                        Ok(Ok(stream)) => {
                            let alpn = stream
                                .get_ref()
                                .1
                                .alpn_protocol()
                                .map(|p| String::from_utf8_lossy(p).into_owned());
                            tracing::debug!(%remote, alpn = alpn.as_deref().unwrap_or("none"), "TLS connection");
                            connection.serve(stream, true).await
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                        Err(_) => {
                            tracing::debug!(%remote, "no TLS handshake within {handshake_timeout:?}")
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Requests arriving over TLS carry this extension: the URLs a node writes into documents
/// then say `https`.
#[derive(Clone, Copy, Debug)]
pub struct OverTls;

/// What serving one accepted connection needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    activity: Arc<Activity>,
    remote: std::net::SocketAddr,
    idle_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
    zero_copy: Option<ZeroCopy>,
}

impl Connection {
    /// Serve `io` (the TCP stream, or the TLS stream over it) until it ends, idles out or the
    /// drain ends it.
    async fn serve<I>(self, io: I, over_tls: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            router,
            activity,
            remote,
            idle_timeout,
            watcher,
            zero_copy,
        } = self;
        let dispatched = Arc::new(AtomicU64::new(0));
        let io = super::lookahead::Pipelined::new(
            io,
            super::lookahead::Ahead {
                router: router.clone(),
                remote,
                over_tls,
                dispatched: dispatched.clone(),
                in_flight: Arc::default(),
            },
        );
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                dispatched.fetch_add(1, Ordering::AcqRel);
                let (router, busy) = (router.clone(), Busy::new(&activity));
                // The TCP peer, for the routes only local clients may use (a purge).
                let mut request = request.map(Body::new);
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                if over_tls {
                    request.extensions_mut().insert(OverTls);
                }
                // Only HTTP/1 writes frames straight to the stream; HTTP/2 frames them itself.
                if let Some(zero_copy) = zero_copy
                    .as_ref()
                    .filter(|_| request.version() < http::Version::HTTP_2)
                {
                    request.extensions_mut().insert(zero_copy.clone());
                }
                async move {
                    let response = router.oneshot(request).await;
                    drop(busy);
                    response
                }
            })
        };
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::select! {
            result = watcher.watch(connection) => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
            }
            () = idle(&activity, idle_timeout) => {
                tracing::debug!("closing a connection idle for {idle_timeout:?}");
            }
        }
    }
}
