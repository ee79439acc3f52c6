//! HTTP API (axum) over a [`JobBackend`]: routing, authentication, body
//! limits and timeouts, request ids and the access log (`access`), JSON
//! views, status codes, the OpenAPI document and the Prometheus rendering
//! of the backend's metrics (with the process's own and the answers by
//! status code).
//!
//! The jobs themselves (queue, executors, cancel, expiry, the results
//! store, metrics, prepared sandboxes) live in the job layer
//! ([`crate::job::queue`]); this module knows them only through the
//! [`JobBackend`] interface, as any other front door would. `POST
//! /v1/jobs` maps a full queue to 429 with Retry-After, `DELETE` cancels,
//! and `GET` of a job whose results were evicted answers 410, so that a
//! client can tell it from a typo (404).

mod access;
mod api;
mod conn;
mod events;
pub mod judge0;
mod metrics;
pub mod notify;
mod openapi;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::job::queue::{JobBackend, LocalQueue, QueueConfig, StartError};
use crate::job::{self, Caps};
use crate::profile;

/// The bundled profiles the server offers (one place to rewire once the
/// profile module lists its bundled profiles).
pub fn profile_names() -> Vec<String> {
    crate::profile::bundled::names()
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on non-loopback address {0} without a token (use --token-file or SANDBOX_TOKEN)"
    )]
    NoToken(SocketAddr),
    #[error("work directory: {0}")]
    Workspace(#[from] job::WorkspaceError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub workers: usize,
    pub queue: usize,
    pub token: Option<String>,
    pub max_body: usize,
    pub keep_jobs: usize,
    pub keep_for: Duration,
    /// Bytes the results of finished jobs may hold in all (captured output,
    /// copied-out files); beyond it the oldest are evicted.
    pub results_budget: u64,
    /// Bytes of events kept per job for `GET /v1/jobs/{id}/events`.
    pub events_buffer: u64,
    /// Bytes the events of finished jobs may hold in all.
    pub events_budget: u64,
    /// Event streams open at once; beyond it, 429.
    pub max_event_streams: usize,
    /// Time between keep-alive comments on an idle event stream.
    pub event_keepalive: Duration,
    /// Base directory of the job workspaces (created 0711 if missing).
    pub work_dir: PathBuf,
    pub caps: Caps,
    /// Time a connection has to send a request's complete headers (also
    /// the idle time allowed between requests on a keep-alive connection).
    pub header_timeout: Duration,
    /// Time a client has, once its headers are in, to send the whole body.
    pub body_timeout: Duration,
    /// Time a response may wait on a client that takes none of it (its
    /// socket full); then the connection is closed.
    pub write_timeout: Duration,
    /// Connections open at once; beyond that, new ones wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Where jobs' images come from (`None`: jobs cannot name one).
    pub images: Option<Arc<crate::runner::Images>>,
    /// The images jobs may name (`--allow-image`).
    pub allow_images: crate::image::AllowList,
    /// How long running jobs may finish once SIGTERM/SIGINT came.
    pub drain_timeout: Duration,
    /// The service manager to tell of readiness, reloads and stopping
    /// (`NOTIFY_SOCKET`), if any.
    pub notify: Option<notify::Notifier>,
    /// Serve the Judge0-compatible API at `/judge0` (`--no-judge0`: off).
    pub judge0: bool,
}

/// File descriptors kept out of the default connection cap: job pipes,
/// workspace files, the runtime's own.
const FD_RESERVE: u64 = 64;

/// The default `max_connections`: RLIMIT_NOFILE's soft limit less
/// [`FD_RESERVE`], at least 16. Without a cap, idle clients could take
/// every descriptor and leave none for accept or for jobs.
pub fn default_max_connections() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX)
}

pub(crate) struct AppState {
    cfg: Config,
    jobs: Arc<dyn JobBackend>,
    /// One permit per event stream open (`--max-event-streams`).
    event_streams: Arc<tokio::sync::Semaphore>,
    /// Answers by status code (`sandbox_http_responses_total`).
    http: access::HttpCounters,
}

/// The signals the server acts on, watched from start (before the first
/// job), so none of them ever takes the default action (ending the
/// process with its jobs' workspaces and cgroups left behind).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT; meanwhile every SIGHUP reloads the
    /// profiles.
    async fn stop(
        &mut self,
        jobs: &dyn JobBackend,
        manager: Option<&notify::Notifier>,
    ) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    if let Some(m) = manager {
                        m.reloading();
                    }
                    let dropped = jobs.reload_profiles();
                    notify::notify(manager, "READY=1");
                    tracing::info!(dropped, "SIGHUP: profiles reloaded");
                }
            }
        }
    }
}

/// Drains the backend: no new jobs, queued ones cancelled, running ones
/// given `grace` to finish (a second SIGTERM/SIGINT ends it early), then
/// cancelled. Returns once every job has ended.
async fn drain(jobs: &dyn JobBackend, signals: &mut Signals, grace: Duration) {
    let stopped = jobs.drain();
    let running = jobs.metrics().running;
    tracing::info!(
        running,
        grace_ms = grace.as_millis() as u64,
        "draining: no new jobs, queued ones cancelled, running ones finish"
    );
    let early = async {
        loop {
            tokio::select! {
                _ = signals.term.recv() => return,
                _ = signals.int.recv() => return,
                _ = signals.hup.recv() => {}
            }
        }
    };
    tokio::select! {
        _ = stopped.wait() => return,
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("drain timeout: cancelling the jobs still running");
        }
        _ = early => tracing::warn!("second signal: cancelling the jobs still running"),
    }
    jobs.shutdown().wait().await;
}

/// Run the server until SIGINT/SIGTERM (then drained, see [`drain`]);
/// SIGHUP reloads the profiles. Call inside a tokio runtime.
pub async fn serve(cfg: Config) -> Result<(), ServerError> {
    if cfg.token.is_none() && !cfg.listen.ip().is_loopback() {
        return Err(ServerError::NoToken(cfg.listen));
    }
    let start_err = |e| match e {
        StartError::Workspace(e) => ServerError::Workspace(e),
        StartError::Thread(e) => ServerError::Serve(e),
    };
    let queue = LocalQueue::new(QueueConfig {
        workers: cfg.workers,
        queue: cfg.queue,
        keep_jobs: cfg.keep_jobs,
        keep_for: cfg.keep_for,
        results_budget: cfg.results_budget,
        events_buffer: cfg.events_buffer,
        events_budget: cfg.events_budget,
        work_dir: cfg.work_dir.clone(),
        caps: cfg.caps.clone(),
        images: cfg.images.clone(),
        allow_images: cfg.allow_images.clone(),
    })
    .map_err(start_err)?;
    // A deep accept queue: a burst of clients (a judge's whole batch at
    // once) must wait in it rather than get connection resets.
    let listener = (|| {
        let sock = if cfg.listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        sock.bind(cfg.listen)?;
        sock.listen(4096)
    })()
    .map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    let mut signals = Signals::new().map_err(ServerError::Serve)?;
    queue.start().map_err(start_err)?;
    let jobs: Arc<dyn JobBackend> = queue;
    tracing::info!(
        addr = %local,
        workers = cfg.workers,
        queue = cfg.queue,
        auth = cfg.token.is_some(),
        results_budget = cfg.results_budget,
        "listening"
    );
    if cfg.results_budget < cfg.caps.max_job_output {
        tracing::warn!(
            "--results-budget ({}) is below --max-job-output ({}): a job with that much output \
             is evicted as it finishes (only a client waiting with wait=true sees its results)",
            profile::units::format_size(cfg.results_budget),
            profile::units::format_size(cfg.caps.max_job_output)
        );
    }
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        jobs: jobs.clone(),
        event_streams: Arc::new(tokio::sync::Semaphore::new(
            cfg.max_event_streams
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        )),
        http: access::HttpCounters::default(),
    });
    let mut more = events::routes();
    if cfg.judge0 {
        // Tokens outlive their jobs' results a little: a client polling an
        // expired job gets 404 either way.
        let tokens = judge0::Tokens::new(cfg.keep_jobs.saturating_mul(2));
        more = more.nest("/judge0", judge0::routes(Arc::new(tokens)));
    }
    let app = api::router(state, more);
    let backend = jobs.clone();
    let grace = cfg.drain_timeout;
    // The HTTP side goes on during the drain (new jobs get 503, results
    // can be fetched, waiting clients get theirs); it stops once every job
    // has ended.
    let manager = cfg.notify.clone();
    // The listener is bound and the queue started: connections made from
    // now on are answered (those before the accept loop runs wait in the
    // accept queue).
    notify::notify(manager.as_ref(), "READY=1");
    let shutdown = async move {
        let sig = signals.stop(backend.as_ref(), manager.as_ref()).await;
        tracing::info!("{sig}: shutting down");
        notify::notify(manager.as_ref(), "STOPPING=1");
        drain(backend.as_ref(), &mut signals, grace).await;
    };
    conn::serve_http(
        listener,
        app,
        cfg.header_timeout,
        cfg.write_timeout,
        cfg.max_connections,
        shutdown,
    )
    .await;
    // Every job ended, the containers prepared ahead and the finished runs
    // torn down, this server's instance directory removed.
    jobs.shutdown().wait().await;
    tracing::info!("stopped");
    Ok(())
}
