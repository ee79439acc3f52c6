//! Run cgroup names and the stale-cgroup sweep that reads them. A run
//! cgroup is named `sandbox-<ownerpid>-<ownerstarttime>-<seq>[-<name>]`
//! (`ownerstarttime` is field 22 of `/proc/<pid>/stat`), so the sweep can
//! tell leftovers of a dead owner from live runs of another process, even
//! across pid reuse. v2 supervisor leaves (`sandbox-supervisor-<pid>`, made
//! by `detect`) are swept too.
//!
//! Imports only `files`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::files::{process_start_time, read_pids};

/// `sandbox-<owner_pid>-<owner_start>-<seq>[-<name>]`, `name` sanitised to
/// `[A-Za-z0-9_.]` and at most 48 characters.
pub(super) fn run_dir_name(owner_pid: u32, owner_start: u64, name: &str) -> String {
    // Process-wide, so two managers of one process never collide.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut s = format!("sandbox-{owner_pid}-{owner_start}-{seq}");
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        .take(48)
        .collect();
    if !clean.is_empty() {
        s.push('-');
        s.push_str(&clean);
    }
    s
}

/// Removes, under each of `bases`, the empty cgroups whose name passes
/// `only` and whose owner is dead (see `super::CgroupManager::sweep_stale`);
/// returns how many distinct names were removed.
pub(super) fn sweep(bases: &[PathBuf], only: &dyn Fn(&str) -> bool) -> usize {
    let mut removed: BTreeSet<String> = BTreeSet::new();
    for base in bases {
        let Ok(rd) = fs::read_dir(base) else {
            continue;
        };
        for ent in rd.flatten() {
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            if !only(&name) || !owner_is_dead(&name) {
                continue;
            }
            let dir = base.join(&name);
            if !dir.is_dir() {
                continue;
            }
            let empty = read_pids(&dir.join("cgroup.procs")).is_ok_and(|p| p.is_empty());
            if empty && fs::remove_dir(&dir).is_ok() {
                removed.insert(name);
            }
        }
    }
    removed.len()
}

/// Parses a run / supervisor cgroup name; `true` only when the name matches
/// our scheme and its owner is dead.
fn owner_is_dead(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix("sandbox-supervisor-") {
        let Ok(pid) = rest.parse::<u32>() else {
            return false;
        };
        return pid != 0 && !Path::new(&format!("/proc/{pid}")).exists();
    }
    let Some(rest) = name.strip_prefix("sandbox-") else {
        return false;
    };
    let mut it = rest.splitn(4, '-');
    let (Some(pid), Some(start), Some(seq)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start), Ok(_seq)) =
        (pid.parse::<u32>(), start.parse::<u64>(), seq.parse::<u64>())
    else {
        return false;
    };
    if pid == 0 {
        return false;
    }
    match process_start_time(pid) {
        None => !Path::new(&format!("/proc/{pid}")).exists(),
        Some(s) => s != start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_owner() {
        assert!(!owner_is_dead("foo"));
        assert!(!owner_is_dead("sandbox-"));
        assert!(!owner_is_dead("sandbox-x-1-2"));
        let me = std::process::id();
        let st = process_start_time(me).unwrap();
        assert!(!owner_is_dead(&format!("sandbox-{me}-{st}-0")));
        assert!(owner_is_dead(&format!("sandbox-{me}-{}-0", st + 1)));
        assert!(owner_is_dead("sandbox-4194300-1-0-x"));
    }
}
