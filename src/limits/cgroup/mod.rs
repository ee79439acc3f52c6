//! cgroup management for one sandboxed run, cgroup v1 (legacy / hybrid) and v2.
//!
//! # Files
//!
//! Split by version, as youki's libcgroups is: everything only one version
//! has lives in its own file, behind [`RunCgroup`], which holds a v1 or a
//! v2 run and forwards each method to it. Imports flow downward only:
//! `mod.rs` → `detect`, `sweep`, `v1`, `v2` → `files` → `common`
//! (`v1` also takes the hierarchies `detect` found).
//!
//! * `mod.rs` (this file): the public API: [`CgroupManager`] (detection
//!   result, run creation, sweep), [`RunCgroup`], [`join_self`], and
//!   re-exports of the types in `common`.
//! * `common.rs`: the shared value types ([`CgroupVersion`], [`RunShape`],
//!   [`CgroupLimits`], [`Usage`]), [`CgroupError`], limit validation, and
//!   the `RunOps` trait both versions implement.
//! * `detect.rs`: finding the hierarchy: mountinfo and `/proc/self/cgroup`
//!   parsing, the base directories, v2 controller delegation.
//! * `v1.rs`, `v2.rs`: one run in each version: creation, limits, usage
//!   figures, OOM and pids-limit detection, kill-all, removal.
//! * `sweep.rs`: run cgroup names and the stale-cgroup sweep.
//! * `files.rs`: small file helpers shared by all of the above.
//!
//! # Layout
//!
//! [`CgroupManager::detect`] reads `/proc/self/mountinfo` and
//! `/proc/self/cgroup` once. Run cgroups are created directly **under the
//! cgroup this process is in**, per controller:
//!
//! * v1: one directory in each of the memory, pids, cpu, cpuacct and freezer
//!   hierarchies (co-mounted hierarchies such as `cpu,cpuacct` get a single
//!   directory). memory and cpuacct are required; pids and cpu are required
//!   only when the corresponding limit is set; freezer is optional (it makes
//!   [`RunCgroup::kill_all`] race-free).
//! * v2: one directory. Controllers memory, pids and cpu must be listed in our
//!   cgroup's `cgroup.controllers` (otherwise the error says which one is
//!   missing: the parent must delegate it). If they are not yet enabled in our
//!   `cgroup.subtree_control` and enabling fails because our cgroup holds
//!   processes (the "no internal processes" rule; the root cgroup is exempt),
//!   we do the standard delegation dance: create a leaf
//!   `<our cgroup>/sandbox-supervisor-<pid>`, move **only this process** into
//!   it, and enable `+memory +pids +cpu` in the parent. Run cgroups are then
//!   siblings of that leaf. If other processes share our cgroup this still
//!   fails, with an error saying so.
//!
//! Run cgroups are named `sandbox-<ownerpid>-<ownerstarttime>-<seq>[-<name>]`
//! (`ownerstarttime` is field 22 of `/proc/<pid>/stat`), so
//! [`CgroupManager::sweep_stale`] can tell leftovers of a dead owner from live
//! runs of another process, even across pid reuse.
//!
//! # Joining
//!
//! * v2: [`RunCgroup::clone_into_fd`] is an `O_DIRECTORY` fd for clone3 with
//!   `CLONE_INTO_CGROUP` (no attach cost, no window outside the cgroup).
//!   [`RunCgroup::join_fds`] holds the fd of `cgroup.procs` as a fallback.
//! * v1: [`RunCgroup::join_fds`] holds pre-opened (`O_WRONLY|O_CLOEXEC`) fds of
//!   each hierarchy's `tasks` file; the forked child writes `"0"` to each
//!   (async-signal-safe, no allocation). A single-threaded task moving itself
//!   through `tasks` skips the global `cgroup_threadgroup_rwsem` write lock
//!   (`cgroup_procs_write_start`: `*threadgroup_locked = pid || threadgroup`),
//!   whose `percpu_down_write` waits for an RCU grace period (~13–15 ms when
//!   the lock has been idle). Measured on the 2-core 6.18 hybrid VM
//!   (`cargo run --release --example cgroup_attach 20`, medians):
//!
//!   | method                                   | cold (100 ms idle) | warm     |
//!   |------------------------------------------|--------------------|----------|
//!   | (a) parent writes child pid to cgroup.procs | 11.6 ms (7–19)  | 0.019 ms |
//!   | (b) child writes "0" to `tasks`          | 0.036 ms           | 0.008 ms |
//!   | (c) child writes "0" to cgroup.procs     | 14.8 ms (7–60)     | 0.011 ms |
//!   | (b) for all 5 hierarchies (`join_fds`)   | 0.11 ms            | 0.05 ms  |
//!
//!   Hence (b). The child must still be single-threaded (it is, right after
//!   fork): `tasks` moves only the calling thread.
//!
//! # Where usage figures come from
//!
//! | figure              | v1                                                         | v2                                      |
//! |---------------------|------------------------------------------------------------|-----------------------------------------|
//! | `cpu_ns`            | `cpuacct.usage`                                            | `cpu.stat` `usage_usec` × 1000          |
//! | `user_ns`/`sys_ns`  | `cpuacct.usage_all` columns (tick-sampled split; else `usage_user`/`usage_sys`, else `cpuacct.stat` ticks) | `cpu.stat` `user_usec`/`system_usec` × 1000 |
//! | `memory_peak_bytes` | `memory.max_usage_in_bytes`                                | `memory.peak` (≥ 5.19), else max of `memory.current` samples ([`RunCgroup::sample_memory`]) |
//! | `pids_peak`         | `pids.peak` if present                                     | `pids.peak` if present                  |
//! | OOM kill            | `memory.oom_control` `oom_kill` (else `memory.failcnt` > 0) | `memory.events` `oom_kill`              |
//! | pids limit hit      | `pids.events` `max`                                        | `pids.events` `max`                     |
//!
//! # Why not cgroups-rs
//!
//! cgroups-rs pulls in zbus (systemd D-Bus) and more, does extra I/O per
//! operation, its v1/hybrid hierarchy discovery is fragile (it assumes fixed
//! mount points and mis-handles hybrid setups and separately mounted
//! cpu/cpuacct), `add_task` fails on v2 in common setups, and it has no
//! support for `CLONE_INTO_CGROUP` or for pre-opened join fds usable after
//! fork. What we need is a few dozen small file reads and writes, done here
//! directly with errors that name the path and the operation.

mod common;
mod detect;
mod files;
mod sweep;
mod v1;
mod v2;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;

pub use common::{CgroupError, CgroupLimits, CgroupVersion, RunShape, Usage};

use common::RunOps;
use detect::Layout;
use files::process_start_time;
use v1::V1Run;
use v2::V2Run;

// ---------------------------------------------------------------------------
// Manager

#[derive(Debug)]
struct Inner {
    layout: Layout,
    owner_pid: u32,
    owner_start: u64,
}

/// Detected once per process (cheap to clone); knows the version and, per
/// controller, the directory under which run cgroups are created.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    inner: Arc<Inner>,
}

impl CgroupManager {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup` and decides:
    /// v1 if a v1 hierarchy carries the memory controller (legacy or hybrid),
    /// else v2 if a cgroup2 mount exists.
    pub fn detect() -> Result<Self, CgroupError> {
        let s = detect::read_proc_self()?;
        Self::detect_from(&s.mountinfo, &s.proc_cgroup, s.owner_pid, s.owner_start)
    }

    /// [`CgroupManager::detect`] on given `/proc/self/mountinfo` and
    /// `/proc/self/cgroup` contents (for tests against a fake hierarchy).
    #[doc(hidden)]
    pub fn detect_from(
        mountinfo: &str,
        proc_cgroup: &str,
        owner_pid: u32,
        owner_start: u64,
    ) -> Result<Self, CgroupError> {
        let layout = detect::detect_layout(mountinfo, proc_cgroup, owner_pid)?;
        Ok(CgroupManager {
            inner: Arc::new(Inner {
                layout,
                owner_pid,
                owner_start,
            }),
        })
    }

    /// A v2 manager rooted at `base` **without** any controller checks or
    /// delegation (for tests on a controller-less cgroup2 mount, e.g. the
    /// `unified` hierarchy of a hybrid system, and for diagnostics).
    #[doc(hidden)]
    pub fn v2_unchecked(base: PathBuf) -> Self {
        let owner_pid = std::process::id();
        CgroupManager {
            inner: Arc::new(Inner {
                layout: Layout::V2 {
                    base,
                    supervisor_leaf: None,
                },
                owner_pid,
                owner_start: process_start_time(owner_pid).unwrap_or(0),
            }),
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.inner.layout.version()
    }

    /// Human-readable summary for logs / `--version`-style output.
    pub fn describe(&self) -> String {
        self.inner.layout.describe()
    }

    /// Directories under which run cgroups are created (one per v1
    /// hierarchy, one for v2).
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        self.inner.layout.base_dirs()
    }

    /// Creates the run cgroup(s) `sandbox-<pid>-<start>-<seq>[-<name>]`
    /// (`name` is sanitised to `[A-Za-z0-9_.]`, ≤ 48 chars) and applies the
    /// limits. The memory cgroup is created even without a memory limit (for
    /// accounting). On error nothing is left behind.
    pub fn create_run(&self, name: &str, limits: &CgroupLimits) -> Result<RunCgroup, CgroupError> {
        let shape = RunShape {
            cpu: limits.cpu_quota.is_some(),
            freezer: true,
        };
        let run = self.create_run_shaped(name, shape)?;
        run.apply_limits(limits)?;
        Ok(run)
    }

    /// Creates the run cgroup(s) without limits (see
    /// [`RunCgroup::apply_limits`]), in only the v1 hierarchies `shape`
    /// needs: every hierarchy costs a mkdir, an open and an rmdir per run.
    pub fn create_run_shaped(&self, name: &str, shape: RunShape) -> Result<RunCgroup, CgroupError> {
        let dir_name = sweep::run_dir_name(self.inner.owner_pid, self.inner.owner_start, name);
        let run = match &self.inner.layout {
            Layout::V1(hier) => Run::V1(V1Run::create(hier, &dir_name, shape)?),
            Layout::V2 { base, .. } => Run::V2(V2Run::create(base, &dir_name)?),
        };
        Ok(RunCgroup { run })
    }

    /// Removes leftover **empty** run cgroups (`sandbox-<pid>-<start>-…`, and
    /// v2 `sandbox-supervisor-<pid>` leaves) whose owner process is gone
    /// (no such pid, or a different start time). Never touches other names,
    /// non-empty cgroups, or cgroups of a live owner. Returns how many
    /// distinct run cgroups (names) were removed.
    pub fn sweep_stale(&self) -> usize {
        self.sweep_stale_filtered(&|_| true)
    }

    /// [`CgroupManager::sweep_stale`] restricted to names for which `only`
    /// returns true (tests use it to touch nothing but their own leftovers).
    #[doc(hidden)]
    pub fn sweep_stale_filtered(&self, only: &dyn Fn(&str) -> bool) -> usize {
        sweep::sweep(&self.base_dirs(), only)
    }
}

// ---------------------------------------------------------------------------
// Run cgroup

/// The cgroup(s) of one sandboxed run. Dropping it kills what is left in it
/// and removes it (best effort); call [`RunCgroup::remove`] to see errors.
#[derive(Debug)]
pub struct RunCgroup {
    run: Run,
}

/// The run in its version; each owns the fields only its version has and
/// does its own cleanup when dropped.
#[derive(Debug)]
enum Run {
    V1(V1Run),
    V2(V2Run),
}

impl RunCgroup {
    /// The one place that picks the version: every method below forwards
    /// to the run through the `RunOps` trait.
    fn ops(&self) -> &dyn RunOps {
        match &self.run {
            Run::V1(r) => r,
            Run::V2(r) => r,
        }
    }

    fn ops_mut(&mut self) -> &mut dyn RunOps {
        match &mut self.run {
            Run::V1(r) => r,
            Run::V2(r) => r,
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.ops().version()
    }

    /// Sets the run's memory, pids and CPU-bandwidth limits (before any of
    /// its processes starts the program).
    pub fn apply_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        self.ops().apply_limits(limits)
    }

    /// The directories of this run (v1: one per hierarchy; v2: one).
    pub fn paths(&self) -> &[PathBuf] {
        self.ops().paths()
    }

    /// Pre-opened `O_WRONLY|O_CLOEXEC` fds a freshly forked, still
    /// single-threaded child writes `"0"` to (with `write(2)` only) to move
    /// itself into the run: v1 each hierarchy's `tasks` file; v2 the run's
    /// `cgroup.procs` (fallback when clone3 `CLONE_INTO_CGROUP` is not used).
    /// See [`join_self`] for a ready-made async-signal-safe helper.
    pub fn join_fds(&self) -> &[RawFd] {
        self.ops().join_fds()
    }

    /// v2: an `O_DIRECTORY` fd of the run cgroup for clone3 `CLONE_INTO_CGROUP`.
    /// v1: `None`.
    pub fn clone_into_fd(&self) -> Option<RawFd> {
        self.ops().clone_into_fd()
    }

    /// Total CPU time of the run in ns. Hot path: keeps the file open and
    /// `pread`s it (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`).
    pub fn cpu_usage_ns(&self) -> Result<u64, CgroupError> {
        self.ops().cpu_usage_ns()
    }

    /// Samples the current memory usage and remembers the maximum; only
    /// needed as a fallback on v2 kernels without `memory.peak` (< 5.19).
    /// Returns the current usage.
    pub fn sample_memory(&self) -> Result<u64, CgroupError> {
        self.ops().sample_memory()
    }

    /// All usage figures (see the module doc for where each comes from).
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        self.ops().usage()
    }

    /// Whether the kernel OOM-killed a process of this run.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        self.ops().oom_killed()
    }

    /// Whether a fork/clone was refused because of `pids.max`.
    pub fn pids_limit_hit(&self) -> bool {
        self.ops().pids_limit_hit()
    }

    /// Whether no process is left in the run (any hierarchy).
    pub fn is_empty(&self) -> bool {
        self.ops().is_empty()
    }

    /// Kills every process of the run and waits (up to ~2 s) until the
    /// cgroup is empty. v2: `cgroup.kill` (≥ 5.14). v1 with the freezer
    /// hierarchy: freeze (`freezer.state` = FROZEN, so nothing can fork or
    /// exit and no pid can be recycled), SIGKILL every pid in `cgroup.procs`,
    /// thaw. Then (and on v1 without freezer, or v2 < 5.14) read
    /// `cgroup.procs` and SIGKILL each pid, repeatedly, until empty; killed
    /// processes cannot fork and `pids.max` bounds the count, so this
    /// converges. (Without the freezer a pid could in theory be recycled
    /// between the read and the kill; the window is microseconds.)
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        self.ops().kill_all()
    }

    /// Removes every directory of the run, retrying EBUSY (exiting tasks)
    /// for up to ~1 s. Processes must be gone (see [`RunCgroup::kill_all`]).
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.ops_mut().remove()
    }
}

/// For the forked child (async-signal-safe: only `write(2)`, no allocation):
/// writes `"0"` to each fd of [`RunCgroup::join_fds`], moving the calling
/// task into the run. Returns the errno of the first failure.
pub fn join_self(fds: &[RawFd]) -> Result<(), i32> {
    for &fd in fds {
        // SAFETY: writes 1 byte from a static buffer to a caller-provided fd.
        let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if n != 1 {
            // SAFETY: reading errno of this thread.
            return Err(unsafe { *libc::__errno_location() });
        }
    }
    Ok(())
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<RunCgroup>();
    f::<CgroupManager>();
}
