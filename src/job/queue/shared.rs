//! What the queue's front ([`LocalQueue`]) and its executors share: the
//! map of jobs, the results store, the counters, the prepared sandboxes;
//! and what either does with them: account for a job's end, expire
//! finished jobs, cancel, and wind everything down once the executors
//! have stopped.
//!
//! Finished jobs are kept for `keep_for` and at most `keep_jobs` of them,
//! then forgotten; their results within `results_budget` bytes, oldest
//! evicted first (see `results`).
//!
//! [`LocalQueue`]: super::LocalQueue

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::metrics::Counters;
use super::record::{Cancel, Final, JobRecord};
use super::results::Results;
use super::{JobStatus, LookupError, Metrics};
use crate::image::AllowList;
use crate::job::Caps;
use crate::job::events::EventLog;
use crate::job::instance::InstanceDir;
use crate::runner::Images;
use crate::runner::cache::SandboxCache;

/// How a [`LocalQueue`](super::LocalQueue) runs.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Jobs executed at once.
    pub workers: usize,
    /// Jobs waiting for an executor at most.
    pub queue: usize,
    /// Finished jobs remembered at most, and for how long.
    pub keep_jobs: usize,
    pub keep_for: Duration,
    /// Bytes the results of finished jobs may hold in all (captured output,
    /// copied-out files); beyond it the oldest are evicted.
    pub results_budget: u64,
    /// Bytes of events kept per job (its live log); beyond it the oldest
    /// are dropped (a late reader is told of the gap).
    pub events_buffer: u64,
    /// Bytes the event logs of finished jobs may hold in all; beyond it
    /// the oldest finished jobs' logs keep only their `job.ended`.
    pub events_budget: u64,
    /// Base directory of the job workspaces (created 0711 if missing).
    pub work_dir: PathBuf,
    pub caps: Caps,
    /// Where jobs' images come from (`None`: jobs cannot name one), opened
    /// with [`crate::runner::PullPolicy::Never`]: a missing image is
    /// pulled by the job's executor, never while a request waits.
    pub images: Option<Arc<Images>>,
    /// The images jobs may name (`sandbox serve --allow-image`).
    pub allow_images: AllowList,
}

pub(super) struct Shared {
    pub(super) cfg: QueueConfig,
    jobs: Mutex<HashMap<String, Arc<JobRecord>>>,
    /// Which finished jobs are remembered, within the results budget.
    results: Mutex<Results>,
    /// Finished jobs' event logs, oldest first, within the events budget.
    events_kept: Mutex<EventsKept>,
    /// The pooled sandbox of every profile in use, kept fresh.
    pub(super) sandboxes: SandboxCache,
    pub(super) counters: Counters,
    /// Executors not yet stopped.
    executors: AtomicUsize,
    /// Turns true once wound down.
    pub(super) stopped: watch::Sender<bool>,
    /// This queue's own directory in the work directory (its workspaces
    /// go in it), locked; removed when wound down.
    instance: Mutex<Option<InstanceDir>>,
    /// Where this queue's workspaces are made (the instance directory).
    pub(super) workspaces: PathBuf,
    /// The cgroup base directories found at start (checked by `health`).
    cgroup_bases: Option<Vec<PathBuf>>,
}

/// Bytes of a `job.ended` event, about (it is pushed after the log is
/// entered into the events budget).
const JOB_ENDED: u64 = 256;

/// The finished jobs' event logs in the events budget: (job id, its log,
/// the bytes it held when entered), oldest first, and their sum.
#[derive(Default)]
struct EventsKept {
    logs: std::collections::VecDeque<(String, std::sync::Weak<EventLog>, u64)>,
    held: u64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn new(cfg: QueueConfig, instance: InstanceDir) -> Shared {
        let cgroup_bases = crate::limits::cgroup::CgroupManager::detect()
            .ok()
            .map(|m| m.base_dirs());
        Shared {
            workspaces: instance.path().to_path_buf(),
            instance: Mutex::new(Some(instance)),
            cgroup_bases,
            events_kept: Mutex::default(),
            results: Mutex::new(Results::new(
                cfg.results_budget,
                cfg.keep_jobs,
                cfg.keep_for,
            )),
            // As many containers prepared ahead as jobs can run at once; a
            // profile's pool goes only when an edit replaces it.
            sandboxes: match &cfg.images {
                Some(i) => SandboxCache::new(cfg.workers.max(1), usize::MAX).with_images(i.clone()),
                None => SandboxCache::new(cfg.workers.max(1), usize::MAX),
            },
            cfg,
            jobs: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            executors: AtomicUsize::new(0),
            stopped: watch::channel(false).0,
        }
    }

    /// Registers a job (before it can run, so a fast job is never missing).
    pub(super) fn insert(&self, job: Arc<JobRecord>) {
        lock(&self.jobs).insert(job.id.clone(), job);
    }

    pub(super) fn remove(&self, id: &str) {
        lock(&self.jobs).remove(id);
    }

    /// The job `id`, or why there is none.
    pub(super) fn record(&self, id: &str) -> Result<Arc<JobRecord>, LookupError> {
        if let Some(job) = lock(&self.jobs).get(id) {
            return Ok(job.clone());
        }
        let results = lock(&self.results);
        if results.was_evicted(id) {
            return Err(LookupError::Evicted {
                budget: results.budget(),
            });
        }
        Err(LookupError::NotFound)
    }

    /// Accounts for a job's end (counters, results store), then shows it
    /// to those waiting: they find the accounts done.
    pub(super) fn ended(&self, job: &JobRecord, f: Final) {
        self.counters.finish(f.status, f.duration);
        self.finished(&job.id, f.bytes);
        self.keep_events(job);
        job.publish(f);
    }

    /// Enters a finished job's event log into the events budget (with room
    /// for its `job.ended`, pushed when it is published), and compacts the
    /// oldest finished jobs' logs while over it. A job that is already
    /// forgotten (its results evicted at once) is not entered.
    fn keep_events(&self, job: &JobRecord) {
        let compact = {
            let jobs = lock(&self.jobs);
            if !jobs.contains_key(&job.id) {
                return;
            }
            let mut k = lock(&self.events_kept);
            let bytes = job.events.held_bytes() + JOB_ENDED;
            k.held += bytes;
            k.logs
                .push_back((job.id.clone(), Arc::downgrade(&job.events), bytes));
            let mut over = Vec::new();
            while k.held > self.cfg.events_budget {
                let Some((_, log, bytes)) = k.logs.pop_front() else {
                    break;
                };
                k.held -= bytes;
                over.extend(log.upgrade());
            }
            over
        };
        if !compact.is_empty() {
            tracing::debug!(
                jobs = compact.len(),
                "finished jobs' events dropped (--events-budget)"
            );
        }
        for log in compact {
            log.compact();
        }
    }

    /// Enters a finished job holding `bytes` of results into the results
    /// store, and forgets the jobs it evicts or expires.
    pub(super) fn finished(&self, id: &str, bytes: u64) {
        let gone = lock(&self.results).finished(id.to_string(), bytes, Instant::now());
        self.forget(gone);
    }

    /// Forgets finished jobs past their time or beyond the count.
    pub(super) fn expire(&self) {
        let gone = lock(&self.results).expire(Instant::now());
        self.forget(gone);
    }

    fn forget(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let gone: Vec<Arc<JobRecord>> = {
            let mut jobs = lock(&self.jobs);
            ids.iter().filter_map(|id| jobs.remove(id)).collect()
        };
        tracing::debug!(jobs = gone.len(), "finished jobs forgotten");
        {
            let ids: std::collections::HashSet<&String> = ids.iter().collect();
            let mut k = lock(&self.events_kept);
            let mut freed = 0;
            k.logs.retain(|(id, _, bytes)| {
                let keep = !ids.contains(id);
                freed += if keep { 0 } else { *bytes };
                keep
            });
            k.held -= freed;
        }
        // Freed here, outside the lock (unless a waiting client still
        // holds one: then when it has its answer).
        drop(gone);
    }

    pub(super) fn cancel(&self, job: &JobRecord) {
        match job.cancel() {
            Cancel::WhileQueued(f) => {
                self.ended(job, f);
                job.span
                    .in_scope(|| tracing::info!("cancelled while queued"));
            }
            Cancel::Requested => job.span.in_scope(|| tracing::info!("cancel requested")),
            Cancel::Finished => {}
        }
    }

    /// Cancels the jobs still waiting for an executor (draining).
    pub(super) fn cancel_queued(&self) {
        let jobs: Vec<Arc<JobRecord>> = lock(&self.jobs)
            .values()
            .filter(|j| j.status() == JobStatus::Queued)
            .cloned()
            .collect();
        for j in jobs {
            self.cancel(&j);
        }
    }

    pub(super) fn cancel_all(&self) {
        let jobs: Vec<Arc<JobRecord>> = lock(&self.jobs).values().cloned().collect();
        for j in jobs {
            self.cancel(&j);
        }
    }

    /// The counters, with the gauges read now.
    pub(super) fn metrics(&self) -> Metrics {
        let mut counts = JobStatus::ALL.map(|s| (s, 0u64));
        for j in lock(&self.jobs).values() {
            let s = j.status();
            if let Some(c) = counts.iter_mut().find(|(t, _)| *t == s) {
                c.1 += 1;
            }
        }
        let results = {
            let r = lock(&self.results);
            (r.held(), r.budget(), r.evictions())
        };
        let mut m = self
            .counters
            .snapshot(counts, self.cfg.queue, self.cfg.workers, results);
        m.events_bytes = lock(&self.events_kept).held;
        let (ready, hits, misses) = self.sandboxes.pool_stats();
        m.pool = super::PoolMetrics {
            ready,
            hits,
            misses,
        };
        m.events_budget = self.cfg.events_budget;
        m
    }

    /// An executor is starting.
    pub(super) fn executor_starting(&self) {
        self.executors.fetch_add(1, Ordering::SeqCst);
    }

    /// An executor could not be started after all.
    pub(super) fn executor_failed(&self) {
        self.executors.fetch_sub(1, Ordering::SeqCst);
    }

    /// An executor has stopped; the last one winds everything down.
    pub(super) fn executor_stopped(&self) {
        if self.executors.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.wind_down();
        }
    }

    /// Once no executor runs: whatever is still queued never ran (it was
    /// cancelled already), the prepared containers and finished runs are
    /// torn down, this queue's instance directory removed (never the
    /// base: other servers may share it).
    pub(super) fn wind_down(&self) {
        self.cancel_all();
        self.sandboxes.shutdown();
        if let Some(mut dir) = lock(&self.instance).take()
            && let Err(e) = dir.remove()
        {
            tracing::warn!("{e}");
        }
        self.stopped.send_replace(true);
    }

    /// What the queue needs and lacks now: its instance directory (there,
    /// its lock held), the cgroup hierarchies it found at start.
    pub(super) fn health(&self) -> Vec<String> {
        let mut bad = Vec::new();
        match lock(&self.instance).as_ref() {
            Some(dir) => {
                if let Err(e) = dir.check() {
                    bad.push(format!("work directory: {e}"));
                }
            }
            None => bad.push("work directory: removed (shut down)".into()),
        }
        for b in self.cgroup_bases.iter().flatten() {
            if !std::fs::symlink_metadata(b).is_ok_and(|m| m.is_dir()) {
                bad.push(format!("cgroups: {} is gone", b.display()));
            }
        }
        bad
    }
}
