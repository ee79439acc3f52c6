//! Namespaces: which clone flags a profile asks for, who owns a new user
//! namespace, and the uid/gid maps written by the parent for it.

use super::checkout::Owner;
use super::hostids::Lease;
use crate::profile::Namespaces;

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

/// How a run's ids inside map onto the job's host ids.
#[derive(Debug, Clone, Copy)]
pub enum IdMap {
    /// The program's one uid/gid inside is the job's uid/gid.
    One { uid: u32, gid: u32 },
    /// Ids 0.. inside are the job's block, as many as it has (an image's
    /// files keep their owners); with a single id, inside id 0 only.
    Block,
}

/// Writes the run's uid/gid maps onto the job's unprivileged host ids, or
/// (`One` only) onto the checkout's owner's (`process.run_as_checkout_owner`:
/// the namespace stays the job's uid's, only the program's ids are the
/// owner's). Written by a privileged parent, so setgroups stays allowed:
/// the child uses it to drop the supplementary groups it inherited from
/// root.
pub fn write_id_maps(
    pid: i32,
    map: IdMap,
    host: &Lease,
    owner: Option<Owner>,
) -> std::io::Result<()> {
    let (uid_map, gid_map) = match map {
        IdMap::One { uid, gid } => (
            format!("{uid} {} 1\n", owner.map_or(host.uid(), |o| o.uid)),
            format!(
                "{gid} {} 1\n",
                owner.and_then(|o| o.gid).unwrap_or(host.gid())
            ),
        ),
        IdMap::Block => (
            format!("0 {} {}\n", host.uid(), host.ids()),
            format!("0 {} {}\n", host.gid(), host.ids()),
        ),
    };
    std::fs::write(format!("/proc/{pid}/uid_map"), uid_map)?;
    std::fs::write(format!("/proc/{pid}/gid_map"), gid_map)
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
/// glibc's process-wide set*id), and are restored before returning, with
/// what the kernel resets on a credential change: the thread's parent-death
/// signal, and the process's dumpable flag.
///
/// Only for a uid no one else on the host is (a job's uid from a range):
/// the owner's other processes would hold every capability over the run.
pub fn as_owner<T>(uid: u32, f: impl FnOnce() -> T) -> std::io::Result<T> {
    // SAFETY: prctl queries with no pointers, or a pointer to a c_int.
    let (bits, pdeath) = unsafe {
        let mut sig: libc::c_int = 0;
        libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int);
        (libc::prctl(libc::PR_GET_SECUREBITS), sig)
    };
    if bits < 0 {
        return Err(std::io::Error::last_os_error());
    }
    const NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    let window = Window::open();
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
        if pdeath != 0 {
            libc::prctl(libc::PR_SET_PDEATHSIG, pdeath as libc::c_ulong);
        }
    }
    drop(window);
    Ok(r)
}

/// The time some thread runs with another effective uid. The kernel makes
/// the whole process non-dumpable at each switch, which keeps its /proc
/// files root's; the flag is put back (as it was before any switch) only
/// when the last open window closes, never while another thread is still
/// another uid.
struct Window;

static WINDOWS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static DUMPABLE: std::sync::OnceLock<libc::c_int> = std::sync::OnceLock::new();

impl Window {
    fn open() -> Window {
        let mut n = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
        if *n == 0 {
            // SAFETY: a prctl query with no pointers.
            DUMPABLE.get_or_init(|| unsafe { libc::prctl(libc::PR_GET_DUMPABLE) });
        }
        *n += 1;
        Window
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let mut n = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0
            && let Some(&d) = DUMPABLE.get()
            && d >= 0
        {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, d as libc::c_ulong) };
        }
    }
}
