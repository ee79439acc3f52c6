//! One job's record in the queue: its request while it waits, the sandbox
//! it was accepted for, its cancel pipe, and its published snapshot; the
//! moves queued → running → completed/cancelled, each made once.
//!
//! A job holds its request (files, stdin, expected output) only while it
//! needs it: its executor takes it at the start, drops the files' contents
//! once they are written into the workspace and the rest when the job ends;
//! a job cancelled while queued drops it at once. What a finished job keeps
//! is its snapshot: what a front door shows.
//!
//! Every job has a cancellation ([`CancelOn::pair`]): cancelling a running
//! job sets it, which the runner (`RunSpec::cancel`) sees as "kill now"; it
//! stays set, so every later step is refused too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::{JobSnapshot, JobStatus, JobWatch};
use crate::job::events::{Event, EventLog};
use crate::job::{JobOutcome, JobSpec};
use crate::profile::Limits;
use crate::runner::{CancelOn, Canceller, Sandbox};

/// What changes as the job moves on (its snapshot is published apart).
struct Control {
    status: JobStatus,
    /// The request: held while the job is queued, then taken by its
    /// executor. `None` once the job has started or was cancelled.
    spec: Option<JobSpec>,
    /// The sandbox the job was accepted for (its limits were checked
    /// against that profile), taken with the request. `None` with an image
    /// to pull: the executor pulls it, then gets the sandbox.
    sandbox: Option<Arc<Sandbox>>,
    pull: Option<String>,
    started: Option<Instant>,
    /// What the runs watch, and its switch (until the job is finished).
    cancel: Option<(CancelOn, Canceller)>,
}

pub(super) struct JobRecord {
    pub(super) id: String,
    pub(super) profile: String,
    /// Per-step effective limits.
    pub(super) limits: Vec<Limits>,
    pub(super) span: tracing::Span,
    /// Its live log (see [`EventLog`]): freed with the record.
    pub(super) events: Arc<EventLog>,
    ctl: Mutex<Control>,
    view: watch::Sender<JobSnapshot>,
}

/// What an executor takes to run a job.
pub(super) struct Start {
    pub(super) spec: JobSpec,
    /// The sandbox, or the image to pull before it can be had.
    pub(super) sandbox: Result<Arc<Sandbox>, String>,
    /// What cancels the job's runs.
    pub(super) cancel: Option<CancelOn>,
}

/// A job's end, accounted for (metrics, results store) before it is
/// published with [`JobRecord::publish`]: whoever waits for it then finds
/// the accounts done.
pub(super) struct Final {
    pub(super) status: JobStatus,
    outcome: JobOutcome,
    error: Option<String>,
    finished: Instant,
    finished_at: SystemTime,
    /// Time from start to finish (zero if it never started).
    pub(super) duration: Duration,
    /// Bytes its results hold, as charged to the results budget.
    pub(super) bytes: u64,
}

/// What a cancel did.
pub(super) enum Cancel {
    /// It was queued: now it is cancelled (to account for and publish).
    WhileQueued(Final),
    /// It is running: it was told to stop.
    Requested,
    /// It had finished already.
    Finished,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a finished job holds besides its outcome, estimated: the record
/// itself, its id (map key, results store), span, watch channel with its
/// snapshot, and map entry. Small next to output bodies, but it keeps a
/// flood of empty jobs from looking free.
const JOB_OVERHEAD: u64 = (size_of::<JobRecord>() + size_of::<JobSnapshot>()) as u64 + 1024;

impl JobRecord {
    pub(super) fn new(
        id: String,
        spec: JobSpec,
        sandbox: Option<Arc<Sandbox>>,
        pull: Option<String>,
        limits: Vec<Limits>,
        cancel: (CancelOn, Canceller),
        events: EventLog,
    ) -> JobRecord {
        let profile = spec.profile.clone();
        let (view, _) = watch::channel(JobSnapshot {
            id: id.clone(),
            profile: profile.clone(),
            image: spec.image.clone(),
            status: JobStatus::Queued,
            outcome: Arc::default(),
            created: Instant::now(),
            created_at: SystemTime::now(),
            started: None,
            started_at: None,
            finished: None,
            finished_at: None,
            error: None,
        });
        JobRecord {
            span: tracing::info_span!("job", id = %id),
            events: Arc::new(events),
            id,
            profile,
            limits,
            ctl: Mutex::new(Control {
                status: JobStatus::Queued,
                spec: Some(spec),
                sandbox,
                pull,
                started: None,
                cancel: Some(cancel),
            }),
            view,
        }
    }

    pub(super) fn snapshot(&self) -> JobSnapshot {
        self.view.borrow().clone()
    }

    pub(super) fn watch(&self) -> JobWatch {
        JobWatch::new(self.view.subscribe())
    }

    /// The published status.
    pub(super) fn status(&self) -> JobStatus {
        self.view.borrow().status
    }

    /// Marks a queued job running and hands over its request; `None` if it
    /// was cancelled while queued.
    pub(super) fn start(&self) -> Option<Start> {
        let mut c = lock(&self.ctl);
        if c.status != JobStatus::Queued {
            return None;
        }
        // Present: a queued job always holds its request, and its sandbox
        // or the image to pull.
        let spec = c.spec.take()?;
        let sandbox = match (c.sandbox.take(), c.pull.take()) {
            (Some(sb), _) => Ok(sb),
            (None, Some(image)) => Err(image),
            (None, None) => return None,
        };
        let now = Instant::now();
        c.status = JobStatus::Running;
        c.started = Some(now);
        let cancel = c.cancel.as_ref().map(|(on, _)| on.clone());
        drop(c);
        self.view.send_modify(|v| {
            v.status = JobStatus::Running;
            v.started = Some(now);
            v.started_at = Some(SystemTime::now());
        });
        Some(Start {
            spec,
            sandbox,
            cancel,
        })
    }

    /// The results so far of a running job.
    pub(super) fn progress(&self, o: &JobOutcome) {
        let o = Arc::new(o.clone());
        self.view.send_modify(|v| v.outcome = o);
    }

    /// Cancels the job as far as it can be now.
    pub(super) fn cancel(&self) -> Cancel {
        let mut c = lock(&self.ctl);
        match c.status {
            JobStatus::Queued => {
                c.status = JobStatus::Cancelled;
                c.spec = None;
                c.sandbox = None;
                c.pull = None;
                c.cancel = None;
                drop(c);
                let outcome = JobOutcome::default();
                Cancel::WhileQueued(Final {
                    status: JobStatus::Cancelled,
                    bytes: held_bytes(&outcome, &None),
                    outcome,
                    error: None,
                    finished: Instant::now(),
                    finished_at: SystemTime::now(),
                    duration: Duration::ZERO,
                })
            }
            JobStatus::Running => {
                if let Some((_, switch)) = &c.cancel {
                    switch.cancel();
                }
                Cancel::Requested
            }
            _ => Cancel::Finished,
        }
    }

    /// Ends a job that ran: its cancel pipe is closed, its outcome ready to
    /// account for and publish.
    pub(super) fn finish(&self, mut outcome: JobOutcome, error: Option<String>) -> Final {
        let status = if error.is_some() {
            JobStatus::Failed
        } else if outcome.cancelled {
            JobStatus::Cancelled
        } else {
            JobStatus::Completed
        };
        outcome.shrink_to_fit();
        let mut c = lock(&self.ctl);
        c.status = status;
        c.cancel = None;
        let duration = c.started.map_or(Duration::ZERO, |s| s.elapsed());
        drop(c);
        Final {
            status,
            bytes: held_bytes(&outcome, &error),
            outcome,
            error,
            finished: Instant::now(),
            finished_at: SystemTime::now(),
            duration,
        }
    }

    /// Shows the job's end to everyone: snapshots, those waiting, then
    /// the event log's readers (`job.ended`, the log's last event).
    pub(super) fn publish(&self, f: Final) {
        let (status, error, duration) = (f.status, f.error.clone(), f.duration);
        let ran = self.view.borrow().started.is_some();
        self.view.send_modify(|v| {
            v.status = f.status;
            v.outcome = Arc::new(f.outcome);
            v.error = f.error;
            v.finished = Some(f.finished);
            v.finished_at = Some(f.finished_at);
        });
        self.events.push(Event::JobEnded {
            status: status.as_str().to_string(),
            error,
            duration_ms: ran.then_some(duration.as_secs_f64() * 1e3),
        });
    }
}

/// Bytes a finished job's results hold, as charged to the results budget.
fn held_bytes(outcome: &JobOutcome, error: &Option<String>) -> u64 {
    JOB_OVERHEAD + outcome.heap_bytes() + error.as_ref().map_or(0, String::capacity) as u64
}

/// A random 128-bit id, hex.
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 16];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: getrandom writes at most `b.len() - got` bytes into our
        // own buffer, from `got` on.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bit_hex_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn an_empty_job_is_not_free() {
        let n = held_bytes(&JobOutcome::default(), &Some("oops".into()));
        assert!(n > 1024 + size_of::<JobRecord>() as u64, "{n}");
    }
}
