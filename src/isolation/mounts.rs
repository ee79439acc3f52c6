//! The container's filesystem: a plan of mount operations built in the
//! parent (where allocating and looking at host paths is fine) and replayed
//! by the child with raw syscalls only.
//!
//! Layout, borrowed from bubblewrap's double pivot: the child mounts a
//! size-limited tmpfs (the throwaway writable layer) on /tmp of its private
//! mount namespace and pivots into it, so the host root sits at /oldroot.
//! The new root is built at /newroot from overlays whose lower layers are
//! the host's system directories (or a rootfs directory) and whose upper
//! layers live on that tmpfs; then /proc, a minimal /dev, tmpfs mounts and
//! binds are added and a final pivot_root detaches everything of the host.
//! Nothing written survives the mount namespace.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::profile::{BindMount, Filesystem, RootSource, TmpfsMount};

#[derive(Debug, thiserror::Error)]
pub enum MountPlanError {
    #[error("bind source {path}: {source}")]
    BindSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: must be an absolute path without '..'")]
    BadPath { what: &'static str, path: PathBuf },
    #[error("rootfs {path}: {source}")]
    Rootfs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("path {0:?} contains a NUL byte")]
    Nul(PathBuf),
    /// A profile naming an image reached a sandbox made without it.
    #[error("filesystem.image {0}: the image was not opened for this sandbox")]
    ImageNotOpened(String),
    #[error("setting the flags of bind {path}: {source}")]
    BindFlags {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Checkout(#[from] super::checkout::CheckoutError),
}

/// One step of the plan. Paths are absolute in the child's view at the time
/// the step runs.
#[derive(Debug)]
pub enum MountOp {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// mkdir, EEXIST ignored.
    Mkdir {
        path: CString,
        mode: u32,
    },
    /// Create an empty file to bind a file onto, EEXIST ignored.
    Touch {
        path: CString,
    },
    /// Attach the detached mount received in slot `slot` (an image layer,
    /// see `isolation::layers`) at `target`.
    Attach {
        slot: usize,
        target: CString,
    },
    /// Create a new file (mode 0444) holding `content`.
    WriteFile {
        path: CString,
        content: Vec<u8>,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// pivot_root(new, put_old) then chdir("/").
    Pivot {
        new_root: CString,
        put_old: CString,
    },
    /// chdir(dir); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/").
    PivotDetach {
        dir: CString,
    },
}

#[derive(Debug, Default)]
pub struct MountPlan {
    pub ops: Vec<MountOp>,
    /// Human description of each op, for error messages (same index).
    pub what: Vec<String>,
}

const BASE: &str = "/tmp";
const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";
const DEV_NODES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

fn cstr(p: impl AsRef<Path>) -> Result<CString, MountPlanError> {
    let p = p.as_ref();
    CString::new(p.as_os_str().as_bytes()).map_err(|_| MountPlanError::Nul(p.to_path_buf()))
}

/// A random (version 4) UUID and a newline, as the kernel prints boot_id.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // getrandom(2) does not fail for 16 bytes once the pool is ready; a
    // zeroed id would still not be the host's.
    // SAFETY: writing into our own buffer of the given length.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}\n",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `/newroot` + an absolute in-sandbox path.
fn under(root: &str, p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(root).join(rel)
}

pub fn check_abs(what: &'static str, p: &Path) -> Result<(), MountPlanError> {
    let ok = p.is_absolute() && !p.components().any(|c| matches!(c, Component::ParentDir));
    if ok {
        Ok(())
    } else {
        Err(MountPlanError::BadPath {
            what,
            path: p.to_path_buf(),
        })
    }
}

/// Mount flags of the filesystem holding `p` that a bind remount inside a
/// user namespace must keep (the kernel locks them: dropping one is EPERM).
fn locked_flags(p: &Path) -> libc::c_ulong {
    match nix::sys::statvfs::statvfs(p) {
        Ok(s) => {
            use nix::sys::statvfs::FsFlags;
            let f = s.flags();
            let mut out = 0;
            if f.contains(FsFlags::ST_NOEXEC) {
                out |= libc::MS_NOEXEC;
            }
            if f.contains(FsFlags::ST_RDONLY) {
                out |= libc::MS_RDONLY;
            }
            if f.contains(FsFlags::ST_NOATIME) {
                out |= libc::MS_NOATIME;
            }
            if f.contains(FsFlags::ST_NODIRATIME) {
                out |= libc::MS_NODIRATIME;
            }
            out
        }
        Err(_) => 0,
    }
}

impl MountPlan {
    fn push(&mut self, what: String, op: MountOp) {
        self.what.push(what);
        self.ops.push(op);
    }

    /// A bind mount at `target` made read-only, nosuid, nodev and noexec.
    fn remount_ro(&mut self, what: String, target: &Path) -> Result<(), MountPlanError> {
        self.mount(
            what,
            None,
            target,
            None,
            libc::MS_BIND
                | libc::MS_REMOUNT
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            None,
        )
    }

    fn mkdir_p(&mut self, root: &str, p: &Path, mode: u32) -> Result<(), MountPlanError> {
        let mut acc = PathBuf::from(root);
        for c in p.components() {
            if let Component::Normal(n) = c {
                acc.push(n);
                self.push(
                    format!("mkdir {}", acc.display()),
                    MountOp::Mkdir {
                        path: cstr(&acc)?,
                        mode,
                    },
                );
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn mount(
        &mut self,
        what: String,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> Result<(), MountPlanError> {
        let c = |s: &str| CString::new(s).map_err(|_| MountPlanError::Nul(PathBuf::from(s)));
        let op = MountOp::Mount {
            source: source.map(c).transpose()?,
            target: cstr(target)?,
            fstype: fstype.map(c).transpose()?,
            flags,
            data: data.map(c).transpose()?,
        };
        self.push(what, op);
        Ok(())
    }

    fn bind(&mut self, b: &BindMount) -> Result<(), MountPlanError> {
        check_abs("bind destination", &b.dest)?;
        let meta = match std::fs::metadata(&b.source) {
            Ok(m) => m,
            Err(e) if b.optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(MountPlanError::BindSource {
                    path: b.source.clone(),
                    source: e,
                });
            }
        };
        let src_abs = std::fs::canonicalize(&b.source).map_err(|e| MountPlanError::BindSource {
            path: b.source.clone(),
            source: e,
        })?;
        // A relative source is the directory the run is started from (ci's
        // "." at /workspace): never a whole home or the host's root
        // read-write because of where someone happened to type the command.
        if b.writable && b.source.is_relative() {
            super::checkout::check_not_too_wide(
                &format!("bind {} on {}", b.source.display(), b.dest.display()),
                &src_abs,
            )?;
        }
        let target = under(NEWROOT, &b.dest);
        if meta.is_dir() {
            self.mkdir_p(NEWROOT, &b.dest, 0o755)?;
        } else {
            if let Some(parent) = b.dest.parent() {
                self.mkdir_p(NEWROOT, parent, 0o755)?;
            }
            self.push(
                format!("create mount point {}", b.dest.display()),
                MountOp::Touch {
                    path: cstr(&target)?,
                },
            );
        }
        let src = under(OLDROOT, &src_abs);
        let src_s = src.to_string_lossy().into_owned();
        self.mount(
            format!("bind {} on {}", b.source.display(), b.dest.display()),
            Some(&src_s),
            &target,
            None,
            libc::MS_BIND,
            None,
        )?;
        let mut flags = libc::MS_BIND
            | libc::MS_REMOUNT
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | locked_flags(&src_abs);
        if !b.writable {
            flags |= libc::MS_RDONLY;
        }
        self.mount(
            format!(
                "remount {} {}",
                b.dest.display(),
                if b.writable {
                    "nosuid,nodev"
                } else {
                    "read-only"
                }
            ),
            None,
            &target,
            None,
            flags,
            None,
        )
    }

    fn tmpfs(&mut self, t: &TmpfsMount) -> Result<(), MountPlanError> {
        check_abs("tmpfs destination", &t.dest)?;
        self.mkdir_p(NEWROOT, &t.dest, 0o755)?;
        let data = format!("size={},mode={:o}", t.size.max(4096), t.mode);
        self.mount(
            format!("mount tmpfs ({data}) on {}", t.dest.display()),
            Some("tmpfs"),
            &under(NEWROOT, &t.dest),
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&data),
        )
    }

    fn overlay(
        &mut self,
        n: usize,
        lower: &Path,
        target: &Path,
        in_userns: bool,
    ) -> Result<(), MountPlanError> {
        let upper = format!("/upper/{n}");
        let work = format!("/work/{n}");
        for d in [&upper, &work] {
            self.push(
                format!("mkdir {d}"),
                MountOp::Mkdir {
                    path: cstr(d)?,
                    mode: 0o755,
                },
            );
        }
        let lower = under(OLDROOT, lower);
        let mut data = format!(
            "lowerdir={},upperdir={upper},workdir={work}",
            lower.display()
        );
        if in_userns {
            // trusted.* xattrs need init-namespace CAP_SYS_ADMIN.
            data.push_str(",userxattr");
        }
        self.mount(
            format!("mount overlay ({data}) on {}", target.display()),
            Some("overlay"),
            target,
            Some("overlay"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&data),
        )
    }

    /// An image's layers (attached at /layers/N in the base tmpfs) as the
    /// lower directories of the root's overlay, the topmost first; writes
    /// go to the base tmpfs.
    fn image_root(&mut self, layers: usize, in_userns: bool) -> Result<(), MountPlanError> {
        let mut lower = Vec::with_capacity(layers);
        for i in 0..layers {
            let dir = format!("/layers/{i}");
            self.mkdir_p("/", Path::new(&dir), 0o755)?;
            self.push(
                format!("attach image layer {i} at {dir}"),
                MountOp::Attach {
                    slot: i,
                    target: cstr(&dir)?,
                },
            );
            lower.push(dir);
        }
        lower.reverse();
        for d in ["/upper/0", "/work/0"] {
            self.mkdir_p("/", Path::new(d), 0o755)?;
        }
        let mut data = format!(
            "lowerdir={},upperdir=/upper/0,workdir=/work/0",
            lower.join(":")
        );
        if in_userns {
            data.push_str(",userxattr");
        }
        self.mount(
            format!("mount the image's overlay ({layers} layers) on {NEWROOT}"),
            Some("overlay"),
            Path::new(NEWROOT),
            Some("overlay"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&data),
        )
    }

    /// `/etc/resolv.conf` of the new root with `content` (a private run's
    /// DNS forwarder). The program cannot create files in the root's `/etc`
    /// (its owner is not mapped), so: a regular file there gets a read-only
    /// file bound over it; a symlink of a host root (systemd-resolved's
    /// `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`)
    /// gets its target made in the writable layer when that lies outside
    /// the system directories. Otherwise (an image, no `/etc`, a dangling
    /// or absent file) the root keeps what it has, with a warning.
    fn resolv_conf(
        &mut self,
        fs: &Filesystem,
        layers: usize,
        content: &str,
    ) -> Result<(), MountPlanError> {
        let etc = Path::new("/etc/resolv.conf");
        let host = match &fs.root {
            _ if layers > 0 => None,
            RootSource::Host if fs.system_dirs.iter().any(|d| d == Path::new("/etc")) => {
                Some(etc.to_path_buf())
            }
            RootSource::Dir(dir) => Some(dir.join("etc/resolv.conf")),
            RootSource::Host | RootSource::Image(_) => None,
        };
        let Some(host) = host else {
            tracing::warn!(
                "network.mode = \"private\": this root has no /etc/resolv.conf of the host's to replace; DNS is as the root has it (the forwarder is {})",
                super::network::DNS_FORWARDER
            );
            return Ok(());
        };
        let meta = std::fs::symlink_metadata(&host);
        let target = if meta.as_ref().is_ok_and(|m| m.is_file()) {
            etc.to_path_buf()
        } else if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink())
            && fs.root == RootSource::Host
            && let Ok(link) = std::fs::read_link(&host)
        {
            // Lexically, from /etc: the run's root resolves it the same way.
            let mut t = PathBuf::from("/etc");
            for c in link.components() {
                match c {
                    Component::RootDir => t = PathBuf::from("/"),
                    Component::ParentDir => {
                        t.pop();
                    }
                    Component::Normal(n) => t.push(n),
                    Component::CurDir | Component::Prefix(_) => {}
                }
            }
            if !fs.system_dirs.iter().any(|d| t.starts_with(d)) && t.parent().is_some() {
                let parent = t.parent().unwrap_or(Path::new("/"));
                self.mkdir_p(NEWROOT, parent, 0o755)?;
                self.push(
                    format!("write {} (/etc/resolv.conf points there)", t.display()),
                    MountOp::WriteFile {
                        path: cstr(under(NEWROOT, &t))?,
                        content: content.as_bytes().to_vec(),
                    },
                );
                return Ok(());
            }
            if std::fs::symlink_metadata(&t).is_ok_and(|m| m.is_file()) {
                t
            } else {
                tracing::warn!(
                    "network.mode = \"private\": /etc/resolv.conf points at {}, which cannot be replaced; DNS is as the host has it",
                    t.display()
                );
                return Ok(());
            }
        } else {
            tracing::warn!(
                "network.mode = \"private\": {} is not a regular file; DNS is as the root has it",
                host.display()
            );
            return Ok(());
        };
        let src = "/masks/resolv.conf";
        self.push(
            format!("write {src}"),
            MountOp::WriteFile {
                path: cstr(src)?,
                content: content.as_bytes().to_vec(),
            },
        );
        let dest = under(NEWROOT, &target);
        self.mount(
            format!("bind {src} on {}", target.display()),
            Some(src),
            &dest,
            None,
            libc::MS_BIND,
            None,
        )?;
        self.remount_ro(format!("remount {} read-only", target.display()), &dest)
    }

    /// Build the plan for a profile's filesystem plus run-specific binds.
    /// With `layers` > 0 the root is an image: that many layer mounts,
    /// lowest first, arrive as detached mounts ([`apply`]'s `attached`) and
    /// are stacked as the overlay's lower directories. `resolv_conf`: the
    /// content of the run's `/etc/resolv.conf` (a private network's DNS).
    pub fn build(
        fs: &Filesystem,
        extra_binds: &[BindMount],
        in_userns: bool,
        layers: usize,
        resolv_conf: Option<&str>,
    ) -> Result<MountPlan, MountPlanError> {
        let mut p = MountPlan::default();
        let base = Path::new(BASE);
        p.mount(
            "make / private (no propagation to the host)".into(),
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        )?;
        let layer = format!("size={},mode=0755", fs.writable_layer_size.max(65536));
        p.mount(
            format!("mount writable-layer tmpfs ({layer}) on {BASE}"),
            Some("tmpfs"),
            base,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&layer),
        )?;
        for d in ["newroot", "oldroot", "upper", "work"] {
            let path = base.join(d);
            p.push(
                format!("mkdir {}", path.display()),
                MountOp::Mkdir {
                    path: cstr(&path)?,
                    mode: 0o755,
                },
            );
        }
        p.push(
            format!("pivot_root into {BASE}"),
            MountOp::Pivot {
                new_root: cstr(BASE)?,
                put_old: cstr(base.join("oldroot"))?,
            },
        );

        // The new root itself.
        match &fs.root {
            _ if layers > 0 => p.image_root(layers, in_userns)?,
            RootSource::Image(r) => return Err(MountPlanError::ImageNotOpened(r.clone())),
            RootSource::Dir(dir) => {
                check_abs("filesystem.root", dir)?;
                let m = std::fs::metadata(dir).map_err(|e| MountPlanError::Rootfs {
                    path: dir.clone(),
                    source: e,
                })?;
                if !m.is_dir() {
                    return Err(MountPlanError::Rootfs {
                        path: dir.clone(),
                        source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                    });
                }
                p.overlay(0, dir, Path::new(NEWROOT), in_userns)?;
            }
            RootSource::Host => {
                // pivot_root needs the new root to be a mount point.
                p.mount(
                    "bind /newroot on itself".into(),
                    Some(NEWROOT),
                    Path::new(NEWROOT),
                    None,
                    libc::MS_BIND,
                    None,
                )?;
                for (i, d) in fs.system_dirs.iter().enumerate() {
                    check_abs("filesystem.system_dirs", d)?;
                    let Ok(meta) = std::fs::symlink_metadata(d) else {
                        continue; // a system dir this host lacks (e.g. /lib64)
                    };
                    if meta.file_type().is_symlink() {
                        let target = std::fs::read_link(d).map_err(|e| MountPlanError::Rootfs {
                            path: d.clone(),
                            source: e,
                        })?;
                        if let Some(parent) = d.parent() {
                            p.mkdir_p(NEWROOT, parent, 0o755)?;
                        }
                        p.push(
                            format!("symlink {} -> {}", d.display(), target.display()),
                            MountOp::Symlink {
                                target: cstr(&target)?,
                                link: cstr(under(NEWROOT, d))?,
                            },
                        );
                    } else if meta.is_dir() {
                        p.mkdir_p(NEWROOT, d, 0o755)?;
                        p.overlay(i + 1, d, &under(NEWROOT, d), in_userns)?;
                    }
                }
            }
        }

        // /proc for the run's own pid namespace, /proc/sys read-only.
        let proc_ = under(NEWROOT, Path::new("/proc"));
        p.mkdir_p(NEWROOT, Path::new("/proc"), 0o555)?;
        p.mount(
            "mount proc on /proc".into(),
            Some("proc"),
            &proc_,
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )?;
        let sys = proc_.join("sys");
        let sys_s = sys.to_string_lossy().into_owned();
        p.mount(
            "bind /proc/sys".into(),
            Some(&sys_s),
            &sys,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        p.remount_ro("remount /proc/sys read-only".into(), &sys)?;

        // What would tell of the host: its kernel command line (boot
        // parameters, often an image path or a root device), its boot id
        // and machine id (the same in every run and on the host: they would
        // link runs to one machine and one boot). Read-only files from the
        // base tmpfs are bound over them: an empty command line, ids of
        // this run's own.
        p.push(
            "mkdir /masks".into(),
            MountOp::Mkdir {
                path: cstr("/masks")?,
                mode: 0o755,
            },
        );
        let mut masks = vec![
            ("cmdline", proc_.join("cmdline"), b"\n".to_vec()),
            (
                "boot_id",
                proc_.join("sys/kernel/random/boot_id"),
                random_uuid().into_bytes(),
            ),
        ];
        // The host's machine id (systemd, D-Bus) names the machine for
        // good: a run that sees /etc gets one of its own.
        let etc_id = match &fs.root {
            // An image's own machine id is not the host's.
            _ if layers > 0 => None,
            RootSource::Host if fs.system_dirs.iter().any(|d| d == Path::new("/etc")) => {
                Some(PathBuf::from("/etc/machine-id"))
            }
            RootSource::Dir(dir) => Some(dir.join("etc/machine-id")),
            RootSource::Host | RootSource::Image(_) => None,
        };
        if etc_id.is_some_and(|f| std::fs::symlink_metadata(f).is_ok_and(|m| m.is_file())) {
            let id: String = random_uuid().chars().filter(|c| *c != '-').collect();
            masks.push((
                "machine-id",
                under(NEWROOT, Path::new("/etc/machine-id")),
                id.into_bytes(),
            ));
        }
        for (name, target, content) in masks {
            let src = format!("/masks/{name}");
            p.push(
                format!("write {src}"),
                MountOp::WriteFile {
                    path: cstr(&src)?,
                    content,
                },
            );
            let dest = target.strip_prefix(NEWROOT).map_or_else(
                |_| target.display().to_string(),
                |r| format!("/{}", r.display()),
            );
            p.mount(
                format!("mask {dest}"),
                Some(&src),
                &target,
                None,
                libc::MS_BIND,
                None,
            )?;
            p.remount_ro(format!("remount {dest} read-only"), &target)?;
        }
        if let Some(content) = resolv_conf {
            p.resolv_conf(fs, layers, content)?;
        }

        // A minimal /dev: a few harmless host nodes bound in, private shm and pts.
        let dev = under(NEWROOT, Path::new("/dev"));
        p.mkdir_p(NEWROOT, Path::new("/dev"), 0o755)?;
        p.mount(
            "mount tmpfs on /dev".into(),
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("size=65536,mode=0755"),
        )?;
        for n in DEV_NODES {
            let node = dev.join(n);
            p.push(
                format!("create /dev/{n}"),
                MountOp::Touch { path: cstr(&node)? },
            );
            p.mount(
                format!("bind host /dev/{n}"),
                Some(&format!("{OLDROOT}/dev/{n}")),
                &node,
                None,
                libc::MS_BIND,
                None,
            )?;
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            p.push(
                format!("symlink /dev/{link}"),
                MountOp::Symlink {
                    target: cstr(target)?,
                    link: cstr(dev.join(link))?,
                },
            );
        }
        p.mkdir_p(NEWROOT, Path::new("/dev/shm"), 0o1777)?;
        let shm = format!("size={},mode=1777", fs.dev_shm_size.max(4096));
        p.mount(
            format!("mount tmpfs ({shm}) on /dev/shm"),
            Some("tmpfs"),
            &dev.join("shm"),
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&shm),
        )?;
        p.mkdir_p(NEWROOT, Path::new("/dev/pts"), 0o755)?;
        p.mount(
            "mount private devpts on /dev/pts".into(),
            Some("devpts"),
            &dev.join("pts"),
            Some("devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            // max: a run cannot drain the host-wide pty pool.
            Some("newinstance,ptmxmode=0666,mode=0620,max=16"),
        )?;

        // The program must not swap /dev/null for a file of its own.
        p.mount(
            "remount /dev read-only".into(),
            None,
            &dev,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
            None,
        )?;
        for t in &fs.tmpfs {
            p.tmpfs(t)?;
        }
        // A relative source names a directory of the run (the caller's
        // working directory, a job's workspace): bound per run, after
        // "go" (runner::start), never into a container made ahead.
        for b in fs.binds.iter().chain(extra_binds) {
            if b.source.is_absolute() {
                p.bind(b)?;
            }
        }
        check_abs("working directory", &fs.workdir)?;
        p.mkdir_p(NEWROOT, &fs.workdir, 0o755)?;
        p.push(
            "pivot_root into the new root and detach the host's".into(),
            MountOp::PivotDetach {
                dir: cstr(NEWROOT)?,
            },
        );
        Ok(p)
    }
}

/// Replay the plan. Child side: raw syscalls only. On failure returns
/// (index of the failed op, errno).
pub fn apply(plan: &MountPlan, attached: &[RawFd]) -> Result<(), (usize, i32)> {
    use super::sys::{errno, pivot_root};
    let null = std::ptr::null::<libc::c_char>();
    let p = |o: &Option<CString>| o.as_ref().map_or(null, |c| c.as_ptr());
    for (i, op) in plan.ops.iter().enumerate() {
        // SAFETY: (all calls below) every pointer is a valid NUL-terminated
        // string owned by the plan, or NULL where the syscall allows it.
        let rc: i32 = unsafe {
            match op {
                MountOp::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                } => libc::mount(
                    p(source),
                    target.as_ptr(),
                    p(fstype),
                    *flags,
                    p(data).cast(),
                ),
                MountOp::Mkdir { path, mode } => {
                    let r = libc::mkdir(path.as_ptr(), *mode);
                    if r < 0 && errno() == libc::EEXIST {
                        0
                    } else {
                        r
                    }
                }
                MountOp::Touch { path } => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                        0o644,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                        0
                    } else if errno() == libc::EEXIST || errno() == libc::EISDIR {
                        0
                    } else {
                        -1
                    }
                }
                MountOp::Attach { slot, target } => match attached.get(*slot) {
                    Some(&fd) => libc::syscall(
                        libc::SYS_move_mount,
                        fd,
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        target.as_ptr(),
                        libc::MOVE_MOUNT_F_EMPTY_PATH,
                    ) as i32,
                    None => {
                        *libc::__errno_location() = libc::EBADF;
                        -1
                    }
                },
                MountOp::WriteFile { path, content } => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o444,
                    );
                    if fd < 0 {
                        -1
                    } else {
                        let ok = super::sys::write_all(fd, content);
                        libc::close(fd);
                        if ok { 0 } else { -1 }
                    }
                }
                MountOp::Symlink { target, link } => {
                    let r = libc::symlink(target.as_ptr(), link.as_ptr());
                    if r < 0 && errno() == libc::EEXIST {
                        0
                    } else {
                        r
                    }
                }
                MountOp::Pivot { new_root, put_old } => {
                    let r = pivot_root(new_root, put_old);
                    if r < 0 {
                        *libc::__errno_location() = -r;
                        -1
                    } else {
                        libc::chdir(c"/".as_ptr())
                    }
                }
                MountOp::PivotDetach { dir } => {
                    if libc::chdir(dir.as_ptr()) < 0 {
                        -1
                    } else {
                        let r = pivot_root(c".", c".");
                        if r < 0 {
                            *libc::__errno_location() = -r;
                            -1
                        } else if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) < 0 {
                            -1
                        } else {
                            libc::chdir(c"/".as_ptr())
                        }
                    }
                }
            }
        };
        if rc < 0 {
            return Err((i, errno()));
        }
    }
    Ok(())
}
