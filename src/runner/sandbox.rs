//! [`Sandbox`]: a profile prepared for many runs, and where each run's
//! container comes from (made for it, or taken from the pool), with the
//! run's strings checked before any container is spent.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::prepare::timeline_text;
use super::prepare::{Prepared, Recipe};
use super::spec::{JobIds, OpenedBind, RunSpec};
use super::{Images, RunImage};
use super::{RunError, RunResult, go, io_err, pool};
use crate::isolation::checkout::{self, Owner};
use crate::isolation::hostids::{self, Lease};
use crate::isolation::mounts::MountPlanError;
use crate::limits::cgroup::{CgroupManager, RunShape};
use crate::profile::{Profile, RootSource};
use crate::security::caps::CapPlan;

/// A profile prepared for many runs.
pub struct Sandbox {
    pub profile: Profile,
    pub(super) filters: Vec<seccompiler::BpfProgram>,
    pub(super) cgroups: Option<CgroupManager>,
    pub(super) caps: CapPlan,
    /// Containers made ahead of time ([`Sandbox::pooled`]).
    pub(super) pool: Option<pool::Pool>,
    pub(super) swept: std::sync::Once,
    /// The image whose layers are the root (`None`: the profile's root).
    pub(super) image: Option<RunImage>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(p) = &self.pool {
            p.stop();
        }
    }
}

pub(super) const MAX_ARGS: usize = 4096;

impl Sandbox {
    /// A sandbox whose runs have `image` as their root: its layers, its
    /// user, environment, working directory and command.
    pub fn with_image(profile: Profile, image: RunImage) -> Result<Sandbox, RunError> {
        if !profile.namespaces.user || !profile.namespaces.mount {
            return Err(RunError::Invalid(format!(
                "image {}: runs in an image need a user and a mount namespace (profile {})",
                image.name, profile.name
            )));
        }
        let mut sb = Sandbox::new(profile)?;
        sb.image = Some(image);
        Ok(sb)
    }

    /// The sandbox of `profile`, in the image `image` if one is given,
    /// else in the profile's own `filesystem.image` if it names one, found
    /// (or pulled) through `images`.
    pub fn open(
        profile: Profile,
        image: Option<&str>,
        images: Option<&Images>,
    ) -> Result<Sandbox, RunError> {
        let reference = match (image, &profile.filesystem.root) {
            (Some(r), _) => r.to_string(),
            (None, RootSource::Image(r)) => r.clone(),
            (None, _) => return Sandbox::new(profile),
        };
        let Some(images) = images else {
            return Err(RunError::Invalid(format!(
                "image {reference}: no image store here"
            )));
        };
        let img = images.open(&reference)?;
        Sandbox::with_image(profile, img)
    }

    /// The host uid/gid the program of a run of `job` is: the job's, or in
    /// an image the job's block offset by the image's user (what a job's
    /// workspace must belong to).
    pub fn program_host_ids(&self, job: &JobIds) -> (u32, u32) {
        match &self.image {
            // Within the block: checked by job_ids.
            Some(img) => (
                job.uid().saturating_add(img.uid),
                job.gid().saturating_add(img.gid),
            ),
            None => (job.uid(), job.gid()),
        }
    }

    /// The image the runs use, if any.
    pub fn image(&self) -> Option<&RunImage> {
        self.image.as_ref()
    }

    pub fn new(profile: Profile) -> Result<Sandbox, RunError> {
        let filters = if profile.seccomp.enabled {
            crate::security::seccomp::compile(&profile.seccomp)?
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
            image: None,
        })
    }

    /// Runs whose supervisor was SIGKILLed leave empty cgroups behind: they
    /// are removed once per sandbox, while its first program starts (the
    /// supervisor would otherwise wait idle).
    pub(super) fn sweep_once(&self) {
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
    pub fn pooled(self, size: usize) -> Result<Arc<Sandbox>, RunError> {
        self.pooled_counted(size, Arc::default())
    }

    /// [`Sandbox::pooled`], counting its pool's hits and misses in `stats`.
    pub fn pooled_counted(
        mut self,
        size: usize,
        stats: Arc<pool::PoolStats>,
    ) -> Result<Arc<Sandbox>, RunError> {
        self.pool = Some(pool::Pool::new(size, stats));
        let sb = Arc::new(self);
        if let Some(p) = &sb.pool {
            p.start(Arc::downgrade(&sb))
                .map_err(io_err("starting the container pool thread"))?;
        }
        Ok(sb)
    }

    /// Containers its pool holds ready now (0 without a pool).
    pub fn pool_ready(&self) -> usize {
        self.pool.as_ref().map_or(0, pool::Pool::ready)
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
        let opened;
        let spec = if self.may_act_as_owner(spec) {
            opened = self.open_binds_now(spec)?;
            &opened
        } else {
            spec
        };
        let owner = self.checkout_owner(spec)?;
        let Some(pool) = &self.pool else {
            // Torn down before returning: a CLI exits right after.
            let t0 = Instant::now();
            let mut p = self.prepare_for(spec, owner)?;
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
        let r = self.run_pooled(pool, spec, strings, owner);
        pool.run_ended();
        r
    }

    fn run_pooled(
        &self,
        pool: &pool::Pool,
        spec: &RunSpec,
        strings: RunStrings,
        owner: Option<Owner>,
    ) -> Result<RunResult, RunError> {
        // Containers made ahead map the job's ids: a run acting as its
        // checkout's owner needs one made for it.
        let take = if owner.is_none() {
            pool.take(spec.job.as_ref())
        } else {
            None
        };
        let ready = match take {
            Some(p) if self.fits(&p, spec) => Some(p),
            Some(p) => {
                pool.retire(p);
                None
            }
            None => None,
        };
        pool.note(ready.is_some());
        let mut p = match ready {
            Some(p) => p,
            None => self.prepare_for(spec, owner)?,
        };
        let mut r = self.run_prepared_with(&mut p, spec, strings.clone());
        if matches!(r, Err(RunError::Stale(_))) {
            // The waiting container died (e.g. killed from outside): once
            // more with a fresh one.
            pool.retire(p);
            p = self.prepare_for(spec, owner)?;
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

    /// Makes a container of this profile for host ids `lease` (see
    /// [`Recipe::prepare`]).
    pub fn prepare(&self, shape: RunShape, lease: Arc<Lease>) -> Result<Prepared, RunError> {
        self.recipe().prepare(shape, lease, None)
    }

    fn recipe(&self) -> Recipe<'_> {
        Recipe {
            profile: &self.profile,
            filters: &self.filters,
            caps: self.caps,
            cgroups: self.cgroups.as_ref(),
            image: self.image.as_ref(),
        }
    }

    fn prepare_for(&self, spec: &RunSpec, owner: Option<Owner>) -> Result<Prepared, RunError> {
        let lease = match &spec.job {
            Some(j) => j.lease.clone(),
            None => hostids::acquire(&self.profile.process.host_ids)?,
        };
        self.recipe().prepare(self.shape_for(spec), lease, owner)
    }

    /// Whom the program of `spec` acts as on the host instead of the job's
    /// uid (`process.run_as_checkout_owner`): the owner of the writable
    /// bind its working directory lies in, when that is a regular user
    /// ([`checkout::owner_of`]). Not for jobs (their workspace is already
    /// the job's) nor runs in an image (its ids map onto the job's block).
    /// A checkout that is `/`, a home directory or holds one is refused.
    fn checkout_owner(&self, spec: &RunSpec) -> Result<Option<Owner>, RunError> {
        let p = &self.profile;
        if !self.may_act_as_owner(spec) {
            return Ok(None);
        }
        let cwd = spec.cwd.as_ref().unwrap_or(&p.filesystem.workdir);
        // Every bind in mount order: the profile's, the run's, the opened.
        let path_binds: Vec<&crate::profile::BindMount> = p
            .filesystem
            .binds
            .iter()
            .filter(|b| !(spec.relative_opened && b.source.is_relative()))
            .chain(&spec.binds)
            .collect();
        let dests: Vec<&std::path::Path> = path_binds
            .iter()
            .map(|b| b.dest.as_path())
            .chain(
                spec.opened_binds
                    .iter()
                    .map(|o| std::path::Path::new(std::ffi::OsStr::from_bytes(o.dest.as_bytes()))),
            )
            .collect();
        let Some(i) = checkout::covering(dests, cwd) else {
            return Ok(None);
        };
        let chk = |e: checkout::CheckoutError| RunError::Mount(MountPlanError::Checkout(e));
        let meta = if let Some(b) = path_binds.get(i) {
            if !b.writable {
                return Ok(None);
            }
            let name = super::spec::bind_name(b);
            let stat_err = |source| {
                chk(checkout::CheckoutError::Stat {
                    bind: name.clone(),
                    path: b.source.clone(),
                    source,
                })
            };
            let path = match std::fs::canonicalize(&b.source) {
                Ok(path) => path,
                // An optional bind that is not there: nothing to act on.
                Err(e) if b.optional && e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(None);
                }
                Err(e) => return Err(stat_err(e)),
            };
            checkout::check_not_too_wide(&name, &path).map_err(chk)?;
            std::fs::metadata(&path).map_err(stat_err)?
        } else {
            let o = &spec.opened_binds[i - path_binds.len()];
            let fd = o.fd.as_raw_fd();
            let stat_err = |source| {
                chk(checkout::CheckoutError::Stat {
                    bind: o.name.clone(),
                    path: format!("/proc/self/fd/{fd}").into(),
                    source,
                })
            };
            let vfs = nix::sys::statvfs::fstatvfs(&*o.fd).map_err(|e| stat_err(e.into()))?;
            if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
                return Ok(None);
            }
            let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).map_err(stat_err)?;
            checkout::check_fd_not_too_wide(&o.name, &meta).map_err(chk)?;
            meta
        };
        let owner = checkout::owner_of(meta.uid(), meta.gid(), &p.process.host_ids);
        if owner.is_some() {
            // Acting as a user, the run gets no other writable bind that is
            // `/` or a home either (e.g. `--bind ~:/h` next to the checkout:
            // the owner's whole home, writable as the owner).
            for b in path_binds.iter().filter(|b| b.writable) {
                if let Ok(path) = std::fs::canonicalize(&b.source) {
                    checkout::check_not_too_wide(&super::spec::bind_name(b), &path).map_err(chk)?;
                }
            }
            for o in &spec.opened_binds {
                let fd = o.fd.as_raw_fd();
                let writable = nix::sys::statvfs::fstatvfs(&*o.fd)
                    .is_ok_and(|v| !v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
                if writable && let Ok(m) = std::fs::metadata(format!("/proc/self/fd/{fd}")) {
                    checkout::check_fd_not_too_wide(&o.name, &m).map_err(chk)?;
                }
            }
        }
        match owner {
            Some(o) => tracing::debug!(
                uid = o.uid,
                gid = ?o.gid,
                "the run acts as its checkout's owner"
            ),
            None => tracing::debug!(
                uid = meta.uid(),
                "the checkout's owner is not a regular user: the run keeps the job's uid"
            ),
        }
        Ok(owner)
    }

    /// Whether a run may act as its checkout's owner (the profile asks
    /// for it; not a job's run, whose workspace is the job's, nor one in
    /// an image, whose ids map onto the job's block).
    fn may_act_as_owner(&self, spec: &RunSpec) -> bool {
        let p = &self.profile;
        p.process.run_as_checkout_owner
            && spec.job.is_none()
            && self.image.is_none()
            && p.namespaces.user
    }

    /// `spec` with its path binds (the profile's relative ones, then the
    /// run's) opened now, as detached trees: the owner is decided from
    /// these descriptors and the same ones are mounted, so nothing swapped
    /// at a path between the decision and the mount (a symlink, a renamed
    /// directory) can change whose files the run gets.
    fn open_binds_now(&self, spec: &RunSpec) -> Result<RunSpec, RunError> {
        let mut s = spec.clone();
        let mut opened = Vec::new();
        let relative = self
            .profile
            .filesystem
            .binds
            .iter()
            .filter(|b| b.source.is_relative());
        for b in relative {
            if let Some(r) = super::start::resolve_relative(b, spec.base_dir.as_deref())?
                && let Some(o) = OpenedBind::open(&r)?
            {
                opened.push(OpenedBind {
                    name: super::spec::bind_name(b),
                    ..o
                });
            }
        }
        for b in &spec.binds {
            if let Some(o) = OpenedBind::open(b)? {
                opened.push(o);
            }
        }
        opened.append(&mut s.opened_binds);
        s.opened_binds = opened;
        s.binds.clear();
        s.relative_opened = true;
        Ok(s)
    }

    /// Host ids for a new job, whose runs ([`RunSpec::job`]) will share
    /// them: those of a container the pool prepared ahead (which then
    /// waits for this job's first run), or newly taken ones.
    pub fn job_ids(&self) -> Result<Arc<JobIds>, RunError> {
        let ids = match &self.pool {
            Some(pool) => pool.adopt(),
            None => None,
        };
        let ids = match ids {
            Some(j) => j,
            None => Arc::new(JobIds {
                lease: hostids::acquire(&self.profile.process.host_ids)?,
            }),
        };
        // An image's user must lie within the block before anything (the
        // job's workspace) is given to it.
        if let Some(img) = &self.image
            && img.uid.max(img.gid) >= ids.lease.ids()
        {
            return Err(RunError::Invalid(format!(
                "image {}: its user {}:{} is beyond the job's block of {} host ids (process.host_uid.ids)",
                img.name,
                img.uid,
                img.gid,
                ids.lease.ids()
            )));
        }
        Ok(ids)
    }

    pub(super) fn env(&self, spec: &RunSpec) -> Vec<(String, String)> {
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
        // An image's environment replaces the profile's.
        match &self.image {
            Some(img) => img.env.iter().for_each(|(k, v)| set(k, v)),
            None => p.env.iter().for_each(|(k, v)| set(k, v)),
        }
        for (k, v) in &spec.env {
            set(k, v);
        }
        env
    }

    /// Checks a run and turns it into the C strings the container needs
    /// (before a prepared container is taken: a bad request must not
    /// waste one).
    pub(super) fn run_strings(&self, spec: &RunSpec) -> Result<RunStrings, RunError> {
        let argv_s = match &self.image {
            Some(img) => img.argv(&spec.argv),
            None => spec.argv.clone(),
        };
        if argv_s.is_empty() {
            return Err(RunError::Invalid(match &self.image {
                Some(img) => format!("no command given, and image {} has none", img.name),
                None => "no command given".into(),
            }));
        }
        let env = self.env(spec);
        if argv_s.len() > MAX_ARGS || env.len() > MAX_ARGS {
            return Err(RunError::Invalid(format!(
                "at most {MAX_ARGS} arguments and {MAX_ARGS} environment variables"
            )));
        }
        let c = |s: &[u8], what: &str| {
            CString::new(s).map_err(|_| RunError::Invalid(format!("{what} contains a NUL byte")))
        };
        let argv = argv_s
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
        let prog = &argv_s[0];
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
        let workdir = match (&spec.cwd, &self.image) {
            (Some(d), _) => d.clone(),
            (None, Some(img)) => img.workdir.clone().unwrap_or_else(|| "/".into()),
            (None, None) => self.profile.filesystem.workdir.clone(),
        };
        crate::isolation::mounts::check_abs("working directory", &workdir)?;
        let workdir = c(workdir.as_os_str().as_bytes(), "working directory")?;
        let has_binds = !spec.binds.is_empty() || !spec.opened_binds.is_empty();
        if has_binds && !self.profile.namespaces.mount {
            return Err(RunError::Invalid(
                "binds need a mount namespace (namespaces.mount = true)".into(),
            ));
        }
        Ok(RunStrings {
            argv0: prog.clone(),
            argv,
            envp,
            candidates,
            workdir,
        })
    }
}

/// A run's argv, environment, PATH candidates and working directory.
#[derive(Clone)]
pub(super) struct RunStrings {
    /// The program as named (for messages).
    pub(super) argv0: String,
    pub(super) argv: Vec<CString>,
    pub(super) envp: Vec<CString>,
    pub(super) candidates: Vec<CString>,
    pub(super) workdir: CString,
}
