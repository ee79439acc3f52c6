//! What a run inherits from the process that supervises it, besides the
//! request: namespaces, root directory, cgroups, rlimits, umask, nice,
//! CPU affinity, OOM score. A client whose context differs from the
//! helper's is declined (it runs in-process), so that a run served by the
//! helper is never looser than the client's own: a client in an empty
//! network namespace, under `ulimit -v`, `nice`, `taskset` or a memory-capped
//! cgroup keeps exactly that.

/// A process's context, compared field by field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Context {
    /// `ns/*` link targets (e.g. `net:[4026531840]`), in a fixed order.
    pub namespaces: Vec<String>,
    /// (dev, ino) of the root directory.
    pub root: (u64, u64),
    /// `/proc/self/cgroup`.
    pub cgroup: String,
    /// (resource, soft, hard) for every rlimit.
    pub rlimits: Vec<(u32, u64, u64)>,
    pub umask: u32,
    pub nice: i32,
    /// The CPUs this process may run on.
    pub cpus: Vec<usize>,
    pub oom_score_adj: String,
}

const NAMESPACES: [&str; 7] = ["mnt", "net", "pid", "ipc", "uts", "cgroup", "user"];

impl Context {
    /// This process's context (`None` when /proc cannot tell).
    pub fn current() -> Option<Context> {
        use std::os::unix::fs::MetadataExt;
        let mut namespaces = Vec::with_capacity(NAMESPACES.len());
        for ns in NAMESPACES {
            let l = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()?;
            namespaces.push(l.to_string_lossy().into_owned());
        }
        let root = std::fs::metadata("/").ok()?;
        // Read by setting it: callers are single-threaded (the client, or
        // the helper before its threads start). /proc/self/status would
        // tell too, at ~10 times the cost.
        // SAFETY: umask cannot fail; the old mask is restored at once.
        let umask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
        let cpus = (0..nix::sched::CpuSet::count())
            .filter(|&c| cpus.is_set(c).unwrap_or(false))
            .collect();
        let mut rlimits = Vec::new();
        for r in 0..=libc::RLIMIT_RTTIME {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes one rlimit struct we own.
            if unsafe { libc::getrlimit(r as _, &mut l) } != 0 {
                return None;
            }
            rlimits.push((r, l.rlim_cur, l.rlim_max));
        }
        // SAFETY: getpriority has no memory effects; -1 is a valid nice
        // value, so errno tells failure apart (not needed: who = 0 is us).
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        Some(Context {
            namespaces,
            root: (root.dev(), root.ino()),
            cgroup: std::fs::read_to_string("/proc/self/cgroup").ok()?,
            rlimits,
            umask,
            nice,
            cpus,
            oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
                .ok()?
                .trim()
                .to_string(),
        })
    }

    /// Names of the fields that differ (the cgroup only if `cgroup`).
    pub fn differences(&self, other: &Context, cgroup: bool) -> Vec<&'static str> {
        let mut d = Vec::new();
        for (i, ns) in NAMESPACES.iter().enumerate() {
            if self.namespaces.get(i) != other.namespaces.get(i) {
                d.push(match *ns {
                    "mnt" => "mount namespace",
                    "net" => "network namespace",
                    "pid" => "pid namespace",
                    "ipc" => "ipc namespace",
                    "uts" => "uts namespace",
                    "cgroup" => "cgroup namespace",
                    _ => "user namespace",
                });
            }
        }
        if self.root != other.root {
            d.push("root directory");
        }
        if cgroup && self.cgroup != other.cgroup {
            d.push("cgroup");
        }
        if self.rlimits != other.rlimits {
            d.push("rlimits");
        }
        if self.umask != other.umask {
            d.push("umask");
        }
        if self.nice != other.nice {
            d.push("nice value");
        }
        if self.cpus != other.cpus {
            d.push("CPU affinity");
        }
        if self.oom_score_adj != other.oom_score_adj {
            d.push("oom_score_adj");
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_what_differs() {
        let a = Context::current().expect("this process's context");
        assert!(a.differences(&a.clone(), true).is_empty());
        let mut b = a.clone();
        b.namespaces[1] = "net:[1]".into();
        b.nice += 1;
        b.cgroup.push('x');
        assert_eq!(
            a.differences(&b, true),
            ["network namespace", "cgroup", "nice value"]
        );
        assert_eq!(
            a.differences(&b, false),
            ["network namespace", "nice value"]
        );
    }
}
