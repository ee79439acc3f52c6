//! [`LocalQueue`]: the [`JobBackend`] of this machine.
//!
//! Jobs go through a bounded queue (`try_send`: full → [`SubmitError::QueueFull`])
//! to `workers` executor threads (see the `executor` module for why plain
//! threads), each running one job at a time. It owns the queue, the job
//! workspaces' base directory and, through `shared`, the map of jobs, the
//! results store, the metrics and the prepared sandboxes of the profiles in
//! use. A thread of its own expires finished jobs every second, besides
//! each job's end.
//!
//! Shutting down stops taking jobs, cancels every job (queued ones at once,
//! running ones killed) and closes the queue: the executors drain it (all
//! cancelled) and stop, and the last one tears down the prepared
//! containers and removes the base directory, then reports it stopped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::executor::{self, Receiver};
use super::metrics::{add, sub};
use super::record::{JobRecord, new_id};
use super::shared::{QueueConfig, Shared, lock};
use super::{
    JobBackend, JobSnapshot, JobWatch, LookupError, Metrics, Stopped, SubmitError, Submitted,
};
use crate::job::events::EventLog;
use crate::job::instance::InstanceDir;
use crate::job::request::effective_limits;
use crate::job::{JobSpec, WorkspaceError};
use crate::runner::CancelOn;

/// Why a queue could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("work directory: {0}")]
    Workspace(#[from] WorkspaceError),
    #[error("starting the job executors: {0}")]
    Thread(std::io::Error),
}

/// How long a client refused with a full queue should wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often finished jobs are expired besides at each job's end.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

pub struct LocalQueue {
    shared: Arc<Shared>,
    /// The queue; `None` once shutting down (executors then drain and stop).
    tx: Mutex<Option<mpsc::Sender<Arc<JobRecord>>>>,
    /// Its other end, until [`LocalQueue::start`] hands it to the executors.
    rx: Mutex<Option<mpsc::Receiver<Arc<JobRecord>>>>,
    shutting_down: AtomicBool,
    /// Dropped to stop the expiry thread.
    ticker: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl LocalQueue {
    /// A queue with its base directory made, not running jobs yet (see
    /// [`LocalQueue::start`]).
    pub fn new(cfg: QueueConfig) -> Result<Arc<LocalQueue>, StartError> {
        let instance = InstanceDir::create(&cfg.work_dir)?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        Ok(Arc::new(LocalQueue {
            shared: Arc::new(Shared::new(cfg, instance)),
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
            shutting_down: AtomicBool::new(false),
            ticker: Mutex::new(None),
        }))
    }

    /// Starts the executors and the expiry thread (once).
    pub fn start(&self) -> Result<(), StartError> {
        let Some(rx) = lock(&self.rx).take() else {
            return Ok(());
        };
        let rx: Receiver = Arc::new(Mutex::new(rx));
        for i in 0..self.shared.cfg.workers.max(1) {
            let (shared, rx) = (self.shared.clone(), rx.clone());
            self.shared.executor_starting();
            let spawned = std::thread::Builder::new()
                .name(format!("job-executor-{i}"))
                .spawn(move || executor::executor(&shared, &rx));
            if let Err(e) = spawned {
                self.shared.executor_failed();
                return Err(StartError::Thread(e));
            }
        }
        let (tick_tx, tick_rx) = std::sync::mpsc::channel::<()>();
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("job-expiry".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError::Timeout;
                while let Err(Timeout) = tick_rx.recv_timeout(EXPIRE_EVERY) {
                    shared.expire();
                }
            })
            .map_err(StartError::Thread)?;
        *lock(&self.ticker) = Some(tick_tx);
        Ok(())
    }
}

impl JobBackend for LocalQueue {
    fn accepting(&self) -> bool {
        !self.shutting_down.load(Ordering::SeqCst)
    }

    fn submit(&self, spec: JobSpec) -> Result<Submitted, SubmitError> {
        if !self.accepting() {
            return Err(SubmitError::ShuttingDown);
        }
        // Bundled names only: a client never names a file of this host.
        if !crate::profile::bundled::names().contains(&spec.profile) {
            return Err(SubmitError::UnknownProfile(spec.profile));
        }
        let sh = &self.shared;
        if let Some(image) = &spec.image {
            check_image(&sh.cfg, image)?;
        }
        let (sb, pull) = sandbox_for(sh, &spec)?;
        let profile_limits = match &sb {
            Some(sb) => sb.profile.limits.clone(),
            None => {
                crate::profile::load(&spec.profile)
                    .map_err(|e| SubmitError::Profile(e.into()))?
                    .limits
            }
        };
        let limits = spec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                effective_limits(
                    &profile_limits,
                    &sh.cfg.caps.max_limits,
                    &s.limits,
                    &format!("steps[{i}].limits"),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cancel = CancelOn::pair().map_err(SubmitError::Pipe)?;
        let events = EventLog::new(sh.cfg.events_buffer, sh.cfg.caps.max_job_output);
        let job = Arc::new(JobRecord::new(
            new_id(),
            spec,
            sb,
            pull,
            limits,
            cancel,
            events,
        ));
        let watch = job.watch();
        {
            // Held while sending: shutting down takes it, so no job slips
            // in after the jobs were cancelled.
            let tx = lock(&self.tx);
            let Some(tx) = tx.as_ref() else {
                return Err(SubmitError::ShuttingDown);
            };
            sh.insert(job.clone());
            add(&sh.counters.queued);
            if tx.try_send(job.clone()).is_err() {
                sub(&sh.counters.queued);
                add(&sh.counters.rejected);
                sh.remove(&job.id);
                // Not logged in the job's span: its id is never given to
                // the client. The front door logs the refusal in its own
                // context (the server: the request's id).
                return Err(SubmitError::QueueFull {
                    capacity: sh.cfg.queue,
                    retry_after: RETRY_AFTER,
                });
            }
        }
        add(&sh.counters.submitted);
        Ok(Submitted {
            id: job.id.clone(),
            span: job.span.clone(),
            watch,
        })
    }

    fn get(&self, id: &str) -> Result<JobSnapshot, LookupError> {
        Ok(self.shared.record(id)?.snapshot())
    }

    fn watch(&self, id: &str) -> Result<JobWatch, LookupError> {
        Ok(self.shared.record(id)?.watch())
    }

    fn events(&self, id: &str) -> Result<Arc<EventLog>, LookupError> {
        Ok(self.shared.record(id)?.events.clone())
    }

    fn cancel(&self, id: &str) -> Result<JobWatch, LookupError> {
        let job = self.shared.record(id)?;
        self.shared.cancel(&job);
        Ok(job.watch())
    }

    fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    fn health(&self) -> Vec<String> {
        self.shared.health()
    }

    fn shutdown(&self) -> Stopped {
        self.stop(true)
    }

    fn drain(&self) -> Stopped {
        self.stop(false)
    }

    fn reload_profiles(&self) -> usize {
        self.shared.sandboxes.clear()
    }
}

impl LocalQueue {
    /// Stops taking jobs (the queue closed under the lock submitting
    /// takes, so no job slips in after), cancels the queued jobs and, with
    /// `running`, the running ones. Executors finish what they hold, drain
    /// the rest (all cancelled) and stop; the last one winds everything
    /// down.
    fn stop(&self, running: bool) -> Stopped {
        let stopped = Stopped::new(self.shared.stopped.subscribe());
        let first = {
            let mut tx = lock(&self.tx);
            tx.take();
            !self.shutting_down.swap(true, Ordering::SeqCst)
        };
        if running {
            self.shared.cancel_all();
        } else {
            self.shared.cancel_queued();
        }
        if first {
            lock(&self.ticker).take();
            if lock(&self.rx).take().is_some() {
                // Never started: nothing to wait for.
                self.shared.wind_down();
            }
        }
        stopped
    }
}

/// A job's image is one the server runs (its `--allow-image` patterns).
use crate::job::FieldError;

fn check_image(cfg: &super::QueueConfig, image: &str) -> Result<(), SubmitError> {
    let field = |msg: String| SubmitError::Invalid(FieldError::new("image", msg));
    if cfg.images.is_none() || cfg.allow_images.is_empty() {
        return Err(field(
            "this server runs no images (start it with --allow-image PATTERN)".into(),
        ));
    }
    let r = crate::image::Reference::parse(image).map_err(|e| field(e.to_string()))?;
    if !cfg.allow_images.allows(&r) {
        return Err(field(format!(
            "{image} is not among the images this server runs (its --allow-image patterns)"
        )));
    }
    Ok(())
}

/// The job's sandbox now, or, when its image must be pulled first, the
/// image to pull: the pull happens in the job's executor (a request
/// never waits for a registry), and the job's limits are checked against
/// its profile alone.
fn sandbox_for(
    sh: &super::shared::Shared,
    spec: &JobSpec,
) -> Result<(Option<Arc<crate::runner::Sandbox>>, Option<String>), SubmitError> {
    use crate::runner::cache::CacheError;
    use crate::runner::{ImagesError, RunError};
    match sh
        .sandboxes
        .get(&spec.profile, Path::new("/"), spec.image.as_deref())
    {
        Ok(sb) => Ok((Some(sb), None)),
        Err(CacheError::Sandbox(RunError::Image(ImagesError::Missing { reference, .. }))) => {
            Ok((None, Some(reference)))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Caps, StepSpec};

    fn queue(dir: &Path) -> Arc<LocalQueue> {
        LocalQueue::new(QueueConfig {
            workers: 1,
            queue: 1,
            keep_jobs: 10,
            keep_for: Duration::from_secs(60),
            results_budget: 1 << 20,
            events_buffer: 1 << 20,
            events_budget: 1 << 20,
            work_dir: dir.join("jobs"),
            caps: Caps::default(),
            images: None,
            allow_images: Default::default(),
        })
        .expect("queue")
    }

    fn spec(profile: &str) -> JobSpec {
        JobSpec {
            profile: profile.into(),
            steps: vec![StepSpec::default()],
            ..JobSpec::default()
        }
    }

    #[test]
    fn unknown_jobs_and_profiles_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        assert!(dir.path().join("jobs").is_dir());
        assert_eq!(q.health(), Vec::<String>::new());
        assert_eq!(q.get("nope").err(), Some(LookupError::NotFound));
        assert_eq!(q.cancel("nope").err(), Some(LookupError::NotFound));
        assert!(matches!(
            q.submit(spec("/etc/passwd")),
            Err(SubmitError::UnknownProfile(p)) if p == "/etc/passwd"
        ));
        let m = q.metrics();
        assert_eq!(
            (m.submitted, m.rejected, m.queue_capacity, m.workers),
            (0, 0, 1, 1)
        );
    }

    #[test]
    fn evicted_results_answer_apart_from_unknown_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        // A job whose results alone are over the budget.
        q.shared.finished("big", 2 << 20);
        assert_eq!(
            q.get("big").err(),
            Some(LookupError::Evicted { budget: 1 << 20 })
        );
        assert_eq!(q.metrics().results_evicted, 1);
    }

    #[test]
    fn shutdown_refuses_jobs_and_stops_a_queue_never_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        assert!(q.accepting());
        let stopped = q.shutdown();
        assert!(!q.accepting());
        assert!(matches!(
            q.submit(spec("strict")),
            Err(SubmitError::ShuttingDown)
        ));
        assert!(*stopped.0.borrow(), "stopped at once");
        assert!(dir.path().join("jobs").is_dir(), "the base directory stays");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("jobs"))
            .expect("read_dir")
            .collect();
        assert!(left.is_empty(), "its instance directory removed: {left:?}");
        assert!(!q.health().is_empty(), "unhealthy once shut down");
        // Again: the same end.
        assert!(*q.shutdown().0.borrow());
    }
}
