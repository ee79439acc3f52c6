//! Resource limits applied with `setrlimit` in the child between fork and exec.
//!
//! The cgroup is the real limit for memory, pids and CPU; rlimits are a
//! per-process backstop (RLIMIT_CPU) and cover what cgroups do not (file size,
//! open files, stack, core dumps).

use nix::sys::resource::{Resource, setrlimit};

use crate::profile::Limits;

/// rlimit values; `None` = leave the inherited value alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rlimits {
    /// RLIMIT_CPU, seconds: `ceil(cpu_time) + 1` so the cgroup-based CPU
    /// accounting (polled by the runner) decides first and this is a backstop.
    pub cpu_secs: Option<u64>,
    /// RLIMIT_FSIZE, bytes.
    pub file_size: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// RLIMIT_STACK, bytes.
    pub stack: Option<u64>,
    /// RLIMIT_CORE: always 1 (no core file, no piped core handler).
    pub core: u64,
    /// RLIMIT_NPROC. Not set from the profile (it counts per real uid across
    /// the whole machine, so it is unreliable; the pids cgroup is the limit).
    pub nproc: Option<u64>,
}

impl Rlimits {
    /// Builds the rlimits from a profile's limits.
    pub fn from_limits(limits: &Limits) -> Self {
        let cpu_secs = limits.cpu_time.map(|d| {
            let whole = d.as_secs();
            let ceil = if d.subsec_nanos() > 0 {
                whole + 1
            } else {
                whole
            };
            ceil.saturating_add(1)
        });
        Rlimits {
            cpu_secs,
            file_size: limits.file_size,
            open_files: limits.open_files,
            stack: limits.stack,
            // 1, not 0: the kernel refuses a piped core_pattern handler only
            // when the limit is exactly 1, and 1 byte is below ELF's minimum
            // core size, so no core file is written either.
            core: 1,
            nproc: None,
        }
    }

    /// Applies the limits (soft = hard) with `setrlimit` only: no allocation,
    /// async-signal-safe, usable in a `pre_exec` closure or after a raw fork.
    pub fn apply(&self) -> Result<(), nix::Error> {
        if let Some(v) = self.cpu_secs {
            setrlimit(Resource::RLIMIT_CPU, v, v)?;
        }
        if let Some(v) = self.file_size {
            setrlimit(Resource::RLIMIT_FSIZE, v, v)?;
        }
        if let Some(v) = self.open_files {
            setrlimit(Resource::RLIMIT_NOFILE, v, v)?;
        }
        if let Some(v) = self.stack {
            setrlimit(Resource::RLIMIT_STACK, v, v)?;
        }
        setrlimit(Resource::RLIMIT_CORE, self.core, self.core)?;
        if let Some(v) = self.nproc {
            setrlimit(Resource::RLIMIT_NPROC, v, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_backstop_rounds_up_plus_one() {
        let mut l = Limits {
            cpu_time: Some(Duration::from_millis(1500)),
            ..Default::default()
        };
        assert_eq!(Rlimits::from_limits(&l).cpu_secs, Some(3));
        l.cpu_time = Some(Duration::from_secs(2));
        assert_eq!(Rlimits::from_limits(&l).cpu_secs, Some(3));
        l.cpu_time = None;
        let r = Rlimits::from_limits(&l);
        assert_eq!(r.cpu_secs, None);
        assert_eq!(r.core, 1);
    }
}
