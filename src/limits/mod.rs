//! Limits and accounting: cgroups (v1 and v2), rlimits, usage figures.
//!
//! * [`cgroup`]: one cgroup (v2) or one cgroup per needed hierarchy (v1) per
//!   sandboxed run, with memory / pids / CPU-bandwidth limits, usage figures,
//!   OOM and pids-limit detection, kill-all and cleanup. Detection of the
//!   cgroup layout happens at run time ([`CgroupManager::detect`]).
//! * [`rlimits`]: `setrlimit` values applied between fork and exec.

pub mod cgroup;
pub mod rlimits;

pub use cgroup::{CgroupError, CgroupLimits, CgroupManager, CgroupVersion, RunCgroup, Usage};
pub use rlimits::Rlimits;
