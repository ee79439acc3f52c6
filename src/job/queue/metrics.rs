//! The queue's metrics: the counters it keeps as jobs come and go, and
//! [`Metrics`], a plain snapshot of them (plus the gauges read at the time)
//! that a front door renders as it likes (the server: Prometheus text).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::JobStatus;

/// Upper bounds (seconds) of the job duration histogram's buckets.
pub const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

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
}

/// What the queue counts as it goes.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) submitted: AtomicU64,
    pub(super) rejected: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    pub(super) queued: AtomicU64,
    pub(super) running: AtomicU64,
    /// Histogram of job durations (seconds): bucket counts, sum (µs), count.
    buckets: [AtomicU64; BUCKETS.len()],
    dur_sum_us: AtomicU64,
    dur_count: AtomicU64,
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
            JobStatus::Failed => add(&self.failed),
            _ => add(&self.cancelled),
        };
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                add(&self.buckets[i]);
            }
        }
        self.dur_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        add(&self.dur_count);
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
            duration: Histogram {
                buckets: BUCKETS
                    .iter()
                    .zip(&self.buckets)
                    .map(|(b, n)| (*b, get(n)))
                    .collect(),
                sum_seconds: get(&self.dur_sum_us) as f64 / 1e6,
                count: get(&self.dur_count),
            },
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
    }
}
