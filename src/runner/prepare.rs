//! Making a container before its run is known ([`Sandbox::prepare`]): the
//! cgroup (v2: before the clone, so init is born in it), clone3 into fresh
//! namespaces as the job's uid, the id maps, then (v1) the cgroup while
//! init builds its root. [`Prepared`] owns the container until its one run
//! is over; dropping it kills and reaps init and removes the cgroup.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::child::{self, ChildPlan};
use super::fds::pipe;
use super::spec::JobIds;
use super::{RunError, RunImage, go, io_err};
use crate::isolation::checkout::Owner;
use crate::isolation::hostids::Lease;
use crate::isolation::mounts::MountPlan;
use crate::isolation::network::PrivateNet;
use crate::isolation::{namespaces, sys};
use crate::limits::cgroup::{CgroupManager, RunCgroup, RunShape};
use crate::profile::{NetworkMode, Profile};
use crate::security::caps::CapPlan;

/// A container made before its run is known: init has its namespaces, its
/// root filesystem and its cgroup, and waits for "go" ([`go`]). Used once.
/// Dropping it kills and reaps init and removes the cgroup.
pub struct Prepared {
    pub(super) pid: i32,
    pub(super) pidfd: OwnedFd,
    pub(super) ctl: OwnedFd,
    /// Held open for the container's life: init treats its hang-up as the
    /// supervisor's death.
    pub(super) _sync_w: OwnedFd,
    pub(super) err_r: OwnedFd,
    pub(super) status_r: OwnedFd,
    pub(super) area: go::GoArea,
    pub(super) cgroup: Option<RunCgroup>,
    pub(super) shape: RunShape,
    /// The host ids the container is (its user namespace's owner and map).
    pub(super) lease: Arc<Lease>,
    /// The checkout's owner the program's ids map to instead of the
    /// lease's (`process.run_as_checkout_owner`); `None`: the lease's.
    pub(super) owner: Option<Owner>,
    /// The job it was made for ahead of time (pool only); `None`: any job
    /// that takes it adopts its ids.
    pub(super) for_job: Option<std::sync::Weak<JobIds>>,
    pub(super) mount_steps: Vec<String>,
    pub(super) use_init: bool,
    pub(super) reaped: bool,
    /// Made by the pool at nice 19: back to 0 when its run starts.
    /// Made by the pool thread at nice 19: the nice value to give init back
    /// when its run starts (the process's own, from before the pool lowered
    /// its thread).
    pub(super) background: Option<i32>,
    /// Supervisor-side moments (CLOCK_MONOTONIC ns), for the timeline.
    pub(super) marks: Marks,
    /// A `private` run's pasta; dropped (killed) after init.
    pub(super) net: Option<PrivateNet>,
}

/// When the supervisor did what, for the "run timeline" debug line.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Marks {
    pub(super) prepare: u64,
    pub(super) cloned: u64,
    pub(super) maps: u64,
    pub(super) cgroup: u64,
    pub(super) go_sent: u64,
    pub(super) ended: u64,
    pub(super) accounted: u64,
}

/// The calling thread's CPU affinity, when it allows more than one CPU.
fn own_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: CPU_COUNT reads the set.
    (r == 0 && unsafe { libc::CPU_COUNT(&set) } > 1).then_some(set)
}

/// A new child is queued on its parent's CPU when the machine looks idle,
/// and would only run once the supervisor blocks: init's root building
/// and the supervisor's cgroup work would take turns on one core. Moving
/// the child off this CPU makes them overlap; init restores `all` (the
/// mask it inherited) once its container is built.
fn start_elsewhere(pid: i32, all: &libc::cpu_set_t) {
    // SAFETY: sched_getcpu has no arguments.
    let here = unsafe { libc::sched_getcpu() };
    if here < 0 {
        return;
    }
    let mut others = *all;
    // SAFETY: CPU_CLR on a valid set with an in-range index (checked by libc).
    unsafe { libc::CPU_CLR(here as usize, &mut others) };
    // SAFETY: CPU_COUNT reads the set; sched_setaffinity on our own child.
    unsafe {
        if libc::CPU_COUNT(&others) > 0 {
            libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &others);
        }
    }
}

/// A run's moments in ms since `m.prepare`, the supervisor's and the
/// container's side by side (moments before it or not reached are left out).
pub(super) fn timeline_text(m: Marks, st: [u64; go::STAMPS], torn_down: u64) -> String {
    use go::Stamp::*;
    let items: [(&str, u64); 15] = [
        ("cloned", m.cloned),
        ("init_started", st[InitStarted as usize]),
        ("maps_written", m.maps),
        ("maps_received", st[MapsReceived as usize]),
        ("cgroup_ready", m.cgroup),
        ("root_built", st[RootBuilt as usize]),
        ("ready", st[Ready as usize]),
        ("go_sent", m.go_sent),
        ("go_received", st[GoReceived as usize]),
        ("payload_started", st[PayloadStarted as usize]),
        ("exec", st[Exec as usize]),
        ("payload_ended", st[PayloadEnded as usize]),
        ("ended", m.ended),
        ("accounted", m.accounted),
        ("torn_down", torn_down),
    ];
    let mut out = String::new();
    for (k, v) in items {
        if v >= m.prepare && v > 0 {
            out.push_str(&format!("{k}={:.3} ", (v - m.prepare) as f64 / 1e6));
        }
    }
    out.pop();
    out
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child (a run's init,
            // done or not; its exit takes the whole pid namespace along).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL);
            }
            self.reaped = true;
        }
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.remove()
        {
            // Something of the run may still live in it: its uid is not
            // handed to another job while this process lives (a later
            // holder would also clear it first, see hostids).
            tracing::warn!(
                "removing the run's cgroup: {e}; keeping host uid {} reserved",
                self.lease.uid()
            );
            std::mem::forget(self.lease.clone());
        }
    }
}

/// What a container is made from: a sandbox's profile and what it
/// compiled and detected once.
pub(super) struct Recipe<'a> {
    pub(super) profile: &'a Profile,
    pub(super) filters: &'a [seccompiler::BpfProgram],
    pub(super) caps: CapPlan,
    pub(super) cgroups: Option<&'a CgroupManager>,
    /// The image whose layers are the root, if any.
    pub(super) image: Option<&'a RunImage>,
}

impl Recipe<'_> {
    /// Makes a container: cgroup (v2: before clone, so init is born in it),
    /// clone3 into fresh namespaces, id maps, then (v1) the cgroup while
    /// init builds its root in parallel. Returns once init is on its way;
    /// it waits for "go" by itself.
    pub(super) fn prepare(
        &self,
        shape: RunShape,
        lease: Arc<Lease>,
        owner: Option<Owner>,
    ) -> Result<Prepared, RunError> {
        let mut marks = Marks {
            prepare: go::now_ns(),
            ..Marks::default()
        };
        let prof = self.profile;
        let ns = &prof.namespaces;
        let layers = self.image.map_or(0, |i| i.layers.len());
        if let Some(img) = self.image
            && img.uid.max(img.gid) >= lease.ids()
        {
            return Err(RunError::Invalid(format!(
                "image {}: its user {}:{} is beyond the job's block of {} host ids (process.host_uid.ids)",
                img.name,
                img.uid,
                img.gid,
                lease.ids()
            )));
        }
        let mounts = if ns.mount {
            let dns = (prof.network.mode == NetworkMode::Private)
                .then(|| format!("nameserver {}\n", crate::isolation::network::DNS_FORWARDER));
            Some(MountPlan::build(
                &prof.filesystem,
                &[],
                ns.user,
                layers,
                dns.as_deref(),
            )?)
        } else {
            None
        };
        let (uid, gid) = match self.image {
            Some(img) => (img.uid, img.gid),
            None if ns.user => (prof.process.uid, prof.process.gid),
            None => (lease.uid(), lease.gid()),
        };
        let c = |s: &[u8], what: &str| {
            CString::new(s).map_err(|_| RunError::Invalid(format!("{what} contains a NUL byte")))
        };
        let (sync_r, sync_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let (ctl, ctl_child) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| RunError::Io {
            what: "socketpair".into(),
            source: e.into(),
        })?;
        let area = go::GoArea::new().map_err(io_err("mapping the run's shared area"))?;
        let mut keep = vec![
            sync_r.as_raw_fd(),
            err_w.as_raw_fd(),
            status_w.as_raw_fd(),
            ctl_child.as_raw_fd(),
        ];
        keep.sort_unstable();
        let plan = ChildPlan {
            mounts,
            hostname: if ns.uts {
                Some(c(prof.process.hostname.as_bytes(), "hostname")?)
            } else {
                None
            },
            uid,
            gid,
            caps: self.caps,
            no_new_privs: prof.process.no_new_privs,
            filters: self.filters.to_vec(),
            new_cgroup_ns: ns.cgroup,
            sync_read: sync_r.as_raw_fd(),
            err_write: err_w.as_raw_fd(),
            status_write: status_w.as_raw_fd(),
            ctl: ctl_child.as_raw_fd(),
            use_init: ns.pid,
            in_userns: ns.user,
            keep_fds: keep,
            affinity: own_affinity(),
            hide: child::own_args(),
            layers,
        };
        let create_cgroup = || -> Result<Option<RunCgroup>, RunError> {
            match self.cgroups {
                Some(m) => m
                    .create_run_shaped("", shape)
                    .map(Some)
                    .map_err(RunError::from),
                None => Ok(None),
            }
        };
        let v2 = self
            .cgroups
            .as_ref()
            .is_some_and(|m| m.version() == crate::limits::cgroup::CgroupVersion::V2);
        // v2: the child is born in its cgroup (CLONE_INTO_CGROUP); v1: it
        // joins at "go" and the cgroup is made while it builds its root.
        let mut cgroup = if v2 { create_cgroup()? } else { None };
        let clone_cg = cgroup.as_ref().and_then(|c| c.clone_into_fd());
        let flags = namespaces::clone_flags(ns);
        let mut pidfd: RawFd = -1;
        let clone = |pidfd: &mut RawFd| {
            let pid = sys::clone3(flags, Some(pidfd), clone_cg);
            if pid == 0 {
                child::init_main(&plan, &area);
            }
            pid
        };
        // The user namespace belongs to the job's uid, not to root: what
        // the run's users count per user is charged to it (see as_owner).
        // Not a fixed id: others on the host may be that uid, and an
        // owner's processes hold every capability over the namespace.
        let pid = if ns.user && lease.is_exclusive() {
            namespaces::as_owner(lease.uid(), || clone(&mut pidfd)).map_err(|e| RunError::Io {
                what: format!("becoming uid {} to create the user namespace", lease.uid()),
                source: e,
            })
        } else {
            Ok(clone(&mut pidfd))
        };
        let pid = match pid {
            Ok(pid) => pid,
            Err(e) => {
                if let Some(cg) = cgroup.take() {
                    let _ = cg.remove();
                }
                return Err(e);
            }
        };
        if pid < 0 {
            let e = std::io::Error::from_raw_os_error((-pid) as i32);
            if let Some(cg) = cgroup.take() {
                let _ = cg.remove();
            }
            return Err(RunError::Io {
                what: format!("clone3 (namespace flags {flags:#x})"),
                source: e,
            });
        }
        marks.cloned = go::now_ns();
        if let Some(all) = &plan.affinity {
            start_elsewhere(pid as i32, all);
        }
        drop((sync_r, err_w, status_w, ctl_child));
        // Later clones (other containers) must not inherit this run's area.
        area.dont_fork();
        let mut p = Prepared {
            pid: pid as i32,
            // SAFETY: clone3 returned a fresh pidfd that we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
            ctl,
            _sync_w: sync_w,
            err_r,
            status_r,
            area,
            cgroup,
            shape,
            lease,
            owner: owner.filter(|_| ns.user && self.image.is_none()),
            for_job: None,
            mount_steps: plan.mounts.map(|m| m.what).unwrap_or_default(),
            use_init: ns.pid,
            reaped: false,
            background: None,
            marks,
            net: None,
        };
        if ns.user {
            // An image's ids 0.. map onto the job's block: its files keep
            // their owners as the image has them.
            let map = match self.image {
                Some(_) => namespaces::IdMap::Block,
                None => namespaces::IdMap::One { uid, gid },
            };
            namespaces::write_id_maps(p.pid, map, &p.lease, p.owner).map_err(|e| RunError::Io {
                what: "writing uid/gid maps".into(),
                source: e,
            })?;
        }
        if let Some(img) = self.image {
            // Before "g": init takes them as soon as its maps are there.
            let fds = crate::isolation::layers::open_all(&img.layers, p.pid)?;
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            go::send_go(p.ctl.as_raw_fd(), &raw).map_err(RunError::Stale)?;
        }
        sys::write_all(p._sync_w.as_raw_fd(), b"g");
        p.marks.maps = go::now_ns();
        if !v2 {
            p.cgroup = create_cgroup()?;
        }
        p.marks.cgroup = go::now_ns();
        if prof.network.mode == NetworkMode::Private {
            // While init builds its root; "go" waits for it. The namespace
            // is the job's uid's when it owns the user namespace.
            let owner = p
                .lease
                .is_exclusive()
                .then(|| (p.lease.uid(), p.lease.gid()));
            p.net = Some(PrivateNet::start(p.pid, &prof.network, owner)?);
        }
        Ok(p)
    }
}
