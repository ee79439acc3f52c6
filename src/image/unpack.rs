//! Unpacking one layer's tar stream into an empty directory, as Docker's
//! overlay2 driver does (each layer on its own, whiteouts converted to
//! overlayfs form), with hostile input in mind. Nothing is ever resolved
//! outside the directory nor through a symlink ([`super::beneath`]).
//!
//! The rules, each an error naming the entry unless said otherwise:
//! - names: absolute names and `..` components are refused; `./` and empty
//!   components are dropped; the name `.` sets the layer root's metadata;
//! - a parent that is a symlink (planted by an earlier entry) is refused,
//!   one that is a file too; missing parents are made (0755, 0:0);
//! - an entry replaces what an earlier entry left at its name (a directory
//!   over a directory only updates its metadata);
//! - hard links: the target must be an earlier entry of the same layer;
//! - device nodes are skipped with a warning (base images carry a few);
//!   FIFOs are made (never opened);
//! - owners, modes (set-id bits included), mtimes as in the tar; xattrs of
//!   the image (PAX `SCHILY.xattr.*`) are all dropped: file capabilities
//!   and `*.overlay.*` attributes never reach the store;
//! - `.wh.NAME` becomes a 0/0 character device NAME (unless this layer has
//!   its own NAME), `.wh..wh..opq` marks its directory opaque
//!   (`trusted.overlay.opaque=y` and `user.overlay.opaque=y`), other
//!   `.wh..wh.*` names (aufs metadata) are skipped;
//! - entries are counted against a cap (bytes are capped by the caller).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use super::beneath::{self as fs, b};
use super::error::{ImageError, Result};
use super::tarstream::{self, Kind, Meta, TarError};

/// How to unpack.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Entries (inodes) allowed in the layer.
    pub max_entries: u64,
    /// Set owners and `trusted.*` xattrs (needs root). Without it files
    /// belong to the caller and opaque directories get only
    /// `user.overlay.opaque` (tests and fuzzing as an ordinary user).
    pub privileged: bool,
    /// Names the layer in errors and logs.
    pub layer: String,
}

/// What an unpack made.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnpackStats {
    /// Entries made: files, directories (implicit ones too), links,
    /// whiteouts.
    pub entries: u64,
    /// Bytes of regular files' content.
    pub content_bytes: u64,
    /// Device nodes skipped.
    pub devices_skipped: u64,
}

struct DirMeta {
    mode: u32,
    mtime: (i64, u32),
}

struct Unpacker<'a> {
    dest: &'a Path,
    root: OwnedFd,
    opts: &'a UnpackOptions,
    stats: UnpackStats,
    /// The parent directory of the last entry (entries come grouped by
    /// directory): its path and fd. Dropped whenever a directory is removed.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Directories' modes and mtimes, applied once everything is written.
    dirs: HashMap<Vec<u8>, DirMeta>,
    buf: Vec<u8>,
}

/// Unpacks the tar stream `r` into `dest`, an existing empty directory.
/// Reads up to the end-of-archive marker (the caller drains the rest).
pub fn unpack_tar<R: Read>(r: R, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let root = fs::open_root(dest).map_err(|e| ImageError::io(dest, e))?;
    let mut u = Unpacker {
        dest,
        root,
        opts,
        stats: UnpackStats::default(),
        cache: None,
        dirs: HashMap::new(),
        buf: vec![0; 128 << 10],
    };
    tarstream::for_each(r, |m, data| u.entry(m, data)).map_err(|e| with_layer(e, &opts.layer))?;
    u.finish_dirs()?;
    Ok(u.stats)
}

impl From<TarError> for ImageError {
    fn from(e: TarError) -> Self {
        let reason = match e.io {
            Some(io) => super::error::one_line(&io.to_string()),
            None => e.reason,
        };
        match e.entry {
            Some(n) => ImageError::Entry {
                layer: String::new(),
                entry: String::from_utf8_lossy(&n).into_owned(),
                reason,
            },
            None => ImageError::Layer {
                layer: String::new(),
                reason,
            },
        }
    }
}

/// Names the layer in an error made without it.
fn with_layer(e: ImageError, name: &str) -> ImageError {
    match e {
        ImageError::Entry {
            layer,
            entry,
            reason,
        } if layer.is_empty() => ImageError::Entry {
            layer: name.to_string(),
            entry,
            reason,
        },
        ImageError::Layer { layer, reason } if layer.is_empty() => ImageError::Layer {
            layer: name.to_string(),
            reason,
        },
        e => e,
    }
}

/// Splits a tar name into its components: no absolute name, no `..`, no
/// NUL; `.` and empty components dropped.
pub fn split_name(name: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    if name.first() == Some(&b'/') {
        return Err("absolute name (entries must be relative to the layer root)");
    }
    if name.contains(&0) {
        return Err("NUL byte in the name");
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("'..' in the name (path traversal)"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Errors of the target filesystem (full, read-only, out of fds) are the
/// store's; the others are the entry's fault.
fn is_store_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOSPC
                | libc::EDQUOT
                | libc::EIO
                | libc::EROFS
                | libc::ENOMEM
                | libc::EMFILE
                | libc::ENFILE
        )
    )
}

impl Unpacker<'_> {
    fn fail(&self, entry: &[u8], reason: impl Into<String>) -> ImageError {
        ImageError::Entry {
            layer: self.opts.layer.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    fn fs_fail(&self, entry: &[u8], what: &str, e: io::Error) -> ImageError {
        if is_store_errno(&e) {
            return ImageError::io(self.dest.join(std::ffi::OsStr::from_bytes(entry)), e);
        }
        let reason = match e.raw_os_error() {
            Some(libc::ELOOP) => format!("{what}: a symlink is on the way (not followed)"),
            Some(libc::ENOTDIR) => format!("{what}: a parent is not a directory"),
            Some(libc::EXDEV) => format!("{what}: leaves the layer"),
            _ => format!("{what}: {e}"),
        };
        self.fail(entry, super::error::one_line(&reason))
    }

    fn owner(&self, m: &Meta) -> Option<(u32, u32)> {
        self.opts.privileged.then_some((m.uid, m.gid))
    }

    fn count(&mut self, n: u64, entry: &[u8]) -> Result<()> {
        self.stats.entries += n;
        if self.stats.entries > self.opts.max_entries {
            tracing::debug!(entry = %String::from_utf8_lossy(entry), "entry cap reached");
            return Err(ImageError::TooLarge {
                what: format!("layer {}", self.opts.layer),
                limit: self.opts.max_entries,
                unit: "entries",
            });
        }
        Ok(())
    }

    /// The parent directory of an entry, made if missing.
    fn parent(&mut self, name: &[u8], comps: &[&[u8]]) -> Result<Rc<OwnedFd>> {
        let joined = comps.join(&b'/');
        if let Some((p, fd)) = &self.cache
            && *p == joined
        {
            return Ok(fd.clone());
        }
        let (fd, made) =
            fs::make_dirs(b(&self.root), comps).map_err(|e| self.fs_fail(name, "parent", e))?;
        self.count(made, name)?;
        let fd = Rc::new(fd);
        self.cache = Some((joined, fd.clone()));
        Ok(fd)
    }

    fn entry(&mut self, m: &Meta, data: &mut dyn Read) -> Result<()> {
        let comps = split_name(&m.path).map_err(|r| self.fail(&m.path, r))?;
        let Some((&name, parents)) = comps.split_last() else {
            // The layer root itself.
            if m.kind != Kind::Dir {
                return Err(self.fail(&m.path, "the layer root must be a directory"));
            }
            fs::set_owner_mode(b(&self.root), self.owner(m), m.mode)
                .map_err(|e| self.fs_fail(&m.path, "root", e))?;
            self.dirs.insert(
                Vec::new(),
                DirMeta {
                    mode: m.mode,
                    mtime: (m.mtime, m.mtime_nsec),
                },
            );
            return Ok(());
        };
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return self.whiteout(m, parents, hidden);
        }
        if matches!(m.kind, Kind::CharDevice | Kind::BlockDevice) {
            // Skipped without a trace: nothing made, nothing replaced.
            self.stats.devices_skipped += 1;
            tracing::warn!(
                layer = %self.opts.layer,
                entry = %String::from_utf8_lossy(&m.path),
                "device node skipped"
            );
            return Ok(());
        }
        self.count(1, &m.path)?;
        let parent = self.parent(&m.path, parents)?;
        let pfd = b(&parent);
        let is_dir = m.kind == Kind::Dir;
        let existing = fs::kind_of(pfd, name).map_err(|e| self.fs_fail(&m.path, "stat", e))?;
        let keep_dir = match existing {
            Some((rustix::fs::FileType::Directory, _)) if is_dir => true,
            Some((kind, _)) => {
                let was_dir = kind == rustix::fs::FileType::Directory;
                let rel = comps.join(&b'/');
                let abs = self.dest.join(std::ffi::OsStr::from_bytes(&rel));
                fs::remove(pfd, name, was_dir, &abs)
                    .map_err(|e| self.fs_fail(&m.path, "replace", e))?;
                if was_dir {
                    self.cache = None;
                    let prefix = [rel.as_slice(), b"/"].concat();
                    self.dirs
                        .retain(|k, _| *k != rel && !k.starts_with(&prefix));
                }
                false
            }
            None => false,
        };
        let mtime = (m.mtime, m.mtime_nsec);
        match m.kind {
            Kind::File => {
                let mut f =
                    fs::create_file(pfd, name).map_err(|e| self.fs_fail(&m.path, "create", e))?;
                self.copy(data, &mut f, m)?;
                fs::set_owner_mode(f.as_fd(), self.owner(m), m.mode)
                    .and_then(|()| fs::set_mtime(f.as_fd(), mtime))
                    .map_err(|e| self.fs_fail(&m.path, "metadata", e))?;
            }
            Kind::Dir => {
                let fd = if keep_dir {
                    fs::open_dir(pfd, name)
                } else {
                    fs::make_dir(pfd, name)
                }
                .map_err(|e| self.fs_fail(&m.path, "mkdir", e))?;
                // The mode is set at the end (a 0555 directory still gets
                // its entries); the owner now.
                fs::set_owner_mode(b(&fd), self.owner(m), 0o700)
                    .map_err(|e| self.fs_fail(&m.path, "metadata", e))?;
                self.dirs.insert(
                    comps.join(&b'/'),
                    DirMeta {
                        mode: m.mode,
                        mtime,
                    },
                );
            }
            Kind::Symlink => {
                let target = m.link.as_deref().unwrap_or_default();
                if target.is_empty() {
                    return Err(self.fail(&m.path, "symlink without a target"));
                }
                fs::symlink(pfd, name, target)
                    .and_then(|()| fs::set_meta_at(pfd, name, self.owner(m), None, mtime))
                    .map_err(|e| self.fs_fail(&m.path, "symlink", e))?;
            }
            Kind::HardLink => self.hard_link(m, &parent, name)?,
            Kind::Fifo => {
                fs::fifo(pfd, name)
                    .and_then(|()| fs::set_meta_at(pfd, name, self.owner(m), Some(m.mode), mtime))
                    .map_err(|e| self.fs_fail(&m.path, "fifo", e))?;
            }
            // Skipped above.
            Kind::CharDevice | Kind::BlockDevice => {}
        }
        Ok(())
    }

    fn copy(&mut self, data: &mut dyn Read, f: &mut std::fs::File, m: &Meta) -> Result<()> {
        let mut left = m.size;
        while left > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(self.fail(&m.path, "truncated: the stream ends inside the file"));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(&self.opts.layer, &m.path, e)),
            };
            f.write_all(&self.buf[..n])
                .map_err(|e| self.fs_fail(&m.path, "write", e))?;
            left -= n as u64;
            self.stats.content_bytes += n as u64;
        }
        Ok(())
    }

    fn hard_link(&mut self, m: &Meta, parent: &OwnedFd, name: &[u8]) -> Result<()> {
        let target = m.link.as_deref().unwrap_or_default();
        let tcomps =
            split_name(target).map_err(|r| self.fail(&m.path, format!("hard link target: {r}")))?;
        let Some((&tname, tparents)) = tcomps.split_last() else {
            return Err(self.fail(&m.path, "hard link to the layer root"));
        };
        let not_here = || {
            self.fail(
                &m.path,
                format!(
                    "hard link to {:?}, which is not an earlier entry of this layer",
                    String::from_utf8_lossy(target)
                ),
            )
        };
        let tdir = match fs::open_dir(b(&self.root), &tparents.join(&b'/')) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_here()),
            Err(e) => return Err(self.fs_fail(&m.path, "hard link target", e)),
        };
        match fs::kind_of(b(&tdir), tname) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(not_here()),
            Err(e) => return Err(self.fs_fail(&m.path, "hard link target", e)),
        }
        fs::hard_link(b(&tdir), tname, b(parent), name)
            .map_err(|e| self.fs_fail(&m.path, "hard link", e))
    }

    fn whiteout(&mut self, m: &Meta, parents: &[&[u8]], hidden: &[u8]) -> Result<()> {
        if hidden == b".wh..opq" {
            let parent = self.parent(&m.path, parents)?;
            return fs::set_opaque(b(&parent), self.opts.privileged)
                .map_err(|e| self.fs_fail(&m.path, "opaque directory", e));
        }
        if hidden.starts_with(b".wh.") {
            // aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.fail(&m.path, "whiteout of nothing"));
        }
        self.count(1, &m.path)?;
        let parent = self.parent(&m.path, parents)?;
        match fs::kind_of(b(&parent), hidden) {
            // This layer's own entry of that name already hides the lower ones.
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                fs::whiteout(b(&parent), hidden).map_err(|e| self.fs_fail(&m.path, "whiteout", e))
            }
            Err(e) => Err(self.fs_fail(&m.path, "whiteout", e)),
        }
    }

    /// Directories' modes and mtimes, now that nothing more is written.
    fn finish_dirs(&mut self) -> Result<()> {
        self.cache = None;
        for (path, d) in &self.dirs {
            let fd = match fs::open_dir(b(&self.root), path) {
                Ok(fd) => fd,
                // Replaced by a later entry.
                Err(_) => continue,
            };
            fs::set_owner_mode(b(&fd), None, d.mode)
                .and_then(|()| fs::set_mtime(b(&fd), d.mtime))
                .map_err(|e| self.fs_fail(path, "directory metadata", e))?;
        }
        Ok(())
    }
}

/// A read error of the layer's stream while inside an entry's data (the
/// caller tells a byte cap from corruption).
fn read_error(layer: &str, entry: &[u8], e: io::Error) -> ImageError {
    ImageError::Layer {
        layer: layer.to_string(),
        reason: super::error::one_line(&format!("entry {:?}: {e}", String::from_utf8_lossy(entry))),
    }
}
