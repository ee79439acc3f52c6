//! cgroup v1 (legacy / hybrid): one run as [`V1Run`], a directory in each
//! hierarchy it needs (memory and cpuacct always, pids when mounted, cpu
//! and freezer when the run's shape asks for them; co-mounted hierarchies
//! such as `cpu,cpuacct` share one directory). It owns creating those
//! directories and the `tasks` fds a child joins through, applying limits
//! (`memory.limit_in_bytes` and `memsw`, `pids.max`, CFS quota), the usage
//! figures (`cpuacct.*`, `memory.max_usage_in_bytes`, `memory.oom_control`),
//! kill-all (freezer, then SIGKILL loop) and removal.
//!
//! Imports only `common`, `files` and `detect` (for the hierarchies).

use std::fs;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::common::{
    CFS_PERIOD_US, CgroupError, CgroupLimits, CgroupVersion, RunOps, RunShape, Usage, io_err,
    quota_us, validate_limits,
};
use super::detect::V1Hierarchy;
use super::files::{
    JoinFds, KILL_WAIT, KeptFile, keyed, kill_listed, parse_ascii_u64, pids_limit_hit, pids_peak,
    procs_empty, read_keyed, read_pids, read_string, read_u64, remove_dirs, write_file,
};

/// The directories of one v1 run. Dropping it kills what is left in it and
/// removes it (best effort).
#[derive(Debug)]
pub(super) struct V1Run {
    /// Every directory we created, one per hierarchy (empty once removed).
    dirs: Vec<PathBuf>,
    /// Each hierarchy's `tasks` file.
    join: JoinFds,
    /// `cpuacct.usage`.
    cpu: KeptFile,
    memory_dir: PathBuf,
    cpuacct_dir: PathBuf,
    /// When the pids hierarchy is mounted.
    pids_dir: Option<PathBuf>,
    /// The cpu hierarchy's directory, when the run has one.
    cpu_dir: Option<PathBuf>,
    /// When the freezer hierarchy is mounted and the run's shape wants it.
    freezer_dir: Option<PathBuf>,
}

impl V1Run {
    /// Creates `dir_name` in each hierarchy of `hier` that `shape` needs and
    /// opens its `tasks` file; on error, what was created is removed (by
    /// the drop).
    pub(super) fn create(
        hier: &[V1Hierarchy],
        dir_name: &str,
        shape: RunShape,
    ) -> Result<Self, CgroupError> {
        let mut run = V1Run {
            dirs: Vec::new(),
            join: JoinFds::default(),
            cpu: KeptFile::default(),
            memory_dir: PathBuf::new(),
            cpuacct_dir: PathBuf::new(),
            pids_dir: None,
            cpu_dir: None,
            freezer_dir: None,
        };
        let skip = |c: &String| (c == "cpu" && !shape.cpu) || (c == "freezer" && !shape.freezer);
        for h in hier {
            if h.controllers.iter().all(skip) {
                continue;
            }
            let dir = h.base.join(dir_name);
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
            run.join.open(&dir.join("tasks"))?;
        }
        run.cpu = KeptFile::open(run.cpuacct_dir.join("cpuacct.usage"))?;
        Ok(run)
    }

    fn procs_path(&self) -> PathBuf {
        self.memory_dir.join("cgroup.procs")
    }

    /// Freezer step of `kill_all`; best effort (the kill loop that follows
    /// is the fallback).
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
}

impl RunOps for V1Run {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn apply_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        validate_limits(&self.memory_dir, limits)?;
        let mem = &self.memory_dir;
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
            let Some(d) = &self.pids_dir else {
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
            let Some(d) = &self.cpu_dir else {
                return Err(CgroupError::MissingController {
                    op: "set cpu quota",
                    path: mem.clone(),
                    controller: "cpu",
                    hint: "no v1 cpu hierarchy is mounted, or the run was created without it"
                        .into(),
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

    fn paths(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn join_fds(&self) -> &[RawFd] {
        self.join.raw()
    }

    fn clone_into_fd(&self) -> Option<RawFd> {
        None
    }

    fn cpu_usage_ns(&self) -> Result<u64, CgroupError> {
        self.cpu.read_with(parse_ascii_u64)
    }

    fn sample_memory(&self) -> Result<u64, CgroupError> {
        // v1 has its own peak (memory.max_usage_in_bytes): no need to
        // remember samples.
        read_u64("read", &self.memory_dir.join("memory.usage_in_bytes"))
    }

    fn usage(&self) -> Result<Usage, CgroupError> {
        let mut u = Usage::default();
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
        u.memory_peak_bytes = read_u64("read", &self.memory_dir.join("memory.max_usage_in_bytes"))?;
        if let Some(d) = &self.pids_dir {
            u.pids_peak = pids_peak(d)?;
        }
        Ok(u)
    }

    fn oom_killed(&self) -> Result<bool, CgroupError> {
        let p = self.memory_dir.join("memory.oom_control");
        let s = read_string("read", &p)?;
        match keyed(&s, "oom_kill") {
            Some(n) => Ok(n > 0),
            // Kernels < 4.13: no counter; a limit hit is the best hint.
            None => Ok(read_u64("read", &self.memory_dir.join("memory.failcnt"))? > 0),
        }
    }

    fn pids_limit_hit(&self) -> bool {
        self.pids_dir.as_deref().is_some_and(pids_limit_hit)
    }

    fn is_empty(&self) -> bool {
        procs_empty(&self.dirs)
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + KILL_WAIT;
        if let Some(fz) = &self.freezer_dir {
            self.freeze_and_kill(fz);
        }
        kill_listed(&self.dirs, deadline, &self.procs_path())
    }

    fn remove(&mut self) -> Result<(), CgroupError> {
        self.cpu.close();
        self.join.close();
        remove_dirs(&std::mem::take(&mut self.dirs))
    }
}

impl Drop for V1Run {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            if !self.is_empty() {
                let _ = self.kill_all();
            }
            let _ = self.remove();
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

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
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
}
