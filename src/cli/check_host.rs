//! `sandbox check-host`: reports the host settings the sandbox depends on or
//! that an operator should harden, each with a verdict and a remedy, grouped
//! as in SECURITY.md ("Host settings an operator should apply"). Exit status
//! 1 when a required check fails, else 0 (warnings are advice).

use std::path::Path;

use crate::limits::cgroup::{CgroupLimits, CgroupManager, CgroupVersion};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Not present on this kernel (nothing to do).
    Absent,
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Absent => "absent",
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

pub struct Check {
    pub section: &'static str,
    pub name: &'static str,
    pub level: Level,
    pub found: String,
    pub advice: String,
    /// `key=value` for `sysctl -w` when the remedy is a sysctl.
    pub sysctl: Option<String>,
}

const REQUIRED: &str = "Required";
const ISOLATION: &str = "Namespaces and cgroups";
const HARDENING: &str = "Kernel hardening (sysctl)";
const NETWORK: &str = "Private network (network.mode = \"private\"; not needed otherwise)";
const SIDE: &str = "Side channels (not addressed by the sandbox; see SECURITY.md)";

fn check(section: &'static str, name: &'static str, level: Level, found: String) -> Check {
    Check {
        section,
        name,
        level,
        found,
        advice: String::new(),
        sysctl: None,
    }
}

impl Check {
    fn advise(mut self, advice: impl Into<String>) -> Check {
        if matches!(self.level, Level::Warn | Level::Fail) {
            self.advice = advice.into();
        }
        self
    }
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_int(p: &str) -> Option<i64> {
    read(p).and_then(|s| s.parse().ok())
}

/// A sysctl with a recommended value: `ok(v)` says whether the value found
/// is fine; `want` is the value to set otherwise.
fn sysctl(name: &'static str, ok: impl Fn(i64) -> bool, want: i64, why: &str) -> Check {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    match read_int(&path) {
        Some(v) if ok(v) => check(HARDENING, name, Level::Ok, v.to_string()),
        Some(v) => Check {
            sysctl: Some(format!("{name}={want}")),
            ..check(
                HARDENING,
                name,
                Level::Warn,
                format!("{v} (recommended: {want})"),
            )
            .advise(why)
        },
        None => check(
            HARDENING,
            name,
            Level::Absent,
            "absent (not in this kernel)".into(),
        ),
    }
}

fn kernel_version() -> (String, (u32, u32)) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let maj = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let min = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (release, (maj, min))
}

fn swap_devices() -> usize {
    read("/proc/swaps")
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// Cgroup version, delegation (a probe run cgroup is created with memory
/// and pids limits, then removed) and swap accounting.
fn cgroup_checks(out: &mut Vec<Check>) {
    let m = match CgroupManager::detect() {
        Ok(m) => m,
        Err(e) => {
            out.push(
                check(REQUIRED, "cgroups", Level::Fail, e.to_string()).advise(
                    "mount cgroup v2 (or v1 memory, pids, cpuacct) and delegate the sandbox's \
                     cgroup (systemd: Delegate=yes); memory, pids and CPU-time limits need it",
                ),
            );
            return;
        }
    };
    let v2 = m.version() == CgroupVersion::V2;
    let hybrid = !v2 && Path::new("/sys/fs/cgroup/unified").exists();
    out.push(check(
        REQUIRED,
        "cgroup version",
        Level::Ok,
        match (v2, hybrid) {
            (true, _) => "v2 (unified)".into(),
            (false, true) => "v1 (hybrid: v1 controllers, v2 mounted without them)".into(),
            (false, false) => "v1".into(),
        },
    ));
    let bases: Vec<String> = m
        .base_dirs()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let probe = CgroupLimits {
        memory: Some(64 << 20),
        pids: Some(16),
        cpu_quota: None,
    };
    let (swap_acct, peak, delegation) = match m.create_run("check-host", &probe) {
        Ok(run) => {
            let mem = run
                .paths()
                .iter()
                .find(|p| {
                    p.join(if v2 {
                        "memory.max"
                    } else {
                        "memory.limit_in_bytes"
                    })
                    .exists()
                })
                .cloned();
            let swap_file = if v2 {
                "memory.swap.max"
            } else {
                "memory.memsw.limit_in_bytes"
            };
            let acct = mem.as_ref().map(|d| d.join(swap_file).exists());
            let peak = mem.is_some_and(|d| d.join("memory.peak").exists());
            let removed = run.remove();
            let c = match removed {
                Ok(()) => check(
                    REQUIRED,
                    "cgroup delegation",
                    Level::Ok,
                    format!(
                        "a probe run cgroup was created, limited (memory, pids) and removed under\n{}",
                        bases.join("\n")
                    ),
                ),
                Err(e) => check(
                    REQUIRED,
                    "cgroup delegation",
                    Level::Fail,
                    format!("a probe cgroup could not be removed: {e}"),
                )
                .advise("check that nothing else manages the sandbox's cgroup"),
            };
            (acct, peak, c)
        }
        Err(e) => (
            None,
            false,
            check(
                REQUIRED,
                "cgroup delegation",
                Level::Fail,
                format!("cannot create a limited run cgroup: {e}"),
            )
            .advise(
                "run as root, or delegate a cgroup with the memory, pids and cpu controllers \
                 enabled (cgroup.subtree_control; systemd: Delegate=yes)",
            ),
        ),
    };
    let probe_ok = delegation.level == Level::Ok;
    out.push(delegation);
    let swaps = swap_devices();
    let (level, found) = match (swaps, swap_acct) {
        (0, _) => (Level::Ok, "no swap device".to_string()),
        (n, Some(true)) => (
            Level::Ok,
            format!(
                "{n} swap device(s); runs get no swap ({})",
                if v2 {
                    "memory.swap.max = 0"
                } else {
                    "memory.memsw limit = memory limit"
                }
            ),
        ),
        (n, _) => (
            Level::Warn,
            format!(
                "{n} swap device(s) and no swap accounting: a run can exceed its memory limit in swap"
            ),
        ),
    };
    out.push(check(ISOLATION, "swap", level, found).advise(if v2 {
        "use a kernel with CONFIG_MEMCG_SWAP, or turn swap off (swapoff -a); judges usually run without swap"
    } else {
        "boot with swapaccount=1 (memory.memsw.*), or turn swap off (swapoff -a)"
    }));
    if v2 && probe_ok {
        out.push(
            check(
                ISOLATION,
                "memory.peak",
                if peak { Level::Ok } else { Level::Warn },
                if peak {
                    "present (exact peak memory)".into()
                } else {
                    "absent: peak memory is sampled every 10 ms (kernel < 5.19)".into()
                },
            )
            .advise("a kernel >= 5.19 gives an exact memory_peak_bytes"),
        );
    }
}

/// The bundled profiles' host uid range: clear of the host's users and
/// subordinate ids, its lock directory trustworthy, and how much is taken.
fn host_uid_range() -> Check {
    use crate::isolation::hostids;
    use crate::profile::HostIds;
    let (first, count, ids) = (
        HostIds::DEFAULT_FIRST,
        HostIds::DEFAULT_COUNT,
        HostIds::DEFAULT_IDS,
    );
    let name = "host uid range (process.host_uid)";
    let last = first + (count - 1);
    match hostids::in_use(first, count, ids) {
        Ok(n) => check(
            ISOLATION,
            name,
            if n < count { Level::Ok } else { Level::Warn },
            format!("{first}-{last}: {n} of {count} held by jobs now"),
        )
        .advise(
            "each concurrent job is a host uid of its own from this range; when all are held, \
             new jobs wait, then fail: raise process.host_uid.count in the profiles",
        ),
        Err(e) => check(ISOLATION, name, Level::Fail, format!("{first}-{last}: {e}")).advise(
            "move the range (process.host_uid = { first = ..., count = ... } in the profiles) or \
             fix the lock directory",
        ),
    }
}

/// `user.max_*_namespaces`: a run of `strict` needs one of each.
fn namespace_limits() -> Check {
    let kinds = ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"];
    let vals: Vec<(&str, Option<i64>)> = kinds
        .iter()
        .map(|k| (*k, read_int(&format!("/proc/sys/user/max_{k}_namespaces"))))
        .collect();
    let present: Vec<(&str, i64)> = vals
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();
    if present.is_empty() {
        return check(
            ISOLATION,
            "user.max_*_namespaces",
            Level::Absent,
            "absent (not in this kernel)".into(),
        );
    }
    let min = present.iter().map(|(_, v)| *v).min().unwrap_or(0);
    let found = if present.iter().all(|(_, v)| *v == min) {
        format!("{min} each ({})", kinds.join(", "))
    } else {
        present
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let zero: Vec<&str> = present
        .iter()
        .filter(|(_, v)| *v == 0)
        .map(|(k, _)| *k)
        .collect();
    if !zero.is_empty() {
        return check(
            ISOLATION,
            "user.max_*_namespaces",
            Level::Fail,
            found,
        )
        .advise(format!(
            "user.max_{{{}}}_namespaces = 0 refuses the namespaces strict uses: set them to at least \
             64 (two per concurrent run is plenty)",
            zero.join(",")
        ));
    }
    let level = if min < 64 { Level::Warn } else { Level::Ok };
    check(ISOLATION, "user.max_*_namespaces", level, found).advise(
        "each concurrent run holds one namespace of each kind: keep user.max_*_namespaces well \
         above the number of workers (e.g. >= 64)",
    )
}

fn side_channel_checks(out: &mut Vec<Check>) {
    let dir = Path::new("/sys/devices/system/cpu/vulnerabilities");
    let mut vulnerable = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let v = std::fs::read_to_string(&p).unwrap_or_default();
            if v.trim_start().starts_with("Vulnerable") {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                vulnerable.push(format!("{name} ({})", v.trim()));
            }
        }
        out.push(
            check(
                SIDE,
                "cpu vulnerabilities",
                if vulnerable.is_empty() {
                    Level::Ok
                } else {
                    Level::Warn
                },
                if vulnerable.is_empty() {
                    "none reported as vulnerable".into()
                } else {
                    format!("vulnerable: {}", vulnerable.join("; "))
                },
            )
            .advise(
                "update the CPU microcode and kernel, keep the default mitigations (no \
                 mitigations=off); a run could read data of concurrent runs or of the host",
            ),
        );
    } else {
        out.push(check(
            SIDE,
            "cpu vulnerabilities",
            Level::Absent,
            "not reported by this kernel".into(),
        ));
    }
    match read("/sys/devices/system/cpu/smt/control") {
        Some(s) => {
            let on = s == "on";
            out.push(
                check(
                    SIDE,
                    "smt",
                    if on { Level::Warn } else { Level::Ok },
                    s.clone(),
                )
                .advise(
                    "with SMT on, concurrent runs on sibling hyperthreads share caches and \
                     execution units (timing noise, side channels): boot with nosmt, or run \
                     --workers <= physical cores",
                ),
            );
        }
        None => out.push(check(
            SIDE,
            "smt",
            Level::Absent,
            "not reported by this kernel".into(),
        )),
    }
}

pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let (release, ver) = kernel_version();
    out.push(
        check(
            REQUIRED,
            "kernel",
            if ver >= (5, 11) {
                Level::Ok
            } else {
                Level::Fail
            },
            release,
        )
        .advise("kernel 5.11 or newer is needed (overlayfs in user namespaces, clone3 CLONE_INTO_CGROUP)"),
    );
    let euid = nix::unistd::geteuid();
    out.push(
        check(
            REQUIRED,
            "root",
            if euid.is_root() {
                Level::Ok
            } else {
                Level::Fail
            },
            format!("euid {euid}"),
        )
        .advise("run the sandbox as root (rootless mode is not implemented)"),
    );
    let seccomp = read("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Seccomp:"));
    out.push(
        check(
            REQUIRED,
            "seccomp",
            if seccomp { Level::Ok } else { Level::Fail },
            if seccomp {
                "supported".into()
            } else {
                "no Seccomp field in /proc/self/status".into()
            },
        )
        .advise("a kernel with CONFIG_SECCOMP_FILTER is required"),
    );
    let filesystems = read("/proc/filesystems").unwrap_or_default();
    let overlay = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    out.push(
        check(
            REQUIRED,
            "overlayfs",
            if overlay || Path::new("/sys/module/overlay").exists() {
                Level::Ok
            } else {
                Level::Warn
            },
            if overlay {
                "available".into()
            } else {
                "not listed in /proc/filesystems".into()
            },
        )
        .advise("modprobe overlay (most distributions load it on first use)"),
    );
    cgroup_checks(&mut out);
    out.push(namespace_limits());
    out.push(host_uid_range());
    for (name, why) in [
        (
            "kernel.apparmor_restrict_unprivileged_userns",
            "applies to unprivileged callers only; the sandbox runs as root",
        ),
        (
            "kernel.unprivileged_userns_clone",
            "applies to unprivileged callers only; the sandbox runs as root",
        ),
    ] {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        out.push(match read(&path) {
            Some(v) => check(ISOLATION, name, Level::Ok, format!("{v} ({why})")),
            None => check(
                ISOLATION,
                name,
                Level::Absent,
                "absent (not in this kernel)".into(),
            ),
        });
    }
    out.push(sysctl(
        "kernel.shm_rmid_forced",
        |v| v == 1,
        1,
        "orphaned SysV shared memory segments are freed when their last user exits (each run \
         also has its own IPC namespace, destroyed with it)",
    ));
    out.push(sysctl(
        "dev.tty.legacy_tiocsti",
        |v| v == 0,
        0,
        "no process can push keystrokes into a terminal with TIOCSTI (the sandbox also setsid()s, \
         never hands the caller's terminal to the program, and strict's filter refuses TIOCSTI)",
    ));
    out.push(sysctl(
        "kernel.io_uring_disabled",
        |v| v == 2,
        2,
        "io_uring is a large kernel attack surface (strict's seccomp filter blocks it anyway)",
    ));
    out.push(sysctl(
        "kernel.unprivileged_bpf_disabled",
        |v| v >= 1,
        2,
        "unprivileged eBPF is a frequent kernel exploit vector (strict's filter blocks bpf)",
    ));
    out.push(sysctl(
        "kernel.perf_event_paranoid",
        |v| v >= 2,
        3,
        "perf events leak kernel addresses and timing (strict's filter blocks perf_event_open)",
    ));
    out.push(sysctl(
        "vm.unprivileged_userfaultfd",
        |v| v == 0,
        0,
        "userfaultfd makes kernel race exploits reliable (strict's filter blocks it)",
    ));
    out.push(sysctl(
        "kernel.kptr_restrict",
        |v| v >= 1,
        1,
        "kernel pointers in /proc are hidden from unprivileged readers",
    ));
    out.push(sysctl(
        "kernel.dmesg_restrict",
        |v| v == 1,
        1,
        "the kernel log (addresses, other users' activity) is readable by root only",
    ));
    out.push(sysctl(
        "kernel.yama.ptrace_scope",
        |v| v >= 1,
        1,
        "ptrace only of descendants (runs are in their own pid and user namespaces anyway)",
    ));
    out.push(sysctl(
        "kernel.randomize_va_space",
        |v| v == 2,
        2,
        "full address-space randomisation, for the supervisor as for the programs",
    ));
    out.push(sysctl(
        "fs.protected_symlinks",
        |v| v == 1,
        1,
        "symlinks in sticky world-writable directories (job workspaces live under $TMPDIR) are \
         followed only by their owner",
    ));
    out.push(sysctl(
        "fs.protected_hardlinks",
        |v| v == 1,
        1,
        "no hard links to files the linker cannot write",
    ));
    // Per-user ceilings. Each job is a host uid of its own, so these only
    // bound what one job (or one host user) can pin in the kernel; the
    // defaults of some grow with RAM or are unlimited.
    out.push(sysctl(
        "fs.pipe-user-pages-hard",
        |v| v > 0 && v <= 65536,
        65536,
        "0 means no ceiling on the pipe buffers one user may hold (the soft limit only shrinks \
         new pipes); 65536 pages (256 MiB) per user is plenty for builds and judges",
    ));
    out.push(sysctl(
        "fs.epoll.max_user_watches",
        |v| v > 0 && v <= 1_048_576,
        1_048_576,
        "the default grows with RAM (millions of watches, ~160 bytes of kernel memory each, per \
         user); a million is more than any build or judged program needs",
    ));
    out.push(sysctl(
        "fs.inotify.max_user_watches",
        |v| v > 0 && v <= 1_048_576,
        524_288,
        "the default grows with RAM; inotify watches pin kernel memory per user",
    ));
    let core = read("/proc/sys/kernel/core_pattern").unwrap_or_default();
    out.push(
        check(
            HARDENING,
            "kernel.core_pattern",
            if core.starts_with('|') {
                Level::Warn
            } else {
                Level::Ok
            },
            if core.is_empty() {
                "(empty)".into()
            } else {
                core.clone()
            },
        )
        .advise(
            "a piped core_pattern runs a host helper as root for every crash; the sandbox sets \
             RLIMIT_CORE=1 for each run, which the kernel honours as \"no piped dump\", but \
             consider `sysctl kernel.core_pattern=core`",
        ),
    );
    network_checks(&mut out);
    side_channel_checks(&mut out);
    out
}

/// What a `private` run needs from the host: pasta and the tools the
/// supervisor runs in the run's namespace; `/dev/net/tun` usable by the
/// job's uid for pasta to run as it. Warnings only: other modes need none.
fn network_checks(out: &mut Vec<Check>) {
    let path = std::env::var("PATH").unwrap_or_default();
    let find = |prog: &str| {
        path.split(':')
            .map(|d| std::path::Path::new(d).join(prog))
            .find(|p| p.is_file())
    };
    for (name, prog, pkg) in [
        ("pasta (user-mode NAT)", "pasta", "passt"),
        ("nft (egress policy)", "nft", "nftables"),
        ("ip (ingress device)", "ip", "iproute2"),
        ("tc (bandwidth cap)", "tc", "iproute2"),
    ] {
        let found = find(prog);
        out.push(
            check(
                NETWORK,
                name,
                if found.is_some() {
                    Level::Ok
                } else {
                    Level::Warn
                },
                found.map_or("not found in PATH".into(), |p| p.display().to_string()),
            )
            .advise(format!(
                "private runs fail without it: apt-get install {pkg}"
            )),
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let tun = std::fs::metadata("/dev/net/tun").map(|m| m.permissions().mode() & 0o777);
    out.push(
        check(
            NETWORK,
            "/dev/net/tun",
            match tun {
                Ok(m) if m & 0o006 == 0o006 => Level::Ok,
                _ => Level::Warn,
            },
            match tun {
                Ok(m) => format!("mode {m:04o}"),
                Err(e) => e.to_string(),
            },
        )
        .advise(
            "pasta then runs as uid 0 confined to the run's user namespace instead of the job's \
             uid (Debian's default is 0666: chmod 0666 /dev/net/tun, or a udev rule)",
        ),
    );
}

pub fn run(json: bool) -> i32 {
    use std::io::Write;
    let checks = checks();
    let mut out = std::io::stdout().lock();
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    if json {
        let v: Vec<_> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "section": c.section,
                    "name": c.name,
                    "level": c.level.as_str(),
                    "found": c.found,
                    "advice": c.advice,
                    "sysctl": c.sysctl,
                })
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(v));
    } else {
        let (release, _) = kernel_version();
        let _ = writeln!(
            out,
            "sandbox check-host: kernel {release}, {} CPU(s)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut section = "";
        for c in &checks {
            if c.section != section {
                section = c.section;
                let _ = writeln!(out, "\n{section}");
            }
            let tag = match c.level {
                Level::Absent => " -- ",
                Level::Ok => " ok ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            // A multi-line `found` continues under its first line.
            let found = c
                .found
                .replace('\n', &format!("\n{:w$}", "", w = width + 11));
            let _ = writeln!(out, "  [{tag}] {:width$}  {found}", c.name);
            if !c.advice.is_empty() {
                let _ = writeln!(out, "         -> {}", c.advice);
            }
        }
        let count = |l: Level| checks.iter().filter(|c| c.level == l).count();
        let _ = writeln!(
            out,
            "\n{} checks: {} ok, {} warnings, {} failures, {} absent from this kernel",
            checks.len(),
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail),
            count(Level::Absent),
        );
        let fixes: Vec<&str> = checks.iter().filter_map(|c| c.sysctl.as_deref()).collect();
        if !fixes.is_empty() {
            let _ = writeln!(
                out,
                "\nTo apply the recommended sysctls now and at every boot:\n  sysctl -w {}\n  \
                 printf '%s\\n' {} > /etc/sysctl.d/90-sandbox.conf",
                fixes.join(" "),
                fixes.join(" ")
            );
        }
        let _ = writeln!(
            out,
            "\n{}",
            match worst {
                Level::Fail => "Result: FAIL: a required setting is missing (exit status 1).",
                Level::Warn =>
                    "Result: usable; the warnings are hardening advice (see SECURITY.md, \"Host settings\").",
                _ => "Result: all good.",
            }
        );
    }
    if worst == Level::Fail { 1 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_has_advice_when_not_ok() {
        for c in checks() {
            if matches!(c.level, Level::Warn | Level::Fail) {
                assert!(!c.advice.is_empty(), "{}: no advice", c.name);
            } else {
                assert!(c.advice.is_empty(), "{}: advice while ok", c.name);
            }
            if let Some(s) = &c.sysctl {
                assert!(s.starts_with(c.name) && s.contains('='), "{s}");
            }
        }
    }
}
