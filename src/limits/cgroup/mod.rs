//! cgroup management for one sandboxed run, cgroup v1 (legacy / hybrid) and v2.
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

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which cgroup interface is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Which optional v1 hierarchies a run gets (v2 has a single directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    /// The cpu controller, for a CPU-bandwidth quota.
    pub cpu: bool,
    /// The freezer, for killing a run without a pid namespace race-free
    /// (with one, killing its init kills everything).
    pub freezer: bool,
}

/// Limits for one run. `None` = no limit (accounting still happens).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupLimits {
    /// Memory limit in bytes (swap is not allowed on top of it where the
    /// kernel lets us say so).
    pub memory: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids: Option<u64>,
    /// CPU bandwidth in CPUs (1.0 = one full core).
    pub cpu_quota: Option<f64>,
}

impl CgroupLimits {
    pub fn from_profile(limits: &crate::profile::Limits) -> Self {
        CgroupLimits {
            memory: limits.memory,
            pids: limits.pids,
            cpu_quota: limits.cpu_quota,
        }
    }
}

/// Usage figures of one run (see the module doc for their sources).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub user_ns: u64,
    pub sys_ns: u64,
    pub memory_peak_bytes: u64,
    pub pids_peak: Option<u64>,
}

/// Errors; every variant names the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup: {op} {}: unexpected content: {detail}", path.display())]
    Parse {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("cgroup: {op} {}: controller `{controller}` is not available: {hint}", path.display())]
    MissingController {
        op: &'static str,
        path: PathBuf,
        controller: &'static str,
        hint: String,
    },
    #[error("cgroup: {op} {}: {detail}", path.display())]
    Unsupported {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("cgroup: {op} {}: invalid limit: {detail}", path.display())]
    InvalidLimit {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("cgroup: {op} {}: still busy after {waited:?}", path.display())]
    Busy {
        op: &'static str,
        path: PathBuf,
        waited: Duration,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------
// Parsing /proc

/// Undoes mountinfo's octal escapes (`\040` for space etc.).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CgroupMount {
    /// `true` for cgroup2.
    pub v2: bool,
    /// Root of the mount within the hierarchy (field 4).
    pub root: String,
    pub mount_point: PathBuf,
    /// v1 controllers (from the super options; `name=` entries excluded).
    pub controllers: Vec<String>,
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let lf: Vec<&str> = left.split(' ').collect();
        let rf: Vec<&str> = right.split(' ').collect();
        if lf.len() < 5 || rf.len() < 3 {
            continue;
        }
        let fstype = rf[0];
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            rf[2]
                .split(',')
                .filter(|o| {
                    !o.is_empty()
                        && !o.starts_with("name=")
                        && !matches!(*o, "rw" | "ro" | "noprefix" | "clone_children" | "xattr")
                        && !o.contains('=')
                })
                .map(str::to_string)
                .collect()
        };
        out.push(CgroupMount {
            v2,
            root: unescape_mountinfo(lf[3]),
            mount_point: PathBuf::from(unescape_mountinfo(lf[4])),
            controllers,
        });
    }
    out
}

/// One `/proc/self/cgroup` line: (controllers, path). v2 has no controllers.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        let ctrls = ctrls
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        out.push((ctrls, path.to_string()));
    }
    out
}

/// Start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot).
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let text = read_small(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Joins a cgroup path (from /proc/self/cgroup) onto a mount, given the
/// mount's root within the hierarchy. `None` if the path is not visible in
/// this mount.
fn cgroup_dir(mount: &CgroupMount, cg_path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rel = if root.is_empty() {
        cg_path
    } else if cg_path == root {
        ""
    } else {
        cg_path
            .strip_prefix(root)?
            .strip_prefix('/')
            .map(|_| &cg_path[root.len()..])?
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rel)
    })
}

// ---------------------------------------------------------------------------
// Small file helpers

fn read_string(op: &'static str, path: &Path) -> Result<String, CgroupError> {
    read_small(path).map_err(io_err(op, path))
}

/// Reads a /proc or cgroupfs file. These report size 0, so `fs::read` would
/// start with a tiny buffer and grow it over many `read` calls (each one
/// re-generating the text in the kernel); one large read is enough.
fn read_small(path: impl AsRef<Path>) -> io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(16 * 1024);
    // Through `take`: File's own read_to_end would fstat for a size hint.
    File::open(path)?.take(1 << 24).read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn write_file(op: &'static str, path: &Path, value: &str) -> Result<(), CgroupError> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(op, path))?;
    f.write_all(value.as_bytes()).map_err(io_err(op, path))
}

fn read_u64(op: &'static str, path: &Path) -> Result<u64, CgroupError> {
    let s = read_string(op, path)?;
    s.trim().parse().map_err(|_| CgroupError::Parse {
        op,
        path: path.to_path_buf(),
        detail: format!("expected an integer, got {:?}", s.trim()),
    })
}

/// Value of `key` in a flat-keyed file (`key value` per line).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

fn read_keyed(op: &'static str, path: &Path, key: &str) -> Result<u64, CgroupError> {
    let s = read_string(op, path)?;
    keyed(&s, key).ok_or_else(|| CgroupError::Parse {
        op,
        path: path.to_path_buf(),
        detail: format!("no `{key}` line"),
    })
}

fn parse_ascii_u64(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?.trim();
    s.parse().ok()
}

fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let s = read_string("read", path)?;
    Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

// ---------------------------------------------------------------------------
// Manager

#[derive(Debug)]
struct V1Hierarchy {
    /// Controllers of this hierarchy that we use (subset of the mount's).
    controllers: Vec<String>,
    /// Our cgroup's directory in this hierarchy: run cgroups go under it.
    base: PathBuf,
}

#[derive(Debug)]
enum Layout {
    V1(Vec<V1Hierarchy>),
    V2 {
        base: PathBuf,
        /// `Some` when we moved ourselves into a supervisor leaf.
        supervisor_leaf: Option<PathBuf>,
    },
}

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

const V1_WANTED: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];
const V2_WANTED: [&str; 3] = ["memory", "pids", "cpu"];

impl CgroupManager {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup` and decides:
    /// v1 if a v1 hierarchy carries the memory controller (legacy or hybrid),
    /// else v2 if a cgroup2 mount exists.
    pub fn detect() -> Result<Self, CgroupError> {
        let mi_path = Path::new("/proc/self/mountinfo");
        let cg_path = Path::new("/proc/self/cgroup");
        let mountinfo = read_string("read", mi_path)?;
        let proc_cgroup = read_string("read", cg_path)?;
        let owner_pid = std::process::id();
        let owner_start = process_start_time(owner_pid).ok_or_else(|| CgroupError::Parse {
            op: "read start time from",
            path: PathBuf::from("/proc/self/stat"),
            detail: "no field 22".into(),
        })?;
        Self::detect_from(&mountinfo, &proc_cgroup, owner_pid, owner_start)
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
        let mi_path = Path::new("/proc/self/mountinfo");
        let mounts = parse_mountinfo(mountinfo);
        let cgroups = parse_proc_cgroup(proc_cgroup);
        let v1_memory = mounts
            .iter()
            .any(|m| !m.v2 && m.controllers.iter().any(|c| c == "memory"));
        let layout = if v1_memory {
            Self::detect_v1(&mounts, &cgroups, mi_path)?
        } else if let Some(m) = mounts.iter().find(|m| m.v2) {
            Self::detect_v2(m, &cgroups, owner_pid)?
        } else {
            return Err(CgroupError::Unsupported {
                op: "find cgroup mounts in",
                path: mi_path.to_path_buf(),
                detail: "no cgroup v1 memory hierarchy and no cgroup2 mount".into(),
            });
        };
        Ok(CgroupManager {
            inner: Arc::new(Inner {
                layout,
                owner_pid,
                owner_start,
            }),
        })
    }

    fn detect_v1(
        mounts: &[CgroupMount],
        cgroups: &[(Vec<String>, String)],
        mi_path: &Path,
    ) -> Result<Layout, CgroupError> {
        let mut hier: Vec<V1Hierarchy> = Vec::new();
        let mut seen_mounts: BTreeSet<PathBuf> = BTreeSet::new();
        for want in V1_WANTED {
            if hier.iter().any(|h| h.controllers.iter().any(|c| c == want)) {
                continue;
            }
            // A hierarchy may be mounted several times; take the first mount
            // in which our cgroup is visible.
            let Some(line) = cgroups.iter().find(|(c, _)| c.iter().any(|c| c == want)) else {
                continue;
            };
            let found = mounts
                .iter()
                .filter(|m| !m.v2 && m.controllers.iter().any(|c| c == want))
                .find_map(|m| {
                    let dir = cgroup_dir(m, &line.1)?;
                    dir.is_dir().then_some((m, dir))
                });
            let Some((m, dir)) = found else {
                continue;
            };
            if !seen_mounts.insert(m.mount_point.clone()) {
                continue;
            }
            let controllers = V1_WANTED
                .iter()
                .filter(|w| m.controllers.iter().any(|c| c == *w))
                .map(|w| w.to_string())
                .collect();
            hier.push(V1Hierarchy {
                controllers,
                base: dir,
            });
        }
        for required in ["memory", "cpuacct"] {
            if !hier
                .iter()
                .any(|h| h.controllers.iter().any(|c| c == required))
            {
                return Err(CgroupError::MissingController {
                    op: "find v1 hierarchy in",
                    path: mi_path.to_path_buf(),
                    controller: required,
                    hint: "mount it (or our cgroup is not visible in it)".into(),
                });
            }
        }
        Ok(Layout::V1(hier))
    }

    fn detect_v2(
        mount: &CgroupMount,
        cgroups: &[(Vec<String>, String)],
        owner_pid: u32,
    ) -> Result<Layout, CgroupError> {
        let Some((_, path)) = cgroups.iter().find(|(c, _)| c.is_empty()) else {
            return Err(CgroupError::Unsupported {
                op: "find the v2 (0::) entry in",
                path: PathBuf::from("/proc/self/cgroup"),
                detail: "no `0::/...` line".into(),
            });
        };
        let mut cur = cgroup_dir(mount, path).ok_or_else(|| CgroupError::Unsupported {
            op: "locate our cgroup under",
            path: mount.mount_point.clone(),
            detail: format!(
                "cgroup {path:?} is outside the mount's root {:?}",
                mount.root
            ),
        })?;
        // detect() called again after we already moved into our supervisor leaf.
        let leaf_name = format!("sandbox-supervisor-{owner_pid}");
        let mut supervisor_leaf = None;
        if cur.file_name().is_some_and(|n| n == leaf_name.as_str()) {
            supervisor_leaf = Some(cur.clone());
            cur = cur.parent().map(Path::to_path_buf).unwrap_or(cur);
        }
        let base = cur;
        let ctl_path = base.join("cgroup.controllers");
        let available = read_string("read", &ctl_path)?;
        for want in V2_WANTED {
            if !available.split_whitespace().any(|c| c == want) {
                return Err(CgroupError::MissingController {
                    op: "check",
                    path: ctl_path,
                    controller: want,
                    hint: "the parent cgroup must delegate it (enable it in the parent's \
                           cgroup.subtree_control, e.g. systemd Delegate=yes)"
                        .into(),
                });
            }
        }
        let st_path = base.join("cgroup.subtree_control");
        let enabled = read_string("read", &st_path)?;
        if V2_WANTED
            .iter()
            .all(|w| enabled.split_whitespace().any(|c| c == *w))
        {
            return Ok(Layout::V2 {
                base,
                supervisor_leaf,
            });
        }
        let enable = "+memory +pids +cpu";
        match write_file("enable controllers in", &st_path, enable) {
            Ok(()) => {}
            Err(CgroupError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY)
                    && base != mount.mount_point
                    && supervisor_leaf.is_none() =>
            {
                // No internal processes: move only ourselves into a leaf.
                let leaf = base.join(&leaf_name);
                match fs::create_dir(&leaf) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("create supervisor leaf", &leaf)(e)),
                }
                write_file(
                    "move this process into",
                    &leaf.join("cgroup.procs"),
                    &owner_pid.to_string(),
                )?;
                supervisor_leaf = Some(leaf);
                write_file("enable controllers in", &st_path, enable).map_err(|e| match e {
                    CgroupError::Io { source, .. }
                        if source.raw_os_error() == Some(libc::EBUSY) =>
                    {
                        CgroupError::Unsupported {
                            op: "enable controllers in",
                            path: st_path.clone(),
                            detail: "our cgroup still holds other processes after moving \
                                     this one into a leaf; run the sandbox in its own \
                                     delegated cgroup"
                                .into(),
                        }
                    }
                    other => other,
                })?;
            }
            Err(e) => return Err(e),
        }
        Ok(Layout::V2 {
            base,
            supervisor_leaf,
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
        match self.inner.layout {
            Layout::V1(_) => CgroupVersion::V1,
            Layout::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// Human-readable summary for logs / `--version`-style output.
    pub fn describe(&self) -> String {
        match &self.inner.layout {
            Layout::V1(h) => {
                let parts: Vec<String> = h
                    .iter()
                    .map(|h| format!("{} under {}", h.controllers.join(","), h.base.display()))
                    .collect();
                format!("cgroup v1 ({})", parts.join("; "))
            }
            Layout::V2 {
                base,
                supervisor_leaf,
            } => {
                let mut s = format!("cgroup v2 (memory, pids, cpu) under {}", base.display());
                if let Some(l) = supervisor_leaf {
                    s.push_str(&format!("; this process moved to {}", l.display()));
                }
                s
            }
        }
    }

    /// Directories under which run cgroups are created (one per v1
    /// hierarchy, one for v2).
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        match &self.inner.layout {
            Layout::V1(h) => h.iter().map(|h| h.base.clone()).collect(),
            Layout::V2 { base, .. } => vec![base.clone()],
        }
    }

    fn run_dir_name(&self, name: &str) -> String {
        // Process-wide, so two managers of one process never collide.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut s = format!(
            "sandbox-{}-{}-{}",
            self.inner.owner_pid, self.inner.owner_start, seq
        );
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
            .take(48)
            .collect();
        if !clean.is_empty() {
            s.push('-');
            s.push_str(&clean);
        }
        s
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
        let dir_name = self.run_dir_name(name);
        let mut run = RunCgroup {
            version: self.version(),
            dirs: Vec::new(),
            join_owned: Vec::new(),
            join_raw: Vec::new(),
            dir_fd: None,
            cpu_file: None,
            cpu_path: PathBuf::new(),
            memory_dir: PathBuf::new(),
            cpuacct_dir: PathBuf::new(),
            pids_dir: None,
            cpu_dir: None,
            freezer_dir: None,
            mem_sample_peak: AtomicU64::new(0),
            removed: false,
        };
        match &self.inner.layout {
            Layout::V1(hier) => {
                let skip =
                    |c: &String| (c == "cpu" && !shape.cpu) || (c == "freezer" && !shape.freezer);
                for h in hier {
                    if h.controllers.iter().all(skip) {
                        continue;
                    }
                    let dir = h.base.join(&dir_name);
                    fs::create_dir(&dir).map_err(io_err("create", &dir))?;
                    run.dirs.push(dir.clone());
                    let has = |c: &str| h.controllers.iter().any(|x| x == c);
                    if has("memory") {
                        run.memory_dir = dir.clone();
                    }
                    if has("cpuacct") {
                        run.cpuacct_dir = dir.clone();
                    }
                    if has("pids") {
                        run.pids_dir = Some(dir.clone());
                    }
                    if has("cpu") {
                        run.cpu_dir = Some(dir.clone());
                    }
                    if has("freezer") {
                        run.freezer_dir = Some(dir.clone());
                    }
                    let tasks = dir.join("tasks");
                    let f = OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_CLOEXEC)
                        .open(&tasks)
                        .map_err(io_err("open for joining", &tasks))?;
                    run.join_raw.push(f.as_raw_fd());
                    run.join_owned.push(OwnedFd::from(f));
                }
                run.cpu_path = run.cpuacct_dir.join("cpuacct.usage");
            }
            Layout::V2 { base, .. } => {
                let dir = base.join(&dir_name);
                fs::create_dir(&dir).map_err(io_err("create", &dir))?;
                run.dirs.push(dir.clone());
                run.memory_dir = dir.clone();
                run.cpuacct_dir = dir.clone();
                run.pids_dir = Some(dir.clone());
                let d = File::options()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(&dir)
                    .map_err(io_err("open directory", &dir))?;
                run.dir_fd = Some(OwnedFd::from(d));
                let procs = dir.join("cgroup.procs");
                let f = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&procs)
                    .map_err(io_err("open for joining", &procs))?;
                run.join_raw.push(f.as_raw_fd());
                run.join_owned.push(OwnedFd::from(f));
                run.cpu_path = dir.join("cpu.stat");
            }
        }
        let cpu = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&run.cpu_path)
            .map_err(io_err("open", &run.cpu_path))?;
        run.cpu_file = Some(cpu);
        Ok(run)
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
        let mut removed: BTreeSet<String> = BTreeSet::new();
        for base in self.base_dirs() {
            let Ok(rd) = fs::read_dir(&base) else {
                continue;
            };
            for ent in rd.flatten() {
                let Ok(name) = ent.file_name().into_string() else {
                    continue;
                };
                if !only(&name) || !owner_is_dead(&name) {
                    continue;
                }
                let dir = base.join(&name);
                if !dir.is_dir() {
                    continue;
                }
                let empty = read_pids(&dir.join("cgroup.procs")).is_ok_and(|p| p.is_empty());
                if empty && fs::remove_dir(&dir).is_ok() {
                    removed.insert(name);
                }
            }
        }
        removed.len()
    }
}

/// Parses a run / supervisor cgroup name; `true` only when the name matches
/// our scheme and its owner is dead.
pub(crate) fn owner_is_dead(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix("sandbox-supervisor-") {
        let Ok(pid) = rest.parse::<u32>() else {
            return false;
        };
        return pid != 0 && !Path::new(&format!("/proc/{pid}")).exists();
    }
    let Some(rest) = name.strip_prefix("sandbox-") else {
        return false;
    };
    let mut it = rest.splitn(4, '-');
    let (Some(pid), Some(start), Some(seq)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start), Ok(_seq)) =
        (pid.parse::<u32>(), start.parse::<u64>(), seq.parse::<u64>())
    else {
        return false;
    };
    if pid == 0 {
        return false;
    }
    match process_start_time(pid) {
        None => !Path::new(&format!("/proc/{pid}")).exists(),
        Some(s) => s != start,
    }
}

fn validate_limits(dir: &Path, limits: &CgroupLimits) -> Result<(), CgroupError> {
    let bad = |detail: String| CgroupError::InvalidLimit {
        op: "apply limits to",
        path: dir.to_path_buf(),
        detail,
    };
    if let Some(q) = limits.cpu_quota
        && !(q.is_finite() && q > 0.0 && q <= 65536.0)
    {
        return Err(bad(format!(
            "cpu_quota {q} must be a positive number of CPUs"
        )));
    }
    if limits.memory == Some(0) {
        return Err(bad("memory limit 0".into()));
    }
    if limits.pids == Some(0) {
        return Err(bad("pids limit 0".into()));
    }
    Ok(())
}

const CFS_PERIOD_US: u64 = 100_000;

fn quota_us(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

fn apply_v1_limits(run: &RunCgroup, limits: &CgroupLimits) -> Result<(), CgroupError> {
    validate_limits(&run.memory_dir, limits)?;
    let mem = &run.memory_dir;
    // Best effort: keep the run out of swap even without memsw.
    let sw = mem.join("memory.swappiness");
    if sw.exists() {
        let _ = write_file("write", &sw, "0");
    }
    if let Some(m) = limits.memory {
        let v = m.to_string();
        write_file("set limit", &mem.join("memory.limit_in_bytes"), &v)?;
        let memsw = mem.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write_file("set limit", &memsw, &v)?;
        }
    }
    if let Some(p) = limits.pids {
        let Some(d) = &run.pids_dir else {
            return Err(CgroupError::MissingController {
                op: "set pids limit",
                path: mem.clone(),
                controller: "pids",
                hint: "no v1 pids hierarchy is mounted".into(),
            });
        };
        write_file("set limit", &d.join("pids.max"), &p.to_string())?;
    }
    if let Some(q) = limits.cpu_quota {
        let Some(d) = &run.cpu_dir else {
            return Err(CgroupError::MissingController {
                op: "set cpu quota",
                path: mem.clone(),
                controller: "cpu",
                hint: "no v1 cpu hierarchy is mounted, or the run was created without it".into(),
            });
        };
        write_file(
            "set limit",
            &d.join("cpu.cfs_period_us"),
            &CFS_PERIOD_US.to_string(),
        )?;
        write_file(
            "set limit",
            &d.join("cpu.cfs_quota_us"),
            &quota_us(q).to_string(),
        )?;
    }
    Ok(())
}

fn apply_v2_limits(dir: &Path, limits: &CgroupLimits) -> Result<(), CgroupError> {
    validate_limits(dir, limits)?;
    if let Some(m) = limits.memory {
        write_file("set limit", &dir.join("memory.max"), &m.to_string())?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write_file("set limit", &swap, "0")?;
        }
    }
    let group = dir.join("memory.oom.group");
    if group.exists() {
        write_file("set", &group, "1")?;
    }
    if let Some(p) = limits.pids {
        write_file("set limit", &dir.join("pids.max"), &p.to_string())?;
    }
    if let Some(q) = limits.cpu_quota {
        write_file(
            "set limit",
            &dir.join("cpu.max"),
            &format!("{} {}", quota_us(q), CFS_PERIOD_US),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Run cgroup

/// The cgroup(s) of one sandboxed run. Dropping it kills what is left in it
/// and removes it (best effort); call [`RunCgroup::remove`] to see errors.
#[derive(Debug)]
pub struct RunCgroup {
    version: CgroupVersion,
    /// Every directory we created (v1: one per hierarchy).
    dirs: Vec<PathBuf>,
    join_owned: Vec<OwnedFd>,
    join_raw: Vec<RawFd>,
    dir_fd: Option<OwnedFd>,
    cpu_file: Option<File>,
    cpu_path: PathBuf,
    memory_dir: PathBuf,
    cpuacct_dir: PathBuf,
    pids_dir: Option<PathBuf>,
    /// v1 only: the cpu hierarchy's directory, when the run has one.
    cpu_dir: Option<PathBuf>,
    /// v1 only, when the freezer hierarchy is mounted.
    freezer_dir: Option<PathBuf>,
    mem_sample_peak: AtomicU64,
    removed: bool,
}

impl RunCgroup {
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Sets the run's memory, pids and CPU-bandwidth limits (before any of
    /// its processes starts the program).
    pub fn apply_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V1 => apply_v1_limits(self, limits),
            CgroupVersion::V2 => apply_v2_limits(&self.memory_dir, limits),
        }
    }

    /// The directories of this run (v1: one per hierarchy; v2: one).
    pub fn paths(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Pre-opened `O_WRONLY|O_CLOEXEC` fds a freshly forked, still
    /// single-threaded child writes `"0"` to (with `write(2)` only) to move
    /// itself into the run: v1 each hierarchy's `tasks` file; v2 the run's
    /// `cgroup.procs` (fallback when clone3 `CLONE_INTO_CGROUP` is not used).
    /// See [`join_self`] for a ready-made async-signal-safe helper.
    pub fn join_fds(&self) -> &[RawFd] {
        &self.join_raw
    }

    /// v2: an `O_DIRECTORY` fd of the run cgroup for clone3 `CLONE_INTO_CGROUP`.
    /// v1: `None`.
    pub fn clone_into_fd(&self) -> Option<RawFd> {
        self.dir_fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Total CPU time of the run in ns. Hot path: keeps the file open and
    /// `pread`s it (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`).
    pub fn cpu_usage_ns(&self) -> Result<u64, CgroupError> {
        let f = self
            .cpu_file
            .as_ref()
            .ok_or_else(|| CgroupError::Unsupported {
                op: "read",
                path: self.cpu_path.clone(),
                detail: "cgroup already removed".into(),
            })?;
        let mut buf = [0u8; 1024];
        let n = f
            .read_at(&mut buf, 0)
            .map_err(io_err("read", &self.cpu_path))?;
        let b = &buf[..n];
        let parsed = match self.version {
            CgroupVersion::V1 => parse_ascii_u64(b),
            CgroupVersion::V2 => std::str::from_utf8(b)
                .ok()
                .and_then(|s| keyed(s, "usage_usec"))
                .map(|us| us.saturating_mul(1000)),
        };
        parsed.ok_or_else(|| CgroupError::Parse {
            op: "read",
            path: self.cpu_path.clone(),
            detail: format!("{:?}", String::from_utf8_lossy(b)),
        })
    }

    /// Samples the current memory usage and remembers the maximum; only
    /// needed as a fallback on v2 kernels without `memory.peak` (< 5.19).
    /// Returns the current usage.
    pub fn sample_memory(&self) -> Result<u64, CgroupError> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        };
        let cur = read_u64("read", &self.memory_dir.join(file))?;
        self.mem_sample_peak.fetch_max(cur, Ordering::Relaxed);
        Ok(cur)
    }

    /// All usage figures (see the module doc for where each comes from).
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        let mut u = Usage::default();
        match self.version {
            CgroupVersion::V1 => {
                let d = &self.cpuacct_dir;
                // The exact total; the split comes from tick-sampled
                // counters (the caller scales it to the total), all in one
                // file since Linux 4.7.
                u.cpu_ns = read_u64("read", &d.join("cpuacct.usage"))?;
                if let Some((us, sy)) = read_string("read", &d.join("cpuacct.usage_all"))
                    .ok()
                    .and_then(|s| parse_usage_all(&s))
                {
                    u.user_ns = us;
                    u.sys_ns = sy;
                } else if d.join("cpuacct.usage_user").exists() {
                    u.user_ns = read_u64("read", &d.join("cpuacct.usage_user"))?;
                    u.sys_ns = read_u64("read", &d.join("cpuacct.usage_sys"))?;
                } else {
                    let p = d.join("cpuacct.stat");
                    let tick_ns = 1_000_000_000 / clk_tck();
                    u.user_ns = read_keyed("read", &p, "user")?.saturating_mul(tick_ns);
                    u.sys_ns = read_keyed("read", &p, "system")?.saturating_mul(tick_ns);
                }
                u.memory_peak_bytes =
                    read_u64("read", &self.memory_dir.join("memory.max_usage_in_bytes"))?;
            }
            CgroupVersion::V2 => {
                let p = self.cpuacct_dir.join("cpu.stat");
                let s = read_string("read", &p)?;
                let get = |k: &str| {
                    keyed(&s, k).ok_or_else(|| CgroupError::Parse {
                        op: "read",
                        path: p.clone(),
                        detail: format!("no `{k}` line"),
                    })
                };
                u.cpu_ns = get("usage_usec")?.saturating_mul(1000);
                u.user_ns = get("user_usec")?.saturating_mul(1000);
                u.sys_ns = get("system_usec")?.saturating_mul(1000);
                let peak = self.memory_dir.join("memory.peak");
                u.memory_peak_bytes = if peak.exists() {
                    read_u64("read", &peak)?
                } else {
                    let cur = self.sample_memory()?;
                    cur.max(self.mem_sample_peak.load(Ordering::Relaxed))
                };
            }
        }
        if let Some(d) = &self.pids_dir {
            let p = d.join("pids.peak");
            if p.exists() {
                u.pids_peak = Some(read_u64("read", &p)?);
            }
        }
        Ok(u)
    }

    /// Whether the kernel OOM-killed a process of this run.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        match self.version {
            CgroupVersion::V2 => {
                let p = self.memory_dir.join("memory.events");
                Ok(read_keyed("read", &p, "oom_kill")? > 0)
            }
            CgroupVersion::V1 => {
                let p = self.memory_dir.join("memory.oom_control");
                let s = read_string("read", &p)?;
                match keyed(&s, "oom_kill") {
                    Some(n) => Ok(n > 0),
                    // Kernels < 4.13: no counter; a limit hit is the best hint.
                    None => Ok(read_u64("read", &self.memory_dir.join("memory.failcnt"))? > 0),
                }
            }
        }
    }

    /// Whether a fork/clone was refused because of `pids.max`.
    pub fn pids_limit_hit(&self) -> bool {
        let Some(d) = &self.pids_dir else {
            return false;
        };
        fs::read_to_string(d.join("pids.events"))
            .ok()
            .and_then(|s| keyed(&s, "max"))
            .is_some_and(|n| n > 0)
    }

    fn procs_path(&self) -> PathBuf {
        self.memory_dir.join("cgroup.procs")
    }

    /// Whether no process is left in the run (any hierarchy).
    pub fn is_empty(&self) -> bool {
        self.dirs
            .iter()
            .all(|d| read_pids(&d.join("cgroup.procs")).is_ok_and(|p| p.is_empty()))
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
        let deadline = Instant::now() + Duration::from_secs(2);
        if self.version == CgroupVersion::V2 {
            let k = self.memory_dir.join("cgroup.kill");
            if k.exists() {
                write_file("write", &k, "1")?;
                while !self.is_empty() {
                    if Instant::now() > deadline {
                        return Err(CgroupError::Busy {
                            op: "kill all in",
                            path: self.memory_dir.clone(),
                            waited: Duration::from_secs(2),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                return Ok(());
            }
        }
        if let Some(fz) = &self.freezer_dir {
            self.freeze_and_kill(fz);
        }
        loop {
            let mut any = false;
            for d in &self.dirs {
                for pid in read_pids(&d.join("cgroup.procs"))? {
                    if pid > 0 {
                        any = true;
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            if !any {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Busy {
                    op: "kill all in",
                    path: self.procs_path(),
                    waited: Duration::from_secs(2),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// v1 freezer step of [`RunCgroup::kill_all`]; best effort (the kill
    /// loop that follows is the fallback).
    fn freeze_and_kill(&self, fz: &Path) {
        let state = fz.join("freezer.state");
        if write_file("freeze", &state, "FROZEN").is_err() {
            return;
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(500) {
            match fs::read_to_string(&state) {
                Ok(s) if s.trim() == "FROZEN" => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break,
            }
        }
        if let Ok(pids) = read_pids(&fz.join("cgroup.procs")) {
            for pid in pids.into_iter().filter(|&p| p > 0) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = write_file("thaw", &state, "THAWED");
    }

    fn remove_dirs(&mut self) -> Result<(), CgroupError> {
        self.cpu_file = None;
        self.join_owned.clear();
        self.join_raw.clear();
        self.dir_fd = None;
        let start = Instant::now();
        let mut first_err = None;
        for d in std::mem::take(&mut self.dirs) {
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        if start.elapsed() > Duration::from_secs(1) {
                            first_err.get_or_insert(CgroupError::Busy {
                                op: "rmdir",
                                path: d.clone(),
                                waited: start.elapsed(),
                            });
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => {
                        first_err.get_or_insert(io_err("rmdir", &d)(e));
                        break;
                    }
                }
            }
        }
        self.removed = true;
        first_err.map_or(Ok(()), Err)
    }

    /// Removes every directory of the run, retrying EBUSY (exiting tasks)
    /// for up to ~1 s. Processes must be gone (see [`RunCgroup::kill_all`]).
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.remove_dirs()
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.removed && !self.dirs.is_empty() {
            if !self.is_empty() {
                let _ = self.kill_all();
            }
            let _ = self.remove_dirs();
        }
    }
}

/// Sums of the user and system columns of `cpuacct.usage_all`
/// (`cpu user system` header, then one line per CPU).
fn parse_usage_all(s: &str) -> Option<(u64, u64)> {
    let mut lines = s.lines();
    if lines.next()?.split_whitespace().collect::<Vec<_>>() != ["cpu", "user", "system"] {
        return None;
    }
    let (mut us, mut sy) = (0u64, 0u64);
    for l in lines {
        let mut f = l.split_whitespace();
        let (_, u, y) = (f.next()?, f.next()?, f.next()?);
        us = us.saturating_add(u.parse().ok()?);
        sy = sy.saturating_add(y.parse().ok()?);
    }
    Some((us, sy))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_all_sums_columns() {
        let s = "cpu user system\n0 1000 20\n1 300 4\n";
        assert_eq!(parse_usage_all(s), Some((1300, 24)));
        assert_eq!(parse_usage_all("cpu user system\n"), Some((0, 0)));
        assert_eq!(parse_usage_all("cpu system user\n0 1 2\n"), None);
        assert_eq!(parse_usage_all("cpu user system\n0 x 2\n"), None);
        assert_eq!(parse_usage_all(""), None);
    }

    #[test]
    fn mountinfo_hybrid_and_comounted() {
        let t = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                 33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                 40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                 41 31 0:38 / /sys/fs/cgroup/unified rw shared:5 - cgroup2 cgroup2 rw,nsdelegate\n\
                 42 31 0:38 / /a\\040b rw - cgroup2 cgroup2 rw\n\
                 garbage line\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].controllers, vec!["cpu", "cpuacct"]);
        assert!(m[2].controllers.is_empty());
        assert!(m[3].v2);
        assert_eq!(m[4].mount_point, PathBuf::from("/a b"));
    }

    #[test]
    fn proc_cgroup_odd_content() {
        let t = "4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/user.slice\nbad\n1:name=systemd:/\n9:x:relative\n";
        let c = parse_proc_cgroup(t);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1].0, vec!["cpu", "cpuacct"]);
        assert!(c[2].0.is_empty());
    }

    #[test]
    fn cgroup_dir_with_mount_root() {
        let m = CgroupMount {
            v2: true,
            root: "/a".into(),
            mount_point: "/sys/fs/cgroup".into(),
            controllers: vec![],
        };
        assert_eq!(
            cgroup_dir(&m, "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/b"))
        );
        assert_eq!(cgroup_dir(&m, "/a"), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup_dir(&m, "/ab"), None);
        assert_eq!(cgroup_dir(&m, "/x"), None);
    }

    #[test]
    fn names_and_owner() {
        assert!(!owner_is_dead("foo"));
        assert!(!owner_is_dead("sandbox-"));
        assert!(!owner_is_dead("sandbox-x-1-2"));
        let me = std::process::id();
        let st = process_start_time(me).unwrap();
        assert!(!owner_is_dead(&format!("sandbox-{me}-{st}-0")));
        assert!(owner_is_dead(&format!("sandbox-{me}-{}-0", st + 1)));
        assert!(owner_is_dead("sandbox-4194300-1-0-x"));
    }

    #[test]
    fn v2_detection_on_fake_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let ours = root.join("user.slice/job");
        fs::create_dir_all(&ours).unwrap();
        let mi = format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let pc = "0::/user.slice/job\n";
        // cpu not delegated: clear error naming it.
        fs::write(ours.join("cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(ours.join("cgroup.subtree_control"), "").unwrap();
        let e = CgroupManager::detect_from(&mi, pc, 1, 1).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`cpu`") && msg.contains("delegate"), "{msg}");
        // Available and already enabled.
        fs::write(
            ours.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(ours.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        let m = CgroupManager::detect_from(&mi, pc, 1, 1).unwrap();
        assert_eq!(m.version(), CgroupVersion::V2);
        assert_eq!(m.base_dirs(), vec![ours.clone()]);
        // Available, not enabled: we enable them.
        fs::write(ours.join("cgroup.subtree_control"), "").unwrap();
        CgroupManager::detect_from(&mi, pc, 1, 1).unwrap();
        assert_eq!(
            fs::read_to_string(ours.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        // Already inside our supervisor leaf: base is its parent.
        let leaf = ours.join("sandbox-supervisor-7");
        fs::create_dir(&leaf).unwrap();
        let pc = "0::/user.slice/job/sandbox-supervisor-7\n";
        let m = CgroupManager::detect_from(&mi, pc, 7, 1).unwrap();
        assert_eq!(m.base_dirs(), vec![ours.clone()]);
        assert!(m.describe().contains("sandbox-supervisor-7"));
    }

    #[test]
    fn v1_detection_separate_and_comounted() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        for d in ["memory/a", "pids", "cpu,cpuacct/b", "unified"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        let mi = format!(
            "35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / {r}/pids rw - cgroup cgroup rw,pids\n\
             32 31 0:29 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 / {r}/unified rw - cgroup2 cgroup2 rw\n",
            r = r.display()
        );
        let pc = "4:memory:/a\n8:pids:/\n2:cpu,cpuacct:/b\n0::/\n";
        let m = CgroupManager::detect_from(&mi, pc, 1, 1).unwrap();
        assert_eq!(m.version(), CgroupVersion::V1);
        assert_eq!(
            m.base_dirs(),
            vec![r.join("memory/a"), r.join("pids"), r.join("cpu,cpuacct/b")]
        );
        let d = m.describe();
        assert!(d.contains("cpu,cpuacct under"), "{d}");
        // No cpuacct: clear error.
        let pc = "4:memory:/a\n8:pids:/\n0::/\n";
        let e = CgroupManager::detect_from(&mi, pc, 1, 1).unwrap_err();
        assert!(e.to_string().contains("`cpuacct`"), "{e}");
    }

    #[test]
    fn quota() {
        assert_eq!(quota_us(1.0), 100_000);
        assert_eq!(quota_us(0.001), 1000);
        assert_eq!(quota_us(2.5), 250_000);
    }
}
