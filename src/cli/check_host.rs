//! `sandbox check-host`: reports the host settings the sandbox depends on or
//! that an operator should harden, each with a verdict and a remedy.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub found: String,
    pub advice: String,
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn sysctl(name: &'static str, p: &str, ok: impl Fn(i64) -> bool, advice: &str) -> Check {
    match read(p).and_then(|s| s.parse::<i64>().ok().map(|v| (s, v))) {
        Some((s, v)) => Check {
            name,
            level: if ok(v) { Level::Ok } else { Level::Warn },
            found: s,
            advice: if ok(v) {
                String::new()
            } else {
                advice.to_string()
            },
        },
        None => Check {
            name,
            level: Level::Ok,
            found: "absent (not applicable to this kernel)".into(),
            advice: String::new(),
        },
    }
}

pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let uname = nix::sys::utsname::uname().ok();
    let release = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let (maj, min) = {
        let mut it = release.split(|c: char| !c.is_ascii_digit());
        (
            it.next().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0),
            it.next().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0),
        )
    };
    out.push(Check {
        name: "kernel",
        level: if (maj, min) >= (5, 11) { Level::Ok } else { Level::Fail },
        found: release.clone(),
        advice: "kernel 5.11 or newer is needed (overlayfs in user namespaces, clone3 CLONE_INTO_CGROUP)"
            .into(),
    });
    out.push(Check {
        name: "root",
        level: if nix::unistd::geteuid().is_root() {
            Level::Ok
        } else {
            Level::Warn
        },
        found: format!("euid {}", nix::unistd::geteuid()),
        advice: "the sandbox runs as root today (rootless mode is planned)".into(),
    });
    match crate::limits::cgroup::CgroupManager::detect() {
        Ok(m) => out.push(Check {
            name: "cgroups",
            level: Level::Ok,
            found: m.describe(),
            advice: String::new(),
        }),
        Err(e) => out.push(Check {
            name: "cgroups",
            level: Level::Fail,
            found: e.to_string(),
            advice: "mount cgroup v2 (or v1 memory, pids, cpu, cpuacct) and delegate the sandbox's cgroup \
                     (systemd: Delegate=yes) — memory, pids and CPU-time limits need it"
                .into(),
        }),
    }
    let filesystems = read("/proc/filesystems").unwrap_or_default();
    let has_fs = |f: &str| {
        filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(f))
    };
    out.push(Check {
        name: "overlayfs",
        level: if has_fs("overlay") || Path::new("/sys/module/overlay").exists() {
            Level::Ok
        } else {
            Level::Warn
        },
        found: if has_fs("overlay") {
            "available"
        } else {
            "not listed in /proc/filesystems"
        }
        .into(),
        advice: "modprobe overlay (it loads on first use on most distributions)".into(),
    });
    let seccomp = read("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Seccomp:"));
    out.push(Check {
        name: "seccomp",
        level: if seccomp { Level::Ok } else { Level::Fail },
        found: if seccomp {
            "supported"
        } else {
            "no Seccomp field in /proc/self/status"
        }
        .into(),
        advice: "a kernel with CONFIG_SECCOMP_FILTER is required".into(),
    });
    out.push(sysctl(
        "user.max_user_namespaces",
        "/proc/sys/user/max_user_namespaces",
        |v| v > 0,
        "set user.max_user_namespaces > 0: profiles with namespaces.user need it",
    ));
    out.push(sysctl(
        "kernel.apparmor_restrict_unprivileged_userns",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        |_| true,
        "",
    ));
    out.push(sysctl(
        "kernel.shm_rmid_forced",
        "/proc/sys/kernel/shm_rmid_forced",
        |v| v == 1,
        "sysctl kernel.shm_rmid_forced=1: orphaned SysV segments are freed (the sandbox already gives each run its own IPC namespace)",
    ));
    out.push(sysctl(
        "dev.tty.legacy_tiocsti",
        "/proc/sys/dev/tty/legacy_tiocsti",
        |v| v == 0,
        "sysctl dev.tty.legacy_tiocsti=0: no process can push keystrokes into a terminal (the sandbox also setsid()s and filters TIOCSTI)",
    ));
    out.push(sysctl(
        "kernel.io_uring_disabled",
        "/proc/sys/kernel/io_uring_disabled",
        |v| v == 2,
        "sysctl kernel.io_uring_disabled=2: io_uring is a large kernel attack surface (strict's seccomp filter blocks it anyway)",
    ));
    out.push(sysctl(
        "kernel.unprivileged_bpf_disabled",
        "/proc/sys/kernel/unprivileged_bpf_disabled",
        |v| v >= 1,
        "sysctl kernel.unprivileged_bpf_disabled=2",
    ));
    out.push(sysctl(
        "kernel.perf_event_paranoid",
        "/proc/sys/kernel/perf_event_paranoid",
        |v| v >= 2,
        "sysctl kernel.perf_event_paranoid=3 (or at least 2)",
    ));
    out.push(sysctl(
        "kernel.yama.ptrace_scope",
        "/proc/sys/kernel/yama/ptrace_scope",
        |v| v >= 1,
        "sysctl kernel.yama.ptrace_scope=1",
    ));
    out.push(sysctl(
        "kernel.dmesg_restrict",
        "/proc/sys/kernel/dmesg_restrict",
        |v| v == 1,
        "sysctl kernel.dmesg_restrict=1",
    ));
    out.push(sysctl(
        "kernel.kptr_restrict",
        "/proc/sys/kernel/kptr_restrict",
        |v| v >= 1,
        "sysctl kernel.kptr_restrict=1",
    ));
    let core = read("/proc/sys/kernel/core_pattern").unwrap_or_default();
    out.push(Check {
        name: "kernel.core_pattern",
        level: if core.starts_with('|') {
            Level::Warn
        } else {
            Level::Ok
        },
        found: core.clone(),
        advice: "a piped core_pattern runs a host helper as root for crashes; the sandbox sets \
                 RLIMIT_CORE=1 (which the kernel honours as \"no piped dump\"), but consider \
                 `sysctl kernel.core_pattern=core`"
            .into(),
    });
    let swap = read("/proc/swaps")
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0);
    out.push(Check {
        name: "swap",
        level: if swap == 0 { Level::Ok } else { Level::Warn },
        found: format!("{swap} swap device(s)"),
        advice:
            "with swap, memory limits must also cap swap (v2 memory.swap.max=0, which the sandbox \
                 sets; v1 needs swapaccount=1 for memory.memsw.*); judges usually run without swap"
                .into(),
    });
    out
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
                    "name": c.name,
                    "level": format!("{:?}", c.level).to_lowercase(),
                    "found": c.found,
                    "advice": c.advice,
                })
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(v));
    } else {
        for c in &checks {
            let tag = match c.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            let _ = writeln!(out, "[{tag}] {:45} {}", c.name, c.found);
            if c.level != Level::Ok && !c.advice.is_empty() {
                let _ = writeln!(out, "       -> {}", c.advice);
            }
        }
        let (w, f) = checks.iter().fold((0, 0), |(w, f), c| match c.level {
            Level::Warn => (w + 1, f),
            Level::Fail => (w, f + 1),
            Level::Ok => (w, f),
        });
        let _ = writeln!(
            out,
            "\n{} checks: {} ok, {w} warnings, {f} failures",
            checks.len(),
            checks.len() - w - f
        );
    }
    if worst == Level::Fail { 1 } else { 0 }
}
