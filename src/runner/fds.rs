//! File descriptors a run needs made: pipes, a duplicate of the caller's
//! stdin, a file opened read-only, stdin bytes as a memory file.

use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use super::{RunError, io_err};

/// A close-on-exec copy (above 2) of the caller's open fd `fd`.
pub(super) fn dup_cloexec(fd: RawFd) -> Result<OwnedFd, RunError> {
    // SAFETY: the caller checked that `fd` is open; it stays open for the
    // duration of this borrow.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    b.try_clone_to_owned()
        .map_err(io_err(format!("duplicating fd {fd}")))
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
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use std::io::{Seek, Write};
    let fd = memfd_create(c"stdin", MFdFlags::MFD_CLOEXEC).map_err(|e| RunError::Io {
        what: "memfd_create for stdin".into(),
        source: e.into(),
    })?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)
        .and_then(|_| f.rewind())
        .map_err(io_err("writing stdin to a memfd"))?;
    Ok(f.into())
}
