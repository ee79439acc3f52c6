//! Namespaces: which clone flags a profile asks for, and the uid/gid maps
//! written by the parent for a new user namespace.

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

/// Map the program's uid/gid inside to the unprivileged host ids. Written
/// by a privileged parent, so setgroups stays allowed: the child uses it to
/// drop the supplementary groups it inherited from root.
pub fn write_id_maps(pid: i32, p: &Process) -> std::io::Result<()> {
    std::fs::write(
        format!("/proc/{pid}/uid_map"),
        format!("{} {} 1\n", p.uid, p.host_uid),
    )?;
    std::fs::write(
        format!("/proc/{pid}/gid_map"),
        format!("{} {} 1\n", p.gid, p.host_gid),
    )
}
