//! Resource limits applied with `setrlimit` in the child between fork and exec.
//!
//! The cgroup is the real limit for memory, pids and CPU; rlimits are a
//! per-process backstop (RLIMIT_CPU) and cover what cgroups do not (file size,
//! open files, stack, core dumps), and the kernel's per-user counters
//! (pending signals, processes, message-queue bytes, locked memory): a run
//! inheriting the host's values could take a whole host user's share.

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
    /// RLIMIT_NPROC: a backstop where there is no pids cgroup, set by the
    /// runner ([`Rlimits::with_own_userns`]) only when the run has a user
    /// namespace of its own: the kernel counts it per uid of that namespace
    /// then, so it binds this run alone (without one, every run sharing the
    /// host uid would count).
    pub nproc: Option<u64>,
    /// RLIMIT_SIGPENDING (counted per user like NPROC).
    pub sigpending: Option<u64>,
    /// RLIMIT_MSGQUEUE, bytes (per user).
    pub msgqueue: Option<u64>,
    /// RLIMIT_MEMLOCK, bytes (per process for mlock, per user for SHM_LOCK).
    pub memlock: Option<u64>,
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
            sigpending: limits.pending_signals,
            msgqueue: limits.message_queue,
            memlock: limits.locked_memory,
        }
    }

    /// Adds RLIMIT_NPROC for a run in its own user namespace: the pids
    /// limit plus one, so that the pids cgroup (which reports the verdict)
    /// is the one that refuses first.
    pub fn with_own_userns(mut self, limits: &Limits) -> Self {
        self.nproc = limits.pids.map(|p| p.saturating_add(1));
        self
    }

    /// Lowers the per-user limits to this process's own hard limits: the
    /// run cannot raise them past those (it has no capability in the
    /// host's user namespace), and a profile asking for more means "as
    /// much as the host allows", not a failed run.
    pub fn within_own(mut self) -> Self {
        use nix::sys::resource::getrlimit;
        for (r, v) in [
            (Resource::RLIMIT_NPROC, &mut self.nproc),
            (Resource::RLIMIT_SIGPENDING, &mut self.sigpending),
            (Resource::RLIMIT_MSGQUEUE, &mut self.msgqueue),
            (Resource::RLIMIT_MEMLOCK, &mut self.memlock),
        ] {
            if let (Some(want), Ok((_, hard))) = (v.as_mut(), getrlimit(r)) {
                *want = (*want).min(hard);
            }
        }
        self
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
        for (r, v) in [
            (Resource::RLIMIT_NPROC, self.nproc),
            (Resource::RLIMIT_SIGPENDING, self.sigpending),
            (Resource::RLIMIT_MSGQUEUE, self.msgqueue),
            (Resource::RLIMIT_MEMLOCK, self.memlock),
        ] {
            if let Some(v) = v {
                setrlimit(r, v, v)?;
            }
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

    #[test]
    fn per_user_limits_come_from_the_profile() {
        let l = crate::profile::load("strict").expect("strict").limits;
        let r = Rlimits::from_limits(&l);
        assert_eq!(r.sigpending, Some(Limits::DEFAULT_PENDING_SIGNALS));
        assert_eq!(r.msgqueue, Some(Limits::DEFAULT_MESSAGE_QUEUE));
        assert_eq!(r.memlock, Some(Limits::DEFAULT_LOCKED_MEMORY));
        assert_eq!(r.nproc, None);
        let pids = l.pids.expect("strict has a pids limit");
        assert_eq!(r.with_own_userns(&l).nproc, Some(pids + 1));
    }
}
