//! The runner: one sandboxed program, from a resolved profile to a verdict.
//!
//! [`Sandbox`] holds what can be prepared once per profile (the compiled
//! seccomp filters, the cgroup manager, the capability masks).
//! [`Sandbox::prepare`] makes a container from the profile alone: it clones
//! the run's init into fresh namespaces with a [`child::ChildPlan`]; init
//! builds the root and waits. [`Sandbox::run_prepared`] hands it the run
//! ([`go`]) and supervises it from a single-threaded poll loop: output
//! collection with caps, CPU time from the cgroup, wall time, cancellation.
//! [`Sandbox::run`] does both, or takes a container from the pool kept by
//! [`Sandbox::pooled`]. Safe to call from many threads at once: the code
//! between clone and exec never allocates or locks.

pub mod cache;
pub mod child;
pub mod go;
mod pool;
pub mod result;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::isolation::hostids::{self, HostIdError, Lease};
use crate::isolation::mounts::{MountPlan, MountPlanError};
use crate::isolation::{namespaces, sys};
use crate::limits::cgroup::RunShape;
use crate::limits::cgroup::{CgroupLimits, CgroupManager, RunCgroup};
use crate::profile::{BindMount, Limits, Profile};
use crate::security::caps::CapPlan;
use child::{BIND_STEP_BASE, ChildPlan, STEP_BASE, Step};
pub use result::{JsonResult, RunResult, Status, Usage};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Mount(#[from] MountPlanError),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("handing the run to its prepared container: {0}")]
    Stale(std::io::Error),
    #[error("{0}")]
    HostIds(#[from] HostIdError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

#[derive(Debug, Clone, Default)]
pub enum StdinSpec {
    /// The caller's own stdin.
    Inherit,
    #[default]
    Null,
    File(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputSpec {
    /// Collected into the result (up to the output limit).
    #[default]
    Capture,
    /// Copied to the caller's same fd as it arrives (output limit still applies).
    PassThrough,
}

/// One run: the program and what the caller adds to the profile.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub binds: Vec<BindMount>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Effective limits (the profile's, with the caller's overrides applied).
    pub limits: Limits,
    pub stdin: StdinSpec,
    pub stdout: OutputSpec,
    pub stderr: OutputSpec,
    /// When this fd becomes readable (or hits EOF) the run is cancelled.
    pub cancel_fd: Option<RawFd>,
    /// The caller's stdin, stdout and stderr, which `Inherit` and
    /// `PassThrough` mean: `None` is this process's own 0, 1 and 2; the
    /// helper passes the fds its client sent (valid for the whole run).
    pub caller_fds: Option<[RawFd; 3]>,
    /// The environment `env_passthrough` copies from (`None`: this
    /// process's own).
    pub caller_env: Option<Vec<(String, String)>>,
    /// Binds whose sources the caller already opened ([`open_bind`]),
    /// mounted after `binds`.
    pub opened_binds: Vec<OpenedBind>,
    /// The job this run belongs to ([`Sandbox::job_ids`]): its runs share
    /// its host ids. `None`: the run is a job of its own.
    pub job: Option<Arc<JobIds>>,
}

/// The host ids of one job, which all its runs share (its workspace
/// belongs to them). Held for the job's life; containers made for it hold
/// the lease too, so the ids stay reserved until they are torn down.
#[derive(Debug)]
pub struct JobIds {
    lease: Arc<Lease>,
}

impl JobIds {
    /// Ids outside any range (for tests that run nothing).
    #[cfg(test)]
    pub(crate) fn fixed(uid: u32, gid: u32) -> Arc<JobIds> {
        Arc::new(JobIds {
            lease: hostids::acquire(&crate::profile::HostIds::Fixed { uid, gid })
                .expect("fixed ids need no lock"),
        })
    }

    pub fn uid(&self) -> u32 {
        self.lease.uid()
    }

    pub fn gid(&self) -> u32 {
        self.lease.gid()
    }
}

/// A bind source opened by the caller: a detached copy of the tree with
/// the bind's flags already set, for init to attach at `dest`.
#[derive(Debug, Clone)]
pub struct OpenedBind {
    pub fd: Arc<OwnedFd>,
    pub dest: CString,
    pub is_dir: bool,
    /// How errors name it ("bind SRC on DEST").
    pub name: String,
}

impl OpenedBind {
    /// Opens `b`'s source here (in this process's mount namespace and
    /// working directory); `None` for an optional source that is missing.
    pub fn open(b: &BindMount) -> Result<Option<OpenedBind>, RunError> {
        Ok(open_bind(b)?.map(|(fd, dest, is_dir)| OpenedBind {
            fd: Arc::new(fd),
            dest,
            is_dir,
            name: bind_name(b),
        }))
    }
}

fn bind_name(b: &BindMount) -> String {
    format!("bind {} on {}", b.source.display(), b.dest.display())
}

/// A profile prepared for many runs.
pub struct Sandbox {
    pub profile: Profile,
    filters: Vec<seccompiler::BpfProgram>,
    cgroups: Option<CgroupManager>,
    caps: CapPlan,
    /// Containers made ahead of time ([`Sandbox::pooled`]).
    pool: Option<pool::Pool>,
    swept: std::sync::Once,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(p) = &self.pool {
            p.stop();
        }
    }
}

const MAX_ARGS: usize = 4096;

/// A container made before its run is known: init has its namespaces, its
/// root filesystem and its cgroup, and waits for "go" ([`go`]). Used once.
/// Dropping it kills and reaps init and removes the cgroup.
pub struct Prepared {
    pid: i32,
    pidfd: OwnedFd,
    ctl: OwnedFd,
    /// Held open for the container's life: init treats its hang-up as the
    /// supervisor's death.
    _sync_w: OwnedFd,
    err_r: OwnedFd,
    status_r: OwnedFd,
    area: go::GoArea,
    cgroup: Option<RunCgroup>,
    shape: RunShape,
    /// The host ids the container is (its user namespace's owner and map).
    lease: Arc<Lease>,
    /// The job it was made for ahead of time (pool only); `None`: any job
    /// that takes it adopts its ids.
    for_job: Option<std::sync::Weak<JobIds>>,
    mount_steps: Vec<String>,
    use_init: bool,
    reaped: bool,
    /// Made by the pool at nice 19: back to 0 when its run starts.
    /// Made by the pool thread at nice 19: the nice value to give init back
    /// when its run starts (the process's own, from before the pool lowered
    /// its thread).
    background: Option<i32>,
    /// Supervisor-side moments (CLOCK_MONOTONIC ns), for the timeline.
    marks: Marks,
}

/// When the supervisor did what, for the "run timeline" debug line.
#[derive(Debug, Clone, Copy, Default)]
struct Marks {
    prepare: u64,
    cloned: u64,
    maps: u64,
    cgroup: u64,
    go_sent: u64,
    ended: u64,
    accounted: u64,
}

/// The calling thread's CPU affinity, when it allows more than one CPU.
fn own_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: CPU_COUNT reads the set.
    (r == 0 && unsafe { libc::CPU_COUNT(&set) } > 1).then_some(set)
}

/// A new child is queued on its parent's CPU when the machine looks idle,
/// and would only run once the supervisor blocks: init's root building
/// and the supervisor's cgroup work would take turns on one core. Moving
/// the child off this CPU makes them overlap; init restores `all` (the
/// mask it inherited) once its container is built.
fn start_elsewhere(pid: i32, all: &libc::cpu_set_t) {
    // SAFETY: sched_getcpu has no arguments.
    let here = unsafe { libc::sched_getcpu() };
    if here < 0 {
        return;
    }
    let mut others = *all;
    // SAFETY: CPU_CLR on a valid set with an in-range index (checked by libc).
    unsafe { libc::CPU_CLR(here as usize, &mut others) };
    // SAFETY: CPU_COUNT reads the set; sched_setaffinity on our own child.
    unsafe {
        if libc::CPU_COUNT(&others) > 0 {
            libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &others);
        }
    }
}

/// A run's moments in ms since `m.prepare`, the supervisor's and the
/// container's side by side (moments before it or not reached are left out).
fn timeline_text(m: Marks, st: [u64; go::STAMPS], torn_down: u64) -> String {
    use go::Stamp::*;
    let items: [(&str, u64); 15] = [
        ("cloned", m.cloned),
        ("init_started", st[InitStarted as usize]),
        ("maps_written", m.maps),
        ("maps_received", st[MapsReceived as usize]),
        ("cgroup_ready", m.cgroup),
        ("root_built", st[RootBuilt as usize]),
        ("ready", st[Ready as usize]),
        ("go_sent", m.go_sent),
        ("go_received", st[GoReceived as usize]),
        ("payload_started", st[PayloadStarted as usize]),
        ("exec", st[Exec as usize]),
        ("payload_ended", st[PayloadEnded as usize]),
        ("ended", m.ended),
        ("accounted", m.accounted),
        ("torn_down", torn_down),
    ];
    let mut out = String::new();
    for (k, v) in items {
        if v >= m.prepare && v > 0 {
            out.push_str(&format!("{k}={:.3} ", (v - m.prepare) as f64 / 1e6));
        }
    }
    out.pop();
    out
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child (a run's init,
            // done or not; its exit takes the whole pid namespace along).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL);
            }
            self.reaped = true;
        }
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.remove()
        {
            // Something of the run may still live in it: its uid is not
            // handed to another job while this process lives (a later
            // holder would also clear it first, see hostids).
            tracing::warn!(
                "removing the run's cgroup: {e}; keeping host uid {} reserved",
                self.lease.uid()
            );
            std::mem::forget(self.lease.clone());
        }
    }
}

impl Sandbox {
    pub fn new(profile: Profile) -> Result<Sandbox, RunError> {
        let filters = if profile.seccomp.enabled {
            crate::security::seccomp::compile(&profile.seccomp)
                .map_err(|e| RunError::Seccomp(e.to_string()))?
        } else {
            Vec::new()
        };
        let cgroups = match CgroupManager::detect() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!("cgroups unavailable, running without: {e}");
                None
            }
        };
        let caps = CapPlan::new(&profile.capabilities);
        Ok(Sandbox {
            profile,
            filters,
            cgroups,
            caps,
            pool: None,
            swept: std::sync::Once::new(),
        })
    }

    /// Runs whose supervisor was SIGKILLed leave empty cgroups behind: they
    /// are removed once per sandbox, while its first program starts (the
    /// supervisor would otherwise wait idle).
    fn sweep_once(&self) {
        if let Some(m) = &self.cgroups {
            self.swept.call_once(|| {
                let n = m.sweep_stale();
                if n > 0 {
                    tracing::info!("removed {n} stale run cgroup(s)");
                }
            });
        }
    }

    /// Keeps `size` containers of this profile prepared ahead of time by a
    /// background thread, which also tears finished runs down after their
    /// results are returned: a run then costs little more than starting the
    /// program. For servers; call [`Sandbox::shutdown_pool`] before exiting
    /// so nothing is left behind.
    pub fn pooled(mut self, size: usize) -> Result<Arc<Sandbox>, RunError> {
        self.pool = Some(pool::Pool::new(size));
        let sb = Arc::new(self);
        if let Some(p) = &sb.pool {
            p.start(Arc::downgrade(&sb))
                .map_err(io_err("starting the container pool thread"))?;
        }
        Ok(sb)
    }

    /// Stops the pool (if any) after tearing down every container it holds.
    pub fn shutdown_pool(&self) {
        if let Some(p) = &self.pool {
            p.shutdown();
        }
    }

    pub fn cgroups(&self) -> Option<&CgroupManager> {
        self.cgroups.as_ref()
    }

    /// Run one program. Never panics; failures of the sandbox itself come
    /// back as `sandbox_error` with a message naming what failed.
    pub fn run(&self, spec: &RunSpec) -> RunResult {
        self.try_run(spec)
            .unwrap_or_else(|e| RunResult::sandbox_error(e.to_string()))
    }

    fn try_run(&self, spec: &RunSpec) -> Result<RunResult, RunError> {
        let strings = self.run_strings(spec)?;
        let Some(pool) = &self.pool else {
            // Torn down before returning: a CLI exits right after.
            let t0 = Instant::now();
            let mut p = self.prepare_for(spec)?;
            let prepared = t0.elapsed();
            let r = self.run_prepared_with(&mut p, spec, strings);
            let t1 = Instant::now();
            let timeline = tracing::enabled!(tracing::Level::DEBUG).then(|| p.marks);
            let area = timeline.map(|_| p.area.stamps());
            drop(p);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            tracing::debug!(
                prepare_ms = ms(prepared),
                teardown_ms = ms(t1.elapsed()),
                "run container"
            );
            if let (Some(marks), Some(stamps)) = (timeline, area) {
                tracing::debug!(
                    "run timeline (ms since prepare) {}",
                    timeline_text(marks, stamps, go::now_ns())
                );
            }
            return r;
        };
        pool.run_started();
        let r = self.run_pooled(pool, spec, strings);
        pool.run_ended();
        r
    }

    fn run_pooled(
        &self,
        pool: &pool::Pool,
        spec: &RunSpec,
        strings: RunStrings,
    ) -> Result<RunResult, RunError> {
        let ready = match pool.take(spec.job.as_ref()) {
            Some(p) if self.fits(&p, spec) => Some(p),
            Some(p) => {
                pool.retire(p);
                None
            }
            None => None,
        };
        let mut p = match ready {
            Some(p) => p,
            None => self.prepare_for(spec)?,
        };
        let mut r = self.run_prepared_with(&mut p, spec, strings.clone());
        if matches!(r, Err(RunError::Stale(_))) {
            // The waiting container died (e.g. killed from outside): once
            // more with a fresh one.
            pool.retire(p);
            p = self.prepare_for(spec)?;
            r = self.run_prepared_with(&mut p, spec, strings);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let mut m = p.marks;
            m.prepare = m.go_sent;
            tracing::debug!(
                "run timeline (ms since go) {}",
                timeline_text(m, p.area.stamps(), 0)
            );
        }
        pool.retire(p);
        r
    }

    /// The cgroup hierarchies a run of this profile needs by default.
    pub fn shape(&self) -> RunShape {
        RunShape {
            cpu: self.profile.limits.cpu_quota.is_some(),
            freezer: !self.profile.namespaces.pid,
        }
    }

    fn shape_for(&self, spec: &RunSpec) -> RunShape {
        let mut s = self.shape();
        s.cpu |= spec.limits.cpu_quota.is_some();
        s
    }

    /// Whether a container prepared with `shape` can serve `spec`.
    pub fn fits(&self, p: &Prepared, spec: &RunSpec) -> bool {
        (spec.limits.cpu_quota.is_none() || p.shape.cpu)
            && spec
                .job
                .as_ref()
                .is_none_or(|j| Arc::ptr_eq(&j.lease, &p.lease))
    }

    fn prepare_for(&self, spec: &RunSpec) -> Result<Prepared, RunError> {
        let lease = match &spec.job {
            Some(j) => j.lease.clone(),
            None => hostids::acquire(&self.profile.process.host_ids)?,
        };
        self.prepare(self.shape_for(spec), lease)
    }

    /// Host ids for a new job, whose runs ([`RunSpec::job`]) will share
    /// them: those of a container the pool prepared ahead (which then
    /// waits for this job's first run), or newly taken ones.
    pub fn job_ids(&self) -> Result<Arc<JobIds>, RunError> {
        if let Some(pool) = &self.pool
            && let Some(j) = pool.adopt()
        {
            return Ok(j);
        }
        Ok(Arc::new(JobIds {
            lease: hostids::acquire(&self.profile.process.host_ids)?,
        }))
    }

    fn env(&self, spec: &RunSpec) -> Vec<(String, String)> {
        let p = &self.profile.process;
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: &str| {
            if let Some(e) = env.iter_mut().find(|(ek, _)| ek == k) {
                e.1 = v.to_string();
            } else {
                env.push((k.to_string(), v.to_string()));
            }
        };
        for k in &p.env_passthrough {
            match &spec.caller_env {
                Some(ce) => {
                    if let Some((_, v)) = ce.iter().find(|(ck, _)| ck == k) {
                        set(k, v);
                    }
                }
                None => {
                    if let Ok(v) = std::env::var(k) {
                        set(k, &v);
                    }
                }
            }
        }
        for (k, v) in &p.env {
            set(k, v);
        }
        for (k, v) in &spec.env {
            set(k, v);
        }
        env
    }

    /// Makes a container: cgroup (v2: before clone, so init is born in it),
    /// clone3 into fresh namespaces, id maps, then (v1) the cgroup while
    /// init builds its root in parallel. Returns once init is on its way;
    /// it waits for "go" by itself.
    pub fn prepare(&self, shape: RunShape, lease: Arc<Lease>) -> Result<Prepared, RunError> {
        let mut marks = Marks {
            prepare: go::now_ns(),
            ..Marks::default()
        };
        let prof = &self.profile;
        let ns = &prof.namespaces;
        let mounts = if ns.mount {
            Some(MountPlan::build(&prof.filesystem, &[], ns.user)?)
        } else {
            None
        };
        let (uid, gid) = if ns.user {
            (prof.process.uid, prof.process.gid)
        } else {
            (lease.uid(), lease.gid())
        };
        let c = |s: &[u8], what: &str| {
            CString::new(s).map_err(|_| RunError::Invalid(format!("{what} contains a NUL byte")))
        };
        let (sync_r, sync_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let (ctl, ctl_child) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| RunError::Io {
            what: "socketpair".into(),
            source: e.into(),
        })?;
        let area = go::GoArea::new().map_err(io_err("mapping the run's shared area"))?;
        let mut keep = vec![
            sync_r.as_raw_fd(),
            err_w.as_raw_fd(),
            status_w.as_raw_fd(),
            ctl_child.as_raw_fd(),
        ];
        keep.sort_unstable();
        let plan = ChildPlan {
            mounts,
            hostname: if ns.uts {
                Some(c(prof.process.hostname.as_bytes(), "hostname")?)
            } else {
                None
            },
            uid,
            gid,
            caps: self.caps,
            no_new_privs: prof.process.no_new_privs,
            filters: self.filters.clone(),
            new_cgroup_ns: ns.cgroup,
            sync_read: sync_r.as_raw_fd(),
            err_write: err_w.as_raw_fd(),
            status_write: status_w.as_raw_fd(),
            ctl: ctl_child.as_raw_fd(),
            use_init: ns.pid,
            in_userns: ns.user,
            keep_fds: keep,
            affinity: own_affinity(),
            hide: child::own_args(),
        };
        let create_cgroup = || -> Result<Option<RunCgroup>, RunError> {
            match &self.cgroups {
                Some(m) => m
                    .create_run_shaped("", shape)
                    .map(Some)
                    .map_err(|e| RunError::Cgroup(e.to_string())),
                None => Ok(None),
            }
        };
        let v2 = self
            .cgroups
            .as_ref()
            .is_some_and(|m| m.version() == crate::limits::cgroup::CgroupVersion::V2);
        // v2: the child is born in its cgroup (CLONE_INTO_CGROUP); v1: it
        // joins at "go" and the cgroup is made while it builds its root.
        let mut cgroup = if v2 { create_cgroup()? } else { None };
        let clone_cg = cgroup.as_ref().and_then(|c| c.clone_into_fd());
        let flags = namespaces::clone_flags(ns);
        let mut pidfd: RawFd = -1;
        let clone = |pidfd: &mut RawFd| {
            let pid = sys::clone3(flags, Some(pidfd), clone_cg);
            if pid == 0 {
                child::init_main(&plan, &area);
            }
            pid
        };
        // The user namespace belongs to the job's uid, not to root: what
        // the run's users count per user is charged to it (see as_owner).
        // Not a fixed id: others on the host may be that uid, and an
        // owner's processes hold every capability over the namespace.
        let pid = if ns.user && lease.is_exclusive() {
            namespaces::as_owner(lease.uid(), || clone(&mut pidfd)).map_err(|e| RunError::Io {
                what: format!("becoming uid {} to create the user namespace", lease.uid()),
                source: e,
            })
        } else {
            Ok(clone(&mut pidfd))
        };
        let pid = match pid {
            Ok(pid) => pid,
            Err(e) => {
                if let Some(cg) = cgroup.take() {
                    let _ = cg.remove();
                }
                return Err(e);
            }
        };
        if pid < 0 {
            let e = std::io::Error::from_raw_os_error((-pid) as i32);
            if let Some(cg) = cgroup.take() {
                let _ = cg.remove();
            }
            return Err(RunError::Io {
                what: format!("clone3 (namespace flags {flags:#x})"),
                source: e,
            });
        }
        marks.cloned = go::now_ns();
        if let Some(all) = &plan.affinity {
            start_elsewhere(pid as i32, all);
        }
        drop((sync_r, err_w, status_w, ctl_child));
        // Later clones (other containers) must not inherit this run's area.
        area.dont_fork();
        let mut p = Prepared {
            pid: pid as i32,
            // SAFETY: clone3 returned a fresh pidfd that we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
            ctl,
            _sync_w: sync_w,
            err_r,
            status_r,
            area,
            cgroup,
            shape,
            lease,
            for_job: None,
            mount_steps: plan.mounts.map(|m| m.what).unwrap_or_default(),
            use_init: ns.pid,
            reaped: false,
            background: None,
            marks,
        };
        if ns.user {
            namespaces::write_id_maps(p.pid, &prof.process, &p.lease).map_err(|e| {
                RunError::Io {
                    what: "writing uid/gid maps".into(),
                    source: e,
                }
            })?;
        }
        sys::write_all(p._sync_w.as_raw_fd(), b"g");
        p.marks.maps = go::now_ns();
        if !v2 {
            p.cgroup = create_cgroup()?;
        }
        p.marks.cgroup = go::now_ns();
        Ok(p)
    }

    /// Starts `spec` in a prepared container and supervises it to the end.
    /// When this returns, every process of the run is dead and its figures
    /// are final; init may still be tearing the namespaces down, which
    /// dropping `p` waits for (callers in a hurry drop it elsewhere).
    pub fn run_prepared(&self, p: &mut Prepared, spec: &RunSpec) -> Result<RunResult, RunError> {
        let strings = self.run_strings(spec)?;
        self.run_prepared_with(p, spec, strings)
    }

    /// Checks a run and turns it into the C strings the container needs
    /// (before a prepared container is taken: a bad request must not
    /// waste one).
    fn run_strings(&self, spec: &RunSpec) -> Result<RunStrings, RunError> {
        if spec.argv.is_empty() {
            return Err(RunError::Invalid("no command given".into()));
        }
        let env = self.env(spec);
        if spec.argv.len() > MAX_ARGS || env.len() > MAX_ARGS {
            return Err(RunError::Invalid(format!(
                "at most {MAX_ARGS} arguments and {MAX_ARGS} environment variables"
            )));
        }
        let c = |s: &[u8], what: &str| {
            CString::new(s).map_err(|_| RunError::Invalid(format!("{what} contains a NUL byte")))
        };
        let argv = spec
            .argv
            .iter()
            .map(|a| c(a.as_bytes(), "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                if k.is_empty() || k.contains('=') {
                    return Err(RunError::Invalid(format!(
                        "environment variable name {k:?} is empty or contains '='"
                    )));
                }
                c(format!("{k}={v}").as_bytes(), "environment variable")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prog = &spec.argv[0];
        let candidates = if prog.contains('/') {
            vec![c(prog.as_bytes(), "command")?]
        } else {
            let path = env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_str())
                .unwrap_or("/usr/local/bin:/usr/bin:/bin");
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| c(format!("{d}/{prog}").as_bytes(), "command"))
                .collect::<Result<Vec<_>, _>>()?
        };
        let workdir = spec
            .cwd
            .clone()
            .unwrap_or(self.profile.filesystem.workdir.clone());
        crate::isolation::mounts::check_abs("working directory", &workdir)?;
        let workdir = c(workdir.as_os_str().as_bytes(), "working directory")?;
        let has_binds = !spec.binds.is_empty() || !spec.opened_binds.is_empty();
        if has_binds && !self.profile.namespaces.mount {
            return Err(RunError::Invalid(
                "binds need a mount namespace (namespaces.mount = true)".into(),
            ));
        }
        Ok(RunStrings {
            argv,
            envp,
            candidates,
            workdir,
        })
    }

    fn run_prepared_with(
        &self,
        p: &mut Prepared,
        spec: &RunSpec,
        s: RunStrings,
    ) -> Result<RunResult, RunError> {
        let t0 = Instant::now();
        if !self.fits(p, spec) {
            return Err(RunError::Invalid(
                "this container was prepared without the cpu controller".into(),
            ));
        }
        let RunStrings {
            argv,
            envp,
            candidates,
            workdir,
        } = s;
        let mut bind_fds: Vec<OwnedFd> = Vec::new();
        let mut bind_slots: Vec<(CString, bool)> = Vec::new();
        let mut bind_names: Vec<String> = Vec::new();
        for b in &spec.binds {
            if let Some((fd, dest, is_dir)) = open_bind(b)? {
                bind_fds.push(fd);
                bind_slots.push((dest, is_dir));
                bind_names.push(bind_name(b));
            }
        }
        for b in &spec.opened_binds {
            bind_slots.push((b.dest.clone(), b.is_dir));
            bind_names.push(b.name.clone());
        }
        let [caller_in, caller_out, caller_err] = spec.caller_fds.unwrap_or([0, 1, 2]);
        let limits = &spec.limits;

        let stdin_fd: OwnedFd = match &spec.stdin {
            StdinSpec::Inherit => {
                // SAFETY: F_GETFD only tests whether the fd is open.
                if unsafe { libc::fcntl(caller_in, libc::F_GETFD) } >= 0 {
                    dup_cloexec(caller_in)?
                } else {
                    open_ro(Path::new("/dev/null"))?
                }
            }
            StdinSpec::Null => open_ro(Path::new("/dev/null"))?,
            StdinSpec::File(p) => open_ro(p)?,
            StdinSpec::Bytes(b) => memfd_with(b)?,
        };
        // A terminal is never handed to the program (it could write past the
        // output cap through it, or change its settings): the supervisor
        // relays the caller's input through a pipe instead.
        let mut tty_relay: Option<(OwnedFd, OwnedFd)> = None;
        // SAFETY: isatty only inspects the fd.
        if matches!(spec.stdin, StdinSpec::Inherit) && unsafe { libc::isatty(caller_in) } == 1 {
            tty_relay = Some(pipe()?);
        }
        let (out_r, out_w) = pipe()?;
        let (errout_r, errout_w) = pipe()?;
        let stdin_raw = match &tty_relay {
            Some((r, _)) => r.as_raw_fd(),
            None => stdin_fd.as_raw_fd(),
        };
        let mut fds = vec![stdin_raw, out_w.as_raw_fd(), errout_w.as_raw_fd()];

        let mut ncg = 0;
        if let Some(cg) = &p.cgroup {
            cg.apply_limits(&CgroupLimits::from_profile(limits))
                .map_err(|e| RunError::Cgroup(e.to_string()))?;
            if cg.clone_into_fd().is_none() {
                fds.extend_from_slice(cg.join_fds());
                ncg = cg.join_fds().len();
            }
        } else if limits.memory.is_some() || limits.pids.is_some() || limits.cpu_time.is_some() {
            return Err(RunError::Cgroup(
                "memory, pids and CPU-time limits need cgroups, which are unavailable here".into(),
            ));
        }
        fds.extend(bind_fds.iter().map(|f| f.as_raw_fd()));
        fds.extend(spec.opened_binds.iter().map(|b| b.fd.as_raw_fd()));
        let mut rl = crate::limits::rlimits::Rlimits::from_limits(limits);
        if self.profile.namespaces.user {
            rl = rl.with_own_userns(limits);
        }
        let rl = rl.within_own();
        p.area
            .write(&argv, &envp, &candidates, &workdir, &bind_slots, ncg, rl)
            .map_err(|e| RunError::Invalid(e.to_string()))?;
        if let Some(nice) = p.background {
            // SAFETY: setpriority on our own child.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, p.pid as libc::id_t, nice) };
        }
        // v2: init has lived in the cgroup since it was prepared; what it
        // spent building the container is not the program's (v1: init joins
        // only now, and the cgroup starts at zero).
        let base = match &p.cgroup {
            Some(cg) if cg.clone_into_fd().is_some() => cg.usage().unwrap_or_default(),
            _ => Default::default(),
        };
        let t_go = t0.elapsed();
        go::send_go(p.ctl.as_raw_fd(), &fds).map_err(RunError::Stale)?;
        p.marks.go_sent = go::now_ns();
        let start = Instant::now();
        self.sweep_once();
        drop((out_w, errout_w, stdin_fd, bind_fds));
        let relay_w = tty_relay.map(|(r, w)| {
            drop(r);
            // Non-blocking: a program that never reads must not stall us.
            let _ = nix::fcntl::fcntl(
                &w,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            w
        });

        let sup = Supervisor {
            spec,
            limits,
            cgroup: p.cgroup.as_ref(),
            pidfd: p.pidfd.as_raw_fd(),
            err_r: p.err_r.as_raw_fd(),
            status_r: p.status_r.as_raw_fd(),
            out: [out_r.as_raw_fd(), errout_r.as_raw_fd()],
            start,
            use_init: p.use_init,
            relay_w: relay_w.as_ref().map(|w| w.as_raw_fd()),
            caller: [caller_in, caller_out, caller_err],
            cpu_base_ns: base.cpu_ns,
        };
        let mut outcome = sup.supervise(p.pid);
        p.marks.ended = go::now_ns();
        if outcome.init_reaped {
            p.reaped = true;
        }
        let t_done = t0.elapsed();
        let mut result = RunResult::default();
        if let Some(cg) = &p.cgroup {
            // Only possible without a pid namespace: the program's children.
            if !p.use_init && !cg.is_empty() {
                let _ = cg.kill_all();
            }
            let usage = cg.usage();
            let oom = cg.oom_killed();
            if self.pool.is_none() && !p.reaped {
                // Init waits to be killed after its report; with the figures
                // read, its exit (the namespaces' teardown) may overlap the
                // rest (a pool tears down in the background instead).
                // SAFETY: signalling our own unreaped child.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
            match usage {
                Ok(mut u) => {
                    u.cpu_ns = u.cpu_ns.saturating_sub(base.cpu_ns);
                    u.user_ns = u.user_ns.saturating_sub(base.user_ns);
                    u.sys_ns = u.sys_ns.saturating_sub(base.sys_ns);
                    result.usage.cpu_ms = u.cpu_ns as f64 / 1e6;
                    // The total is exact; the kernel's user/system split is
                    // sampled at timer ticks (v1, and v2's cpu.stat too), so
                    // it is scaled to add up to the exact total.
                    let (us, sy) = (u.user_ns as f64, u.sys_ns as f64);
                    let total = result.usage.cpu_ms;
                    if us + sy > 0.0 {
                        result.usage.user_ms = total * us / (us + sy);
                        result.usage.sys_ms = total - result.usage.user_ms;
                    } else {
                        result.usage.user_ms = total;
                    }
                    result.usage.memory_peak_bytes = u.memory_peak_bytes;
                    result.usage.pids_peak = u.pids_peak;
                }
                Err(e) => tracing::warn!("reading cgroup usage: {e}"),
            }
            if oom.unwrap_or(false) && outcome.killed_for.is_none() {
                outcome.killed_for = Some(Status::MemoryLimit);
            }
        }
        // The program's own moments, stamped in the container (execve, and
        // its reaping by init), beat the supervisor's view, which may see
        // both in one wake-up when a short program ends before it is
        // scheduled (a pooled run then reported ~0 ms). Runs the supervisor
        // ended keep its timing, which is what the limit was measured on.
        if outcome.killed_for.is_none() && !outcome.cancelled {
            let st = p.area.stamps();
            let (exec, ended) = (
                st[go::Stamp::Exec as usize],
                st[go::Stamp::PayloadEnded as usize],
            );
            if exec > 0 && ended > exec {
                outcome.wall = Duration::from_nanos(ended - exec);
            }
        }
        result.usage.wall_ms = outcome.wall.as_secs_f64() * 1e3;
        result.stdout = std::mem::take(&mut outcome.output[0]);
        result.stderr = std::mem::take(&mut outcome.output[1]);
        result.stdout_truncated = outcome.truncated[0];
        result.stderr_truncated = outcome.truncated[1];
        verdict(
            &mut result,
            &outcome,
            limits,
            &self.profile,
            &spec.argv[0],
            &p.mount_steps,
            &bind_names,
        );
        p.marks.accounted = go::now_ns();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            go_ms = ms(t_go),
            setup_until_exec_ms = outcome.exec_at.map(ms),
            program_ms = ms(outcome.wall),
            until_all_dead_ms =
                ms(t_done - t_go) - ms(outcome.wall) - outcome.exec_at.map_or(0.0, ms),
            accounting_ms = ms(t0.elapsed() - t_done),
            total_ms = ms(t0.elapsed()),
            "run phases"
        );
        Ok(result)
    }
}

/// A run's argv, environment, PATH candidates and working directory.
#[derive(Clone)]
struct RunStrings {
    argv: Vec<CString>,
    envp: Vec<CString>,
    candidates: Vec<CString>,
    workdir: CString,
}

/// A detached copy of a bind's source (`open_tree`), with the bind's
/// flags set, for init to attach at its destination. `None`: an optional
/// source that does not exist.
fn open_bind(b: &BindMount) -> Result<Option<(OwnedFd, CString, bool)>, RunError> {
    crate::isolation::mounts::check_abs("bind destination", &b.dest)?;
    let src_err = |e: std::io::Error| MountPlanError::BindSource {
        path: b.source.clone(),
        source: e,
    };
    let meta = match std::fs::metadata(&b.source) {
        Ok(m) => m,
        Err(e) if b.optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(src_err(e).into()),
    };
    let src = CString::new(b.source.as_os_str().as_bytes())
        .map_err(|_| MountPlanError::Nul(b.source.clone()))?;
    let dest = CString::new(b.dest.as_os_str().as_bytes())
        .map_err(|_| MountPlanError::Nul(b.dest.clone()))?;
    // SAFETY: a valid path; the returned fd is checked and then owned.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(src_err(std::io::Error::last_os_error()).into());
    }
    // SAFETY: open_tree returned a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // Private: a clone of a shared host mount would otherwise stay in its
    // peer group, and the host's later mounts below it would show inside.
    let mut attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    if !b.writable {
        attr.attr_set |= libc::MOUNT_ATTR_RDONLY;
    }
    // SAFETY: a valid detached mount fd and attr struct of the given size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(RunError::Io {
            what: format!("setting the flags of bind {}", b.source.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Some((fd, dest, meta.is_dir())))
}

fn dup_cloexec(fd: RawFd) -> Result<OwnedFd, RunError> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we checked is open.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if d < 0 {
        return Err(RunError::Io {
            what: format!("duplicating fd {fd}"),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

struct Supervisor<'a> {
    spec: &'a RunSpec,
    limits: &'a Limits,
    cgroup: Option<&'a RunCgroup>,
    pidfd: RawFd,
    err_r: RawFd,
    status_r: RawFd,
    out: [RawFd; 2],
    start: Instant,
    use_init: bool,
    /// Write end of the stdin relay (the caller's stdin is a terminal).
    relay_w: Option<RawFd>,
    /// The caller's stdin (the relay's source), stdout and stderr.
    caller: [RawFd; 3],
    /// CPU time in the cgroup before the program's run (see `base`).
    cpu_base_ns: u64,
}

#[derive(Default)]
struct Outcome {
    /// Wait status of the program (payload), if it ended by itself.
    status: Option<i32>,
    /// The run was killed by the supervisor for this verdict.
    killed_for: Option<Status>,
    cancelled: bool,
    /// (step, errno) reported by the child before exec.
    child_error: Option<(u32, i32)>,
    output: [Vec<u8>; 2],
    truncated: [bool; 2],
    wall: Duration,
    cpu_ns_at_kill: Option<u64>,
    /// When the program's execve succeeded (the error pipe closed), from "go".
    exec_at: Option<Duration>,
    /// Init was reaped (otherwise it reported that everything else is dead
    /// and is still exiting).
    init_reaped: bool,
}

impl Supervisor<'_> {
    fn supervise(&self, pid: i32) -> Outcome {
        let mut o = Outcome::default();
        let cap = self.limits.output.unwrap_or(u64::MAX);
        // The wall clock starts when the program's execve succeeds; until
        // then a generous deadline covers a setup that hangs.
        let mut wall_deadline = self
            .limits
            .wall_time
            .map(|d| self.start + d + Duration::from_secs(5));
        let mut exec_at: Option<Instant> = None;
        let cpu_limit_ns = self.limits.cpu_time.map(|d| d.as_nanos() as u64);
        let mut open = [true, true];
        let mut err_open = true;
        let mut status_open = true;
        let mut init_done = false;
        // Init reported the program's status after killing and reaping
        // everything else: the run is over even before init is reaped.
        let mut all_dead = false;
        let mut killed = false;
        let mut buf = vec![0u8; 64 * 1024];
        let mut passed = [0u64; 2];
        let mut relay_open = self.relay_w.is_some();
        // Writes to a regular file never wait on a reader.
        let regular = [1, 2].map(|i| {
            // SAFETY: a zeroed stat is a valid value, filled by fstat.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let ok = unsafe { libc::fstat(self.caller[i], &mut st) } == 0;
            ok && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
        });
        let mut relay_buf: Vec<u8> = Vec::new();
        let kill = |o: &mut Outcome, why: Option<Status>, killed: &mut bool| {
            if !*killed {
                // SAFETY: signalling our own child (pid namespace init).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // With a pid namespace, init's death kills everything.
                if !self.use_init
                    && let Some(cg) = self.cgroup
                {
                    let _ = cg.kill_all();
                }
                *killed = true;
                if o.killed_for.is_none() && !o.cancelled {
                    o.killed_for = why;
                }
            }
        };
        loop {
            if (init_done || all_dead) && !open[0] && !open[1] {
                break;
            }
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(6);
            let mut push = |fd: RawFd| {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            };
            push(if init_done { -1 } else { self.pidfd });
            push(if err_open { self.err_r } else { -1 });
            push(if status_open { self.status_r } else { -1 });
            push(if open[0] { self.out[0] } else { -1 });
            push(if open[1] { self.out[1] } else { -1 });
            push(match self.spec.cancel_fd {
                Some(fd) if !killed => fd,
                _ => -1,
            });
            // 6: the caller's terminal, read only when the relay has room.
            push(
                if relay_open && relay_buf.is_empty() && !killed && !init_done {
                    self.caller[0]
                } else {
                    -1
                },
            );
            // 7: the relay pipe, when there is something to pass on.
            fds.push(libc::pollfd {
                fd: if relay_open && !relay_buf.is_empty() {
                    self.relay_w.unwrap_or(-1)
                } else {
                    -1
                },
                events: libc::POLLOUT,
                revents: 0,
            });
            // How long to sleep: until the wall deadline, and short ticks
            // while a CPU limit needs sampling.
            let now = Instant::now();
            let mut timeout: i32 = -1;
            if !killed {
                if let Some(d) = wall_deadline {
                    timeout = d
                        .saturating_duration_since(now)
                        .as_millis()
                        .min(i32::MAX as u128) as i32
                        + 1;
                }
                if cpu_limit_ns.is_some() {
                    timeout = if timeout < 0 { 10 } else { timeout.min(10) };
                }
            } else if init_done {
                // Draining after the end: writers are dead, EOF is near.
                timeout = 1000;
            }
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 && sys::errno() != libc::EINTR {
                kill(&mut o, None, &mut killed);
            }
            if n == 0 && init_done {
                break; // a writer we cannot kill holds the pipe: stop waiting
            }
            let ready = |i: usize| fds[i].revents != 0;
            // Output first, so nothing is lost on the way out.
            for k in 0..2 {
                if open[k] && ready(3 + k) {
                    // SAFETY: reading into our own buffer.
                    let r = unsafe { libc::read(self.out[k], buf.as_mut_ptr().cast(), buf.len()) };
                    if r <= 0 {
                        if r == 0 || sys::errno() != libc::EINTR {
                            open[k] = false;
                        }
                        continue;
                    }
                    let chunk = &buf[..r as usize];
                    let seen = o.output[k].len() as u64 + passed[k];
                    let room = cap.saturating_sub(seen) as usize;
                    let take = &chunk[..chunk.len().min(room)];
                    let pass = if k == 0 {
                        self.spec.stdout
                    } else {
                        self.spec.stderr
                    };
                    match pass {
                        OutputSpec::Capture => o.output[k].extend_from_slice(take),
                        OutputSpec::PassThrough if regular[k] => {
                            passed[k] += take.len() as u64;
                            sys::write_all(self.caller[k + 1], take);
                        }
                        OutputSpec::PassThrough => {
                            passed[k] += take.len() as u64;
                            match self.pass_through(self.caller[k + 1], take, wall_deadline) {
                                Passed::Done => {}
                                Passed::Deadline => {
                                    kill(&mut o, Some(Status::WallTimeLimit), &mut killed)
                                }
                                Passed::Cancelled => {
                                    o.cancelled = true;
                                    kill(&mut o, None, &mut killed);
                                }
                            }
                        }
                    }
                    if chunk.len() > room {
                        o.truncated[k] = true;
                        kill(&mut o, Some(Status::OutputLimit), &mut killed);
                    }
                }
            }
            if err_open && ready(1) {
                let mut msg = [0u8; 8];
                let r = sys::read_full(self.err_r, &mut msg);
                if r == 8 {
                    let step = u32::from_ne_bytes(msg[..4].try_into().unwrap_or_default());
                    let errno = i32::from_ne_bytes(msg[4..].try_into().unwrap_or_default());
                    o.child_error = Some((step, errno));
                    kill(&mut o, None, &mut killed);
                }
                if o.child_error.is_none() {
                    let now = Instant::now();
                    o.exec_at = Some(now - self.start);
                    exec_at = Some(now);
                    wall_deadline = self.limits.wall_time.map(|d| now + d);
                }
                err_open = false;
            }
            if status_open && ready(2) {
                let mut msg = [0u8; 5];
                if sys::read_full(self.status_r, &mut msg) == 5 && msg[0] == 1 {
                    all_dead = true;
                    o.status = Some(i32::from_ne_bytes(msg[1..].try_into().unwrap_or_default()));
                    if o.wall.is_zero() {
                        o.wall = exec_at.unwrap_or(self.start).elapsed();
                    }
                }
                status_open = false;
            }
            if !init_done && ready(0) {
                let mut st = 0;
                // SAFETY: reaping our own child; pidfd says it has exited.
                let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
                if r == pid {
                    init_done = true;
                    if o.wall.is_zero() {
                        o.wall = exec_at.unwrap_or(self.start).elapsed();
                    }
                    if !self.use_init && o.status.is_none() && o.child_error.is_none() {
                        o.status = Some(st);
                    }
                    // Without a pid namespace the program's children may live on.
                    if !self.use_init
                        && let Some(cg) = self.cgroup
                        && !cg.is_empty()
                    {
                        let _ = cg.kill_all();
                    }
                }
            }
            if relay_open && fds[6].revents != 0 {
                // SAFETY: reading from the caller's stdin into our own buffer.
                let r = unsafe { libc::read(self.caller[0], buf.as_mut_ptr().cast(), buf.len()) };
                if r > 0 {
                    relay_buf.extend_from_slice(&buf[..r as usize]);
                } else if r == 0 || !matches!(sys::errno(), libc::EINTR | libc::EAGAIN) {
                    relay_open = false; // EOF (^D) or error: the program sees EOF
                    relay_close(self.relay_w);
                }
            }
            if relay_open
                && fds[7].revents != 0
                && let Some(w) = self.relay_w
            {
                // SAFETY: writing our own buffer to our own pipe.
                let r = unsafe { libc::write(w, relay_buf.as_ptr().cast(), relay_buf.len()) };
                if r > 0 {
                    relay_buf.drain(..r as usize);
                } else if r < 0 && sys::errno() != libc::EAGAIN && sys::errno() != libc::EINTR {
                    relay_open = false; // the program closed its stdin
                    relay_close(self.relay_w);
                }
            }
            if let Some(i) = self.spec.cancel_fd.map(|_| 5)
                && !killed
                && ready(i)
            {
                o.cancelled = true;
                kill(&mut o, None, &mut killed);
            }
            if !killed && !init_done && !all_dead {
                if let Some(limit) = cpu_limit_ns
                    && let Some(cg) = self.cgroup
                    && let Ok(total) = cg.cpu_usage_ns()
                    && let used = total.saturating_sub(self.cpu_base_ns)
                    && used >= limit
                {
                    o.cpu_ns_at_kill = Some(used);
                    kill(&mut o, Some(Status::TimeLimit), &mut killed);
                }
                if let Some(d) = wall_deadline
                    && Instant::now() >= d
                {
                    kill(&mut o, Some(Status::WallTimeLimit), &mut killed);
                }
            }
        }
        if !init_done && !all_dead {
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            init_done = true;
        }
        o.init_reaped = init_done;
        if o.wall.is_zero() {
            o.wall = exec_at.unwrap_or(self.start).elapsed();
        }
        o
    }
}

enum Passed {
    /// Written, or dropped because the reader is gone (EPIPE and the like).
    Done,
    /// The reader stopped reading and the wall-time limit ran out.
    Deadline,
    /// The reader stopped reading and the run was cancelled.
    Cancelled,
}

impl Supervisor<'_> {
    /// Copies output to the caller's fd without ever blocking past the
    /// run's wall-time deadline or its cancellation: a reader that stops
    /// reading (a full pipe) must not stall the limits. Writes go in pieces
    /// of at most PIPE_BUF, each after POLLOUT, so a blocking fd never
    /// blocks for long.
    fn pass_through(&self, fd: RawFd, mut data: &[u8], deadline: Option<Instant>) -> Passed {
        while !data.is_empty() {
            let mut fds = [
                libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.spec.cancel_fd.unwrap_or(-1),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            });
            // SAFETY: a valid array of two pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if n < 0 {
                if sys::errno() == libc::EINTR {
                    continue;
                }
                return Passed::Done;
            }
            if fds[1].revents != 0 {
                return Passed::Cancelled;
            }
            if n == 0 {
                return Passed::Deadline;
            }
            if fds[0].revents & libc::POLLOUT == 0 {
                return Passed::Done; // POLLERR/POLLHUP: nobody reads any more
            }
            let piece = &data[..data.len().min(libc::PIPE_BUF)];
            // SAFETY: writing a slice we own.
            let w = unsafe { libc::write(fd, piece.as_ptr().cast(), piece.len()) };
            if w < 0 {
                match sys::errno() {
                    libc::EINTR => continue,
                    // A non-blocking fd (shared with the caller) may report
                    // room it then refuses: wait a little, never spin.
                    libc::EAGAIN => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    _ => return Passed::Done,
                }
            }
            data = &data[w as usize..];
        }
        Passed::Done
    }
}

/// Close the relay's write end early (EOF for the program); the OwnedFd
/// that owns it is dropped later, so it is replaced by /dev/null here
/// rather than closed twice.
fn relay_close(fd: Option<RawFd>) {
    if let Some(fd) = fd
        && let Ok(null) = std::fs::File::open("/dev/null")
    {
        // SAFETY: dup2 onto an fd we own; it stays valid until its OwnedFd drops.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

fn verdict(
    r: &mut RunResult,
    o: &Outcome,
    limits: &Limits,
    profile: &Profile,
    argv0: &str,
    mount_steps: &[String],
    bind_steps: &[String],
) {
    if let Some((step, errno)) = o.child_error {
        let err = nix::errno::Errno::from_raw(errno);
        if step == Step::Exec as u32 {
            r.exec_failed = true;
            let why = match errno {
                libc::ENOENT => "not found inside the sandbox",
                libc::EACCES => "not executable (or a directory on the way is not searchable)",
                libc::ENOEXEC => "not a valid executable format",
                _ => "cannot execute",
            };
            r.status = Some(Status::RuntimeError);
            r.exit_code = Some(if errno == libc::ENOENT { 127 } else { 126 });
            r.message = Some(format!("{argv0}: {why} ({err:?}: {})", err.desc()));
            return;
        }
        let what = if step >= BIND_STEP_BASE {
            bind_steps
                .get((step - BIND_STEP_BASE) as usize)
                .map_or_else(|| "binding".to_string(), |w| format!("doing \"{w}\""))
        } else if step >= STEP_BASE {
            Step::from_u32(step)
                .map_or("setting up the sandbox", |s| s.describe())
                .to_string()
        } else {
            mount_steps.get(step as usize).map_or_else(
                || format!("filesystem step {step}"),
                |w| format!("doing \"{w}\""),
            )
        };
        r.status = Some(Status::SandboxError);
        r.message = Some(format!(
            "sandbox setup failed while {what} under profile {}: {err}",
            profile.name
        ));
        return;
    }
    if let Some(st) = o.status {
        if libc::WIFEXITED(st) {
            r.exit_code = Some(libc::WEXITSTATUS(st));
        } else if libc::WIFSIGNALED(st) {
            r.signal = Some(libc::WTERMSIG(st));
        }
    } else if o.killed_for.is_some() || o.cancelled {
        r.signal = Some(libc::SIGKILL);
    }
    // Verdicts come from the supervisor's own measurements and the kernel's
    // accounting, never from how the program died.
    let cpu_over = limits
        .cpu_time
        .is_some_and(|l| r.usage.cpu_ms >= l.as_secs_f64() * 1e3);
    let status = if let Some(s) = o.killed_for {
        s
    } else if o.cancelled {
        r.message = Some("cancelled".into());
        Status::RuntimeError
    } else if cpu_over {
        Status::TimeLimit
    } else if r.exit_code == Some(0) {
        Status::Ok
    } else {
        Status::RuntimeError
    };
    if r.message.is_none() {
        r.message = match status {
            Status::TimeLimit => Some(format!(
                "CPU time limit of {} exceeded ({:.0} ms used)",
                fmt_dur(limits.cpu_time),
                r.usage.cpu_ms
            )),
            Status::WallTimeLimit => Some(format!(
                "wall-time limit of {} exceeded",
                fmt_dur(limits.wall_time)
            )),
            Status::MemoryLimit => Some(format!(
                "memory limit of {} bytes exceeded (the kernel OOM-killed a process)",
                limits.memory.unwrap_or(0)
            )),
            Status::OutputLimit => Some(format!(
                "output limit of {} bytes exceeded on {}",
                limits.output.unwrap_or(0),
                if o.truncated[0] { "stdout" } else { "stderr" }
            )),
            Status::RuntimeError => match (r.exit_code, r.signal) {
                (Some(c), _) => Some(format!("exited with code {c}")),
                (_, Some(s)) if s == libc::SIGSYS => Some(
                    "killed by SIGSYS: a system call refused by the profile's seccomp filter"
                        .into(),
                ),
                (_, Some(s)) => Some(format!("killed by {}", result::signal_name(s))),
                _ => None,
            },
            _ => None,
        };
    }
    r.status = Some(status);
}

fn fmt_dur(d: Option<Duration>) -> String {
    d.map_or_else(|| "?".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RunError::Io {
        what: "pipe2".into(),
        source: e.into(),
    })
}

fn open_ro(p: &Path) -> Result<OwnedFd, RunError> {
    let f = std::fs::File::open(p).map_err(io_err(format!("opening {}", p.display())))?;
    Ok(f.into())
}

/// Stdin bytes as a sealed-size memory file: no writer to keep alive and no
/// deadlock when the program never reads.
fn memfd_with(data: &[u8]) -> Result<OwnedFd, RunError> {
    use std::io::{Seek, Write};
    // SAFETY: a valid name; the returned fd is checked and then owned.
    let fd = unsafe { libc::memfd_create(c"stdin".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(RunError::Io {
            what: "memfd_create for stdin".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fd is a fresh descriptor we own.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data)
        .and_then(|_| f.rewind())
        .map_err(io_err("writing stdin to a memfd"))?;
    Ok(f.into())
}
