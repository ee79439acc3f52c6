//! The child side of a run: everything between clone and execve.
//!
//! Process tree: supervisor → init (pid 1 of the new pid namespace: joins
//! the cgroup, builds the filesystem, then reaps) → payload (drops
//! privileges, installs seccomp, execs the program). When the payload ends,
//! init reports its wait status and exits, and the kernel kills whatever is
//! left in the pid namespace.
//!
//! All of this runs after a fork in a possibly multi-threaded process, so it
//! only uses async-signal-safe syscalls on data the parent prepared
//! ([`ChildPlan`]): no allocation, no locks, no logging. Failures are
//! reported as (step, errno) over a CLOEXEC pipe.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::isolation::mounts::{self, MountPlan};
use crate::isolation::sys::{self, errno, write_all};
use crate::security::caps::{CapPlan, CapStep};

/// Fixed steps after the mount plan, for error reports. Mount op `i` is
/// reported as step `i`; these are offset by `STEP_BASE`.
pub const STEP_BASE: u32 = 1 << 20;

/// Declares the steps once: the enum (numbered from `STEP_BASE`), the
/// reverse lookup, and the description shown in error messages.
macro_rules! steps {
    ($first:ident => $first_desc:literal, $($name:ident => $desc:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Step {
            $first = STEP_BASE,
            $($name,)*
        }

        impl Step {
            const ALL: &'static [Step] = &[Step::$first, $(Step::$name,)*];

            pub fn describe(self) -> &'static str {
                match self {
                    Step::$first => $first_desc,
                    $(Step::$name => $desc,)*
                }
            }
        }
    };
}

steps! {
    SyncWait => "waiting for the supervisor",
    JoinCgroup => "joining the run's cgroup",
    UnshareCgroupNs => "creating the cgroup namespace",
    Hostname => "setting the hostname",
    ForkPayload => "forking the program's process",
    Setsid => "detaching from the terminal (setsid)",
    Stdio => "setting up stdin/stdout/stderr",
    Rlimit => "setting rlimits",
    CapBounding => "dropping the capability bounding set",
    KeepCaps => "prctl(PR_SET_KEEPCAPS)",
    Setgroups => "dropping supplementary groups",
    Setgid => "setting the gid",
    Setuid => "setting the uid",
    Capset => "setting capabilities",
    Ambient => "setting ambient capabilities",
    NoNewPrivs => "setting no_new_privs",
    Seccomp => "installing the seccomp filter",
    Chdir => "changing to the working directory",
    Exec => "executing the program",
    CloseFds => "closing inherited file descriptors",
    ParentDeath => "arming the parent-death signal",
}

impl Step {
    pub fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == v)
    }
}

/// Everything the child needs, prepared before the fork.
pub struct ChildPlan {
    pub mounts: Option<MountPlan>,
    pub hostname: Option<CString>,
    pub workdir: CString,
    pub uid: u32,
    pub gid: u32,
    pub caps: CapPlan,
    pub no_new_privs: bool,
    pub filters: Vec<seccompiler::BpfProgram>,
    pub rlimits: crate::limits::rlimits::Rlimits,
    /// Paths to try in order (PATH search done in the sandbox's view).
    pub exec_candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The fds that become the program's 0, 1, 2.
    pub stdio: [RawFd; 3],
    /// v1: `tasks` files the child writes "0" to; empty on v2 (clone3 puts
    /// the child in its cgroup directly).
    pub cgroup_join_fds: Vec<RawFd>,
    pub new_cgroup_ns: bool,
    pub sync_read: RawFd,
    pub err_write: RawFd,
    pub status_write: RawFd,
    /// Whether init should wait for the payload and report its status
    /// (pid namespace), or the payload is exec'd directly by init.
    pub use_init: bool,
    /// A new user namespace was created (uid/gid maps written by the parent).
    pub in_userns: bool,
    /// Sorted fds the child needs; every other inherited fd is closed first
    /// (in a threaded server the fd table holds other runs' pipes).
    pub keep_fds: Vec<RawFd>,
}

/// Close every fd not in `keep` (sorted ascending). Async-signal-safe.
fn close_all_except(keep: &[RawFd]) {
    let mut lo: u32 = 0;
    for &fd in keep {
        if fd < 0 {
            continue;
        }
        let fd = fd as u32;
        if fd > lo {
            // SAFETY: close_range on a range of descriptors we own.
            unsafe { libc::syscall(libc::SYS_close_range, lo, fd - 1, 0u32) };
        }
        lo = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0u32) };
}

// glibc's setgroups/setresuid/setresgid run nptl's "setxid" broadcast to
// every thread it knows of. In a clone3 child of a multi-threaded parent
// those threads do not exist, and the broadcast can wait forever; the raw
// syscalls act on this thread only, which here is the whole process.
fn raw_setgroups(groups: &[libc::gid_t]) -> libc::c_int {
    // SAFETY: a valid array of `groups.len()` gids.
    unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) as libc::c_int }
}

fn raw_setresgid(gid: libc::gid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) as libc::c_int }
}

fn raw_setresuid(uid: libc::uid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) as libc::c_int }
}

fn fail(fd: RawFd, step: u32, err: i32) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&step.to_ne_bytes());
    msg[4..].copy_from_slice(&err.to_ne_bytes());
    write_all(fd, &msg);
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(125) }
}

fn check(fd: RawFd, step: Step, rc: libc::c_int) {
    if rc < 0 {
        fail(fd, step as u32, errno());
    }
}

/// Entry point of the init process (child of clone3). Never returns.
pub fn init_main(plan: &ChildPlan) -> ! {
    let efd = plan.err_write;
    close_all_except(&plan.keep_fds);
    // v1: a single-threaded task moving itself skips the global cgroup
    // lock whose cold write side costs ~12 ms on this kind of kernel.
    if let Err(e) = crate::limits::cgroup::join_self(&plan.cgroup_join_fds) {
        fail(efd, Step::JoinCgroup as u32, e);
    }
    // Wait for the uid/gid maps (and for the supervisor to be alive: EOF
    // means it died before letting us go).
    let mut go = [0u8; 1];
    if sys::read_full(plan.sync_read, &mut go) != 1 {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(125) }
    }
    if plan.in_userns {
        // Our host uid (root) is unmapped in the new user namespace, so we
        // could not even create a file on our own tmpfs (EOVERFLOW). Become
        // the program's mapped uid/gid, keeping this namespace's caps.
        // SAFETY: raw credential syscalls on integers.
        unsafe {
            check(
                efd,
                Step::KeepCaps,
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            );
            let groups = [plan.gid];
            check(efd, Step::Setgroups, raw_setgroups(&groups));
            check(efd, Step::Setgid, raw_setresgid(plan.gid));
            check(efd, Step::Setuid, raw_setresuid(plan.uid));
        }
        if let Err(e) = CapPlan::raise_effective() {
            fail(efd, Step::Capset as u32, e);
        }
    }
    // Die with the supervisor; whatever is in the pid namespace dies with us.
    // Armed only now: a credential change (above) clears the death signal.
    // The supervisor keeps the sync pipe's write end open for the whole run,
    // so a hang-up here means it died before the signal was armed.
    // SAFETY: plain prctl and poll on our own fd.
    unsafe {
        check(
            efd,
            Step::ParentDeath,
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ),
        );
        let mut pfd = libc::pollfd {
            fd: plan.sync_read,
            events: 0,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLHUP != 0 {
            libc::_exit(125);
        }
    }
    if plan.new_cgroup_ns {
        // SAFETY: plain unshare.
        check(efd, Step::UnshareCgroupNs, unsafe {
            libc::unshare(libc::CLONE_NEWCGROUP)
        });
    }
    if let Some(m) = &plan.mounts
        && let Err((i, e)) = mounts::apply(m)
    {
        fail(efd, i as u32, e);
    }
    if let Some(h) = &plan.hostname {
        // SAFETY: valid buffer and length.
        check(efd, Step::Hostname, unsafe {
            libc::sethostname(h.as_ptr(), h.as_bytes().len())
        });
    }
    // Non-dumpable: /proc/1 (exe, mem, fd, root) is the sandbox binary's
    // own process, shares the program's uid, and must stay out of its reach
    // even without the capability check that already refuses it.
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if !plan.use_init {
        payload_main(plan);
    }
    let pid = sys::clone3(0, None, None);
    if pid < 0 {
        fail(efd, Step::ForkPayload as u32, (-pid) as i32);
    }
    if pid == 0 {
        payload_main(plan);
    }
    // init: give up what the payload needs alone, then reap until it ends.
    // SAFETY: closing fds we own.
    unsafe {
        libc::close(efd);
        for fd in plan.stdio {
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == pid as i32 {
            let mut msg = [0u8; 5];
            msg[0] = 1;
            msg[1..].copy_from_slice(&status.to_ne_bytes());
            write_all(plan.status_write, &msg);
            // SAFETY: _exit never returns; the kernel kills the rest of the
            // pid namespace when its init exits.
            unsafe { libc::_exit(0) }
        }
        if r < 0 && errno() == libc::ECHILD {
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

fn payload_main(plan: &ChildPlan) -> ! {
    let efd = plan.err_write;
    // SAFETY (whole block): raw syscalls on integers and on buffers owned
    // by the plan, all async-signal-safe.
    unsafe {
        // The program starts with default signal dispositions and an empty
        // mask, as after a plain fork+exec from a shell (this process may
        // ignore SIGPIPE, and clone3 skips what Command would reset).
        for sig in 1..65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // A new session: no controlling terminal, so TIOCSTI and job-control
        // signals cannot reach the caller's terminal.
        check(efd, Step::Setsid, libc::setsid());
        for (i, &fd) in plan.stdio.iter().enumerate() {
            if fd != i as RawFd {
                check(efd, Step::Stdio, libc::dup2(fd, i as RawFd));
            }
        }
        // Everything else is closed at exec (the error pipe must live until then).
        check(
            efd,
            Step::CloseFds,
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) as i32,
        );
        if let Err(e) = plan.rlimits.apply() {
            fail(efd, Step::Rlimit as u32, e as i32);
        }
        if let Err((s, e)) = plan.caps.before_setuid() {
            let step = match s {
                CapStep::Bounding => Step::CapBounding,
                _ => Step::KeepCaps,
            };
            fail(efd, step as u32, e);
        }
        let groups = [plan.gid];
        check(efd, Step::Setgroups, raw_setgroups(&groups));
        check(efd, Step::Setgid, raw_setresgid(plan.gid));
        check(efd, Step::Setuid, raw_setresuid(plan.uid));
        if let Err((s, e)) = plan.caps.after_setuid() {
            let step = match s {
                CapStep::Capset => Step::Capset,
                _ => Step::Ambient,
            };
            fail(efd, step as u32, e);
        }
        check(efd, Step::Chdir, libc::chdir(plan.workdir.as_ptr()));
        if plan.no_new_privs {
            check(
                efd,
                Step::NoNewPrivs,
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            );
        }
    }
    exec(plan)
}

/// Installs the seccomp filters and execs. Kept apart so the argv/envp
/// pointer arrays can be built without allocating: they live in fixed-size
/// stack arrays.
fn exec(plan: &ChildPlan) -> ! {
    const MAX: usize = 4096;
    let efd = plan.err_write;
    let mut argv = [std::ptr::null::<libc::c_char>(); MAX + 1];
    let mut envp = [std::ptr::null::<libc::c_char>(); MAX + 1];
    for (slot, a) in argv.iter_mut().zip(plan.argv.iter().take(MAX)) {
        *slot = a.as_ptr();
    }
    for (slot, e) in envp.iter_mut().zip(plan.envp.iter().take(MAX)) {
        *slot = e.as_ptr();
    }
    if !plan.filters.is_empty()
        && let Err(e) = crate::security::seccomp::install(&plan.filters)
    {
        let code = match e {
            crate::security::seccomp::SeccompError::Install(io) => {
                io.raw_os_error().unwrap_or(libc::EINVAL)
            }
            _ => libc::EINVAL,
        };
        fail(efd, Step::Seccomp as u32, code);
    }
    let mut last = libc::ENOENT;
    for path in &plan.exec_candidates {
        // SAFETY: NULL-terminated arrays of valid C strings.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let e = errno();
        // Like execvp: remember a "found but not executable" over "not here".
        if e != libc::ENOENT && e != libc::ENOTDIR || last == libc::ENOENT {
            last = e;
        }
    }
    fail(efd, Step::Exec as u32, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_are_described() {
        assert_eq!(Step::SyncWait as u32, STEP_BASE);
        for &st in Step::ALL {
            assert_eq!(Step::from_u32(st as u32), Some(st));
            assert!(!st.describe().is_empty());
        }
        assert_eq!(Step::from_u32(STEP_BASE - 1), None);
        assert_eq!(Step::from_u32(STEP_BASE + Step::ALL.len() as u32), None);
    }
}
