//! The accept loop under both listeners (REST and gRPC): hyper-util's auto
//! builder (HTTP/1.1 and HTTP/2, as `axum::serve` uses) with the limits a
//! hostile or broken client needs:
//!
//! - **header timeout**: an HTTP/1.1 request head (request line and headers)
//!   must arrive whole within it, counted from when the server starts waiting
//!   for one: the connection's start, or the previous answer on a keep-alive
//!   connection (so it also closes HTTP/1.1 connections idle that long).
//!   Headers sent a byte at a time cannot hold a connection longer.
//! - **idle timeout**: a connection, HTTP/1.1 or HTTP/2 (gRPC too), that
//!   carries no byte either way while no request is in flight is shut down
//!   gracefully (HTTP/2 gets a GOAWAY), and dropped if it is still open one
//!   more idle timeout later. A connection that never sends a byte is idle.
//! - **connection cap**: past `max_connections` open connections, new ones
//!   are accepted and closed at once, so the listen backlog does not fill
//!   with connections nobody serves and the open file descriptors stay bounded.
//!
//! The body's own deadline (408) is the router's (`RequestBodyDeadlineLayer`: the whole body within `--body-timeout` of the headers).
//!
//! An HTTP/1.1 answer sent before its request's body was read whole (a 404
//! for an unknown model is sent before the body) says `connection: close`:
//! hyper closes such a connection after the answer, and a client told so
//! does not send its next request into a closing connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures::future::BoxFuture;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// The limits of one listener's connections (`serve --header-timeout`,
/// `--idle-timeout`, `--max-connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Open connections at most; 0 means no cap.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets the requests in
/// flight finish: HTTP/1.1 connections close after their answer, HTTP/2 ones
/// get a GOAWAY. Returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let cap =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    let warned_full = Arc::new(AtomicBool::new(false));
    // Every connection task holds a receiver: when the last one is gone and
    // ours is dropped, `closed()` below returns.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let permit = match &cap {
            None => None,
            Some(cap) => match cap.clone().try_acquire_owned() {
                Ok(permit) => {
                    warned_full.store(false, Ordering::Relaxed);
                    Some(permit)
                }
                Err(_) => {
                    if !warned_full.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "connection cap reached: closing new connections until some close"
                        );
                    }
                    drop(tcp);
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown_rx.clone();
        tokio::spawn(async move {
            serve_connection(tcp, app, limits, shutdown).await;
            tracing::trace!(%peer, "connection closed");
            drop(permit);
        });
    }
    drop(shutdown_rx);
    let _ = shutdown_tx.send(true);
    shutdown_tx.closed().await;
    Ok(())
}

/// Errors of `accept` that concern one connection are skipped; others (out of
/// file descriptors) are logged and waited out, as `axum::serve` does.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn serve_connection(
    tcp: TcpStream,
    app: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: activity.clone(),
    });
    let service = CountInFlight {
        app,
        activity: activity.clone(),
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let mut shutdown_seen = *shutdown.borrow();
    if shutdown_seen {
        conn.as_mut().graceful_shutdown();
        closing = true;
    }
    loop {
        let idle_left = activity.idle_left(limits.idle_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = shutdown.changed(), if !shutdown_seen => {
                shutdown_seen = true;
                if changed.is_ok() && !closing {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = tokio::time::sleep(idle_left.unwrap_or(limits.idle_timeout)) => {
                if idle_left.is_none() || !activity.is_idle(limits.idle_timeout) {
                    continue;
                }
                if closing {
                    tracing::debug!("idle connection did not close after its shutdown; dropping it");
                    return;
                }
                tracing::debug!(idle_timeout = ?limits.idle_timeout, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
                activity.touch();
            }
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are in flight.
struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last read or write.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Idle (no request in flight, no byte) for at least `timeout`.
    fn is_idle(&self, timeout: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.idle_for() >= timeout
    }

    /// How long until the connection has been idle for `timeout`; `None`
    /// while a request is in flight (check again a timeout later).
    fn idle_left(&self, timeout: Duration) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        // At least 1 ms, so a connection idle exactly `timeout` is closed on the next wake.
        Some(
            timeout
                .saturating_sub(self.idle_for())
                .max(Duration::from_millis(1)),
        )
    }
}

/// The TCP stream, noting every byte read or written as activity.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router as hyper's service, counting the connection's requests in flight.
#[derive(Clone)]
struct CountInFlight {
    app: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for CountInFlight {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let guard = InFlight::new(self.activity.clone());
        let app = self.app.clone();
        let http1 = req.version() < hyper::Version::HTTP_2;
        // A request without a body (a GET) has nothing left unread.
        let read_whole = Arc::new(AtomicBool::new(req.body().is_end_stream()));
        let req = req.map(|body| {
            Body::new(WatchEnd {
                inner: body,
                ended: read_whole.clone(),
            })
        });
        Box::pin(async move {
            let mut response = app.oneshot(req).await;
            if let Ok(response) = &mut response
                && http1
                && !read_whole.load(Ordering::Relaxed)
            {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            drop(guard);
            response
        })
    }
}

/// A request body that notes when it has been read to its end.
struct WatchEnd {
    inner: Incoming,
    ended: Arc<AtomicBool>,
}

impl hyper::body::Body for WatchEnd {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.ended.store(true, Ordering::Relaxed);
        }
        end
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// One request in flight; the count goes down when it is dropped (also when
/// the client goes away mid-request and hyper drops the future).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: ConnLimits) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        (addr, tx)
    }

    /// Reads until the peer closes; `Err` when it did not within `within`.
    async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(within, tcp.read_to_end(&mut got)).await;
        match read {
            Ok(_) => Ok(got),
            Err(_) => Err(got),
        }
    }

    fn limits(header_ms: u64, idle_ms: u64, max: usize) -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections: max,
        }
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_idle_timeout() {
        let (addr, _stop) = start(limits(5_000, 300, 0)).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        closed_within(&mut tcp, Duration::from_secs(3))
            .await
            .expect("closed");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
    }

    #[tokio::test]
    async fn headers_sent_slowly_are_cut_at_the_header_timeout() {
        let (addr, _stop) = start(limits(500, 60_000, 0)).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for byte in head {
            if tcp.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        // Every byte was activity, so only the header timeout can have closed it.
        let rest = closed_within(&mut tcp, Duration::from_secs(3)).await;
        let took = started.elapsed();
        assert!(rest.is_ok(), "still open after {took:?}");
        assert!(took < Duration::from_millis(2_500), "{took:?}");
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_then_the_cap_refuses_extra_connections() {
        let (addr, _stop) = start(limits(5_000, 60_000, 2)).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            first
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = first.read(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(text.ends_with("ok"), "{text}");
        }
        let _second = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let answer = closed_within(&mut third, Duration::from_secs(2)).await;
        assert_eq!(
            answer,
            Ok(Vec::new()),
            "a third connection is closed unanswered"
        );
    }

    #[tokio::test]
    async fn an_answer_sent_before_the_body_was_read_says_connection_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/early", axum::routing::post(|| async { "early" }))
            .route(
                "/read",
                axum::routing::post(|body: String| async move { body }),
            );
        tokio::spawn(serve(
            listener,
            app,
            ConnLimits::default(),
            std::future::pending(),
        ));
        let ask = |path: &'static str| async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n");
            tcp.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tcp.write_all(b"body").await;
            let mut buf = vec![0u8; 1024];
            let n = tcp.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_lowercase()
        };
        let early = ask("/early").await;
        assert!(early.contains("connection: close"), "{early}");
        let read = ask("/read").await;
        assert!(
            read.ends_with("body") && !read.contains("connection: close"),
            "{read}"
        );
    }

    #[tokio::test]
    async fn stop_waits_for_the_request_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (tx, mut rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, app, ConnLimits::default(), async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        let answer = closed_within(&mut tcp, Duration::from_secs(3))
            .await
            .expect("closed after its answer");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
            "{text}"
        );
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .expect("serve returned")
            .unwrap()
            .unwrap();
    }
}
