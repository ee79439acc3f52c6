//! Small file helpers for cgroupfs and /proc, shared by both versions, with
//! errors that name the operation and the path: reading, writing and
//! parsing one file; the fds a run keeps open ([`JoinFds`], [`KeptFile`]);
//! the pids controller's files (the same in v1 and v2); and the steps done
//! on each of a run's directories through its `cgroup.procs` (emptiness,
//! the SIGKILL loop, rmdir with EBUSY retries).
//!
//! Imports only `common`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::common::{CgroupError, io_err};

// ---------------------------------------------------------------------------
// One file

pub(super) fn read_string(op: &'static str, path: &Path) -> Result<String, CgroupError> {
    read_small(path).map_err(io_err(op, path))
}

/// Reads a /proc or cgroupfs file. These report size 0, so `fs::read` would
/// start with a tiny buffer and grow it over many `read` calls (each one
/// re-generating the text in the kernel); one large read is enough.
fn read_small(path: impl AsRef<Path>) -> io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(16 * 1024);
    // Through `take`: File's own read_to_end would fstat for a size hint.
    File::open(path)?.take(1 << 24).read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(super) fn write_file(op: &'static str, path: &Path, value: &str) -> Result<(), CgroupError> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(op, path))?;
    f.write_all(value.as_bytes()).map_err(io_err(op, path))
}

pub(super) fn read_u64(op: &'static str, path: &Path) -> Result<u64, CgroupError> {
    let s = read_string(op, path)?;
    s.trim().parse().map_err(|_| CgroupError::Parse {
        op,
        path: path.to_path_buf(),
        detail: format!("expected an integer, got {:?}", s.trim()),
    })
}

/// Value of `key` in a flat-keyed file (`key value` per line).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

pub(super) fn read_keyed(op: &'static str, path: &Path, key: &str) -> Result<u64, CgroupError> {
    let s = read_string(op, path)?;
    keyed(&s, key).ok_or_else(|| CgroupError::Parse {
        op,
        path: path.to_path_buf(),
        detail: format!("no `{key}` line"),
    })
}

pub(super) fn parse_ascii_u64(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?.trim();
    s.parse().ok()
}

pub(super) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let s = read_string("read", path)?;
    Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot).
pub(super) fn process_start_time(pid: u32) -> Option<u64> {
    let text = read_small(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Fds a run keeps open

/// The pre-opened `O_WRONLY|O_CLOEXEC` fds a forked child writes `"0"` to
/// (`super::join_self`), with their raw numbers kept alongside so the child
/// is handed a plain slice.
#[derive(Debug, Default)]
pub(super) struct JoinFds {
    owned: Vec<OwnedFd>,
    raw: Vec<RawFd>,
}

impl JoinFds {
    /// Opens `path` (`tasks` or `cgroup.procs`) for joining and keeps it.
    pub(super) fn open(&mut self, path: &Path) -> Result<(), CgroupError> {
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err("open for joining", path))?;
        self.raw.push(f.as_raw_fd());
        self.owned.push(OwnedFd::from(f));
        Ok(())
    }

    pub(super) fn raw(&self) -> &[RawFd] {
        &self.raw
    }

    pub(super) fn close(&mut self) {
        self.owned.clear();
        self.raw.clear();
    }
}

/// A counter file kept open and `pread` from offset 0 on every read (the
/// hot path of `cpu_usage_ns`).
#[derive(Debug, Default)]
pub(super) struct KeptFile {
    file: Option<File>,
    path: PathBuf,
}

impl KeptFile {
    pub(super) fn open(path: PathBuf) -> Result<Self, CgroupError> {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("open", &path))?;
        Ok(KeptFile {
            file: Some(file),
            path,
        })
    }

    /// Reads the file's current content (up to 1 KiB) and parses it with
    /// `parse`; `None` from it is a [`CgroupError::Parse`] quoting the text.
    pub(super) fn read_with<T>(
        &self,
        parse: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Result<T, CgroupError> {
        let f = self.file.as_ref().ok_or_else(|| CgroupError::Unsupported {
            op: "read",
            path: self.path.clone(),
            detail: "cgroup already removed".into(),
        })?;
        let mut buf = [0u8; 1024];
        let n = f.read_at(&mut buf, 0).map_err(io_err("read", &self.path))?;
        let b = &buf[..n];
        parse(b).ok_or_else(|| CgroupError::Parse {
            op: "read",
            path: self.path.clone(),
            detail: format!("{:?}", String::from_utf8_lossy(b)),
        })
    }

    pub(super) fn close(&mut self) {
        self.file = None;
    }
}

// ---------------------------------------------------------------------------
// The pids controller (same files in v1 and v2)

/// `pids.peak` of the run's pids directory, if the kernel has it.
pub(super) fn pids_peak(dir: &Path) -> Result<Option<u64>, CgroupError> {
    let p = dir.join("pids.peak");
    if p.exists() {
        Ok(Some(read_u64("read", &p)?))
    } else {
        Ok(None)
    }
}

/// Whether `pids.events` counts a fork/clone refused by `pids.max`.
pub(super) fn pids_limit_hit(dir: &Path) -> bool {
    fs::read_to_string(dir.join("pids.events"))
        .ok()
        .and_then(|s| keyed(&s, "max"))
        .is_some_and(|n| n > 0)
}

// ---------------------------------------------------------------------------
// A run's directories

/// How long `kill_all` waits for a run to empty.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(2);

/// Whether no process is left in any of `dirs`.
pub(super) fn procs_empty(dirs: &[PathBuf]) -> bool {
    dirs.iter()
        .all(|d| read_pids(&d.join("cgroup.procs")).is_ok_and(|p| p.is_empty()))
}

/// Reads each directory's `cgroup.procs` and SIGKILLs every pid in it,
/// repeatedly, until all are empty; [`CgroupError::Busy`] on `busy_path`
/// once `deadline` (set [`KILL_WAIT`] ahead) has passed.
pub(super) fn kill_listed(
    dirs: &[PathBuf],
    deadline: Instant,
    busy_path: &Path,
) -> Result<(), CgroupError> {
    loop {
        let mut any = false;
        for d in dirs {
            for pid in read_pids(&d.join("cgroup.procs"))? {
                if pid > 0 {
                    any = true;
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        if !any {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Busy {
                op: "kill all in",
                path: busy_path.to_path_buf(),
                waited: KILL_WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Removes every directory, retrying EBUSY (exiting tasks) for up to ~1 s
/// in all; tries each one and returns the first error.
pub(super) fn remove_dirs(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut first_err = None;
    for d in dirs {
        loop {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if start.elapsed() > Duration::from_secs(1) {
                        first_err.get_or_insert(CgroupError::Busy {
                            op: "rmdir",
                            path: d.clone(),
                            waited: start.elapsed(),
                        });
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    first_err.get_or_insert(io_err("rmdir", d)(e));
                    break;
                }
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
