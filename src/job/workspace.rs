//! The job workspace: a private host directory bound read-write at `/box`
//! in every step, owned by the profile's host uid/gid so the sandboxed
//! program can write it; size-checked after each step; copy-out that never
//! follows a symlink and only returns regular files.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::request::InputFile;

/// Where the workspace appears inside every step.
pub const BOX: &str = "/box";

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: exists and is not a private directory owned by this user", .0.display())]
    UnsafeBase(PathBuf),
}

pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError {
    let path = path.to_path_buf();
    move |source| WorkspaceError::Io { what, path, source }
}

/// Create (or check) the base directory holding all workspaces: owned by
/// us, not a symlink, mode 0711 (others may traverse to a workspace whose
/// random name they know, never list).
pub fn prepare_base(base: &Path) -> Result<(), WorkspaceError> {
    match std::fs::DirBuilder::new()
        .mode(0o711)
        .recursive(false)
        .create(base)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let md = std::fs::symlink_metadata(base).map_err(io("inspecting", base))?;
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            if !md.is_dir() || md.uid() != me {
                return Err(WorkspaceError::UnsafeBase(base.to_path_buf()));
            }
        }
        Err(e) => {
            if let Some(parent) = base.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
                std::fs::DirBuilder::new()
                    .mode(0o711)
                    .create(base)
                    .map_err(io("creating", base))?;
            } else {
                return Err(io("creating", base)(e));
            }
        }
    }
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o711))
        .map_err(io("chmod", base))?;
    Ok(())
}

/// One job's directory. Removed by [`Workspace::remove`] or on drop.
#[derive(Debug)]
pub struct Workspace {
    path: PathBuf,
    uid: u32,
    gid: u32,
    removed: bool,
    /// A size-capped tmpfs of its own is mounted on `path`.
    mounted: bool,
}

fn chown(p: &Path, uid: u32, gid: u32) -> Result<(), WorkspaceError> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(io("chown", p))
}

impl Workspace {
    /// Create `base/name` (mode 0700, owned by uid:gid).
    /// Create the workspace directory and, where this process may mount
    /// (root), a tmpfs of exactly `size` bytes on it: the kernel then stops
    /// every write past the cap (preallocation and inode floods included),
    /// and nothing reaches the host disk. Without that mount the size is
    /// only checked after each step.
    pub fn create(
        base: &Path,
        name: &str,
        uid: u32,
        gid: u32,
        size: u64,
    ) -> Result<Workspace, WorkspaceError> {
        let path = base.join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io("creating", &path))?;
        let inodes = (size / 4096).clamp(1024, 1 << 20);
        let data = format!("size={size},nr_inodes={inodes},mode=0700,uid={uid},gid={gid}");
        let mounted = nix::mount::mount(
            Some("tmpfs"),
            &path,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|e| {
            tracing::warn!(
                "workspace {}: no tmpfs ({e}); size checked after steps only",
                path.display()
            )
        })
        .is_ok();
        let ws = Workspace {
            path,
            uid,
            gid,
            removed: false,
            mounted,
        };
        chown(&ws.path, uid, gid)?;
        Ok(ws)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write the input files (before any step ran: nothing untrusted has
    /// touched the directory yet). Parent directories are created 0755.
    pub fn write_files(&self, files: &[InputFile]) -> Result<(), WorkspaceError> {
        for f in files {
            let mut dir = self.path.clone();
            let comps: Vec<&str> = f.path.split('/').collect();
            for c in &comps[..comps.len() - 1] {
                dir.push(c);
                match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
                    Ok(()) => chown(&dir, self.uid, self.gid)?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("creating", &dir)(e)),
                }
            }
            let p = self.path.join(&f.path);
            let mode = if f.executable { 0o755 } else { 0o644 };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .map_err(io("creating", &p))?;
            std::io::Write::write_all(&mut file, &f.content).map_err(io("writing", &p))?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io("chmod", &p))?;
            chown(&p, self.uid, self.gid)?;
        }
        Ok(())
    }

    /// Disk usage in bytes (allocated blocks), never following symlinks.
    /// Stops counting once `cap` is exceeded (or after a million entries).
    pub fn usage(&self, cap: u64) -> u64 {
        if self.mounted {
            return match nix::sys::statvfs::statvfs(&self.path) {
                // A full tmpfs means the program hit the cap (its writes failed).
                Ok(v) if v.blocks_free() == 0 || v.files_free() == 0 => cap.saturating_add(1),
                Ok(v) => (v.blocks() - v.blocks_free()) * v.fragment_size(),
                Err(_) => u64::MAX,
            };
        }
        let mut total = 0u64;
        let mut entries = 0u64;
        let mut stack = vec![self.path.clone()];
        while let Some(d) = stack.pop() {
            // Fail closed: a tree too deep to walk (ENAMETOOLONG) or
            // unreadable must not hide what it holds.
            let rd = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => return u64::MAX,
            };
            for e in rd.flatten() {
                entries += 1;
                if entries > 1_000_000 {
                    return u64::MAX;
                }
                // DirEntry::metadata does not follow symlinks.
                let Ok(md) = e.metadata() else { continue };
                total = total.saturating_add(md.blocks() * 512);
                if md.is_dir() {
                    stack.push(e.path());
                }
                if total > cap {
                    return total;
                }
            }
        }
        total
    }

    /// Read a regular file of the workspace, at most `cap` bytes. Every
    /// component is opened relative to the previous one with O_NOFOLLOW;
    /// the leaf with O_NONBLOCK (a FIFO cannot hang us) and must be S_ISREG.
    pub fn read_file(&self, rel: &str, cap: u64) -> Result<Vec<u8>, String> {
        let root =
            open_dir_at(libc::AT_FDCWD, &self.path).map_err(|e| format!("workspace: {e}"))?;
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let Some((leaf, dirs)) = comps.split_last() else {
            return Err("empty path".into());
        };
        let mut cur = root;
        for c in dirs {
            if *c == "." || *c == ".." {
                return Err("'.' and '..' are not allowed".into());
            }
            cur =
                open_dir_at(cur.as_raw_fd(), Path::new(c)).map_err(|e| match e.raw_os_error() {
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                        format!("{c}: not a directory (symlinks are not followed)")
                    }
                    Some(libc::ENOENT) => "no such file".to_string(),
                    _ => format!("{c}: {e}"),
                })?;
        }
        let fd = openat(
            cur.as_raw_fd(),
            Path::new(leaf),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link (not followed)".to_string(),
            Some(libc::ENOENT) => "no such file".to_string(),
            _ => e.to_string(),
        })?;
        let mut file = std::fs::File::from(fd);
        let md = file.metadata().map_err(|e| e.to_string())?;
        if !md.file_type().is_file() {
            let what = if md.is_dir() {
                "a directory"
            } else {
                use std::os::unix::fs::FileTypeExt;
                let t = md.file_type();
                if t.is_fifo() {
                    "a FIFO"
                } else if t.is_socket() {
                    "a socket"
                } else if t.is_char_device() || t.is_block_device() {
                    "a device"
                } else {
                    "not a regular file"
                }
            };
            return Err(format!("not a regular file ({what})"));
        }
        if md.len() > cap {
            return Err(format!("larger than the {cap}-byte cap on returned files"));
        }
        let mut buf = Vec::with_capacity(md.len() as usize);
        (&mut file)
            .take(cap + 1)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        if buf.len() as u64 > cap {
            return Err(format!("larger than the {cap}-byte cap on returned files"));
        }
        Ok(buf)
    }

    /// Remove the directory and everything in it (std's remove_dir_all does
    /// not follow symlinks).
    pub fn remove(&mut self) -> Result<(), WorkspaceError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        if self.mounted {
            // Detach: a lingering reference cannot keep the job's data alive
            // in a visible place; the pages go with the last reference.
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &self.path)(e)),
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!("{e}");
        }
    }
}

fn openat(dir: RawFd, p: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid C string; the result is checked and then owned.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir_at(dir: RawFd, p: &Path) -> std::io::Result<OwnedFd> {
    openat(
        dir,
        p,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
}
