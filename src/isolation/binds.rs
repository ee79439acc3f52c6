//! Binds attached after "go": a detached copy of the source tree
//! (`open_tree`) with the bind's flags set (`mount_setattr`), opened where
//! the caller's paths resolve, for init to attach at the destination.
//! libc has the syscalls; nix does not wrap them yet.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use super::mounts::{MountPlanError, check_abs};
use crate::profile::BindMount;

/// A detached copy of a bind's source (`open_tree`), with the bind's
/// flags set, for init to attach at its destination. `None`: an optional
/// source that does not exist.
pub fn open_bind(b: &BindMount) -> Result<Option<(OwnedFd, CString, bool)>, MountPlanError> {
    check_abs("bind destination", &b.dest)?;
    let src_err = |e: std::io::Error| MountPlanError::BindSource {
        path: b.source.clone(),
        source: e,
    };
    let meta = match std::fs::metadata(&b.source) {
        Ok(m) => m,
        Err(e) if b.optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(src_err(e)),
    };
    let src = CString::new(b.source.as_os_str().as_bytes())
        .map_err(|_| MountPlanError::Nul(b.source.clone()))?;
    let dest = CString::new(b.dest.as_os_str().as_bytes())
        .map_err(|_| MountPlanError::Nul(b.dest.clone()))?;
    // SAFETY: a valid path; the returned fd is checked and then owned.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(src_err(std::io::Error::last_os_error()));
    }
    // SAFETY: open_tree returned a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // Private: a clone of a shared host mount would otherwise stay in its
    // peer group, and the host's later mounts below it would show inside.
    let mut attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    if !b.writable {
        attr.attr_set |= libc::MOUNT_ATTR_RDONLY;
    }
    // SAFETY: a valid detached mount fd and attr struct of the given size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(MountPlanError::BindFlags {
            path: b.source.clone(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Some((fd, dest, meta.is_dir())))
}
