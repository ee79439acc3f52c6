//! The queue's metrics: the counters it keeps as jobs come and go, and
//! [`Metrics`], a plain snapshot of them (plus the gauges read at the time)
//! that a front door renders as it likes (the server: Prometheus text).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::JobStatus;
use crate::job::{JobOutcome, Verdict};
use crate::runner::Status;

/// Upper bounds (seconds) of the job duration histogram's buckets.
pub const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds (seconds) of the queue wait histogram's buckets: finer at
/// the low end, where a server that keeps up lives (a job taken at once
/// waits well under a millisecond).
pub const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
];

/// The verdicts `sandbox_verdicts_total` always shows (at 0 until seen),
/// so a rate over any of them is defined from the start.
pub const VERDICTS: [&str; 10] = [
    "ok",
    "wrong_answer",
    "runtime_error",
    "time_limit",
    "wall_time_limit",
    "memory_limit",
    "output_limit",
    "workspace_limit",
    "cancelled",
    "sandbox_error",
];

/// The prepared container pools of the profiles in use, as the queue
/// reads them from its sandbox cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolMetrics {
    /// Containers prepared and waiting for a run now.
    pub ready: u64,
    /// Runs that took a prepared container, and runs that had to prepare
    /// their own (none ready, or one that did not fit them).
    pub hits: u64,
    pub misses: u64,
}

/// A cumulative histogram, Prometheus style.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bound and how many observations were at most that, for each
    /// of [`BUCKETS`] (the `+Inf` bucket is `count`).
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

/// The queue's metrics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Jobs currently known (queued, running, or finished and remembered),
    /// for each status of [`JobStatus::ALL`].
    pub jobs: [(JobStatus, u64); 5],
    /// Jobs finished since start, completed, cancelled and failed (the
    /// engine's own failures: workspace, host ids, image).
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    /// Jobs accepted into the queue since start.
    pub submitted: u64,
    /// Jobs refused since start because the queue was full.
    pub rejected: u64,
    /// Jobs waiting for an executor, and how many may.
    pub queue_depth: u64,
    pub queue_capacity: usize,
    /// Jobs being executed, and how many may be at once.
    pub running: u64,
    pub workers: usize,
    /// Bytes held by the results of finished jobs, the most they may hold,
    /// and how many results were evicted (oldest first) to stay within it.
    pub results_bytes: u64,
    pub results_budget: u64,
    pub results_evicted: u64,
    /// Bytes held by the event logs of finished jobs, and the most they
    /// may hold (`--events-budget`).
    pub events_bytes: u64,
    pub events_budget: u64,
    /// Time from job start to finish.
    pub duration: Histogram,
    /// Time from acceptance to an executor starting the job.
    pub queue_wait: Histogram,
    /// Runs (steps without tests, and tests) by verdict, in name order.
    pub verdicts: Vec<(&'static str, u64)>,
    /// Infrastructure errors: runs with verdict `sandbox_error`, plus jobs
    /// the engine failed to run at all (status failed).
    pub errors: u64,
    /// The prepared container pools.
    pub pool: PoolMetrics,
}

/// What the queue counts as it goes.
pub(super) struct Counters {
    pub(super) submitted: AtomicU64,
    pub(super) rejected: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    pub(super) queued: AtomicU64,
    pub(super) running: AtomicU64,
    /// Job durations (seconds).
    duration: Hist<{ BUCKETS.len() }>,
    /// Queue waits (seconds).
    wait: Hist<{ WAIT_BUCKETS.len() }>,
    /// Runs by verdict.
    verdicts: Mutex<BTreeMap<&'static str, u64>>,
    errors: AtomicU64,
}

/// A histogram being filled: bucket counts, sum (µs), count.
struct Hist<const N: usize> {
    bounds: &'static [f64; N],
    buckets: [AtomicU64; N],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl<const N: usize> Hist<N> {
    fn new(bounds: &'static [f64; N]) -> Hist<N> {
        Hist {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in self.bounds.iter().enumerate() {
            if secs <= *b {
                add(&self.buckets[i]);
            }
        }
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        add(&self.count);
    }

    fn snapshot(&self) -> Histogram {
        Histogram {
            buckets: self
                .bounds
                .iter()
                .zip(&self.buckets)
                .map(|(b, n)| (*b, get(n)))
                .collect(),
            sum_seconds: get(&self.sum_us) as f64 / 1e6,
            count: get(&self.count),
        }
    }
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            submitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            running: AtomicU64::new(0),
            duration: Hist::new(&BUCKETS),
            wait: Hist::new(&WAIT_BUCKETS),
            verdicts: Mutex::default(),
            errors: AtomicU64::new(0),
        }
    }
}

pub(super) fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn sub(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    /// A job ended with `s` after running for `d`.
    pub(super) fn finish(&self, s: JobStatus, d: Duration) {
        match s {
            JobStatus::Completed => add(&self.completed),
            JobStatus::Failed => {
                add(&self.failed);
                add(&self.errors);
            }
            _ => add(&self.cancelled),
        };
        self.duration.observe(d);
    }

    /// An executor started a job that waited `d` since it was accepted.
    pub(super) fn started(&self, d: Duration) {
        self.wait.observe(d);
    }

    /// Counts the verdict of every run of a job that ran: each step without
    /// tests that ran (its final verdict, workspace_limit included) and
    /// each test. Steps never run (skipped, cancelled before they began)
    /// were no runs.
    pub(super) fn runs(&self, o: &JobOutcome) {
        let mut v = Vec::new();
        for s in &o.steps {
            if s.tests.is_empty() {
                if s.run.is_some() {
                    v.push(s.verdict);
                }
            } else {
                v.extend(s.tests.iter().map(|t| t.verdict));
            }
        }
        if v.is_empty() {
            return;
        }
        let errors = v
            .iter()
            .filter(|x| **x == Verdict::Run(Status::SandboxError))
            .count();
        self.errors.fetch_add(errors as u64, Ordering::Relaxed);
        let mut m = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        for x in v {
            *m.entry(x.as_str()).or_default() += 1;
        }
    }

    /// The counters, with the gauges only the queue can read.
    pub(super) fn snapshot(
        &self,
        jobs: [(JobStatus, u64); 5],
        queue_capacity: usize,
        workers: usize,
        (results_bytes, results_budget, results_evicted): (u64, u64, u64),
    ) -> Metrics {
        Metrics {
            jobs,
            completed: get(&self.completed),
            cancelled: get(&self.cancelled),
            failed: get(&self.failed),
            submitted: get(&self.submitted),
            rejected: get(&self.rejected),
            queue_depth: get(&self.queued),
            queue_capacity,
            running: get(&self.running),
            workers,
            results_bytes,
            results_budget,
            results_evicted,
            events_bytes: 0,
            events_budget: 0,
            duration: self.duration.snapshot(),
            queue_wait: self.wait.snapshot(),
            verdicts: {
                let mut m = self
                    .verdicts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for v in VERDICTS {
                    m.entry(v).or_default();
                }
                m.into_iter().collect()
            },
            errors: get(&self.errors),
            pool: PoolMetrics::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_every_bucket_at_or_above_them() {
        let c = Counters::default();
        c.finish(JobStatus::Completed, Duration::from_millis(300));
        c.finish(JobStatus::Cancelled, Duration::from_secs(90));
        c.finish(JobStatus::Failed, Duration::from_secs(1000));
        let m = c.snapshot([(JobStatus::Queued, 0); 5], 1, 1, (0, 0, 0));
        assert_eq!((m.completed, m.cancelled, m.failed), (1, 1, 1));
        let h = &m.duration;
        assert_eq!(h.count, 3);
        assert!((h.sum_seconds - 1090.3).abs() < 1e-9);
        assert_eq!(h.buckets[2], (0.25, 0));
        assert_eq!(h.buckets[3], (0.5, 1));
        assert_eq!(h.buckets[9], (60.0, 1));
        assert_eq!(m.errors, 1, "the failed job");
    }

    #[test]
    fn every_run_verdict_is_counted_once() {
        use crate::job::{RunOutcome, StepOutcome};
        let run = |v| RunOutcome {
            verdict: v,
            result: None,
        };
        let step = |v, run: Option<RunOutcome>, tests| StepOutcome {
            name: String::new(),
            verdict: v,
            run,
            tests,
            message: None,
        };
        let ok = Verdict::Run(Status::Ok);
        let tl = Verdict::Run(Status::TimeLimit);
        let se = Verdict::Run(Status::SandboxError);
        let o = JobOutcome {
            steps: vec![
                step(ok, Some(run(ok)), vec![]),
                step(tl, None, vec![run(ok), run(tl), run(Verdict::WrongAnswer)]),
                // Its run was fine, the workspace was not.
                step(Verdict::WorkspaceLimit, Some(run(ok)), vec![]),
                step(se, Some(run(se)), vec![]),
                step(Verdict::Skipped, None, vec![]),
            ],
            ..JobOutcome::default()
        };
        let c = Counters::default();
        c.runs(&o);
        c.started(Duration::from_micros(300));
        let m = c.snapshot([(JobStatus::Queued, 0); 5], 1, 1, (0, 0, 0));
        let n = |v: &str| m.verdicts.iter().find(|(k, _)| *k == v).map(|(_, n)| *n);
        assert_eq!(n("ok"), Some(2));
        assert_eq!(n("time_limit"), Some(1));
        assert_eq!(n("wrong_answer"), Some(1));
        assert_eq!(n("workspace_limit"), Some(1));
        assert_eq!(n("sandbox_error"), Some(1));
        assert_eq!(n("memory_limit"), Some(0), "known verdicts show at 0");
        assert_eq!(n("skipped"), None, "a step never run is no run");
        assert_eq!(m.verdicts.len(), VERDICTS.len());
        assert_eq!(m.errors, 1);
        assert_eq!(m.queue_wait.count, 1);
        assert_eq!(m.queue_wait.buckets[0], (0.001, 1));
    }
}
