//! An image's layers as a run sees them: each unpacked layer directory
//! becomes a detached, read-only, idmapped mount (`open_tree` +
//! `mount_setattr(MOUNT_ATTR_IDMAP)`) made by the supervisor for the run's
//! user namespace, so the files keep the owners they have in the image as
//! seen from inside (an image's uid N is the job's host uid + N), and the
//! image's own user can write what it owns (into the throwaway layer: the
//! overlay copies it up). Init attaches them and stacks them as the root's
//! overlay (`mounts::MountPlan::build`). Made per run: an idmapped mount
//! belongs to one user namespace. libc has the syscalls; nix does not wrap
//! them yet.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most layers an image may have (what one "go"-sized message carries).
pub const MAX_LAYERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("image layer {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the image has {0} layers; at most {MAX_LAYERS} are supported")]
    TooMany(usize),
}

/// The layer at `dir`, read-only, nosuid, nodev, its ids seen through the
/// user namespace `userns` (a run's, with its maps written).
pub fn open_idmapped(dir: &Path, userns: BorrowedFd<'_>) -> Result<OwnedFd, LayerError> {
    let io = |what: &'static str| {
        let path = dir.to_path_buf();
        move |source| LayerError::Io { path, what, source }
    };
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| LayerError::Io {
        path: dir.to_path_buf(),
        what: "path",
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: a valid path; the returned fd is checked and then owned.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io("open_tree")(std::io::Error::last_os_error()));
    }
    // SAFETY: open_tree returned a fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP
            | libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: userns.as_raw_fd() as u64,
    };
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
        return Err(io("idmapping the mount (mount_setattr)")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(fd)
}

/// Every layer of `dirs` for the user namespace of process `pid`.
pub fn open_all(dirs: &[PathBuf], pid: i32) -> Result<Vec<OwnedFd>, LayerError> {
    if dirs.len() > MAX_LAYERS {
        return Err(LayerError::TooMany(dirs.len()));
    }
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/user"));
    let ns = std::fs::File::open(&ns_path).map_err(|source| LayerError::Io {
        path: ns_path,
        what: "opening the run's user namespace",
        source,
    })?;
    dirs.iter().map(|d| open_idmapped(d, ns.as_fd())).collect()
}
