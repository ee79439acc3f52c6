//! The job lifecycle, behind the interface every front door uses.
//!
//! [`JobBackend`] is what a front door (the HTTP server today; another API
//! or a distributed queue consumer later) needs of jobs: submit one, see
//! it, wait for it, cancel it, read the metrics, shut down. It knows
//! nothing of HTTP: errors are typed, waiting is a [`tokio::sync::watch`]
//! receiver, and a job is seen as a [`JobSnapshot`].
//!
//! [`LocalQueue`] implements it on this machine: a bounded queue of jobs
//! run by executor threads, each job's state and cancel pipe, expiry, the
//! results store (`results`), the metrics ([`Metrics`]) and the prepared
//! sandboxes of the profiles in use ([`SandboxCache`], shared with `sandbox
//! helper`: an edited profile takes effect for the next job).
//!
//! [`SandboxCache`]: crate::runner::cache::SandboxCache

mod executor;
mod local;
mod metrics;
mod record;
mod results;
mod shared;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::events::EventLog;
use super::{FieldError, JobOutcome, JobSpec};
use crate::runner::cache::CacheError;
pub use local::{LocalQueue, StartError};
pub use metrics::{BUCKETS, Histogram, Metrics, PoolMetrics, VERDICTS, WAIT_BUCKETS};
pub(crate) use record::new_id;
pub use shared::QueueConfig;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Cancelled,
    /// The engine itself failed (workspace, host ids, image): the job's
    /// `error` says how. Never a verdict on the program.
    Failed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Cancelled,
        JobStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Failed => "failed",
        }
    }

    /// Completed, cancelled or failed: nothing more will change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Cancelled | JobStatus::Failed
        )
    }
}

/// A job as it is at one moment. Cheap to clone: the outcome is shared.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    pub id: String,
    pub profile: String,
    /// The job's image, normalized (`None`: the profile's root).
    pub image: Option<String>,
    pub status: JobStatus,
    /// The results so far (all of them once the job is final).
    pub outcome: Arc<JobOutcome>,
    pub created: Instant,
    pub created_at: SystemTime,
    pub started: Option<Instant>,
    pub started_at: Option<SystemTime>,
    pub finished: Option<Instant>,
    pub finished_at: Option<SystemTime>,
    /// A failure of the engine itself (workspace, host ids), if any.
    pub error: Option<String>,
}

impl JobSnapshot {
    /// Time from start to finish, once finished.
    pub fn duration(&self) -> Option<Duration> {
        Some(self.finished?.duration_since(self.started?))
    }

    /// Time spent waiting for an executor (so far, if it still waits).
    pub fn queue_time(&self) -> Duration {
        self.started
            .unwrap_or_else(Instant::now)
            .duration_since(self.created)
    }
}

/// A job's snapshots as they change: `snapshot` for now, `finished` to
/// wait for the end. Outlives the job: a waiter still has the final
/// snapshot after the job is forgotten or its results evicted.
pub struct JobWatch(watch::Receiver<JobSnapshot>);

impl JobWatch {
    pub fn new(rx: watch::Receiver<JobSnapshot>) -> JobWatch {
        JobWatch(rx)
    }

    pub fn snapshot(&self) -> JobSnapshot {
        self.0.borrow().clone()
    }

    /// Waits until the job is completed, cancelled or failed, and returns it then.
    pub async fn finished(&mut self) -> JobSnapshot {
        // An error means the job is gone: its last snapshot is all there is.
        let _ = self.0.wait_for(|s| s.status.is_final()).await;
        self.snapshot()
    }
}

/// A job accepted into the queue.
pub struct Submitted {
    pub id: String,
    /// The job's span (`job{id=…}`): every log line about it is inside.
    pub span: tracing::Span,
    pub watch: JobWatch,
}

/// Turns true once a backend that was shut down has stopped.
pub struct Stopped(watch::Receiver<bool>);

impl Stopped {
    pub fn new(rx: watch::Receiver<bool>) -> Stopped {
        Stopped(rx)
    }

    /// Waits until every job has ended and everything is torn down.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("shutting down")]
    ShuttingDown,
    /// Not one of the bundled profiles (nor of the override directory).
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// The profile's sandbox could not be had.
    #[error(transparent)]
    Profile(#[from] CacheError),
    /// The request does not fit the profile (a limit above its maximum).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("pipe: {0}")]
    Pipe(nix::Error),
    #[error("the queue is full ({capacity} jobs waiting); retry later")]
    QueueFull {
        capacity: usize,
        /// When trying again makes sense.
        retry_after: Duration,
    },
}

/// Why a job cannot be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Never existed, or finished and forgotten (`keep_for`, `keep_jobs`).
    #[error("no such job (unknown or expired)")]
    NotFound,
    /// Finished, but its results were evicted to stay within the results
    /// budget (of `budget` bytes); it would otherwise still be remembered.
    #[error("the job's results were evicted (results budget {budget} bytes)")]
    Evicted { budget: u64 },
}

/// What a front door needs of jobs. Every method returns at once; waiting
/// is done on the [`JobWatch`] and [`Stopped`] they hand back.
pub trait JobBackend: Send + Sync {
    /// Whether jobs are taken (false once shutting down).
    fn accepting(&self) -> bool;

    /// Queues a validated job. Full → [`SubmitError::QueueFull`] with a
    /// retry-after hint; shutting down → [`SubmitError::ShuttingDown`].
    fn submit(&self, spec: JobSpec) -> Result<Submitted, SubmitError>;

    /// The job as it is now.
    fn get(&self, id: &str) -> Result<JobSnapshot, LookupError>;

    /// The job's snapshots from now on (to wait for it to finish).
    fn watch(&self, id: &str) -> Result<JobWatch, LookupError>;

    /// The job's live log: its events so far (within the log's buffer),
    /// and a wake-up for the next ones. Freed with the job's results.
    fn events(&self, id: &str) -> Result<Arc<EventLog>, LookupError>;

    /// Cancels the job: a queued one is cancelled at once, a running one
    /// is killed (it finishes moments later, cancelled), a finished one is
    /// left as it is. Returns its watch, to wait for the end.
    fn cancel(&self, id: &str) -> Result<JobWatch, LookupError>;

    /// Counters, gauges and the duration histogram, as of now.
    fn metrics(&self) -> Metrics;

    /// What the backend needs and lacks now (empty: healthy), each a
    /// sentence naming the part (`work directory: …`, `cgroups: …`).
    fn health(&self) -> Vec<String> {
        Vec::new()
    }

    /// Stops taking jobs and cancels every job (queued ones at once,
    /// running ones killed); the rest winds down behind. Idempotent: each
    /// call returns a [`Stopped`] for the same end. After [`Self::drain`]
    /// it cancels the jobs still running.
    fn shutdown(&self) -> Stopped;

    /// Stops taking jobs and cancels the queued ones, but lets the running
    /// ones finish; then winds down. The [`Stopped`] is the same end as
    /// [`Self::shutdown`]'s (call that to cancel the running jobs too).
    fn drain(&self) -> Stopped {
        self.shutdown()
    }

    /// Reloads the profiles: sandboxes prepared from them are dropped, so
    /// the next job of each loads it fresh. Returns how many were dropped.
    fn reload_profiles(&self) -> usize {
        0
    }
}
