//! The store's locks, all `flock`s on files under `locks/` (released by the
//! kernel when a process dies, so a crash never leaves one held):
//! - `locks/store`: exclusive while the names and image records change and
//!   while `rm`/`prune` decide what to delete;
//! - `locks/{blob,layer}/HEX`: the lease lock of one blob or layer. Shared
//!   by whoever uses it (a run's [`Lease`], an import between writing it
//!   and recording its image); `rm`/`prune` take it exclusive without
//!   waiting and skip what they cannot get;
//! - `locks/{blob,layer}/HEX.w`: exclusive while one process writes that
//!   blob or layer, so a second one waits, then finds it present;
//! - scratch directories under `tmp/` are flocked by their writer: one that
//!   is not was left by a dead process and is swept.
//!
//! A lock file may be removed by `prune` (under its own exclusive lock);
//! whoever locks checks that the file it holds is still the one at the path.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::{ImageError, Result};

/// A held lock; released when dropped.
pub struct Held {
    _lock: Flock<File>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// Locks `path` (made if missing). `wait = false` returns `None` when
/// another holder is in the way.
pub fn lock(path: &Path, mode: Mode, wait: bool) -> Result<Option<Held>> {
    let arg = match (mode, wait) {
        (Mode::Shared, true) => FlockArg::LockShared,
        (Mode::Shared, false) => FlockArg::LockSharedNonblock,
        (Mode::Exclusive, true) => FlockArg::LockExclusive,
        (Mode::Exclusive, false) => FlockArg::LockExclusiveNonblock,
    };
    loop {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| ImageError::io(path, e))?;
        let held = match Flock::lock(f, arg) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(ImageError::io(path, e.into())),
        };
        // The file may have been removed (and another made) meanwhile.
        let ours = held.metadata().map_err(|e| ImageError::io(path, e))?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                return Ok(Some(Held { _lock: held }));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ImageError::io(path, e)),
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Keeps layers (and blobs) from removal while it lives: shared locks on
/// their lease files. A run holds one from [`super::Store::resolve`] until
/// it ends; dropping it releases them.
#[derive(Debug, Default)]
pub struct Lease {
    held: Vec<Held>,
}

impl Lease {
    pub(crate) fn push(&mut self, h: Held) {
        self.held.push(h);
    }

    /// How many layers and blobs it holds.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A private directory under the store's `tmp/` for one write: flocked
/// while it lives, removed when dropped; one left by a killed process is
/// swept by the next [`super::Store::open`].
pub struct Scratch {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Scratch {
    /// Makes `tmp/w-RANDOM`: created under a dot name, locked, then renamed,
    /// so a sweeper never sees it unlocked.
    pub fn new(tmp: &Path) -> Result<Scratch> {
        let hidden = tempfile::Builder::new()
            .prefix(".w-")
            .tempdir_in(tmp)
            .map_err(|e| ImageError::io(tmp, e))?
            .keep();
        let dir = File::open(&hidden).map_err(|e| ImageError::io(&hidden, e))?;
        let lock = Flock::lock(dir, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| ImageError::io(&hidden, e.into()))?;
        let name = hidden
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(".w-x")
            .trim_start_matches('.')
            .to_string();
        let path = tmp.join(name);
        std::fs::rename(&hidden, &path).map_err(|e| ImageError::io(&path, e))?;
        Ok(Scratch { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "scratch directory left behind");
        }
    }
}

/// Removes what dead writers left in `tmp/`: `w-*` directories nobody
/// holds, and `.w-*` ones (a writer killed between making and locking its
/// directory) older than a minute.
pub fn sweep(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let path = e.path();
        let abandoned = if name.starts_with("w-") {
            match File::open(&path) {
                Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok(),
                Err(_) => false,
            }
        } else if name.starts_with(".w-") {
            e.metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60)
        } else {
            false
        };
        if abandoned {
            tracing::info!(path = %path.display(), "removing an interrupted write");
            // The lock taken above is dropped at the end of the match: the
            // directory is ours until removed (a writer never reuses one).
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove");
            }
        }
    }
}
