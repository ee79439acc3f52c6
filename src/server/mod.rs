//! HTTP API (axum): jobs, profiles, health, metrics, OpenAPI; queueing, auth, limits.
//!
//! Jobs go through a bounded queue (`try_send`: full → 429 with
//! Retry-After) to `workers` executor threads, each running one job at a
//! time. The executors are plain threads started once: the runner clones
//! its child with raw clone3, and glibc's set*id wrappers in that child
//! broadcast to the parent's threads; a thread being created or retired at
//! that moment (tokio's blocking pool does this at any time) can hang the
//! child forever. A fixed set of threads avoids it. Every job has a cancel pipe: `DELETE` writes one byte to
//! it, which the runner (`RunSpec::cancel_fd`) sees as "kill now"; the byte
//! stays unread so every later step is refused too. Finished jobs are kept
//! for `keep_for` and at most `keep_jobs` of them, then forgotten; their
//! results within `results_budget` bytes, oldest evicted first (see
//! [`results`]). A job holds its request (files, stdin, expected output)
//! only while it needs it: the files' contents until they are written into
//! the workspace, the rest until the job ends. What a finished job keeps is
//! what `GET /v1/jobs/{id}` shows.

mod api;
mod openapi;
mod results;
mod views;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::job::{self, Caps, InputFile, JobContext, JobOutcome, JobSpec, Workspace};
use crate::profile::{self, Limits};
use crate::runner::{JobIds, Sandbox};
use results::Results;

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
    /// Base directory of the job workspaces (created 0711 if missing).
    pub work_dir: PathBuf,
    pub caps: Caps,
    /// Time a connection has to send a request's complete headers (also
    /// the idle time allowed between requests on a keep-alive connection).
    pub header_timeout: Duration,
    /// Time a client has, once its headers are in, to send the whole body.
    pub body_timeout: Duration,
    /// Connections open at once; beyond that, new ones wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

struct JobState {
    /// The request: held while the job is queued, then taken by its
    /// executor (which drops the files' contents once they are written and
    /// the rest when the job ends). `None` once the job has started or was
    /// cancelled, so a finished job holds no request data.
    spec: Option<JobSpec>,
    status: JobStatus,
    outcome: JobOutcome,
    started: Option<Instant>,
    finished: Option<Instant>,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    error: Option<String>,
    /// Cancel pipe: the runner polls `cancel_r`; cancel writes `cancel_w`.
    cancel_r: Option<OwnedFd>,
    cancel_w: Option<OwnedFd>,
}

pub(crate) struct Job {
    id: String,
    profile: String,
    limits: Vec<Limits>,
    created: Instant,
    created_at: SystemTime,
    state: Mutex<JobState>,
    done: watch::Sender<bool>,
    span: tracing::Span,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a finished job holds besides its outcome, estimated: the `Job`
/// itself, its id (map key, results store), span, watch channel and map
/// entry. Small next to output bodies, but it keeps a flood of empty jobs
/// from looking free.
const JOB_OVERHEAD: u64 = size_of::<Job>() as u64 + 1024;

/// Bytes a finished job's results hold, as charged to the results budget.
fn held_bytes(st: &JobState) -> u64 {
    JOB_OVERHEAD + st.outcome.heap_bytes() + st.error.as_ref().map_or(0, String::capacity) as u64
}

impl Job {
    /// Request cancellation. Returns the status after the call.
    fn cancel(&self, state: &AppState) -> JobStatus {
        let mut st = lock(&self.state);
        match st.status {
            JobStatus::Queued => {
                st.spec = None;
                st.status = JobStatus::Cancelled;
                st.finished = Some(Instant::now());
                st.finished_at = Some(SystemTime::now());
                st.cancel_r = None;
                st.cancel_w = None;
                let bytes = held_bytes(&st);
                state.metrics.finish(JobStatus::Cancelled, Duration::ZERO);
                drop(st);
                state.finished(&self.id, bytes);
                self.done.send_replace(true);
                tracing::info!(parent: &self.span, "cancelled while queued");
                JobStatus::Cancelled
            }
            JobStatus::Running => {
                if let Some(w) = &st.cancel_w {
                    // SAFETY: writing one byte to our own pipe.
                    unsafe { libc::write(w.as_raw_fd(), b"c".as_ptr().cast(), 1) };
                }
                tracing::info!(parent: &self.span, "cancel requested");
                JobStatus::Running
            }
            s => s,
        }
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    submitted: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    queued: AtomicU64,
    running: AtomicU64,
    /// Histogram of job durations (seconds): bucket counts, sum (µs), count.
    buckets: [AtomicU64; BUCKETS.len()],
    dur_sum_us: AtomicU64,
    dur_count: AtomicU64,
}

pub(crate) const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

impl Metrics {
    fn finish(&self, s: JobStatus, d: Duration) {
        match s {
            JobStatus::Completed => self.completed.fetch_add(1, Ordering::Relaxed),
            _ => self.cancelled.fetch_add(1, Ordering::Relaxed),
        };
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dur_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.dur_count.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) struct AppState {
    cfg: Config,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// Which finished jobs are remembered, within the results budget.
    results: Mutex<Results>,
    /// The queue; `None` once shutting down (executors then drain and stop).
    tx: Mutex<Option<mpsc::Sender<Arc<Job>>>>,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    metrics: Metrics,
    shutting_down: AtomicBool,
}

impl AppState {
    /// The prepared sandbox of a profile, built once.
    fn sandbox(&self, name: &str) -> Result<Arc<Sandbox>, String> {
        if let Some(s) = lock(&self.sandboxes).get(name) {
            return Ok(s.clone());
        }
        let p = profile::load(name).map_err(|e| e.to_string())?;
        // As many containers prepared ahead as jobs can run at once.
        let sb = Sandbox::new(p)
            .and_then(|s| s.pooled(self.cfg.workers.max(1)))
            .map_err(|e| e.to_string())?;
        lock(&self.sandboxes).insert(name.to_string(), sb.clone());
        Ok(sb)
    }

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.jobs).get(id).cloned()
    }

    /// Enter a finished job holding `bytes` of results into the results
    /// store, and forget the jobs it evicts or expires.
    fn finished(&self, id: &str, bytes: u64) {
        let gone = lock(&self.results).finished(id.to_string(), bytes, Instant::now());
        self.forget(gone);
    }

    /// Forget finished jobs past their time or beyond the count.
    fn expire(&self) {
        let gone = lock(&self.results).expire(Instant::now());
        self.forget(gone);
    }

    fn forget(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let gone: Vec<Arc<Job>> = {
            let mut jobs = lock(&self.jobs);
            ids.iter().filter_map(|id| jobs.remove(id)).collect()
        };
        tracing::debug!(jobs = gone.len(), "finished jobs forgotten");
        // Freed here, outside the lock (unless a waiting client still
        // holds one: then when it has its answer).
        drop(gone);
    }

    fn cancel_all(&self) {
        let jobs: Vec<Arc<Job>> = lock(&self.jobs).values().cloned().collect();
        for j in jobs {
            j.cancel(self);
        }
    }
}

/// A random 128-bit id, hex.
fn new_id() -> String {
    let mut b = [0u8; 16];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writing into our own buffer.
        let r = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if r > 0 {
            got += r as usize;
        } else if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // Fall back on time and a counter: still unique, less secret.
            static N: AtomicU64 = AtomicU64::new(0);
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            b[..8].copy_from_slice(&t.to_ne_bytes());
            b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_ne_bytes());
            break;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Mark a queued job running and take its request, with its cancel
/// pipe's read end; `None` if it was cancelled while queued.
fn start(job: &Job) -> Option<(JobSpec, Option<RawFd>)> {
    let mut st = lock(&job.state);
    if st.status != JobStatus::Queued {
        return None;
    }
    // Present: a queued job always holds its request.
    let spec = st.spec.take()?;
    st.status = JobStatus::Running;
    st.started = Some(Instant::now());
    st.started_at = Some(SystemTime::now());
    Some((spec, st.cancel_r.as_ref().map(|f| f.as_raw_fd())))
}

/// The job's workspace with its input files written. The files are taken
/// by value: their contents (up to --max-body) are freed once on disk
/// instead of for as long as the job is remembered.
fn prepare_workspace(
    state: &AppState,
    id: &str,
    ids: &JobIds,
    files: Vec<InputFile>,
) -> Result<Workspace, job::WorkspaceError> {
    let ws = Workspace::create(
        &state.cfg.work_dir,
        id,
        ids.uid(),
        ids.gid(),
        state.cfg.caps.workspace_size,
    )?;
    ws.write_files(&files)?;
    Ok(ws)
}

/// Execute one job on the current (blocking) thread.
fn execute(state: &AppState, job: &Job) {
    let _g = job.span.enter();
    let Some((mut spec, cancel_fd)) = start(job) else {
        return; // cancelled while queued
    };
    state.metrics.running.fetch_add(1, Ordering::Relaxed);
    tracing::info!(profile = %job.profile, steps = spec.steps.len(), "job started");
    // Removed after the answer: unmounting waits for an RCU grace period.
    let mut workspace = None;
    let (outcome, error) = match state.sandbox(&job.profile) {
        Err(e) => (
            JobOutcome::default(),
            Some(format!("profile {}: {e}", job.profile)),
        ),
        Ok(sb) => match sb.job_ids() {
            Err(e) => (JobOutcome::default(), Some(format!("host ids: {e}"))),
            Ok(ids) => {
                match prepare_workspace(state, &job.id, &ids, std::mem::take(&mut spec.files)) {
                    Err(e) => (JobOutcome::default(), Some(format!("workspace: {e}"))),
                    Ok(ws) => {
                        let ctx = JobContext {
                            sandbox: &sb,
                            workspace: &ws,
                            limits: &job.limits,
                            caps: &state.cfg.caps,
                            cancel_fd,
                            ids: ids.clone(),
                        };
                        let out = job::run_job(&ctx, &spec, &mut |o| {
                            lock(&job.state).outcome = o.clone();
                        });
                        // The ids stay the job's until its files are gone.
                        workspace = Some((ws, ids));
                        (out, None)
                    }
                }
            }
        },
    };
    // Stdin and expected output of every step and test: no longer needed.
    drop(spec);
    finish(state, job, outcome, error);
    if let Some((mut ws, _ids)) = workspace
        && let Err(e) = ws.remove()
    {
        tracing::warn!("{e}");
    }
    state.expire();
}

/// Record a run job's outcome, enter it into the results store and answer
/// those waiting for it.
fn finish(state: &AppState, job: &Job, mut outcome: JobOutcome, error: Option<String>) {
    if let Some(e) = &error {
        tracing::error!("{e}");
    }
    let status = if outcome.cancelled {
        JobStatus::Cancelled
    } else {
        JobStatus::Completed
    };
    outcome.shrink_to_fit();
    let (dur, bytes) = {
        let mut st = lock(&job.state);
        st.outcome = outcome;
        st.error = error;
        st.status = status;
        st.finished = Some(Instant::now());
        st.finished_at = Some(SystemTime::now());
        st.cancel_r = None;
        st.cancel_w = None;
        let dur = st.started.map_or(Duration::ZERO, |s| s.elapsed());
        (dur, held_bytes(&st))
    };
    state.metrics.running.fetch_sub(1, Ordering::Relaxed);
    state.metrics.finish(status, dur);
    tracing::info!(
        status = status.as_str(),
        ms = dur.as_millis() as u64,
        bytes,
        "job finished"
    );
    state.finished(&job.id, bytes);
    job.done.send_replace(true);
}

/// One executor: a plain thread for the life of the server, taking jobs
/// off the queue. Not tokio's blocking pool on purpose: that pool creates
/// and retires threads at any time, and a thread being created while the
/// runner clones its child can hang the child forever inside glibc's
/// setxid broadcast (see the module docs).
fn executor(state: Arc<AppState>, rx: Arc<Mutex<mpsc::Receiver<Arc<Job>>>>) {
    loop {
        let job = lock(&rx).blocking_recv();
        let Some(job) = job else { break };
        state.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        let st = state.clone();
        if let Err(e) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(&st, &job)))
        {
            tracing::error!(parent: &job.span, "job executor panicked: {e:?}");
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

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
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
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
        };
        let (signal_tx, close_rx) = (signal_tx.clone(), close_rx.clone());
        tokio::spawn(async move {
            serve_conn(stream, peer, service, header_timeout, &signal_tx, &ctl).await;
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

/// A connection's service: notes its first request for [`evict_one`].
struct Noting<S> {
    inner: S,
    ctl: Arc<ConnCtl>,
}

impl<S: hyper::service::Service<R>, R> hyper::service::Service<R> for Noting<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: R) -> Self::Future {
        self.ctl.started.store(true, Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// One HTTP/1.1 connection (keep-alive, upgrades) until it ends. On
/// shutdown it finishes the request in flight, if any, and closes; asked
/// to make room, it closes at once unless it has started a request.
async fn serve_conn<S>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: S,
    header_timeout: Duration,
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
    let conn = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
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

/// Run the server until SIGINT/SIGTERM. Call inside a tokio runtime.
pub async fn serve(cfg: Config) -> Result<(), ServerError> {
    if cfg.token.is_none() && !cfg.listen.ip().is_loopback() {
        return Err(ServerError::NoToken(cfg.listen));
    }
    job::workspace::prepare_base(&cfg.work_dir)?;
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
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let (sd_tx, mut gc_sd) = watch::channel(false);
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        jobs: Mutex::new(HashMap::new()),
        results: Mutex::new(Results::new(
            cfg.results_budget,
            cfg.keep_jobs,
            cfg.keep_for,
        )),
        tx: Mutex::new(Some(tx)),
        sandboxes: Mutex::new(HashMap::new()),
        metrics: Metrics::default(),
        shutting_down: AtomicBool::new(false),
    });
    let rx = Arc::new(Mutex::new(rx));
    let mut executors = Vec::new();
    for i in 0..cfg.workers.max(1) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (st, rx) = (state.clone(), rx.clone());
        std::thread::Builder::new()
            .name(format!("job-executor-{i}"))
            .spawn(move || {
                executor(st, rx);
                let _ = done_tx.send(());
            })
            .map_err(ServerError::Serve)?;
        executors.push(done_rx);
    }
    let gc_state = state.clone();
    let gc = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => gc_state.expire(),
                _ = gc_sd.wait_for(|s| *s) => break,
            }
        }
    });
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
    let app = api::router(state.clone());
    let st = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: cancelling jobs");
        st.shutting_down.store(true, Ordering::SeqCst);
        st.cancel_all();
        // Executors finish what they hold (cancelled), drain the rest
        // (all cancelled) and stop.
        lock(&st.tx).take();
        sd_tx.send_replace(true);
    };
    serve_http(
        listener,
        app,
        cfg.header_timeout,
        cfg.max_connections,
        shutdown,
    )
    .await;
    for e in executors {
        let _ = e.await;
    }
    let _ = gc.await;
    // Whatever is still queued never ran: it was cancelled above.
    state.cancel_all();
    // Tear down the containers prepared ahead and the finished runs.
    let sbs: Vec<Arc<Sandbox>> = lock(&state.sandboxes).drain().map(|(_, s)| s).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for s in sbs {
            s.shutdown_pool();
        }
    })
    .await;
    // The base dir goes too when no other server uses it.
    let _ = std::fs::remove_dir(&cfg.work_dir);
    tracing::info!("stopped");
    Ok(())
}
