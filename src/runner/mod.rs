//! The runner: one sandboxed program, from a resolved profile to a verdict.
//!
//! [`Sandbox`] holds what can be prepared once per profile (the compiled
//! seccomp filters, the cgroup manager, the capability masks) and decides
//! where a run's container comes from ([`sandbox`]). A container is made
//! from the profile alone ([`prepare`]): init is cloned into fresh
//! namespaces with a [`child::ChildPlan`], builds the root and waits. A run
//! is handed to it ([`start`], [`go`]) and supervised from a
//! single-threaded poll loop ([`supervise`]): output collection with caps,
//! CPU time from the cgroup, wall time, cancellation; then its verdict is
//! decided ([`verdict`]) from the kernel's figures and the child's typed
//! reports ([`report`]). [`Sandbox::pooled`] keeps containers made ahead
//! ([`pool`]). Safe to call from many threads at once: the code between
//! clone and exec never allocates or locks.
//!
//! Files: `spec` (what a caller asks for), `sandbox`, `prepare`, `start`,
//! `supervise`, `verdict`, `report`, `fds` (pipes and memory files),
//! `child` (the container's side), `go` (the shared area and the "go"
//! message), `pool`, `result`, `image` (a run's root from an image) and
//! `images` (images by reference, from the store or pulled).

pub mod cache;
pub mod cancel;
pub mod child;
mod fds;
pub mod go;
mod image;
pub mod images;
mod pool;
mod prepare;
mod report;
pub mod result;
mod sandbox;
mod spec;
mod start;
mod supervise;
mod verdict;

use crate::isolation::hostids::HostIdError;
use crate::isolation::mounts::MountPlanError;
use crate::limits::cgroup::CgroupError;
use crate::security::seccomp::SeccompError;

pub use cancel::{CancelOn, Canceller};
pub use image::RunImage;
pub use images::{Images, ImagesError, PullPolicy};
pub use pool::PoolStats;
pub use prepare::Prepared;
pub use result::{JsonResult, RunResult, Status, Usage};
pub use sandbox::Sandbox;
pub use spec::{JobIds, OpenedBind, OutputSpec, OutputStream, OutputTap, RunSpec, StdinSpec};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Mount(#[from] MountPlanError),
    #[error("{0}")]
    Seccomp(#[from] SeccompError),
    #[error("{0}")]
    Cgroup(#[from] CgroupError),
    #[error("cgroup: memory, pids and CPU-time limits need cgroups, which are unavailable here")]
    NoCgroups,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("handing the run to its prepared container: {0}")]
    Stale(std::io::Error),
    #[error("{0}")]
    HostIds(#[from] HostIdError),
    #[error("{0}")]
    Network(#[from] crate::isolation::network::NetworkError),
    #[error("{0}")]
    Layers(#[from] crate::isolation::layers::LayerError),
    #[error("{0}")]
    Image(#[from] ImagesError),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}
