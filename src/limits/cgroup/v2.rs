//! cgroup v2 (unified): one run as [`V2Run`], a single directory with the
//! memory, pids and cpu controllers. It owns creating that directory and
//! the fds into it (an `O_DIRECTORY` fd for clone3 `CLONE_INTO_CGROUP`,
//! `cgroup.procs` as the join fallback), applying limits (`memory.max`,
//! `memory.swap.max`, `memory.oom.group`, `pids.max`, `cpu.max`), the usage
//! figures (`cpu.stat`, `memory.peak` or sampled `memory.current`,
//! `memory.events`), kill-all (`cgroup.kill`, else SIGKILL loop) and
//! removal.
//!
//! Imports only `common` and `files`.

use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::common::{
    CFS_PERIOD_US, CgroupError, CgroupLimits, CgroupVersion, RunOps, Usage, io_err, quota_us,
    validate_limits,
};
use super::files::{
    JoinFds, KILL_WAIT, KeptFile, keyed, kill_listed, pids_limit_hit, pids_peak, procs_empty,
    read_keyed, read_string, read_u64, remove_dirs, write_file,
};

/// The directory of one v2 run. Dropping it kills what is left in it and
/// removes it (best effort).
#[derive(Debug)]
pub(super) struct V2Run {
    dir: PathBuf,
    /// For clone3 `CLONE_INTO_CGROUP`.
    dir_fd: Option<OwnedFd>,
    /// `cgroup.procs`.
    join: JoinFds,
    /// `cpu.stat`.
    cpu: KeptFile,
    /// Largest `memory.current` seen by `sample_memory` (for kernels
    /// without `memory.peak`).
    mem_sample_peak: AtomicU64,
    removed: bool,
}

impl V2Run {
    /// Creates `base/dir_name` and opens the fds into it; on error, the
    /// directory is removed again (by the drop).
    pub(super) fn create(base: &Path, dir_name: &str) -> Result<Self, CgroupError> {
        let dir = base.join(dir_name);
        fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        let mut run = V2Run {
            dir,
            dir_fd: None,
            join: JoinFds::default(),
            cpu: KeptFile::default(),
            mem_sample_peak: AtomicU64::new(0),
            removed: false,
        };
        let d = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&run.dir)
            .map_err(io_err("open directory", &run.dir))?;
        run.dir_fd = Some(OwnedFd::from(d));
        run.join.open(&run.dir.join("cgroup.procs"))?;
        run.cpu = KeptFile::open(run.dir.join("cpu.stat"))?;
        Ok(run)
    }
}

impl RunOps for V2Run {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn apply_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let dir = &self.dir;
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

    fn paths(&self) -> &[PathBuf] {
        if self.removed {
            &[]
        } else {
            std::slice::from_ref(&self.dir)
        }
    }

    fn join_fds(&self) -> &[RawFd] {
        self.join.raw()
    }

    fn clone_into_fd(&self) -> Option<RawFd> {
        self.dir_fd.as_ref().map(|f| f.as_raw_fd())
    }

    fn cpu_usage_ns(&self) -> Result<u64, CgroupError> {
        self.cpu.read_with(|b| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| keyed(s, "usage_usec"))
                .map(|us| us.saturating_mul(1000))
        })
    }

    fn sample_memory(&self) -> Result<u64, CgroupError> {
        let cur = read_u64("read", &self.dir.join("memory.current"))?;
        self.mem_sample_peak.fetch_max(cur, Ordering::Relaxed);
        Ok(cur)
    }

    fn usage(&self) -> Result<Usage, CgroupError> {
        let mut u = Usage::default();
        let p = self.dir.join("cpu.stat");
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
        let peak = self.dir.join("memory.peak");
        u.memory_peak_bytes = if peak.exists() {
            read_u64("read", &peak)?
        } else {
            let cur = self.sample_memory()?;
            cur.max(self.mem_sample_peak.load(Ordering::Relaxed))
        };
        u.pids_peak = pids_peak(&self.dir)?;
        Ok(u)
    }

    fn oom_killed(&self) -> Result<bool, CgroupError> {
        let p = self.dir.join("memory.events");
        Ok(read_keyed("read", &p, "oom_kill")? > 0)
    }

    fn pids_limit_hit(&self) -> bool {
        pids_limit_hit(&self.dir)
    }

    fn is_empty(&self) -> bool {
        procs_empty(self.paths())
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + KILL_WAIT;
        let k = self.dir.join("cgroup.kill");
        if k.exists() {
            write_file("write", &k, "1")?;
            while !self.is_empty() {
                if Instant::now() > deadline {
                    return Err(CgroupError::Busy {
                        op: "kill all in",
                        path: self.dir.clone(),
                        waited: KILL_WAIT,
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            return Ok(());
        }
        // Kernels < 5.14: no cgroup.kill.
        kill_listed(self.paths(), deadline, &self.dir.join("cgroup.procs"))
    }

    fn remove(&mut self) -> Result<(), CgroupError> {
        self.cpu.close();
        self.join.close();
        self.dir_fd = None;
        if std::mem::replace(&mut self.removed, true) {
            return Ok(());
        }
        remove_dirs(std::slice::from_ref(&self.dir))
    }
}

impl Drop for V2Run {
    fn drop(&mut self) {
        if !self.removed {
            if !self.is_empty() {
                let _ = self.kill_all();
            }
            let _ = self.remove();
        }
    }
}
