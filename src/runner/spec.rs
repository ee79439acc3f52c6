//! What a caller asks of a run ([`RunSpec`]): the program, binds, stdin
//! and output handling, limits, cancellation, and the job whose host ids it
//! shares ([`JobIds`]).

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use super::{CancelOn, RunError};
use crate::isolation::binds;
use crate::isolation::hostids::Lease;
use crate::profile::{BindMount, Limits};

#[derive(Debug, Clone, Default)]
pub enum StdinSpec {
    /// The caller's own stdin.
    Inherit,
    #[default]
    Null,
    File(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputSpec {
    /// Collected into the result (up to the output limit).
    #[default]
    Capture,
    /// Copied to the caller's same fd as it arrives (output limit still applies).
    PassThrough,
}

/// One run: the program and what the caller adds to the profile.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub binds: Vec<BindMount>,
    /// Where the profile's binds with a relative source resolve: a job's
    /// workspace, a helper's client's directory (`None`: this process's
    /// working directory).
    pub base_dir: Option<PathBuf>,
    /// The profile's relative binds are already among `opened_binds` (a
    /// run acting as its checkout's owner opens its binds once, decides
    /// the owner from those descriptors and mounts the same ones).
    pub relative_opened: bool,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Effective limits (the profile's, with the caller's overrides applied).
    pub limits: Limits,
    pub stdin: StdinSpec,
    pub stdout: OutputSpec,
    pub stderr: OutputSpec,
    /// When set, the run is killed (and reported cancelled).
    pub cancel: Option<CancelOn>,
    /// The caller's stdin, stdout and stderr, which `Inherit` and
    /// `PassThrough` mean: `None` is this process's own 0, 1 and 2; the
    /// helper passes the fds its client sent (valid for the whole run).
    pub caller_fds: Option<[RawFd; 3]>,
    /// The environment `env_passthrough` copies from (`None`: this
    /// process's own).
    pub caller_env: Option<Vec<(String, String)>>,
    /// Binds whose sources the caller already opened ([`open_bind`]),
    /// mounted after `binds`.
    pub opened_binds: Vec<OpenedBind>,
    /// The job this run belongs to ([`Sandbox::job_ids`]): its runs share
    /// its host ids. `None`: the run is a job of its own.
    pub job: Option<Arc<JobIds>>,
    /// Sees the program's output as it is read from its pipes, within the
    /// output limit (a live log); `None`: nobody watches.
    pub tap: Option<Arc<dyn OutputTap>>,
}

/// Which of the program's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A live view of a run's output: [`OutputTap::output`] is called by the
/// supervisor with each chunk as it is read from the program's pipe (at
/// most 64 KiB; only what fits within the run's output limit), in order,
/// on the supervising thread. It must return promptly and never wait on a
/// consumer: the limits (wall time, CPU, cancellation) are enforced by the
/// same loop.
pub trait OutputTap: Send + Sync + std::fmt::Debug {
    fn output(&self, stream: OutputStream, bytes: &[u8]);
}

/// The host ids of one job, which all its runs share (its workspace
/// belongs to them). Held for the job's life; containers made for it hold
/// the lease too, so the ids stay reserved until they are torn down.
#[derive(Debug)]
pub struct JobIds {
    pub(super) lease: Arc<Lease>,
}

impl JobIds {
    /// Ids outside any range (for tests that run nothing).
    #[cfg(test)]
    pub(crate) fn fixed(uid: u32, gid: u32) -> Arc<JobIds> {
        Arc::new(JobIds {
            lease: crate::isolation::hostids::acquire(&crate::profile::HostIds::Fixed { uid, gid })
                .expect("fixed ids"),
        })
    }

    pub fn uid(&self) -> u32 {
        self.lease.uid()
    }

    pub fn gid(&self) -> u32 {
        self.lease.gid()
    }
}

/// A bind source opened by the caller: a detached copy of the tree with
/// the bind's flags already set, for init to attach at `dest`.
#[derive(Debug, Clone)]
pub struct OpenedBind {
    pub fd: Arc<OwnedFd>,
    pub dest: CString,
    pub is_dir: bool,
    /// How errors name it ("bind SRC on DEST").
    pub name: String,
}

impl OpenedBind {
    /// Opens `b`'s source here (in this process's mount namespace and
    /// working directory); `None` for an optional source that is missing.
    pub fn open(b: &BindMount) -> Result<Option<OpenedBind>, RunError> {
        Ok(binds::open_bind(b)?.map(|(fd, dest, is_dir)| OpenedBind {
            fd: Arc::new(fd),
            dest,
            is_dir,
            name: bind_name(b),
        }))
    }
}

pub(super) fn bind_name(b: &BindMount) -> String {
    format!("bind {} on {}", b.source.display(), b.dest.display())
}
