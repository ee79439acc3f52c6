//! `GET /metrics`: the job backend's [`Metrics`] in the Prometheus text
//! format (names, help texts and types are the server's public contract).

use std::fmt::Write;

use crate::job::queue::Metrics;

/// The event streams of `GET /v1/jobs/{id}/events`: open now, and the cap.
pub fn render_streams(o: &mut String, open: usize, max: usize) {
    let _ = writeln!(
        o,
        "# HELP sandbox_event_streams Event streams (GET /v1/jobs/{{id}}/events) open.\n\
         # TYPE sandbox_event_streams gauge\nsandbox_event_streams {open}\n\
         # HELP sandbox_event_streams_max Event streams open at most (--max-event-streams).\n\
         # TYPE sandbox_event_streams_max gauge\nsandbox_event_streams_max {max}"
    );
}

/// The Prometheus text of `m`.
pub fn render(m: &Metrics) -> String {
    let mut o = String::new();
    let g = |o: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    g(
        &mut o,
        "sandbox_jobs",
        "Jobs currently known to the server, by status.",
        "gauge",
    );
    for (s, n) in m.jobs {
        let _ = writeln!(o, "sandbox_jobs{{status=\"{}\"}} {n}", s.as_str());
    }
    g(
        &mut o,
        "sandbox_jobs_finished_total",
        "Jobs finished since start, by final status.",
        "counter",
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_finished_total{{status=\"completed\"}} {}",
        m.completed
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_finished_total{{status=\"cancelled\"}} {}",
        m.cancelled
    );
    let _ = writeln!(
        o,
        "sandbox_jobs_finished_total{{status=\"failed\"}} {}",
        m.failed
    );
    g(
        &mut o,
        "sandbox_jobs_failed_total",
        "Jobs the engine failed to run (workspace, host ids, image): status failed.",
        "counter",
    );
    let _ = writeln!(o, "sandbox_jobs_failed_total {}", m.failed);
    g(
        &mut o,
        "sandbox_jobs_submitted_total",
        "Jobs accepted into the queue.",
        "counter",
    );
    let _ = writeln!(o, "sandbox_jobs_submitted_total {}", m.submitted);
    g(
        &mut o,
        "sandbox_jobs_rejected_total",
        "Jobs refused with 429 (queue full).",
        "counter",
    );
    let _ = writeln!(o, "sandbox_jobs_rejected_total {}", m.rejected);
    g(
        &mut o,
        "sandbox_queue_depth",
        "Jobs waiting for a worker.",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_queue_depth {}", m.queue_depth);
    g(
        &mut o,
        "sandbox_queue_capacity",
        "Maximum jobs waiting (--queue).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_queue_capacity {}", m.queue_capacity);
    g(
        &mut o,
        "sandbox_jobs_running",
        "Jobs being executed.",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_jobs_running {}", m.running);
    g(
        &mut o,
        "sandbox_workers",
        "Concurrent job executors (--workers).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_workers {}", m.workers);
    g(
        &mut o,
        "sandbox_results_bytes",
        "Bytes held by the results of finished jobs (captured output, copied-out files).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_results_bytes {}", m.results_bytes);
    g(
        &mut o,
        "sandbox_results_budget_bytes",
        "Most bytes the results of finished jobs may hold (--results-budget).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_results_budget_bytes {}", m.results_budget);
    g(
        &mut o,
        "sandbox_results_evicted_total",
        "Finished jobs whose results were evicted, oldest first, to stay within --results-budget.",
        "counter",
    );
    let _ = writeln!(o, "sandbox_results_evicted_total {}", m.results_evicted);
    g(
        &mut o,
        "sandbox_events_bytes",
        "Bytes held by the event logs of finished jobs (GET /v1/jobs/{id}/events).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_events_bytes {}", m.events_bytes);
    g(
        &mut o,
        "sandbox_events_budget_bytes",
        "Most bytes the event logs of finished jobs may hold (--events-budget).",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_events_budget_bytes {}", m.events_budget);
    g(
        &mut o,
        "sandbox_job_duration_seconds",
        "Time from job start to finish.",
        "histogram",
    );
    let h = &m.duration;
    for (b, n) in &h.buckets {
        let _ = writeln!(o, "sandbox_job_duration_seconds_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "sandbox_job_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(o, "sandbox_job_duration_seconds_sum {}", h.sum_seconds);
    let _ = writeln!(o, "sandbox_job_duration_seconds_count {}", h.count);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::queue::{BUCKETS, Histogram, JobStatus};

    #[test]
    fn names_labels_and_values() {
        let m = Metrics {
            jobs: JobStatus::ALL.map(|s| (s, s as u64)),
            completed: 5,
            cancelled: 6,
            failed: 4,
            submitted: 7,
            rejected: 8,
            queue_depth: 9,
            queue_capacity: 64,
            running: 2,
            workers: 2,
            results_bytes: 1234,
            results_budget: 268435456,
            results_evicted: 3,
            events_bytes: 4321,
            events_budget: 64 << 20,
            duration: Histogram {
                buckets: BUCKETS.iter().map(|b| (*b, 1)).collect(),
                sum_seconds: 1.5,
                count: 11,
            },
        };
        let t = render(&m);
        for line in [
            "# TYPE sandbox_jobs gauge",
            "sandbox_jobs{status=\"queued\"} 0",
            "sandbox_jobs{status=\"cancelled\"} 3",
            "sandbox_jobs_finished_total{status=\"completed\"} 5",
            "sandbox_jobs_finished_total{status=\"cancelled\"} 6",
            "sandbox_jobs_finished_total{status=\"failed\"} 4",
            "sandbox_jobs{status=\"failed\"} 4",
            "sandbox_jobs_failed_total 4",
            "sandbox_jobs_submitted_total 7",
            "sandbox_jobs_rejected_total 8",
            "sandbox_queue_depth 9",
            "sandbox_queue_capacity 64",
            "sandbox_jobs_running 2",
            "sandbox_workers 2",
            "sandbox_results_bytes 1234",
            "sandbox_results_budget_bytes 268435456",
            "sandbox_results_evicted_total 3",
            "sandbox_events_bytes 4321",
            "sandbox_events_budget_bytes 67108864",
            "# TYPE sandbox_job_duration_seconds histogram",
            "sandbox_job_duration_seconds_bucket{le=\"0.05\"} 1",
            "sandbox_job_duration_seconds_bucket{le=\"1\"} 1",
            "sandbox_job_duration_seconds_bucket{le=\"60\"} 1",
            "sandbox_job_duration_seconds_bucket{le=\"+Inf\"} 11",
            "sandbox_job_duration_seconds_sum 1.5",
            "sandbox_job_duration_seconds_count 11",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} in\n{t}");
        }
    }
}
