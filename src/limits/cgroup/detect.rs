//! Finding the cgroup hierarchy this process works in: parsing
//! `/proc/self/mountinfo` (with its octal escapes) and `/proc/self/cgroup`,
//! choosing the version (v1 if a v1 hierarchy carries the memory controller,
//! as on legacy and hybrid systems, else v2), and settling the base
//! directories under which run cgroups are created: one per needed v1
//! hierarchy, or our own v2 cgroup after checking and enabling its
//! controllers (moving this process into a supervisor leaf when the "no
//! internal processes" rule requires it). The result is a [`Layout`], which
//! `super::CgroupManager` keeps and describes.
//!
//! Imports only `common` and `files`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::common::{CgroupError, CgroupVersion, io_err};
use super::files::{process_start_time, read_string, write_file};

// ---------------------------------------------------------------------------
// Parsing /proc

/// Undoes mountinfo's octal escapes (`\040` for space etc.).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct CgroupMount {
    /// `true` for cgroup2.
    pub v2: bool,
    /// Root of the mount within the hierarchy (field 4).
    pub root: String,
    pub mount_point: PathBuf,
    /// v1 controllers (from the super options; `name=` entries excluded).
    pub controllers: Vec<String>,
}

pub(super) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let lf: Vec<&str> = left.split(' ').collect();
        let rf: Vec<&str> = right.split(' ').collect();
        if lf.len() < 5 || rf.len() < 3 {
            continue;
        }
        let fstype = rf[0];
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            rf[2]
                .split(',')
                .filter(|o| {
                    !o.is_empty()
                        && !o.starts_with("name=")
                        && !matches!(*o, "rw" | "ro" | "noprefix" | "clone_children" | "xattr")
                        && !o.contains('=')
                })
                .map(str::to_string)
                .collect()
        };
        out.push(CgroupMount {
            v2,
            root: unescape_mountinfo(lf[3]),
            mount_point: PathBuf::from(unescape_mountinfo(lf[4])),
            controllers,
        });
    }
    out
}

/// One `/proc/self/cgroup` line: (controllers, path). v2 has no controllers.
pub(super) fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        let ctrls = ctrls
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        out.push((ctrls, path.to_string()));
    }
    out
}

/// Joins a cgroup path (from /proc/self/cgroup) onto a mount, given the
/// mount's root within the hierarchy. `None` if the path is not visible in
/// this mount.
fn cgroup_dir(mount: &CgroupMount, cg_path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rel = if root.is_empty() {
        cg_path
    } else if cg_path == root {
        ""
    } else {
        cg_path
            .strip_prefix(root)?
            .strip_prefix('/')
            .map(|_| &cg_path[root.len()..])?
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rel)
    })
}

// ---------------------------------------------------------------------------
// Layout

/// One v1 hierarchy a run gets a directory in.
#[derive(Debug)]
pub(super) struct V1Hierarchy {
    /// Controllers of this hierarchy that we use (subset of the mount's).
    pub(super) controllers: Vec<String>,
    /// Our cgroup's directory in this hierarchy: run cgroups go under it.
    pub(super) base: PathBuf,
}

/// Where run cgroups are created, per version.
#[derive(Debug)]
pub(super) enum Layout {
    V1(Vec<V1Hierarchy>),
    V2 {
        base: PathBuf,
        /// `Some` when we moved ourselves into a supervisor leaf.
        supervisor_leaf: Option<PathBuf>,
    },
}

const V1_WANTED: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];
const V2_WANTED: [&str; 3] = ["memory", "pids", "cpu"];

// ---------------------------------------------------------------------------
// Detection

/// What `super::CgroupManager::detect` reads about this process.
pub(super) struct ProcSelf {
    pub(super) mountinfo: String,
    pub(super) proc_cgroup: String,
    pub(super) owner_pid: u32,
    /// Field 22 of `/proc/self/stat`: with the pid, names our run cgroups.
    pub(super) owner_start: u64,
}

/// Reads `/proc/self/mountinfo`, `/proc/self/cgroup` and our start time.
pub(super) fn read_proc_self() -> Result<ProcSelf, CgroupError> {
    let mi_path = Path::new("/proc/self/mountinfo");
    let cg_path = Path::new("/proc/self/cgroup");
    let mountinfo = read_string("read", mi_path)?;
    let proc_cgroup = read_string("read", cg_path)?;
    let owner_pid = std::process::id();
    let owner_start = process_start_time(owner_pid).ok_or_else(|| CgroupError::Parse {
        op: "read start time from",
        path: PathBuf::from("/proc/self/stat"),
        detail: "no field 22".into(),
    })?;
    Ok(ProcSelf {
        mountinfo,
        proc_cgroup,
        owner_pid,
        owner_start,
    })
}

/// Decides the layout from given `/proc/self/mountinfo` and
/// `/proc/self/cgroup` contents: v1 if a v1 hierarchy carries the memory
/// controller (legacy or hybrid), else v2 if a cgroup2 mount exists. On v2
/// this may enable controllers and move `owner_pid` into a supervisor leaf.
pub(super) fn detect_layout(
    mountinfo: &str,
    proc_cgroup: &str,
    owner_pid: u32,
) -> Result<Layout, CgroupError> {
    let mi_path = Path::new("/proc/self/mountinfo");
    let mounts = parse_mountinfo(mountinfo);
    let cgroups = parse_proc_cgroup(proc_cgroup);
    let v1_memory = mounts
        .iter()
        .any(|m| !m.v2 && m.controllers.iter().any(|c| c == "memory"));
    if v1_memory {
        detect_v1(&mounts, &cgroups, mi_path)
    } else if let Some(m) = mounts.iter().find(|m| m.v2) {
        detect_v2(m, &cgroups, owner_pid)
    } else {
        Err(CgroupError::Unsupported {
            op: "find cgroup mounts in",
            path: mi_path.to_path_buf(),
            detail: "no cgroup v1 memory hierarchy and no cgroup2 mount".into(),
        })
    }
}

fn detect_v1(
    mounts: &[CgroupMount],
    cgroups: &[(Vec<String>, String)],
    mi_path: &Path,
) -> Result<Layout, CgroupError> {
    let mut hier: Vec<V1Hierarchy> = Vec::new();
    let mut seen_mounts: BTreeSet<PathBuf> = BTreeSet::new();
    for want in V1_WANTED {
        if hier.iter().any(|h| h.controllers.iter().any(|c| c == want)) {
            continue;
        }
        // A hierarchy may be mounted several times; take the first mount
        // in which our cgroup is visible.
        let Some(line) = cgroups.iter().find(|(c, _)| c.iter().any(|c| c == want)) else {
            continue;
        };
        let found = mounts
            .iter()
            .filter(|m| !m.v2 && m.controllers.iter().any(|c| c == want))
            .find_map(|m| {
                let dir = cgroup_dir(m, &line.1)?;
                dir.is_dir().then_some((m, dir))
            });
        let Some((m, dir)) = found else {
            continue;
        };
        if !seen_mounts.insert(m.mount_point.clone()) {
            continue;
        }
        let controllers = V1_WANTED
            .iter()
            .filter(|w| m.controllers.iter().any(|c| c == *w))
            .map(|w| w.to_string())
            .collect();
        hier.push(V1Hierarchy {
            controllers,
            base: dir,
        });
    }
    for required in ["memory", "cpuacct"] {
        if !hier
            .iter()
            .any(|h| h.controllers.iter().any(|c| c == required))
        {
            return Err(CgroupError::MissingController {
                op: "find v1 hierarchy in",
                path: mi_path.to_path_buf(),
                controller: required,
                hint: "mount it (or our cgroup is not visible in it)".into(),
            });
        }
    }
    Ok(Layout::V1(hier))
}

fn detect_v2(
    mount: &CgroupMount,
    cgroups: &[(Vec<String>, String)],
    owner_pid: u32,
) -> Result<Layout, CgroupError> {
    let Some((_, path)) = cgroups.iter().find(|(c, _)| c.is_empty()) else {
        return Err(CgroupError::Unsupported {
            op: "find the v2 (0::) entry in",
            path: PathBuf::from("/proc/self/cgroup"),
            detail: "no `0::/...` line".into(),
        });
    };
    let mut cur = cgroup_dir(mount, path).ok_or_else(|| CgroupError::Unsupported {
        op: "locate our cgroup under",
        path: mount.mount_point.clone(),
        detail: format!(
            "cgroup {path:?} is outside the mount's root {:?}",
            mount.root
        ),
    })?;
    // detect() called again after we already moved into our supervisor leaf.
    let leaf_name = format!("sandbox-supervisor-{owner_pid}");
    let mut supervisor_leaf = None;
    if cur.file_name().is_some_and(|n| n == leaf_name.as_str()) {
        supervisor_leaf = Some(cur.clone());
        cur = cur.parent().map(Path::to_path_buf).unwrap_or(cur);
    }
    let base = cur;
    let ctl_path = base.join("cgroup.controllers");
    let available = read_string("read", &ctl_path)?;
    for want in V2_WANTED {
        if !available.split_whitespace().any(|c| c == want) {
            return Err(CgroupError::MissingController {
                op: "check",
                path: ctl_path,
                controller: want,
                hint: "the parent cgroup must delegate it (enable it in the parent's \
                       cgroup.subtree_control, e.g. systemd Delegate=yes)"
                    .into(),
            });
        }
    }
    let st_path = base.join("cgroup.subtree_control");
    let enabled = read_string("read", &st_path)?;
    if V2_WANTED
        .iter()
        .all(|w| enabled.split_whitespace().any(|c| c == *w))
    {
        return Ok(Layout::V2 {
            base,
            supervisor_leaf,
        });
    }
    let enable = "+memory +pids +cpu";
    match write_file("enable controllers in", &st_path, enable) {
        Ok(()) => {}
        Err(CgroupError::Io { source, .. })
            if source.raw_os_error() == Some(libc::EBUSY)
                && base != mount.mount_point
                && supervisor_leaf.is_none() =>
        {
            // No internal processes: move only ourselves into a leaf.
            let leaf = base.join(&leaf_name);
            match fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create supervisor leaf", &leaf)(e)),
            }
            write_file(
                "move this process into",
                &leaf.join("cgroup.procs"),
                &owner_pid.to_string(),
            )?;
            supervisor_leaf = Some(leaf);
            write_file("enable controllers in", &st_path, enable).map_err(|e| match e {
                CgroupError::Io { source, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
                    CgroupError::Unsupported {
                        op: "enable controllers in",
                        path: st_path.clone(),
                        detail: "our cgroup still holds other processes after moving \
                                 this one into a leaf; run the sandbox in its own \
                                 delegated cgroup"
                            .into(),
                    }
                }
                other => other,
            })?;
        }
        Err(e) => return Err(e),
    }
    Ok(Layout::V2 {
        base,
        supervisor_leaf,
    })
}

impl Layout {
    pub(super) fn version(&self) -> CgroupVersion {
        match self {
            Layout::V1(_) => CgroupVersion::V1,
            Layout::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// Human-readable summary for logs / `--version`-style output.
    pub(super) fn describe(&self) -> String {
        match self {
            Layout::V1(h) => {
                let parts: Vec<String> = h
                    .iter()
                    .map(|h| format!("{} under {}", h.controllers.join(","), h.base.display()))
                    .collect();
                format!("cgroup v1 ({})", parts.join("; "))
            }
            Layout::V2 {
                base,
                supervisor_leaf,
            } => {
                let mut s = format!("cgroup v2 (memory, pids, cpu) under {}", base.display());
                if let Some(l) = supervisor_leaf {
                    s.push_str(&format!("; this process moved to {}", l.display()));
                }
                s
            }
        }
    }

    /// Directories under which run cgroups are created (one per v1
    /// hierarchy, one for v2).
    pub(super) fn base_dirs(&self) -> Vec<PathBuf> {
        match self {
            Layout::V1(h) => h.iter().map(|h| h.base.clone()).collect(),
            Layout::V2 { base, .. } => vec![base.clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_hybrid_and_comounted() {
        let t = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                 33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                 40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                 41 31 0:38 / /sys/fs/cgroup/unified rw shared:5 - cgroup2 cgroup2 rw,nsdelegate\n\
                 42 31 0:38 / /a\\040b rw - cgroup2 cgroup2 rw\n\
                 garbage line\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].controllers, vec!["cpu", "cpuacct"]);
        assert!(m[2].controllers.is_empty());
        assert!(m[3].v2);
        assert_eq!(m[4].mount_point, PathBuf::from("/a b"));
    }

    #[test]
    fn proc_cgroup_odd_content() {
        let t = "4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/user.slice\nbad\n1:name=systemd:/\n9:x:relative\n";
        let c = parse_proc_cgroup(t);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1].0, vec!["cpu", "cpuacct"]);
        assert!(c[2].0.is_empty());
    }

    #[test]
    fn cgroup_dir_with_mount_root() {
        let m = CgroupMount {
            v2: true,
            root: "/a".into(),
            mount_point: "/sys/fs/cgroup".into(),
            controllers: vec![],
        };
        assert_eq!(
            cgroup_dir(&m, "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/b"))
        );
        assert_eq!(cgroup_dir(&m, "/a"), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup_dir(&m, "/ab"), None);
        assert_eq!(cgroup_dir(&m, "/x"), None);
    }

    #[test]
    fn v2_detection_on_fake_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let ours = root.join("user.slice/job");
        fs::create_dir_all(&ours).unwrap();
        let mi = format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let pc = "0::/user.slice/job\n";
        // cpu not delegated: clear error naming it.
        fs::write(ours.join("cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(ours.join("cgroup.subtree_control"), "").unwrap();
        let e = detect_layout(&mi, pc, 1).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`cpu`") && msg.contains("delegate"), "{msg}");
        // Available and already enabled.
        fs::write(
            ours.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(ours.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        let m = detect_layout(&mi, pc, 1).unwrap();
        assert_eq!(m.version(), CgroupVersion::V2);
        assert_eq!(m.base_dirs(), vec![ours.clone()]);
        // Available, not enabled: we enable them.
        fs::write(ours.join("cgroup.subtree_control"), "").unwrap();
        detect_layout(&mi, pc, 1).unwrap();
        assert_eq!(
            fs::read_to_string(ours.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        // Already inside our supervisor leaf: base is its parent.
        let leaf = ours.join("sandbox-supervisor-7");
        fs::create_dir(&leaf).unwrap();
        let pc = "0::/user.slice/job/sandbox-supervisor-7\n";
        let m = detect_layout(&mi, pc, 7).unwrap();
        assert_eq!(m.base_dirs(), vec![ours.clone()]);
        assert!(m.describe().contains("sandbox-supervisor-7"));
    }

    #[test]
    fn v1_detection_separate_and_comounted() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        for d in ["memory/a", "pids", "cpu,cpuacct/b", "unified"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        let mi = format!(
            "35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / {r}/pids rw - cgroup cgroup rw,pids\n\
             32 31 0:29 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 / {r}/unified rw - cgroup2 cgroup2 rw\n",
            r = r.display()
        );
        let pc = "4:memory:/a\n8:pids:/\n2:cpu,cpuacct:/b\n0::/\n";
        let m = detect_layout(&mi, pc, 1).unwrap();
        assert_eq!(m.version(), CgroupVersion::V1);
        assert_eq!(
            m.base_dirs(),
            vec![r.join("memory/a"), r.join("pids"), r.join("cpu,cpuacct/b")]
        );
        let d = m.describe();
        assert!(d.contains("cpu,cpuacct under"), "{d}");
        // No cpuacct: clear error.
        let pc = "4:memory:/a\n8:pids:/\n0::/\n";
        let e = detect_layout(&mi, pc, 1).unwrap_err();
        assert!(e.to_string().contains("`cpuacct`"), "{e}");
    }
}
