//! Containers made ahead of time, for servers.
//!
//! A background thread keeps a few [`Prepared`] containers of a profile
//! ready (namespaces, root filesystem and cgroup done, init waiting for
//! "go"), so a run pays only for starting the program. It also tears down
//! finished runs (init's exit, which unmounts everything, and the cgroup's
//! removal) after their results have been handed back. Every container
//! serves exactly one run: no state passes from one job to the next.
//!
//! Every container is made for host ids (see `isolation::hostids`): spare
//! ones come with ids of their own, which the job that takes one adopts;
//! once a job has ids, the thread keeps one container made for that job
//! ready for its next run (a judge's compile, then each test), until the
//! job lets its ids go.
//!
//! The thread is long-lived on purpose: a container's init dies with the
//! thread that created it (`PR_SET_PDEATHSIG` is per thread).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{JobIds, Prepared, Sandbox};
use crate::isolation::hostids;

#[derive(Default)]
struct Queues {
    /// Spares (`for_job` None) and containers made for a job.
    ready: VecDeque<Prepared>,
    /// Jobs that took a container and may want another.
    follow: Vec<Weak<JobIds>>,
    /// Finished (or unusable) containers waiting to be torn down.
    retired: Vec<Prepared>,
    shutdown: bool,
    /// Runs of this sandbox in progress.
    busy: usize,
}

/// How long background work waits for the runs in progress to end before
/// it goes ahead anyway (under sustained load there is never a pause).
const QUIET_WAIT: Duration = Duration::from_millis(10);

/// How often containers made for jobs are checked for jobs that ended.
const JOB_CHECK: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(crate) struct Shared {
    q: Mutex<Queues>,
    cv: Condvar,
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    size: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<PoolStats>,
}

/// How often runs found a prepared container (hits) or prepared their own
/// (misses). Shared by the pools of a [`SandboxCache`], so the totals
/// outlive a pool replaced by a profile's edit.
///
/// [`SandboxCache`]: super::cache::SandboxCache
#[derive(Debug, Default)]
pub struct PoolStats {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl PoolStats {
    /// (hits, misses) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

fn lock(m: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    pub(crate) fn new(size: usize, stats: Arc<PoolStats>) -> Pool {
        Pool {
            shared: Arc::new(Shared::default()),
            size: size.max(1),
            thread: Mutex::new(None),
            stats,
        }
    }

    /// A run found a prepared container (`true`) or prepared its own.
    pub(crate) fn note(&self, hit: bool) {
        let c = if hit {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Containers ready now (spares and those made for a job's next run).
    pub(crate) fn ready(&self) -> usize {
        lock(&self.shared.q).ready.len()
    }

    /// Starts the background thread; it holds the sandbox weakly.
    pub(crate) fn start(&self, sb: Weak<Sandbox>) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let size = self.size;
        let h = std::thread::Builder::new()
            .name("sandbox-pool".into())
            .spawn(move || pool_loop(sb, shared, size))?;
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        Ok(())
    }

    /// A ready container for `job` (one made for it), or a spare for a run
    /// that is a job of its own, if there is one. Either way a job gets
    /// another container made for its next run.
    pub(crate) fn take(&self, job: Option<&Arc<JobIds>>) -> Option<Prepared> {
        let mut q = lock(&self.shared.q);
        let i = q.ready.iter().position(|p| match job {
            Some(j) => Arc::ptr_eq(&p.lease, &j.lease),
            None => p.for_job.is_none(),
        });
        let p = i.and_then(|i| q.ready.remove(i));
        if let Some(j) = job
            && !q.follow.iter().any(|w| w.as_ptr() == Arc::as_ptr(j))
        {
            q.follow.push(Arc::downgrade(j));
        }
        drop(q);
        self.shared.cv.notify_one();
        p
    }

    /// A new job's ids, taken from a spare container, which then waits for
    /// that job's first run.
    pub(crate) fn adopt(&self) -> Option<Arc<JobIds>> {
        let mut q = lock(&self.shared.q);
        let p = q.ready.iter_mut().find(|p| p.for_job.is_none())?;
        let job = Arc::new(JobIds {
            lease: p.lease.clone(),
        });
        p.for_job = Some(Arc::downgrade(&job));
        drop(q);
        // A spare fewer: the thread makes another.
        self.shared.cv.notify_one();
        Some(job)
    }

    /// A run starts: background work waits (a little) for it to end.
    pub(crate) fn run_started(&self) {
        lock(&self.shared.q).busy += 1;
    }

    /// A run (started with [`Pool::run_started`]) has its result.
    pub(crate) fn run_ended(&self) {
        let mut q = lock(&self.shared.q);
        q.busy = q.busy.saturating_sub(1);
        let quiet = q.busy == 0;
        drop(q);
        if quiet {
            self.shared.cv.notify_all();
        }
    }

    /// Hands a used container to the background thread for teardown.
    pub(crate) fn retire(&self, p: Prepared) {
        let mut q = lock(&self.shared.q);
        if q.shutdown {
            drop(q);
            drop(p);
            return;
        }
        q.retired.push(p);
        drop(q);
        self.shared.cv.notify_one();
    }

    /// Stops the thread after it has torn down every container (ready or
    /// retired). Idempotent; safe to call from any thread but the pool's.
    pub(crate) fn shutdown(&self) {
        lock(&self.shared.q).shutdown = true;
        self.shared.cv.notify_all();
        let h = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = h
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }

    /// Tells the thread to stop without waiting (from `Sandbox`'s drop,
    /// which may run on the pool thread itself).
    pub(crate) fn stop(&self) {
        lock(&self.shared.q).shutdown = true;
        self.shared.cv.notify_all();
    }
}

fn pool_loop(sb: Weak<Sandbox>, shared: Arc<Shared>, size: usize) {
    // Background work: at nice 19 the refill and the teardowns never take
    // a CPU from a run in progress (on 2 cores a refill started by the
    // very job that emptied the pool delayed that job by ~2 ms). Inits
    // inherit the nice value; the run that takes one restores it.
    // SAFETY: get/setpriority on this thread (Linux: a tid is a
    // PRIO_PROCESS id); the value before is what runs get back.
    let own_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
    // SAFETY: as above.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    let mut backoff = Duration::ZERO;
    loop {
        let (retired, need, shutdown) = {
            let mut q = lock(&shared.q);
            loop {
                forget_ended_jobs(&mut q);
                if q.shutdown || !q.retired.is_empty() || next_need(&q, size).is_some() {
                    break;
                }
                // A job ending wakes nobody: while containers wait for jobs,
                // look again now and then, so an ended job's container (and
                // its host uid) does not outlive it for long.
                q = if q.ready.iter().any(|p| p.for_job.is_some()) || !q.follow.is_empty() {
                    shared
                        .cv
                        .wait_timeout(q, JOB_CHECK)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                } else {
                    shared.cv.wait(q).unwrap_or_else(|e| e.into_inner())
                };
            }
            // Nice 19 is not enough: with a non-preemptible kernel, a
            // refill's clone (new network namespace: ~0.5 ms in the kernel)
            // or a teardown's unmounts hold a CPU that a run's supervisor or
            // program wakes up wanting. Between runs (a client's next
            // request) is the time for it, unless runs never pause.
            let t0 = std::time::Instant::now();
            while !q.shutdown && q.busy > 0 && t0.elapsed() < QUIET_WAIT {
                let left = QUIET_WAIT.saturating_sub(t0.elapsed());
                q = shared
                    .cv
                    .wait_timeout(q, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let r = std::mem::take(&mut q.retired);
            let ready = if q.shutdown {
                std::mem::take(&mut q.ready)
            } else {
                VecDeque::new()
            };
            let need = if q.shutdown {
                None
            } else {
                next_need(&q, size)
            };
            ((r, ready), need, q.shutdown)
        };
        // Teardown outside the lock: each drop waits for an init to exit.
        drop(retired);
        if shutdown {
            // Runs in progress hold containers this thread made, whose inits
            // die with it (PR_SET_PDEATHSIG): outlive them.
            let mut q = lock(&shared.q);
            while q.busy > 0 {
                q = shared.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            let late = std::mem::take(&mut q.retired);
            drop(q);
            drop(late);
            return;
        }
        let Some(need) = need else { continue };
        if !backoff.is_zero() {
            std::thread::sleep(backoff);
        }
        let Some(s) = sb.upgrade() else { return };
        // A job's own container uses its ids; a spare takes free ones, or
        // none when the host's range is used up (jobs waiting for ids come
        // first).
        let made = match &need {
            Need::For(job) => {
                let (lease, weak) = (job.lease.clone(), Arc::downgrade(job));
                s.prepare(s.shape(), lease).map(|mut p| {
                    p.for_job = Some(weak);
                    Some(p)
                })
            }
            Need::Spare => match hostids::try_acquire(&s.profile.process.host_ids) {
                Ok(Some(lease)) => s.prepare(s.shape(), lease).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e.into()),
            },
        };
        drop(need);
        match made {
            Ok(Some(mut p)) => {
                p.background = Some(own_nice);
                backoff = Duration::ZERO;
                let mut q = lock(&shared.q);
                if q.shutdown {
                    drop(q);
                    drop(p);
                } else {
                    q.ready.push_back(p);
                }
            }
            Ok(None) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
            }
            Err(e) => {
                // Runs still work (they prepare their own container); retry
                // slowly rather than spin on a persistent failure.
                tracing::warn!("preparing a container ahead of time: {e}");
                backoff = (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
            }
        }
        drop(s);
    }
}

/// What the thread makes next.
enum Need {
    /// A container for this job's next run.
    For(Arc<JobIds>),
    /// A spare, with ids of its own.
    Spare,
}

/// Containers made for jobs that have let their ids go go to teardown,
/// and those jobs are no longer followed.
fn forget_ended_jobs(q: &mut Queues) {
    q.follow.retain(|w| w.strong_count() > 0);
    let mut i = 0;
    while i < q.ready.len() {
        if q.ready[i]
            .for_job
            .as_ref()
            .is_some_and(|w| w.strong_count() == 0)
        {
            if let Some(p) = q.ready.remove(i) {
                q.retired.push(p);
            }
        } else {
            i += 1;
        }
    }
}

/// Jobs first (one waits for its next run), then spares up to `size`.
fn next_need(q: &Queues, size: usize) -> Option<Need> {
    for w in &q.follow {
        if let Some(j) = w.upgrade()
            && !q.ready.iter().any(|p| Arc::ptr_eq(&p.lease, &j.lease))
        {
            return Some(Need::For(j));
        }
    }
    let spares = q.ready.iter().filter(|p| p.for_job.is_none()).count();
    (spares < size).then_some(Need::Spare)
}
