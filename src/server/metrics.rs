//! `GET /metrics`: the job backend's [`Metrics`], the server's answers by
//! status code, the process's own figures (from /proc/self) and the build,
//! in the Prometheus text format (names, help texts and types are the
//! server's public contract).

use std::fmt::Write;

use crate::job::queue::{Histogram, Metrics};

/// `# HELP` and `# TYPE` of a family.
fn family(o: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A histogram family: cumulative buckets, `+Inf`, sum and count.
fn histogram(o: &mut String, name: &str, help: &str, h: &Histogram) {
    family(o, name, help, "histogram");
    for (b, n) in &h.buckets {
        let _ = writeln!(o, "{name}_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum {}", h.sum_seconds);
    let _ = writeln!(o, "{name}_count {}", h.count);
}

/// Answers since start by status code (the access layer's counts).
pub fn render_http(o: &mut String, codes: &[(u16, u64)]) {
    family(
        o,
        "sandbox_http_responses_total",
        "HTTP answers given, by status code.",
        "counter",
    );
    for (c, n) in codes {
        let _ = writeln!(o, "sandbox_http_responses_total{{code=\"{c}\"}} {n}");
    }
}

/// `sandbox_build_info{version="…"} 1`.
pub fn render_build_info(o: &mut String) {
    family(
        o,
        "sandbox_build_info",
        "The server's version, as a label; always 1.",
        "gauge",
    );
    let _ = writeln!(
        o,
        "sandbox_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// The process's figures, Prometheus' standard `process_*` families.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
}

/// [`Process`] from the text of /proc/self/stat and the boot time (seconds
/// since the epoch, /proc/stat's `btime`), with the clock tick rate and page
/// size; `None` if the text is not what Linux writes.
pub fn parse_stat(stat: &str, btime: u64, ticks: f64, page: u64) -> Option<Process> {
    // The command name (field 2) is in parentheses and may hold anything,
    // spaces and parentheses included: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5) is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Process {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        start_time_seconds: btime as f64 + num(22)? as f64 / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)?.saturating_mul(page),
    })
}

/// The process families, read now. What cannot be read is left out (a
/// family with no sample), never made up.
pub fn render_process(o: &mut String) {
    // SAFETY: sysconf has no memory effects; it returns -1 on error.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    let p = match (btime, ticks > 0, page > 0) {
        (Some(b), true, true) => std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s, b, ticks as f64, page as u64)),
        _ => None,
    };
    let fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count());
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft);
    let mut one = |name: &str, help: &str, kind: &str, v: Option<String>| {
        family(o, name, help, kind);
        if let Some(v) = v {
            let _ = writeln!(o, "{name} {v}");
        }
    };
    one(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        "counter",
        p.map(|p| p.cpu_seconds.to_string()),
    );
    one(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        "gauge",
        p.map(|p| p.resident_bytes.to_string()),
    );
    one(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        "gauge",
        p.map(|p| p.virtual_bytes.to_string()),
    );
    one(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "gauge",
        p.map(|p| p.start_time_seconds.to_string()),
    );
    one(
        "process_open_fds",
        "Number of open file descriptors.",
        "gauge",
        fds.map(|n| n.to_string()),
    );
    one(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        "gauge",
        max_fds.map(|n| n.to_string()),
    );
}

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
    let g = family;
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
    histogram(
        &mut o,
        "sandbox_job_duration_seconds",
        "Time from job start to finish.",
        &m.duration,
    );
    histogram(
        &mut o,
        "sandbox_queue_wait_seconds",
        "Time from a job's acceptance to an executor starting it.",
        &m.queue_wait,
    );
    g(
        &mut o,
        "sandbox_verdicts_total",
        "Runs (steps without tests, and tests) by verdict.",
        "counter",
    );
    for (v, n) in &m.verdicts {
        let _ = writeln!(o, "sandbox_verdicts_total{{verdict=\"{v}\"}} {n}");
    }
    g(
        &mut o,
        "sandbox_errors_total",
        "Infrastructure errors: runs with verdict sandbox_error, plus jobs that failed (status failed).",
        "counter",
    );
    let _ = writeln!(o, "sandbox_errors_total {}", m.errors);
    g(
        &mut o,
        "sandbox_pool_ready",
        "Containers prepared ahead and ready for a run.",
        "gauge",
    );
    let _ = writeln!(o, "sandbox_pool_ready {}", m.pool.ready);
    g(
        &mut o,
        "sandbox_pool_hits_total",
        "Runs that took a container prepared ahead.",
        "counter",
    );
    let _ = writeln!(o, "sandbox_pool_hits_total {}", m.pool.hits);
    g(
        &mut o,
        "sandbox_pool_misses_total",
        "Runs that had to prepare their own container (none ready, or none that fit).",
        "counter",
    );
    let _ = writeln!(o, "sandbox_pool_misses_total {}", m.pool.misses);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::queue::{BUCKETS, Histogram, JobStatus, PoolMetrics, WAIT_BUCKETS};

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
            queue_wait: Histogram {
                buckets: WAIT_BUCKETS.iter().map(|b| (*b, 2)).collect(),
                sum_seconds: 0.25,
                count: 3,
            },
            verdicts: vec![("ok", 12), ("time_limit", 1)],
            errors: 2,
            pool: PoolMetrics {
                ready: 2,
                hits: 30,
                misses: 4,
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
            "# TYPE sandbox_queue_wait_seconds histogram",
            "sandbox_queue_wait_seconds_bucket{le=\"0.001\"} 2",
            "sandbox_queue_wait_seconds_bucket{le=\"+Inf\"} 3",
            "sandbox_queue_wait_seconds_sum 0.25",
            "sandbox_queue_wait_seconds_count 3",
            "# TYPE sandbox_verdicts_total counter",
            "sandbox_verdicts_total{verdict=\"ok\"} 12",
            "sandbox_verdicts_total{verdict=\"time_limit\"} 1",
            "sandbox_errors_total 2",
            "# TYPE sandbox_pool_ready gauge",
            "sandbox_pool_ready 2",
            "sandbox_pool_hits_total 30",
            "sandbox_pool_misses_total 4",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} in\n{t}");
        }
    }

    /// Every sample's family has `# HELP` and `# TYPE` before it, once,
    /// and every line is a comment or `name{labels} value`.
    fn check_exposition(t: &str) {
        let mut typed = std::collections::HashMap::new();
        let mut helped = std::collections::HashSet::new();
        for l in t.lines() {
            if let Some(r) = l.strip_prefix("# HELP ") {
                let name = r.split(' ').next().expect("name");
                assert!(helped.insert(name.to_string()), "HELP twice: {l}");
            } else if let Some(r) = l.strip_prefix("# TYPE ") {
                let (name, kind) = r.split_once(' ').expect("kind");
                assert!(helped.contains(name), "TYPE before HELP: {l}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{l}");
                assert!(typed.insert(name.to_string(), kind).is_none(), "{l}");
            } else {
                let (series, value) = l.rsplit_once(' ').expect("value");
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {l}"));
                assert!(v.is_finite(), "{l}");
                let name = series.split('{').next().expect("name");
                assert!(
                    name.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':'),
                    "{l}"
                );
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        let f = name.strip_suffix(s)?;
                        (typed.get(f) == Some(&"histogram")).then_some(f)
                    })
                    .unwrap_or(name);
                assert!(typed.contains_key(family), "no TYPE for {l}");
            }
        }
    }

    #[test]
    fn the_whole_page_is_valid_exposition_text() {
        let c = crate::job::queue::Metrics {
            jobs: JobStatus::ALL.map(|s| (s, 0)),
            completed: 0,
            cancelled: 0,
            failed: 0,
            submitted: 0,
            rejected: 0,
            queue_depth: 0,
            queue_capacity: 1,
            running: 0,
            workers: 1,
            results_bytes: 0,
            results_budget: 0,
            results_evicted: 0,
            events_bytes: 0,
            events_budget: 0,
            duration: Histogram {
                buckets: BUCKETS.iter().map(|b| (*b, 0)).collect(),
                sum_seconds: 0.0,
                count: 0,
            },
            queue_wait: Histogram {
                buckets: WAIT_BUCKETS.iter().map(|b| (*b, 0)).collect(),
                sum_seconds: 0.0,
                count: 0,
            },
            verdicts: vec![("ok", 0)],
            errors: 0,
            pool: PoolMetrics::default(),
        };
        let mut t = render(&c);
        render_streams(&mut t, 1, 128);
        render_http(&mut t, &[(200, 3), (429, 1)]);
        render_process(&mut t);
        render_build_info(&mut t);
        check_exposition(&t);
        for line in [
            "sandbox_http_responses_total{code=\"200\"} 3",
            "sandbox_http_responses_total{code=\"429\"} 1",
            &format!(
                "sandbox_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(t.lines().any(|l| l == line), "{line} in\n{t}");
        }
        let val = |name: &str| -> f64 {
            t.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} in\n{t}"))
        };
        assert!(val("process_resident_memory_bytes") > 0.0);
        assert!(val("process_virtual_memory_bytes") >= val("process_resident_memory_bytes"));
        assert!(val("process_open_fds") >= 3.0);
        assert!(val("process_max_fds") >= val("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let start = val("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 86400.0 * 365.0,
            "{start}"
        );
        assert!(val("process_cpu_seconds_total") >= 0.0);
    }

    #[test]
    fn stat_fields_after_an_odd_command_name() {
        // Field 2 with spaces and a ')' of its own; utime 250, stime 150,
        // starttime 1000 ticks, vsize 8192000, rss 300 pages.
        let stat = "4242 (we)ird name) S 1 2 3 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 \
                    5 0 1000 8192000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let p = parse_stat(stat, 1_700_000_000, 100.0, 4096).expect("parsed");
        assert_eq!(
            p,
            Process {
                cpu_seconds: 4.0,
                resident_bytes: 300 * 4096,
                virtual_bytes: 8192000,
                start_time_seconds: 1_700_000_010.0,
            }
        );
        assert_eq!(parse_stat("garbage", 0, 100.0, 4096), None);
        assert_eq!(parse_stat("1 (x) S 1", 0, 100.0, 4096), None);
    }
}
