//! The verdict of a run, decided from the supervisor's measurements, the
//! kernel's accounting and the child's report, never from how the program
//! died.

use std::time::Duration;

use super::child::{BIND_STEP_BASE, STEP_BASE, Step};
use super::report::SetupFailed;
use super::supervise::Outcome;
use super::{RunResult, Status, result};
use crate::profile::{Limits, Profile};

pub(super) fn verdict(
    r: &mut RunResult,
    o: &Outcome,
    limits: &Limits,
    profile: &Profile,
    argv0: &str,
    mount_steps: &[String],
    bind_steps: &[String],
) {
    if let Some(SetupFailed { step, errno }) = o.child_error {
        let err = nix::errno::Errno::from_raw(errno);
        if step == Step::Exec as u32 {
            r.exec_failed = true;
            let why = match errno {
                libc::ENOENT => "not found inside the sandbox",
                libc::EACCES => "not executable (or a directory on the way is not searchable)",
                libc::ENOEXEC => "not a valid executable format",
                _ => "cannot execute",
            };
            r.status = Some(Status::RuntimeError);
            r.exit_code = Some(if errno == libc::ENOENT { 127 } else { 126 });
            r.message = Some(format!("{argv0}: {why} ({err:?}: {})", err.desc()));
            return;
        }
        let what = if step >= BIND_STEP_BASE {
            bind_steps
                .get((step - BIND_STEP_BASE) as usize)
                .map_or_else(|| "binding".to_string(), |w| format!("doing \"{w}\""))
        } else if step >= STEP_BASE {
            Step::from_u32(step)
                .map_or("setting up the sandbox", |s| s.describe())
                .to_string()
        } else {
            mount_steps.get(step as usize).map_or_else(
                || format!("filesystem step {step}"),
                |w| format!("doing \"{w}\""),
            )
        };
        r.status = Some(Status::SandboxError);
        r.message = Some(format!(
            "sandbox setup failed while {what} under profile {}: {err}",
            profile.name
        ));
        return;
    }
    if let Some(st) = o.status {
        if libc::WIFEXITED(st) {
            r.exit_code = Some(libc::WEXITSTATUS(st));
        } else if libc::WIFSIGNALED(st) {
            r.signal = Some(libc::WTERMSIG(st));
        }
    } else if o.killed_for.is_some() || o.cancelled {
        r.signal = Some(libc::SIGKILL);
    }
    // Verdicts come from the supervisor's own measurements and the kernel's
    // accounting, never from how the program died.
    let cpu_over = limits
        .cpu_time
        .is_some_and(|l| r.usage.cpu_ms >= l.as_secs_f64() * 1e3);
    let status = if let Some(s) = o.killed_for {
        s
    } else if o.cancelled {
        r.cancelled = true;
        r.message = Some("cancelled".into());
        Status::RuntimeError
    } else if cpu_over {
        Status::TimeLimit
    } else if r.exit_code == Some(0) {
        Status::Ok
    } else {
        Status::RuntimeError
    };
    if r.message.is_none() {
        r.message = match status {
            Status::TimeLimit => Some(format!(
                "CPU time limit of {} exceeded ({:.0} ms used)",
                fmt_dur(limits.cpu_time),
                r.usage.cpu_ms
            )),
            Status::WallTimeLimit => Some(format!(
                "wall-time limit of {} exceeded",
                fmt_dur(limits.wall_time)
            )),
            Status::MemoryLimit => Some(format!(
                "memory limit of {} bytes exceeded (the kernel OOM-killed a process)",
                limits.memory.unwrap_or(0)
            )),
            Status::OutputLimit => Some(format!(
                "output limit of {} bytes exceeded on {}",
                limits.output.unwrap_or(0),
                if o.truncated[0] { "stdout" } else { "stderr" }
            )),
            Status::RuntimeError => match (r.exit_code, r.signal) {
                (Some(c), _) => Some(format!("exited with code {c}")),
                (_, Some(s)) if s == libc::SIGSYS => Some(
                    "killed by SIGSYS: a system call refused by the profile's seccomp filter"
                        .into(),
                ),
                (_, Some(s)) => Some(format!("killed by {}", result::signal_name(s))),
                _ => None,
            },
            _ => None,
        };
    }
    r.status = Some(status);
}

fn fmt_dur(d: Option<Duration>) -> String {
    d.map_or_else(|| "?".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}
