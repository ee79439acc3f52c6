//! Handing a run to a prepared container ([`Sandbox::run_prepared`]): its
//! stdio, binds, limits and strings go over "go" ([`super::go`]), then the
//! supervisor watches it ([`super::supervise`]) and its figures and verdict
//! are collected.

use crate::profile::BindMount;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use super::fds::{dup_cloexec, memfd_with, open_ro, pipe};
use super::prepare::Prepared;
use super::sandbox::{RunStrings, Sandbox};
use super::spec::{RunSpec, StdinSpec, bind_name};
use super::supervise::Supervisor;
use super::verdict::verdict;
use super::{RunError, RunResult, Status, go};
use crate::isolation::binds::open_bind;
use crate::limits::cgroup::CgroupLimits;

impl Sandbox {
    /// Starts `spec` in a prepared container and supervises it to the end.
    /// When this returns, every process of the run is dead and its figures
    /// are final; init may still be tearing the namespaces down, which
    /// dropping `p` waits for (callers in a hurry drop it elsewhere).
    pub fn run_prepared(&self, p: &mut Prepared, spec: &RunSpec) -> Result<RunResult, RunError> {
        let strings = self.run_strings(spec)?;
        self.run_prepared_with(p, spec, strings)
    }

    pub(super) fn run_prepared_with(
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
            argv0,
            argv,
            envp,
            candidates,
            workdir,
        } = s;
        let mut bind_fds: Vec<OwnedFd> = Vec::new();
        let mut bind_slots: Vec<(CString, bool)> = Vec::new();
        let mut bind_names: Vec<String> = Vec::new();
        // The profile's binds of the run's own directories first (their
        // place in the profile's order), then the run's.
        let relative = self
            .profile
            .filesystem
            .binds
            .iter()
            .filter(|b| b.source.is_relative() && !spec.relative_opened);
        let relative: Vec<BindMount> = relative
            .filter_map(|b| resolve_relative(b, spec.base_dir.as_deref()).transpose())
            .collect::<Result<_, RunError>>()?;
        for b in relative.iter().chain(&spec.binds) {
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
            cg.apply_limits(&CgroupLimits::from_profile(limits))?;
            if cg.clone_into_fd().is_none() {
                fds.extend_from_slice(cg.join_fds());
                ncg = cg.join_fds().len();
            }
        } else if limits.memory.is_some() || limits.pids.is_some() || limits.cpu_time.is_some() {
            return Err(RunError::NoCgroups);
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
        if let Err(e) = go::send_go(p.ctl.as_raw_fd(), &fds) {
            // Init is gone. If it reported a failed setup step first (it
            // had time to, e.g. while a private network was being set
            // up), the supervisor below reads that report and the run
            // gets its real error; otherwise it was killed from outside:
            // the caller retries with a fresh container.
            if !readable_now(p.err_r.as_raw_fd()) {
                return Err(RunError::Stale(e));
            }
        }
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
                // Our own child, not reaped yet: its pid is still its own.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
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
            &argv0,
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

/// Whether `fd` has data to read right now.
fn readable_now(fd: std::os::fd::RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents & libc::POLLIN != 0 }
}

/// A profile bind with a relative source, resolved against the run's base
/// directory (`None`: this process's working directory) to the canonical
/// path that is then opened. It must stay inside the base: a symlink an
/// earlier step of a job planted in its workspace must not bind a host
/// directory. A writable one is never `/` or a home (a whole home handed
/// to the run read-write). `None`: an optional source that is missing.
pub(super) fn resolve_relative(
    b: &BindMount,
    base: Option<&Path>,
) -> Result<Option<BindMount>, RunError> {
    use crate::isolation::mounts::MountPlanError;
    let src_err = |source| {
        RunError::Mount(MountPlanError::BindSource {
            path: b.source.clone(),
            source,
        })
    };
    let base = match base {
        Some(b) => b.to_path_buf(),
        None => std::env::current_dir().map_err(src_err)?,
    };
    let base = std::fs::canonicalize(&base).map_err(src_err)?;
    let full = match std::fs::canonicalize(base.join(&b.source)) {
        Ok(p) => p,
        Err(e) if b.optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(src_err(e)),
    };
    if !full.starts_with(&base) {
        return Err(src_err(std::io::Error::other(format!(
            "resolves to {}, outside {} (a relative bind source stays in the run's directory)",
            full.display(),
            base.display()
        ))));
    }
    if b.writable {
        crate::isolation::checkout::check_not_too_wide(&bind_name(b), &full)
            .map_err(|e| RunError::Mount(MountPlanError::Checkout(e)))?;
    }
    Ok(Some(BindMount {
        source: full,
        ..b.clone()
    }))
}
