//! What every file of the cgroup module shares, and nothing that does I/O:
//! the public value types ([`CgroupVersion`], [`RunShape`], [`CgroupLimits`],
//! [`Usage`]), the error type [`CgroupError`], limit validation and the CFS
//! quota arithmetic used by both versions, and [`RunOps`], the interface the
//! v1 and v2 runs both implement (`super::RunCgroup` dispatches through it).
//!
//! It sits at the bottom of the module: it imports nothing from its siblings.

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks `limits` before anything is written (both versions; `dir` only
/// names the run in the error).
pub(super) fn validate_limits(dir: &Path, limits: &CgroupLimits) -> Result<(), CgroupError> {
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

pub(super) const CFS_PERIOD_US: u64 = 100_000;

/// CFS quota in µs per [`CFS_PERIOD_US`] for `cpus` CPUs (at least 1 ms,
/// the kernel's minimum).
pub(super) fn quota_us(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

/// One run's cgroup(s) in one version: what `super::RunCgroup` forwards its
/// public methods to (they carry the documentation). Implemented by
/// `super::v1::V1Run` and `super::v2::V2Run`, which own every field only
/// their version has; each also removes itself when dropped (killing what
/// is left first), so a half-created run leaves nothing behind.
pub(super) trait RunOps: std::fmt::Debug + Send + Sync {
    fn version(&self) -> CgroupVersion;
    fn apply_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError>;
    fn paths(&self) -> &[PathBuf];
    fn join_fds(&self) -> &[RawFd];
    fn clone_into_fd(&self) -> Option<RawFd>;
    fn cpu_usage_ns(&self) -> Result<u64, CgroupError>;
    fn sample_memory(&self) -> Result<u64, CgroupError>;
    fn usage(&self) -> Result<Usage, CgroupError>;
    fn oom_killed(&self) -> Result<bool, CgroupError>;
    fn pids_limit_hit(&self) -> bool;
    fn is_empty(&self) -> bool;
    fn kill_all(&self) -> Result<(), CgroupError>;
    /// Closes the fds and removes the directories (once; later calls and
    /// the drop do nothing).
    fn remove(&mut self) -> Result<(), CgroupError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota() {
        assert_eq!(quota_us(1.0), 100_000);
        assert_eq!(quota_us(0.001), 1000);
        assert_eq!(quota_us(2.5), 250_000);
    }
}
