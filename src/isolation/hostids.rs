//! Host identities of runs: the host uid/gid a job's runs are, and their
//! host-wide allocation from a profile's range (`process.host_uid`).
//!
//! The kernel keeps many counters per host user: pending signals,
//! processes, pipe buffers, in-flight SCM_RIGHTS fds, epoll watches,
//! inotify, message-queue bytes, keys, locked memory. The ones kept per
//! user namespace are also charged to the namespace's owner. So each
//! concurrent job gets a uid of its own (as isolate gives each box one),
//! and its runs' user namespaces are owned by that uid, never by root (see
//! [`super::sys::as_owner`]): one job cannot exhaust another's counters or
//! host root's.
//!
//! Allocation: one lock file per uid in [`LOCK_DIR`], held with `flock`
//! for as long as anything of the job may exist (its containers hold the
//! [`Lease`] until they are torn down). Every process on the host (servers,
//! helpers, CLI runs) takes the same locks, so no two jobs share a uid, and
//! a holder that dies releases its uids with its file descriptors. A uid
//! just taken is first cleared of any process still running as it (what a
//! crashed job of a profile without a pid namespace can leave behind), as
//! isolate clears a box. A profile's fixed id takes its lock shared, so a
//! range never hands out a uid some fixed-id profile is running as.
//! Hand-written: no crate does host-wide id leases.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::profile::HostIds;

/// Where the per-uid lock files live (root-only).
pub const LOCK_DIR: &str = "/run/sandbox/uids";

#[derive(Debug, thiserror::Error)]
pub enum HostIdError {
    #[error(
        "all {count} host uid blocks of process.host_uid ({first}-{last}, {ids} per job) are in use by other jobs on this host; waited {waited:.1?} (raise process.host_uid.count or .wait, or run fewer jobs at once)",
        last = u64::from(*.first) + u64::from(*.count) * u64::from(*.ids) - 1
    )]
    Exhausted {
        first: u32,
        count: u32,
        ids: u32,
        waited: Duration,
    },
    #[error("host uid locks: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("host uid locks: {path} {why}; refusing to trust its locks")]
    UnsafeDir { path: PathBuf, why: String },
    #[error(
        "process.host_uid range {first}-{last} overlaps {what}; runs would share that user's files and kernel counters (move the range)"
    )]
    Overlap { first: u32, last: u64, what: String },
    #[error(
        "process.host_uid is a range, which needs root (runs become host uids other than the caller's)"
    )]
    NotRoot,
    #[error(
        "process.host_uid {uid} is held by a job of a uid range on this host; waited {waited:.1?} (use an id outside every range)"
    )]
    FixedHeld { uid: u32, waited: Duration },
}

/// The host ids of one job, reserved while this lives (and while any
/// container made for it does: they hold it too): `ids` uids from `uid`.
#[derive(Debug)]
pub struct Lease {
    uid: u32,
    gid: u32,
    ids: u32,
    /// A uid of a range (locked exclusively), not a profile's fixed id.
    exclusive: bool,
    /// The uid's lock file, locked (shared for a fixed id); `None` for a
    /// fixed id when there is no lock directory to use (not root).
    _lock: Option<Flock<File>>,
}

impl Lease {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// How many host uids (and gids) from `uid` are the job's: an image's
    /// ids 0..`ids` map onto them. 1 for a fixed id.
    pub fn ids(&self) -> u32 {
        self.ids
    }

    /// Whether this lease holds one uid of a range (not a fixed id, which
    /// other runs and host processes may share).
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

/// Takes host ids for a job: a fixed pair at once; from a range the first
/// free uid, waiting (polling) up to the range's `wait` while all are taken.
pub fn acquire(ids: &HostIds) -> Result<Arc<Lease>, HostIdError> {
    match *ids {
        HostIds::Fixed { uid, gid } => fixed(uid, gid),
        HostIds::Range {
            first,
            count,
            ids,
            wait,
        } => {
            let t0 = Instant::now();
            loop {
                if let Some(l) = try_range(first, count, ids)? {
                    return Ok(l);
                }
                if t0.elapsed() >= wait {
                    return Err(HostIdError::Exhausted {
                        first,
                        count,
                        ids,
                        waited: t0.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20).min(wait));
            }
        }
    }
}

/// Like [`acquire`] without waiting: `None` when a range is full (for work
/// done ahead of time, which must not hold up the jobs that need ids).
pub fn try_acquire(ids: &HostIds) -> Result<Option<Arc<Lease>>, HostIdError> {
    match *ids {
        HostIds::Fixed { .. } => acquire(ids).map(Some),
        HostIds::Range {
            first, count, ids, ..
        } => try_range(first, count, ids),
    }
}

/// A fixed id: its lock taken shared (waiting while a range's job holds
/// it exclusively), so that no range hands it out meanwhile.
fn fixed(uid: u32, gid: u32) -> Result<Arc<Lease>, HostIdError> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // No lock directory to share; nothing maps runs to others' ids.
        return Ok(Arc::new(Lease {
            uid,
            gid,
            ids: 1,
            exclusive: false,
            _lock: None,
        }));
    }
    let path = lock_dir()?.join(uid.to_string());
    let t0 = Instant::now();
    loop {
        let f = open_lock(&path)?;
        match Flock::lock(f, FlockArg::LockSharedNonblock) {
            Ok(lock) => {
                return Ok(Arc::new(Lease {
                    uid,
                    gid,
                    ids: 1,
                    exclusive: false,
                    _lock: Some(lock),
                }));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
            Err((_, e)) => {
                return Err(HostIdError::Io {
                    what: "locking",
                    path,
                    source: e.into(),
                });
            }
        }
        if t0.elapsed() >= HostIds::DEFAULT_WAIT {
            return Err(HostIdError::FixedHeld {
                uid,
                waited: t0.elapsed(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn open_lock(path: &Path) -> Result<File, HostIdError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| HostIdError::Io {
            what: "opening",
            path: path.to_path_buf(),
            source,
        })
}

/// Kills every process still running as `uid`, and every process in a
/// user namespace `uid` owns, as isolate clears a box before use: a child
/// becomes `uid` (with no capability left, it can signal only those) and
/// sends SIGKILL to every process it may, until none is left. "None left"
/// is the kernel's own count of `uid`'s processes (namespaces `uid` owns
/// included): with RLIMIT_NPROC at 2, a fork succeeds only when the child
/// and its probe are all there is. Returns whether it got there; a process
/// that will not go away (a zombie nobody reaps) keeps the uid out of use.
fn kill_leftovers(uid: u32) -> bool {
    use crate::isolation::sys;
    let pid = sys::clone3(0, None, None);
    if pid == 0 {
        // The child of a possibly multi-threaded process: raw syscalls only.
        // SAFETY: integer arguments, a null group list, a valid rlimit and
        // timespec; every path ends in _exit.
        unsafe {
            let none: *const libc::gid_t = std::ptr::null();
            let two = libc::rlimit {
                rlim_cur: 2,
                rlim_max: 2,
            };
            if libc::syscall(libc::SYS_setgroups, 0, none) != 0
                || libc::syscall(libc::SYS_setresgid, uid, uid, uid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
                || libc::setrlimit(libc::RLIMIT_NPROC, &two) != 0
            {
                libc::_exit(2);
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            for _ in 0..500 {
                // Returns 0 whenever any other process exists at all (those
                // it may not signal only count as "not permitted").
                libc::kill(-1, libc::SIGKILL);
                let probe = sys::clone3(0, None, None);
                if probe == 0 {
                    libc::_exit(0);
                }
                if probe > 0 {
                    libc::waitpid(probe as libc::pid_t, std::ptr::null_mut(), 0);
                    libc::_exit(0);
                }
                // EAGAIN: another process of uid is still counted (dying,
                // or dead and not yet reaped).
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
            libc::_exit(4);
        }
    }
    if pid < 0 {
        return false;
    }
    let mut st = 0;
    // SAFETY: reaping our own child.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut st, libc::__WALL) };
    r == pid as libc::pid_t && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
}

/// How many blocks of a range other jobs hold now (each is tried with a
/// lock that is let go at once), after the checks a lease would make.
pub fn in_use(first: u32, count: u32, ids: u32) -> Result<u32, HostIdError> {
    check_range(first, count, ids)?;
    let dir = lock_dir()?;
    let mut n = 0;
    for i in 0..count {
        let uid = first + i * ids;
        let path = dir.join(uid.to_string());
        let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        else {
            continue; // never used
        };
        if let Err((_, nix::errno::Errno::EWOULDBLOCK)) =
            Flock::lock(f, FlockArg::LockExclusiveNonblock)
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Where a scan starts: spread over the range (the pid, then a counter)
/// so that a uid just released is not the next one handed out.
fn next_start(count: u32) -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(n)
        % count
}

fn try_range(first: u32, count: u32, ids: u32) -> Result<Option<Arc<Lease>>, HostIdError> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(HostIdError::NotRoot);
    }
    check_range(first, count, ids)?;
    let dir = lock_dir()?;
    let start = next_start(count);
    for i in 0..count {
        // A block's lock file is named after its first uid.
        let uid = first + (start + i) % count * ids;
        let path = dir.join(uid.to_string());
        let f = open_lock(&path)?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                if !kill_leftovers(uid) {
                    tracing::warn!("processes of uid {uid} would not die: not using it now");
                    continue;
                }
                return Ok(Some(Arc::new(Lease {
                    uid,
                    gid: uid,
                    ids,
                    exclusive: true,
                    _lock: Some(lock),
                })));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
            Err((_, e)) => {
                return Err(HostIdError::Io {
                    what: "locking",
                    path,
                    source: e.into(),
                });
            }
        }
    }
    Ok(None)
}

/// The lock directory, made on first use (`/run/sandbox` 0755, `uids` 0700)
/// and checked: both must be root's and writable by nobody else, or anyone
/// could hold (or fake) another job's uid.
fn lock_dir() -> Result<&'static Path, HostIdError> {
    static CHECKED: OnceLock<()> = OnceLock::new();
    let dir = Path::new(LOCK_DIR);
    if CHECKED.get().is_some() {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    for (d, mode) in [(parent, 0o755), (dir, 0o700)] {
        match std::fs::DirBuilder::new().mode(mode).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(HostIdError::Io {
                    what: "creating",
                    path: d.to_path_buf(),
                    source,
                });
            }
        }
        let md = std::fs::symlink_metadata(d).map_err(|source| HostIdError::Io {
            what: "checking",
            path: d.to_path_buf(),
            source,
        })?;
        let why = if !md.is_dir() {
            Some("is not a directory".to_string())
        } else if md.uid() != 0 {
            Some(format!("belongs to uid {}, not root", md.uid()))
        } else if md.mode() & 0o022 != 0 {
            Some(format!(
                "is writable by group or others (mode {:o})",
                md.mode() & 0o7777
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(HostIdError::UnsafeDir {
                path: d.to_path_buf(),
                why,
            });
        }
    }
    let _ = CHECKED.set(());
    Ok(dir)
}

/// A range must not contain a user or group of this host, nor a
/// subordinate-id range handed to one (/etc/subuid, /etc/subgid): runs
/// would own that user's files and share its counters. Checked once per
/// range and process (the files are read again after a restart).
fn check_range(first: u32, count: u32, ids: u32) -> Result<(), HostIdError> {
    /// (first, span) → what overlaps it, if anything.
    type Seen = Mutex<HashMap<(u32, u64), Option<String>>>;
    static SEEN: OnceLock<Seen> = OnceLock::new();
    let span = u64::from(count) * u64::from(ids);
    let seen = SEEN.get_or_init(Default::default);
    let mut m = seen.lock().unwrap_or_else(|e| e.into_inner());
    let found = m
        .entry((first, span))
        .or_insert_with(|| overlap(first, span, &read_host_ids()))
        .clone();
    match found {
        None => Ok(()),
        Some(what) => Err(HostIdError::Overlap {
            first,
            last: u64::from(first) + span - 1,
            what,
        }),
    }
}

/// The id files of this host, as (file, text); missing files are empty.
fn read_host_ids() -> Vec<(&'static str, String)> {
    ["/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid"]
        .into_iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap_or_default()))
        .collect()
}

/// What in `files` overlaps `first .. first + count`, if anything.
fn overlap(first: u32, span: u64, files: &[(&str, String)]) -> Option<String> {
    let (lo, hi) = (u64::from(first), u64::from(first) + span);
    let hits = |a: u64, n: u64| a < hi && lo < a + n;
    for (file, text) in files {
        let sub = file.contains("sub");
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if sub {
                // name:first:count
                if let (Some(a), Some(n)) = (
                    f.get(1).and_then(|v| v.parse::<u64>().ok()),
                    f.get(2).and_then(|v| v.parse::<u64>().ok()),
                ) && hits(a, n)
                {
                    return Some(format!(
                        "the subordinate ids {a}-{} of '{}' in {file}",
                        a + n.saturating_sub(1),
                        f[0]
                    ));
                }
            } else if let Some(id) = f.get(2).and_then(|v| v.parse::<u64>().ok())
                && hits(id, 1)
            {
                let kind = if file.contains("group") {
                    "group"
                } else {
                    "user"
                };
                return Some(format!("{kind} '{}' (id {id}) in {file}", f[0]));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(passwd: &str, subuid: &str) -> Vec<(&'static str, String)> {
        vec![
            ("/etc/passwd", passwd.to_string()),
            ("/etc/group", String::new()),
            ("/etc/subuid", subuid.to_string()),
            ("/etc/subgid", String::new()),
        ]
    }

    #[test]
    fn overlaps_found_and_named() {
        let f = files(
            "root:x:0:0::/root:/bin/sh\nbob:x:2000:2000::/home/bob:/bin/sh\n",
            "bob:100000:65536\n",
        );
        assert_eq!(overlap(3000, 10, &f), None);
        let w = overlap(1990, 11, &f).expect("uid 2000 is inside");
        assert!(w.contains("user 'bob' (id 2000)"), "{w}");
        assert_eq!(overlap(1990, 10, &f), None, "1990-1999 stops short of 2000");
        let w = overlap(165_535, 1, &f).expect("last subordinate id");
        assert!(w.contains("subordinate ids 100000-165535 of 'bob'"), "{w}");
        assert_eq!(overlap(165_536, 100, &f), None);
        assert_eq!(overlap(90_000, 10_000, &f), None, "ends at 99999");
    }

    #[test]
    fn default_range_is_clear_of_this_host() {
        assert_eq!(
            overlap(
                HostIds::DEFAULT_FIRST,
                u64::from(HostIds::DEFAULT_COUNT) * u64::from(HostIds::DEFAULT_IDS),
                &read_host_ids()
            ),
            None
        );
    }

    #[test]
    fn fixed_ids_need_no_lock() {
        let l = acquire(&HostIds::Fixed {
            uid: 4242,
            gid: 4343,
        })
        .expect("fixed");
        assert_eq!((l.uid(), l.gid(), l.is_exclusive()), (4242, 4343, false));
        // SAFETY: geteuid has no arguments.
        if unsafe { libc::geteuid() } == 0 {
            // A range containing it skips it while the fixed lease lives.
            let r = HostIds::Range {
                first: 4242,
                count: 1,
                ids: 1,
                wait: Duration::from_millis(50),
            };
            assert!(try_acquire(&r).expect("scan").is_none(), "4242 handed out");
            drop(l);
            let x = try_acquire(&r).expect("scan").expect("4242 free again");
            assert_eq!(x.uid(), 4242);
            drop(x);
            let f = HostIds::Fixed {
                uid: 4242,
                gid: 4242,
            };
            assert!(acquire(&f).is_ok(), "free again for the fixed id");
        }
    }

    #[test]
    fn range_leases_are_distinct_and_released() {
        // SAFETY: geteuid has no arguments.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("needs root: skipped");
            return;
        }
        // A range of its own, past the default one other tests use: three
        // blocks of 16 uids.
        let ids = HostIds::Range {
            first: HostIds::DEFAULT_FIRST + 0x0100_0000 + std::process::id() % 1000 * 64,
            count: 3,
            ids: 16,
            wait: Duration::from_millis(100),
        };
        let a = acquire(&ids).expect("a");
        let b = acquire(&ids).expect("b");
        let c = acquire(&ids).expect("c");
        let mut u = [a.uid(), b.uid(), c.uid()];
        u.sort_unstable();
        assert!(
            u[1] - u[0] >= 16 && u[2] - u[1] >= 16,
            "disjoint blocks: {u:?}"
        );
        assert_eq!((a.gid(), a.ids()), (a.uid(), 16));
        let t = Instant::now();
        let e = acquire(&ids).expect_err("range full");
        assert!(t.elapsed() >= Duration::from_millis(100), "waited");
        assert!(e.to_string().contains("all 3 host uid blocks"), "{e}");
        let freed = b.uid();
        drop(b);
        let d = try_acquire(&ids).expect("ok").expect("one free again");
        assert_eq!(d.uid(), freed);
    }
}
