//! Path resolution inside a directory that never leaves it and never
//! follows a symlink: every lookup is `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` from an
//! fd of that directory, and every change is an `*at` call on the parent's
//! fd with a single name. Used to unpack layers and to read an image's
//! `/etc/passwd` out of the store.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// No `O_NOFOLLOW`: with `RESOLVE_NO_SYMLINKS` a symlink as the last
/// component is `ELOOP` too (`O_NOFOLLOW` would make it `ENOTDIR`, which
/// reads as "a file is in the way").
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// Opens a directory (absolute path, trusted) as the root of later lookups.
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(path, DIR_FLAGS, Mode::empty())?)
}

/// Opens the directory `rel` (a '/'-joined relative path, "" for the root
/// itself) beneath `root`.
pub fn open_dir(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let rel = if rel.is_empty() { &b"."[..] } else { rel };
    Ok(rfs::openat2(root, rel, DIR_FLAGS, Mode::empty(), RESOLVE)?)
}

/// Opens the directory `comps` beneath `root`, making the missing ones
/// (mode 0755, owned by the caller). Returns the fd and how many were made.
pub fn make_dirs(root: BorrowedFd<'_>, comps: &[&[u8]]) -> io::Result<(OwnedFd, u64)> {
    let joined = comps.join(&b'/');
    match open_dir(root, &joined) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        r => return r.map(|fd| (fd, 0)),
    }
    let mut made = 0;
    let mut cur = open_dir(root, b"")?;
    for c in comps {
        match rfs::mkdirat(&cur, *c, Mode::from_raw_mode(0o755)) {
            Ok(()) => {
                made += 1;
                let fd = rfs::openat2(&cur, *c, DIR_FLAGS, Mode::empty(), RESOLVE)?;
                // Whatever the umask said.
                rfs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
                cur = fd;
                continue;
            }
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        cur = rfs::openat2(&cur, *c, DIR_FLAGS, Mode::empty(), RESOLVE)?;
    }
    Ok((cur, made))
}

/// The type of `name` in `dir`, not following a symlink; `None` if absent.
pub fn kind_of(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<(FileType, u64)>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some((FileType::from_raw_mode(st.st_mode), st.st_rdev))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates a regular file `name` in `dir` (it must not exist).
pub fn create_file(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<std::fs::File> {
    let fd = rfs::openat2(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
        RESOLVE,
    )?;
    Ok(std::fs::File::from(fd))
}

/// Opens the regular file `rel` beneath `root` for reading.
pub fn open_file(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<std::fs::File> {
    let fd = rfs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        RESOLVE,
    )?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(std::fs::File::from(fd))
}

/// Makes directory `name` in `dir` (mode 0700 until its own is set) and
/// opens it.
pub fn make_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
    open_dir(dir, name)
}

pub fn symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    Ok(rfs::symlinkat(target, dir, name)?)
}

/// Hard link `to_name` in `to_dir` to the entry `from_name` of `from_dir`
/// (a symlink there is linked itself, not followed).
pub fn hard_link(
    from_dir: BorrowedFd<'_>,
    from_name: &[u8],
    to_dir: BorrowedFd<'_>,
    to_name: &[u8],
) -> io::Result<()> {
    Ok(rfs::linkat(
        from_dir,
        from_name,
        to_dir,
        to_name,
        AtFlags::empty(),
    )?)
}

pub fn fifo(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rfs::mknodat(
        dir,
        name,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )?)
}

/// An overlayfs whiteout: a character device 0/0.
pub fn whiteout(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    Ok(rfs::mknodat(
        dir,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        rfs::makedev(0, 0),
    )?)
}

/// Whether an entry is an overlayfs whiteout.
pub fn is_whiteout(kind: FileType, rdev: u64) -> bool {
    kind == FileType::CharacterDevice && rdev == 0
}

/// Owner, mode and times of `name` in `dir`, not following a symlink.
/// `owner` is skipped when `None` (an unprivileged unpack). The mode is
/// not applied to a symlink (Linux has none).
pub fn set_meta_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    mtime: (i64, u32),
) -> io::Result<()> {
    if let Some((u, g)) = owner {
        rfs::chownat(
            dir,
            name,
            Some(rfs::Uid::from_raw(u)),
            Some(rfs::Gid::from_raw(g)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    if let Some(m) = mode {
        // Only for non-symlinks (a FIFO): chmodat cannot refuse to follow.
        rfs::chmodat(dir, name, Mode::from_raw_mode(m), AtFlags::empty())?;
    }
    rfs::utimensat(dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Owner then mode (a chown clears set-id bits), on an open file.
pub fn set_owner_mode(fd: BorrowedFd<'_>, owner: Option<(u32, u32)>, mode: u32) -> io::Result<()> {
    if let Some((u, g)) = owner {
        rfs::fchown(fd, Some(rfs::Uid::from_raw(u)), Some(rfs::Gid::from_raw(g)))?;
    }
    rfs::fchmod(fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

pub fn set_mtime(fd: BorrowedFd<'_>, mtime: (i64, u32)) -> io::Result<()> {
    Ok(rfs::futimens(fd, &times(mtime))?)
}

fn times((secs, nsec): (i64, u32)) -> rfs::Timestamps {
    let t = rfs::Timespec {
        tv_sec: secs,
        tv_nsec: nsec.min(999_999_999).into(),
    };
    rfs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Marks a directory opaque for overlayfs: `trusted.overlay.opaque` (a
/// mount by real root) when `trusted`, and `user.overlay.opaque` (a mount
/// with `userxattr`, inside a user namespace, as the sandbox's runs do).
pub fn set_opaque(dir: BorrowedFd<'_>, trusted: bool) -> io::Result<()> {
    if trusted {
        rfs::fsetxattr(
            dir,
            "trusted.overlay.opaque",
            b"y",
            rfs::XattrFlags::empty(),
        )?;
    }
    rfs::fsetxattr(dir, "user.overlay.opaque", b"y", rfs::XattrFlags::empty())?;
    Ok(())
}

/// Whether a directory is marked opaque (either form).
pub fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(rfs::fgetxattr(dir, *n, &mut buf), Ok(1) if buf[0] == b'y'))
}

/// Removes `name` from `dir`: a file, or a directory with everything in it
/// (std's `remove_dir_all` neither follows nor leaves through symlinks).
/// `abs` is the same entry's absolute path, for the latter.
pub fn remove(dir: BorrowedFd<'_>, name: &[u8], is_dir: bool, abs: &Path) -> io::Result<()> {
    if is_dir {
        std::fs::remove_dir_all(abs)
    } else {
        Ok(rfs::unlinkat(dir, name, AtFlags::empty())?)
    }
}

/// Borrows an owned fd (shorthand).
pub fn b(fd: &OwnedFd) -> BorrowedFd<'_> {
    fd.as_fd()
}
