//! File descriptors a run needs made: pipes, a duplicate of the caller's
//! stdin, a file opened read-only, stdin bytes as a memory file.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::{RunError, io_err};

pub(super) fn dup_cloexec(fd: RawFd) -> Result<OwnedFd, RunError> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we checked is open.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if d < 0 {
        return Err(RunError::Io {
            what: format!("duplicating fd {fd}"),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RunError::Io {
        what: "pipe2".into(),
        source: e.into(),
    })
}

pub(super) fn open_ro(p: &Path) -> Result<OwnedFd, RunError> {
    let f = std::fs::File::open(p).map_err(io_err(format!("opening {}", p.display())))?;
    Ok(f.into())
}

/// Stdin bytes as a sealed-size memory file: no writer to keep alive and no
/// deadlock when the program never reads.
pub(super) fn memfd_with(data: &[u8]) -> Result<OwnedFd, RunError> {
    use std::io::{Seek, Write};
    // SAFETY: a valid name; the returned fd is checked and then owned.
    let fd = unsafe { libc::memfd_create(c"stdin".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(RunError::Io {
            what: "memfd_create for stdin".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fd is a fresh descriptor we own.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data)
        .and_then(|_| f.rewind())
        .map_err(io_err("writing stdin to a memfd"))?;
    Ok(f.into())
}
