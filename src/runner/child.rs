//! The child side of a run: everything between clone and execve.
//!
//! Process tree: supervisor → init (pid 1 of the new pid namespace: builds
//! the filesystem, waits for "go", joins the cgroup, attaches the run's
//! binds, then reaps) → payload (drops privileges, installs seccomp, execs
//! the program). When the payload ends, init kills and reaps whatever is
//! left in the pid namespace, reports the payload's wait status and exits.
//!
//! All of this runs after a fork in a possibly multi-threaded process, so it
//! only uses async-signal-safe syscalls on data the parent prepared
//! ([`ChildPlan`]): no allocation, no locks, no logging. Failures are
//! reported as (step, errno) over a CLOEXEC pipe.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use super::go::{GoArea, GoHeader, MAX_FDS, Stamp, recv_go};
use super::report::{Ended, SetupFailed};
use crate::isolation::mounts::{self, MountPlan};
use crate::isolation::sys::{self, errno, write_all};
use crate::security::caps::{CapPlan, CapStep};

/// Fixed steps after the mount plan, for error reports. Mount op `i` is
/// reported as step `i`; these are offset by `STEP_BASE`.
pub const STEP_BASE: u32 = 1 << 20;
/// Run-specific bind `i` (attached after "go") is reported as this + `i`.
pub const BIND_STEP_BASE: u32 = 1 << 21;

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
    RecvGo => "receiving the run from the supervisor",
    RecvLayers => "receiving the image's layers from the supervisor",
}

impl Step {
    pub fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == v)
    }
}

/// Everything the child needs that is known when the container is
/// prepared (the profile's part). The run's own part arrives with "go"
/// (see [`super::go`]).
pub struct ChildPlan {
    pub mounts: Option<MountPlan>,
    pub hostname: Option<CString>,
    pub uid: u32,
    pub gid: u32,
    pub caps: CapPlan,
    pub no_new_privs: bool,
    pub filters: Vec<seccompiler::BpfProgram>,
    pub new_cgroup_ns: bool,
    pub sync_read: RawFd,
    pub err_write: RawFd,
    pub status_write: RawFd,
    /// The child's end of the "go" socketpair.
    pub ctl: RawFd,
    /// Whether init should wait for the payload and report its status
    /// (pid namespace), or the payload is exec'd directly by init.
    pub use_init: bool,
    /// A new user namespace was created (uid/gid maps written by the parent).
    pub in_userns: bool,
    /// Sorted fds the child needs; every other inherited fd is closed first
    /// (in a threaded server the fd table holds other runs' pipes).
    pub keep_fds: Vec<RawFd>,
    /// The supervisor's CPU affinity, restored once the container is built
    /// (the supervisor starts init on another CPU than its own; see
    /// `start_elsewhere`).
    pub affinity: Option<libc::cpu_set_t>,
    /// How many image layers arrive as detached mounts before the root is
    /// built (0: no image).
    pub layers: usize,
    /// Where the supervisor's command line and environment strings lie
    /// ([`own_args`]): init, a copy of the supervisor that never execs,
    /// blanks them, or the run would read the host's command line (bind
    /// paths, a server's flags) in /proc/1/cmdline.
    pub hide: [(usize, usize); 2],
}

/// The address ranges of this process's argument and environment strings
/// (`arg_start..arg_end`, `env_start..env_end` of /proc/self/stat), read
/// once; empty ranges if unreadable.
pub fn own_args() -> [(usize, usize); 2] {
    static RANGES: std::sync::OnceLock<[(usize, usize); 2]> = std::sync::OnceLock::new();
    *RANGES.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces and ')'):
        // the 3rd field of the line is the first one here.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<usize> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let field = |n: usize| f.get(n - 3).copied().unwrap_or(0);
        let range = |a: usize, b: usize| if a < b { (a, b) } else { (0, 0) };
        [range(field(48), field(49)), range(field(50), field(51))]
    })
}

/// Blanks the ranges from [`own_args`] in this (child) process's copy of
/// the memory; the argument area becomes "sandbox-init".
fn hide_args(ranges: &[(usize, usize); 2]) {
    const NAME: &[u8] = b"sandbox-init\0";
    for (i, &(a, b)) in ranges.iter().enumerate() {
        if a == 0 || b <= a {
            continue;
        }
        // SAFETY: the range is this process's own argv/environ strings (at
        // the top of the initial stack, writable), as the kernel reported
        // them for the parent this process is a copy of; nothing in the
        // child reads them.
        unsafe {
            std::ptr::write_bytes(a as *mut u8, 0, b - a);
            if i == 0 && b - a >= NAME.len() {
                std::ptr::copy_nonoverlapping(NAME.as_ptr(), a as *mut u8, NAME.len());
            }
        }
    }
}

/// `struct open_how` for openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_SYMLINKS: u64 = 0x04;

/// What "go" delivered, on init's stack.
struct Run<'a> {
    go: &'a GoHeader,
    /// stdin, stdout, stderr (all above 2 until the payload's dup2).
    stdio: [RawFd; 3],
    area: &'a GoArea,
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
    write_all(fd, &SetupFailed { step, errno: err }.encode());
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(125) }
}

fn check(fd: RawFd, step: Step, rc: libc::c_int) {
    if rc < 0 {
        fail(fd, step as u32, errno());
    }
}

/// `mkdir -p` with a stack buffer; errors are left to the caller's next
/// step (a bind or chdir that then fails names the path).
fn mkdir_p(path: &CStr, last: bool) {
    let b = path.to_bytes();
    let mut buf = [0u8; 4096];
    if b.len() >= buf.len() {
        return;
    }
    buf[..b.len()].copy_from_slice(b);
    let end = if last {
        b.len()
    } else {
        b.iter().rposition(|&c| c == b'/').unwrap_or(0)
    };
    for i in 1..=end {
        if i == end || buf[i] == b'/' {
            let save = buf[i];
            buf[i] = 0;
            // SAFETY: buf is NUL-terminated at i.
            unsafe { libc::mkdir(buf.as_ptr().cast(), 0o755) };
            buf[i] = save;
        }
    }
}

/// Entry point of the init process (child of clone3). Never returns.
/// `go` is the shared area the supervisor fills before "go".
pub fn init_main(plan: &ChildPlan, area: &GoArea) -> ! {
    area.stamp(Stamp::InitStarted);
    let efd = plan.err_write;
    close_all_except(&plan.keep_fds);
    hide_args(&plan.hide);
    // Wait for the uid/gid maps (and for the supervisor to be alive: EOF
    // means it died before letting us go).
    let mut go = [0u8; 1];
    if sys::read_full(plan.sync_read, &mut go) != 1 {
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(125) }
    }
    area.stamp(Stamp::MapsReceived);
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
    // An image's layers: idmapped mounts the supervisor made for this
    // namespace, sent before the maps' "go".
    let mut layer_fds = [-1; MAX_FDS];
    let mut layers = 0;
    if plan.layers > 0 {
        match recv_go(plan.ctl, &mut layer_fds) {
            Ok(n) if n == plan.layers => layers = n,
            Ok(_) => fail(efd, Step::RecvLayers as u32, libc::EPROTO),
            // SAFETY: _exit never returns (the supervisor let go).
            Err(0) => unsafe { libc::_exit(125) },
            Err(e) => fail(efd, Step::RecvLayers as u32, e),
        }
    }
    if let Some(m) = &plan.mounts
        && let Err((i, e)) = mounts::apply(m, &layer_fds[..layers])
    {
        fail(efd, i as u32, e);
    }
    for &fd in &layer_fds[..layers] {
        // SAFETY: closing fds we received; the layers stay mounted.
        unsafe { libc::close(fd) };
    }
    area.stamp(Stamp::RootBuilt);
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
    // What the payload inherits, done here ahead of the run: the program
    // starts with default signal dispositions and an empty mask, as after
    // a plain fork+exec from a shell (the supervisor may ignore SIGPIPE,
    // and clone3 skips what Command would reset), and without the
    // capabilities outside the profile's set in its bounding set.
    // SAFETY: raw sigaction/sigprocmask with valid, zeroed structures.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    if let Err((_, e)) = plan.caps.drop_bounding() {
        fail(efd, Step::CapBounding as u32, e);
    }

    // Kept off the supervisor's CPU while both work (the id maps' wake-up
    // would otherwise pull us back there); the program gets the full mask.
    if let Some(all) = &plan.affinity {
        // SAFETY: valid pointer and size; failure leaves the narrower mask.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), all) };
    }
    // Prepared. Everything below is the run's own.
    area.stamp(Stamp::Ready);
    let mut fds = [-1; MAX_FDS];
    let n = match recv_go(plan.ctl, &mut fds) {
        Ok(n) => n,
        // SAFETY: the supervisor (or a pool) let go of this container.
        Err(0) => unsafe { libc::_exit(125) },
        Err(e) => fail(efd, Step::RecvGo as u32, e),
    };
    area.stamp(Stamp::GoReceived);
    let h = area.header();
    if n != 3 + h.ncg + h.nbinds {
        fail(efd, Step::RecvGo as u32, libc::EPROTO);
    }
    // The payload dup2s stdio onto 0..2: none of the sources may sit there.
    for fd in fds.iter_mut().take(n) {
        if *fd < 3 {
            // SAFETY: duplicating and closing fds we own.
            unsafe {
                let moved = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
                check(efd, Step::RecvGo, moved);
                libc::close(*fd);
                *fd = moved;
            }
        }
    }
    // v1: a single-threaded task moving itself skips the global cgroup
    // lock whose cold write side costs ~12 ms on this kind of kernel. (v2:
    // clone3 put us in the cgroup at birth.) The payload inherits it.
    let cg = &fds[3..3 + h.ncg];
    if let Err(e) = crate::limits::cgroup::join_self(cg) {
        fail(efd, Step::JoinCgroup as u32, e);
    }
    for &fd in cg {
        // SAFETY: closing fds we own.
        unsafe { libc::close(fd) };
    }
    if plan.new_cgroup_ns {
        // After joining, so the run's cgroup is the namespace's root.
        // SAFETY: plain unshare.
        check(efd, Step::UnshareCgroupNs, unsafe {
            libc::unshare(libc::CLONE_NEWCGROUP)
        });
    }
    for i in 0..h.nbinds {
        // SAFETY: the supervisor wrote nbinds slots.
        let slot = unsafe { *h.binds.add(i) };
        // SAFETY: dest is a NUL-terminated string in the shared area.
        let dest = unsafe { CStr::from_ptr(slot.dest) };
        let fd = fds[3 + h.ncg + i];
        mkdir_p(dest, slot.is_dir);
        if !slot.is_dir {
            // SAFETY: creating an empty file to bind onto.
            unsafe {
                let f = libc::open(
                    dest.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                );
                if f >= 0 {
                    libc::close(f);
                }
            }
        }
        // The destination must not lead through a symlink (e.g. one placed
        // in an earlier writable bind): resolved without following any.
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: RESOLVE_NO_SYMLINKS,
        };
        // SAFETY: openat2 with a valid path and a struct of the given size.
        let target = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                dest.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        } as RawFd;
        if target < 0 {
            fail(efd, BIND_STEP_BASE + i as u32, errno());
        }
        // SAFETY: attaching a detached mount tree we received onto the
        // directory (or file) fd just opened.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                target,
                c"".as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
            )
        };
        if r < 0 {
            fail(efd, BIND_STEP_BASE + i as u32, errno());
        }
        // SAFETY: closing fds we own.
        unsafe {
            libc::close(fd);
            libc::close(target);
        }
    }
    if plan.mounts.is_some() {
        // Only inside our own root: without a mount namespace this would
        // create directories on the host.
        // SAFETY: workdir is a NUL-terminated string in the shared area.
        mkdir_p(unsafe { CStr::from_ptr(h.workdir) }, true);
    }
    let run = Run {
        go: h,
        stdio: [fds[0], fds[1], fds[2]],
        area,
    };
    if !plan.use_init {
        payload_main(plan, &run);
    }
    // The payload shares init's memory until its execve (CLONE_VM |
    // CLONE_VFORK, as posix_spawn does): init's address space is a copy of
    // the supervisor's, which in a server is large, and copying it only to
    // throw it away at exec costs milliseconds. Init sleeps meanwhile; the
    // payload runs on a stack of its own and touches nothing of init's
    // but what it reads. Credentials, fds, signal handlers, rlimits and
    // the working directory are still the payload's own (no CLONE_THREAD,
    // CLONE_FILES, CLONE_SIGHAND or CLONE_FS).
    const STACK: usize = 1 << 20;
    // SAFETY: a fresh anonymous mapping for the payload's stack.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        fail(efd, Step::ForkPayload as u32, errno());
    }
    let args: (&ChildPlan, &Run) = (plan, &run);
    // SAFETY: glibc's clone is a thin assembly wrapper (no atfork
    // handlers, no locks); the stack top is page-aligned; `args` outlives
    // the child's use of it because CLONE_VFORK suspends us until the
    // payload execs or exits.
    let pid = unsafe {
        libc::clone(
            payload_entry,
            stack.cast::<u8>().add(STACK).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&args as *const (&ChildPlan, &Run)).cast_mut().cast(),
        )
    };
    if pid < 0 {
        fail(efd, Step::ForkPayload as u32, errno());
    }
    // SAFETY: the payload has exec'd or exited: its stack is ours again.
    unsafe { libc::munmap(stack, STACK) };
    // init: give up what the payload needs alone, then reap until it ends.
    // SAFETY: closing fds we own.
    unsafe {
        libc::close(efd);
        for fd in run.stdio {
            libc::close(fd);
        }
    }
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == pid as i32 {
            area.stamp(Stamp::PayloadEnded);
            // Everything else in the pid namespace dies and is reaped
            // before the report, so the supervisor can take its figures
            // (and answer) without waiting for the namespaces to be torn
            // down, which happens as this process exits.
            // SAFETY: kill(-1) from a pid namespace's init reaches every
            // other process of the namespace; waitpid on our own children.
            unsafe {
                libc::kill(-1, libc::SIGKILL);
                while libc::waitpid(-1, std::ptr::null_mut(), libc::__WALL) > 0
                    || errno() == libc::EINTR
                {}
            }
            write_all(plan.status_write, &Ended { status }.encode());
            // Then wait to be killed. Exiting now would tear the namespaces
            // down (unmounts waiting for RCU grace periods, not preemptible
            // in the kernel) just as the supervisor wakes up to read this
            // report and the cgroup's figures, on the same CPUs, and that
            // CPU time would be charged to the run's cgroup.
            loop {
                // SAFETY: pause has no arguments; SIGKILL (or the
                // supervisor's death signal) ends it.
                unsafe { libc::pause() };
            }
        }
        if r < 0 && errno() == libc::ECHILD {
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

/// The payload's entry from `clone` (see init_main).
extern "C" fn payload_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at init's (plan, run) pair, alive while init is
    // suspended by CLONE_VFORK.
    let (plan, run) = unsafe { *(arg as *const (&ChildPlan, &Run)) };
    payload_main(plan, run)
}

fn payload_main(plan: &ChildPlan, run: &Run) -> ! {
    run.area.stamp(Stamp::PayloadStarted);
    let efd = plan.err_write;
    // SAFETY: (whole block) raw syscalls on integers and on buffers owned
    // by the plan, all async-signal-safe.
    unsafe {
        // A new session: no controlling terminal, so TIOCSTI and job-control
        // signals cannot reach the caller's terminal.
        check(efd, Step::Setsid, libc::setsid());
        for (i, &fd) in run.stdio.iter().enumerate() {
            check(efd, Step::Stdio, libc::dup2(fd, i as RawFd));
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
        if let Err(e) = run.go.rlimits.apply() {
            fail(efd, Step::Rlimit as u32, e as i32);
        }
        if let Err((_, e)) = CapPlan::keep_caps() {
            fail(efd, Step::KeepCaps as u32, e);
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
        check(efd, Step::Chdir, libc::chdir(run.go.workdir));
        if plan.no_new_privs {
            check(
                efd,
                Step::NoNewPrivs,
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            );
        }
    }
    exec(plan, run)
}

/// Installs the seccomp filters and execs (the argv/envp arrays were laid
/// out by the supervisor in the shared area).
fn exec(plan: &ChildPlan, run: &Run) -> ! {
    let efd = plan.err_write;
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
    run.area.stamp(Stamp::Exec);
    let mut last = libc::ENOENT;
    let mut c = run.go.candidates;
    // SAFETY: NULL-terminated arrays of valid C strings in the shared area.
    unsafe {
        while !(*c).is_null() {
            libc::execve(*c, run.go.argv, run.go.envp);
            let e = errno();
            // Like execvp: remember a "found but not executable" over "not here".
            if e != libc::ENOENT && e != libc::ENOTDIR || last == libc::ENOENT {
                last = e;
            }
            c = c.add(1);
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
