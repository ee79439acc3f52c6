//! Containers made ahead of time, for servers.
//!
//! A background thread keeps a few [`Prepared`] containers of a profile
//! ready (namespaces, root filesystem and cgroup done, init waiting for
//! "go"), so a run pays only for starting the program. It also tears down
//! finished runs (init's exit, which unmounts everything, and the cgroup's
//! removal) after their results have been handed back. Every container
//! serves exactly one run: no state passes from one job to the next.
//!
//! The thread is long-lived on purpose: a container's init dies with the
//! thread that created it (`PR_SET_PDEATHSIG` is per thread).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Prepared, Sandbox};

#[derive(Default)]
struct Queues {
    ready: VecDeque<Prepared>,
    /// Finished (or unusable) containers waiting to be torn down.
    retired: Vec<Prepared>,
    shutdown: bool,
    /// Runs of this sandbox in progress.
    busy: usize,
}

/// How long background work waits for the runs in progress to end before
/// it goes ahead anyway (under sustained load there is never a pause).
const QUIET_WAIT: Duration = Duration::from_millis(10);

#[derive(Default)]
pub(crate) struct Shared {
    q: Mutex<Queues>,
    cv: Condvar,
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    size: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock(m: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    pub(crate) fn new(size: usize) -> Pool {
        Pool {
            shared: Arc::new(Shared::default()),
            size: size.max(1),
            thread: Mutex::new(None),
        }
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

    /// A ready container, if there is one.
    pub(crate) fn take(&self) -> Option<Prepared> {
        let p = lock(&self.shared.q).ready.pop_front();
        self.shared.cv.notify_one();
        p
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
            while !q.shutdown && q.retired.is_empty() && q.ready.len() >= size {
                q = shared.cv.wait(q).unwrap_or_else(|e| e.into_inner());
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
            ((r, ready), !q.shutdown && q.ready.len() < size, q.shutdown)
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
        if !need {
            continue;
        }
        if !backoff.is_zero() {
            std::thread::sleep(backoff);
        }
        let Some(s) = sb.upgrade() else { return };
        match s.prepare(s.shape()) {
            Ok(mut p) => {
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
