//! Namespaces: which clone flags a profile asks for, who owns a new user
//! namespace, and the uid/gid maps written by the parent for it.

use super::hostids::Lease;
use crate::profile::{Namespaces, Process};

/// Clone flags for the run's init process. The cgroup namespace is entered
/// later, by the child, once it sits in its own cgroup (so that cgroup is
/// the namespace's root).
pub fn clone_flags(ns: &Namespaces) -> u64 {
    let mut f = 0i64;
    for (on, flag) in [
        (ns.user, libc::CLONE_NEWUSER),
        (ns.pid, libc::CLONE_NEWPID),
        (ns.mount, libc::CLONE_NEWNS),
        (ns.network, libc::CLONE_NEWNET),
        (ns.ipc, libc::CLONE_NEWIPC),
        (ns.uts, libc::CLONE_NEWUTS),
    ] {
        if on {
            f |= flag as i64;
        }
    }
    f as u64
}

/// Map the program's uid/gid inside to the job's unprivileged host ids.
/// Written by a privileged parent, so setgroups stays allowed: the child
/// uses it to drop the supplementary groups it inherited from root.
pub fn write_id_maps(pid: i32, p: &Process, host: &Lease) -> std::io::Result<()> {
    std::fs::write(
        format!("/proc/{pid}/uid_map"),
        format!("{} {} 1\n", p.uid, host.uid()),
    )?;
    std::fs::write(
        format!("/proc/{pid}/gid_map"),
        format!("{} {} 1\n", p.gid, host.gid()),
    )
}

/// Runs `f` (a clone3 that creates a user namespace) with this thread's
/// effective uid set to `uid`, so the namespace's owner is `uid`: the
/// kernel charges what the namespace's users count per user (pending
/// signals, processes, message queues, locked memory, inotify, nested
/// namespaces) to its owner as well, and with root as the owner a run
/// could exhaust host root's counters. The thread keeps its capabilities
/// (SECBIT_NO_SETUID_FIXUP) for what `f` needs (CLONE_INTO_CGROUP into a
/// root-owned cgroup); a child in a new user namespace starts with default
/// securebits. Only this thread's credentials change (raw syscalls, not
/// glibc's process-wide set*id), and are restored before returning.
pub fn as_owner<T>(uid: u32, f: impl FnOnce() -> T) -> std::io::Result<T> {
    // The euid change makes the process non-dumpable (commit_creds); it is
    // put back as it was before the first switch (threads switch
    // concurrently, so "before this switch" could be another's window).
    static DUMPABLE: std::sync::OnceLock<libc::c_int> = std::sync::OnceLock::new();
    // SAFETY: prctl queries with no pointers.
    let dumpable = *DUMPABLE.get_or_init(|| unsafe { libc::prctl(libc::PR_GET_DUMPABLE) });
    // SAFETY: as above.
    let bits = unsafe { libc::prctl(libc::PR_GET_SECUREBITS) };
    if bits < 0 {
        return Err(std::io::Error::last_os_error());
    }
    const NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    // SAFETY: prctl and setresuid on this thread with integer arguments.
    unsafe {
        if libc::prctl(
            libc::PR_SET_SECUREBITS,
            bits as libc::c_ulong | NO_SETUID_FIXUP,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setresuid, -1i32, uid, -1i32) != 0 {
            let e = std::io::Error::last_os_error();
            libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong);
            return Err(e);
        }
    }
    let r = f();
    // SAFETY: as above; the saved uid is still 0, so going back is allowed.
    unsafe {
        if libc::syscall(libc::SYS_setresuid, -1i32, 0, -1i32) != 0
            || libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong) != 0
        {
            // A supervisor thread that cannot become itself again must not
            // go on making containers with the wrong identity.
            libc::abort();
        }
        if dumpable >= 0 {
            libc::prctl(libc::PR_SET_DUMPABLE, dumpable as libc::c_ulong);
        }
    }
    Ok(r)
}
