//! One server's own part of the work directory: `WORK_DIR/instance-<pid>-<random>`,
//! holding an exclusive `flock` on its `lock` file for the server's whole
//! life. Several servers share a work directory without touching each
//! other's files: each makes its workspaces in its own instance directory
//! and removes only that at shutdown; at start it removes the instance
//! directories whose lock nobody holds (those of dead servers).
//!
//! An instance directory is made under a temporary name (`.new-<pid>-<random>`),
//! its lock taken, and only then renamed into place, so a directory named
//! `instance-*` without a held lock is always a dead server's.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::queue::new_id;
use super::workspace::{WorkspaceError, io, prepare_base};

/// The name of the lock file inside an instance directory.
const LOCK: &str = "lock";
const PREFIX: &str = "instance-";
const NEW_PREFIX: &str = ".new-";

/// This process's instance directory, locked until dropped (then removed).
#[derive(Debug)]
pub struct InstanceDir {
    path: PathBuf,
    /// Holds the exclusive flock (released when closed).
    lock: File,
    removed: bool,
}

/// Tries an exclusive, non-blocking flock: `Ok(true)` taken, `Ok(false)`
/// held by another open file.
fn try_lock(f: &File, path: &Path) -> Result<bool, WorkspaceError> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(io("flock", path)(e)),
        }
    }
}

impl InstanceDir {
    /// Prepares `base` (see [`prepare_base`]), removes the stale instance
    /// directories in it, and makes this process's own, locked.
    pub fn create(base: &Path) -> Result<InstanceDir, WorkspaceError> {
        prepare_base(base)?;
        let removed = sweep_stale(base);
        if removed > 0 {
            tracing::info!(
                removed,
                base = %base.display(),
                "removed the instance directories of dead servers"
            );
        }
        let tag = format!("{}-{}", std::process::id(), &new_id()[..16]);
        let tmp = base.join(format!("{NEW_PREFIX}{tag}"));
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&tmp)
            .map_err(io("creating", &tmp))?;
        let lock_path = tmp.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(io("creating", &lock_path))?;
        if !try_lock(&lock, &lock_path)? {
            return Err(io("flock", &lock_path)(std::io::Error::from_raw_os_error(
                libc::EWOULDBLOCK,
            )));
        }
        let path = base.join(format!("{PREFIX}{tag}"));
        std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
        tracing::debug!(dir = %path.display(), "instance directory locked");
        Ok(InstanceDir {
            path,
            lock,
            removed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong with the directory now, if anything: it is gone, or
    /// its lock file is no longer the one this process holds locked.
    pub fn check(&self) -> Result<(), String> {
        let lock_path = self.path.join(LOCK);
        let md = std::fs::symlink_metadata(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        let held = self
            .lock
            .metadata()
            .map_err(|e| format!("{}: fstat: {e}", lock_path.display()))?;
        if (md.dev(), md.ino()) != (held.dev(), held.ino()) {
            return Err(format!(
                "{}: not the lock file this server holds",
                lock_path.display()
            ));
        }
        let dir = std::fs::symlink_metadata(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        if !dir.is_dir() {
            return Err(format!("{}: not a directory", self.path.display()));
        }
        Ok(())
    }

    /// Removes the directory (and whatever is left in it), then releases
    /// the lock. Only this instance's directory: never the base.
    pub fn remove(&mut self) -> Result<(), WorkspaceError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        unmount_under(&self.path);
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &self.path)(e)),
        }
    }
}

impl Drop for InstanceDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!("{e}");
        }
    }
}

/// The pid in `instance-<pid>-…` / `.new-<pid>-…`.
fn pid_of(rest: &str) -> Option<i32> {
    rest.split('-').next()?.parse().ok()
}

fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Removes the instance directories under `base` whose lock is not held:
/// their mounts first (deepest first, detached), then the tree, never
/// following a symlink. A directory whose lock file cannot be opened is a
/// dead server's only if it is still being made (`.new-*`) by a dead pid.
/// Returns how many were removed.
pub fn sweep_stale(base: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for ent in rd.flatten() {
        let Ok(name) = ent.file_name().into_string() else {
            continue;
        };
        let new = if name.starts_with(PREFIX) {
            false
        } else if let Some(rest) = name.strip_prefix(NEW_PREFIX) {
            // Being made: only a dead maker's is stale.
            if pid_of(rest).is_none_or(pid_alive) {
                continue;
            }
            true
        } else {
            continue;
        };
        let dir = base.join(&name);
        // DirEntry::file_type does not follow symlinks.
        if !ent.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let lock_path = dir.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&lock_path);
        // Held while the directory is removed: a server cannot take it.
        let _held = match lock {
            Ok(f) => match try_lock(&f, &lock_path) {
                Ok(true) => Some(f),
                Ok(false) => continue, // a live server's
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && new => None,
            Err(e) => {
                tracing::warn!(
                    "{}: cannot tell whether its server is alive: {e}",
                    dir.display()
                );
                continue;
            }
        };
        unmount_under(&dir);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "stale instance directory removed");
                removed += 1;
            }
            Err(e) => tracing::warn!("removing stale {}: {e}", dir.display()),
        }
    }
    removed
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or under `dir` in this mount namespace,
/// deepest first (a dead server's tmpfs workspaces, if they are visible).
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!("umount2 {}: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_directories_go_held_ones_stay() {
        let t = tempfile::tempdir().expect("tempdir");
        let base = t.path().join("jobs");
        let a = InstanceDir::create(&base).expect("a");
        assert!(a.path().join(LOCK).is_file());
        assert!(a.check().is_ok());
        // A dead server's: a lock file nobody holds, and a file.
        let stale = base.join("instance-1-dead");
        std::fs::create_dir(&stale).expect("mkdir");
        std::fs::write(stale.join(LOCK), "").expect("lock");
        std::fs::write(stale.join("x"), "left").expect("file");
        // A symlink named like one is not followed.
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), "").expect("file");
        std::os::unix::fs::symlink(&outside, base.join("instance-2-link")).expect("symlink");
        let b = InstanceDir::create(&base).expect("b");
        assert!(!stale.exists(), "stale removed");
        assert!(a.path().is_dir(), "a live one stays");
        assert!(outside.join("keep").exists());
        assert_ne!(a.path(), b.path());
        let (mut a, bp) = (a, b.path().to_path_buf());
        a.remove().expect("remove");
        assert!(!a.path().exists());
        assert!(bp.is_dir() && base.is_dir(), "only its own directory goes");
        assert!(a.check().is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/x\\"), "/x\\");
    }
}
