//! Security profiles: the TOML schema, `extends` composition, validation with
//! file:line:col errors, and the bundled profiles. Everything downstream (the
//! runner, the job engine, the server) consumes only the resolved [`Profile`].

pub mod bundled;
pub mod error;
pub mod limits;
pub mod load;
pub mod names;
pub mod network;
pub mod schema;
pub mod source;
pub mod units;
pub mod validate;
pub mod view;

pub use error::{ProfileError, ProfileWarning};
pub use limits::{LimitOverrides, LimitTooHigh};
pub use load::{check, check_str, load, parse_str};
pub use network::{Cidr, Network, NetworkMode};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A fully resolved, validated profile: `extends` applied, units parsed,
/// syscall and capability names checked. This is what runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Bundled name (`strict`) or the path it was loaded from.
    pub name: String,
    pub description: String,
    pub namespaces: Namespaces,
    pub filesystem: Filesystem,
    pub process: Process,
    pub capabilities: Capabilities,
    pub seccomp: Seccomp,
    pub limits: Limits,
    /// `[network]`; `namespaces.network` is true exactly when `mode` is not `host`.
    pub network: Network,
}

impl Profile {
    /// What `sandbox profile check` warns about: settings that are valid but
    /// give the program something of the host's, each as (key, message).
    pub fn warnings(&self) -> Vec<(&'static str, String)> {
        let mut w = Vec::new();
        if self.network.mode == NetworkMode::Host {
            w.push((
                "network.mode",
                "\"host\" (or namespaces.network = false) gives the program the HOST's network: its loopback services, the cloud metadata address, the whole LAN; \"private\" gives it the internet through NAT with private ranges refused".to_string(),
            ));
        }
        if self.network.mode == NetworkMode::Private {
            for c in &self.network.allow {
                if c.prefix == 0 {
                    w.push((
                        "network.allow",
                        format!("{c} allows every destination, the LAN and the cloud metadata address included"),
                    ));
                }
            }
        }
        w
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    pub user: bool,
    pub pid: bool,
    pub mount: bool,
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// Build the root from the host's system directories (`system_dirs`).
    Host,
    /// A root filesystem directory (e.g. an unpacked image) used as the overlay's lower layer.
    Dir(PathBuf),
    /// An image of the store (`filesystem.image`), by its normalized
    /// reference (`docker.io/library/busybox:latest`): its layers are the
    /// overlay's lower layers.
    Image(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filesystem {
    pub root: RootSource,
    /// With `root = "host"`: host directories exposed read-only (through a
    /// throwaway overlay) at the same path. A host symlink (`/bin -> usr/bin`)
    /// is recreated as the same symlink.
    pub system_dirs: Vec<PathBuf>,
    /// Extra host paths bound into the sandbox.
    pub binds: Vec<BindMount>,
    /// tmpfs mounts (e.g. /tmp) with their sizes.
    pub tmpfs: Vec<TmpfsMount>,
    /// Size of the tmpfs holding the overlay's writable upper layer, bytes.
    pub writable_layer_size: u64,
    /// Size of the private /dev/shm, bytes.
    pub dev_shm_size: u64,
    /// Initial working directory inside the sandbox.
    pub workdir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub writable: bool,
    /// Skip silently when `source` does not exist (otherwise an error at run time).
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    pub dest: PathBuf,
    pub size: u64,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// uid/gid the program runs as inside the sandbox (with a user
    /// namespace; without one it runs as its host ids).
    pub uid: u32,
    pub gid: u32,
    /// Host uid/gid that `uid`/`gid` map to when a user namespace is used
    /// (and the ids the program really runs as without one).
    pub host_ids: HostIds,
    pub hostname: String,
    /// Variables set for the program (after `env_passthrough`).
    pub env: BTreeMap<String, String>,
    /// Names of host variables copied through when set (a whitelist).
    pub env_passthrough: Vec<String>,
    pub no_new_privs: bool,
    /// When the run's working directory lies in a writable bind whose
    /// source belongs to a regular host user (the checkout), the program's
    /// uid/gid inside map to that user's host uid/gid instead of the job's
    /// (as podman's `--userns=keep-id`): what the run creates there is the
    /// owner's. Only for runs that are not jobs of `sandbox serve` and not
    /// in an image; never for root, 65534 or an id of the range.
    pub run_as_checkout_owner: bool,
}

/// Which host ids a run gets (`process.host_uid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostIds {
    /// Every run of the profile is this one host uid/gid, so concurrent runs
    /// share the kernel's per-user counters.
    Fixed { uid: u32, gid: u32 },
    /// Each concurrent job gets a block of `ids` host uids of its own, one
    /// of the `count` blocks from `first` (its uid is the block's first,
    /// its gid the same number), allocated host-wide; a run in an image
    /// maps the image's ids 0..`ids` onto the block, other runs use its
    /// first uid only. A job finding no block free waits up to `wait`,
    /// then fails.
    Range {
        first: u32,
        count: u32,
        ids: u32,
        wait: Duration,
    },
}

impl HostIds {
    /// The range the bundled profiles use: 0x70000000 is just past
    /// systemd's container ranges (nspawn picks below 0x6FFF0000), below
    /// the 2^31 boundary some tools mishandle, and far from login users,
    /// system users and the usual /etc/subuid ranges (100000 + 65536·k).
    pub const DEFAULT_FIRST: u32 = 0x7000_0000;
    pub const DEFAULT_COUNT: u32 = 256;
    /// An image's ids are 0..65535 (65534 is nobody).
    pub const DEFAULT_IDS: u32 = 65536;
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

    /// The host uids the default range spans.
    pub fn default_span() -> std::ops::Range<u64> {
        let first = u64::from(Self::DEFAULT_FIRST);
        first..first + u64::from(Self::DEFAULT_COUNT) * u64::from(Self::DEFAULT_IDS)
    }

    pub fn default_range() -> HostIds {
        HostIds::Range {
            first: Self::DEFAULT_FIRST,
            count: Self::DEFAULT_COUNT,
            ids: Self::DEFAULT_IDS,
            wait: Self::DEFAULT_WAIT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Capabilities kept (in every set); everything else is dropped.
    pub keep: Vec<caps::Capability>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompAction {
    KillProcess,
    KillThread,
    Trap,
    /// Fail the syscall with this errno (number; the name is kept for display).
    Errno(i32, String),
    Log,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`
    MaskedEq(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgCond {
    pub index: u8,
    pub op: ArgOp,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompRule {
    pub syscall: String,
    /// All must hold (AND).
    pub args: Vec<ArgCond>,
    pub action: SeccompAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seccomp {
    /// `false` = no filter at all (only for trusted debugging profiles).
    pub enabled: bool,
    pub default_action: SeccompAction,
    /// Syscalls allowed unconditionally.
    pub allow: Vec<String>,
    /// Syscalls refused with `deny_action`.
    pub deny: Vec<String>,
    pub deny_action: SeccompAction,
    pub rules: Vec<SeccompRule>,
}

/// Resource limits. `None` = no limit from this profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub cpu_time: Option<Duration>,
    pub wall_time: Option<Duration>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// Cap on captured stdout, and separately on stderr, bytes.
    pub output: Option<u64>,
    pub file_size: Option<u64>,
    pub open_files: Option<u64>,
    pub stack: Option<u64>,
    /// CPU bandwidth in CPUs (e.g. 1.0 = one full core).
    pub cpu_quota: Option<f64>,
    /// RLIMIT_SIGPENDING: queued signals of the run. Always set by a loaded
    /// profile (like the two below): the kernel counts them per user.
    pub pending_signals: Option<u64>,
    /// RLIMIT_MSGQUEUE, bytes of POSIX message queues.
    pub message_queue: Option<u64>,
    /// RLIMIT_MEMLOCK, bytes of locked memory (mlock, SHM_LOCK).
    pub locked_memory: Option<u64>,
}

impl Limits {
    /// Defaults of the per-user rlimits a profile does not set.
    pub const DEFAULT_PENDING_SIGNALS: u64 = 1024;
    /// The kernel's own default (MQ_BYTES_MAX).
    pub const DEFAULT_MESSAGE_QUEUE: u64 = 819_200;
    /// The kernel's default since 5.16.
    pub const DEFAULT_LOCKED_MEMORY: u64 = 8 << 20;
}
