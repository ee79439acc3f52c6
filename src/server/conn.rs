//! The HTTP/1.1 connections of the server: the accept loop with its
//! connection cap, the header-read timeout, and the graceful close of
//! every connection at shutdown. It knows nothing of the routes (an axum
//! `Router` is served as it is) nor of jobs.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Serve `app` on `listener` until `shutdown` completes, then let the
/// requests in flight finish (idle connections close at once) and return.
///
/// An explicit accept loop rather than `axum::serve`, which has neither a
/// header-read timeout nor a connection cap: authentication comes after
/// the headers, so an unauthenticated client could hold idle connections
/// until RLIMIT_NOFILE is spent and accept fails for everyone. Here every
/// request's headers (so also the idle time of a keep-alive connection)
/// must arrive within `header_timeout`, and at most `max_connections` are
/// open. At the cap, accepting stops until one closes, and to make that
/// quick the oldest connection that has not sent a complete request yet is
/// closed (if every one has, the oldest is asked to close after its
/// current request): otherwise a flood of idle connections would make
/// each new client wait a header timeout per `max_connections` ahead of
/// it. Accept errors (EMFILE, ENFILE, ...) back off 50 ms and are logged
/// at most once a second instead of spinning.
pub(super) async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    write_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use std::sync::Weak;
    use tokio::sync::{Semaphore, TryAcquireError};

    // The receiver is dropped when `shutdown` completes: `closed()` then
    // tells the accept loop and every connection.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    // Every connection task holds a receiver: `closed()` waits for them all.
    let (close_tx, close_rx) = watch::channel(());
    let max = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    // The connections in accept order (dead ones pruned lazily).
    let mut live: VecDeque<Weak<ConnCtl>> = VecDeque::new();
    let every = Duration::from_secs(1);
    let (mut last_accept_err, mut last_full) = (None::<Instant>, None::<Instant>);
    'accept: loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    use std::io::ErrorKind::*;
                    // The peer gave up before we took it: nothing to do.
                    if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused) {
                        continue;
                    }
                    if last_accept_err.is_none_or(|t| t.elapsed() >= every) {
                        tracing::error!("accept: {e}");
                        last_accept_err = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = signal_tx.closed() => break,
        };
        let permit = loop {
            match permits.clone().try_acquire_owned() {
                Ok(p) => break p,
                Err(TryAcquireError::Closed) => break 'accept,
                Err(TryAcquireError::NoPermits) => {}
            }
            if last_full.is_none_or(|t| t.elapsed() >= every) {
                tracing::warn!(
                    max_connections = max,
                    "connection cap reached: closing the oldest idle"
                );
                last_full = Some(Instant::now());
            }
            evict_one(&mut live);
            tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => break 'accept,
                },
                // The evicted one was busy: try the next.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = signal_tx.closed() => break 'accept,
            }
        };
        if live.len() >= 2 * max + 16 {
            live.retain(|c| c.strong_count() > 0);
        }
        let ctl = Arc::new(ConnCtl::default());
        live.push_back(Arc::downgrade(&ctl));
        let service = Noting {
            inner: hyper_util::service::TowerToHyperService::new(app.clone()),
            ctl: ctl.clone(),
            peer,
        };
        let (signal_tx, close_rx) = (signal_tx.clone(), close_rx.clone());
        tokio::spawn(async move {
            let stream = Watched::new(stream);
            let timeouts = (header_timeout, write_timeout);
            serve_conn(stream, peer, service, timeouts, &signal_tx, &ctl).await;
            // The socket is closed by now: the slot is free.
            drop(close_rx);
            drop(permit);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// What the accept loop knows of a connection and can ask of it.
#[derive(Default)]
struct ConnCtl {
    /// A request's headers have been received on it.
    started: AtomicBool,
    /// Asked to make room under the connection cap.
    evict: tokio::sync::Notify,
}

/// Ask the oldest connection without a complete request yet to close (it
/// does at once), else the oldest one (it closes after its request).
fn evict_one(live: &mut VecDeque<std::sync::Weak<ConnCtl>>) {
    live.retain(|c| c.strong_count() > 0);
    let unstarted = live.iter().position(|c| {
        c.upgrade()
            .is_some_and(|c| !c.started.load(Ordering::Relaxed))
    });
    if let Some(c) = unstarted
        .or((!live.is_empty()).then_some(0))
        .and_then(|i| live.remove(i))
        .and_then(|c| c.upgrade())
    {
        c.evict.notify_one();
    }
}

/// A connection's service: notes its first request for [`evict_one`],
/// and gives every request its peer's address (as axum's `ConnectInfo`,
/// for the access log).
struct Noting<S> {
    inner: S,
    ctl: Arc<ConnCtl>,
    peer: SocketAddr,
}

impl<S: hyper::service::Service<hyper::Request<B>>, B> hyper::service::Service<hyper::Request<B>>
    for Noting<S>
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: hyper::Request<B>) -> Self::Future {
        self.ctl.started.store(true, Ordering::Relaxed);
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.inner.call(req)
    }
}

/// A connection's socket that notes since when a write has been waiting
/// for room (the client takes nothing): see [`serve_conn`]'s write timeout.
struct Watched {
    io: tokio::net::TcpStream,
    /// When the pending write began waiting, in ms after `epoch`, plus 1;
    /// 0 while nothing waits.
    stalled: Arc<std::sync::atomic::AtomicU64>,
    epoch: Instant,
}

impl Watched {
    fn new(io: tokio::net::TcpStream) -> Watched {
        Watched {
            io,
            stalled: Arc::default(),
            epoch: Instant::now(),
        }
    }

    fn note<T>(&self, r: &std::task::Poll<std::io::Result<T>>) {
        use std::task::Poll;
        match r {
            Poll::Pending => {
                let now = self.epoch.elapsed().as_millis() as u64 + 1;
                let _ = self
                    .stalled
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
            Poll::Ready(_) => self.stalled.store(0, Ordering::Relaxed),
        }
    }

    /// How long a write has been waiting (zero if none is).
    fn stall(stalled: &std::sync::atomic::AtomicU64, epoch: Instant) -> Duration {
        match stalled.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            t => epoch.elapsed().saturating_sub(Duration::from_millis(t - 1)),
        }
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(&r);
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One HTTP/1.1 connection (keep-alive, upgrades) until it ends. On
/// shutdown it finishes the request in flight, if any, and closes; asked
/// to make room, it closes at once unless it has started a request. A
/// client that takes none of the response for `write_timeout` (a write
/// waiting for room in its socket all that time) is dropped: otherwise a
/// reader that never reads would hold the connection, its buffers and, for
/// an event stream, a stream slot for ever, and keep shutdown waiting.
async fn serve_conn<S>(
    stream: Watched,
    peer: SocketAddr,
    service: S,
    (header_timeout, write_timeout): (Duration, Duration),
    signal_tx: &watch::Sender<()>,
    ctl: &ConnCtl,
) where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let (stalled, epoch) = (stream.stalled.clone(), stream.epoch);
    let conn = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    // Checked a few times per write timeout.
    let every = (write_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut check = tokio::time::interval(every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = std::pin::pin!(conn);
    let mut signalled = std::pin::pin!(signal_tx.closed());
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "connection: {e}");
                }
                return;
            }
            _ = &mut signalled, if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick() => {
                let stall = Watched::stall(&stalled, epoch);
                if stall >= write_timeout {
                    tracing::info!(
                        %peer,
                        stalled_ms = stall.as_millis() as u64,
                        "closing a connection whose client takes nothing (--write-timeout)"
                    );
                    return;
                }
            }
            _ = ctl.evict.notified(), if !draining => {
                if !ctl.started.load(Ordering::Relaxed) {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
