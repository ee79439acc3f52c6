//! Integration tests for src/limits/cgroup/. Need root and usable cgroups;
//! otherwise each test prints "SKIPPED: ..." and passes.
//!
//! Children are spawned with std::process::Command + pre_exec; the pre_exec
//! closure only writes "0" to pre-opened fds (async-signal-safe).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sandbox::limits::cgroup::join_self;
use sandbox::limits::{CgroupLimits, CgroupManager, CgroupVersion, RunCgroup};

fn manager(test: &str) -> Option<CgroupManager> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: {test}: not root");
        return None;
    }
    match CgroupManager::detect() {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("SKIPPED: {test}: cgroups unusable: {e}");
            None
        }
    }
}

fn spawn_in(run: &RunCgroup, script: &str) -> Child {
    let fds = run.join_fds().to_vec();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the closure only calls write(2) on pre-opened fds (join_self).
    unsafe {
        cmd.pre_exec(move || join_self(&fds).map_err(std::io::Error::from_raw_os_error));
    }
    cmd.spawn().expect("spawn child in run cgroup")
}

fn procs(run: &RunCgroup) -> Vec<i32> {
    let s = std::fs::read_to_string(run.paths()[0].join("cgroup.procs")).unwrap();
    s.lines().filter_map(|l| l.parse().ok()).collect()
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

#[test]
fn create_limit_remove_leaves_nothing() {
    let Some(m) = manager("create_limit_remove") else {
        return;
    };
    eprintln!("{}", m.describe());
    let limits = CgroupLimits {
        memory: Some(64 << 20),
        pids: Some(10),
        cpu_quota: Some(0.5),
    };
    let run = m.create_run("t_create", &limits).unwrap();
    let paths = run.paths().to_vec();
    assert!(!paths.is_empty());
    let mb64 = (64u64 << 20).to_string();
    for p in &paths {
        assert!(p.is_dir(), "{} missing", p.display());
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&format!("sandbox-{}-", std::process::id())),
            "{name}"
        );
        let check = |file: &str, want: &str| {
            if p.join(file).exists() {
                assert_eq!(read(&p.join(file)), want, "{}", p.join(file).display());
            }
        };
        check("memory.limit_in_bytes", &mb64);
        check("memory.memsw.limit_in_bytes", &mb64);
        check("memory.max", &mb64);
        check("pids.max", "10");
        check("cpu.cfs_quota_us", "50000");
        check("cpu.max", "50000 100000");
    }
    match m.version() {
        CgroupVersion::V1 => assert!(run.clone_into_fd().is_none()),
        CgroupVersion::V2 => assert!(run.clone_into_fd().is_some()),
    }
    assert!(run.is_empty());
    assert_eq!(run.cpu_usage_ns().unwrap(), 0);
    run.remove().unwrap();
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }

    // Drop also removes.
    let run = m.create_run("t_drop", &CgroupLimits::default()).unwrap();
    let paths = run.paths().to_vec();
    drop(run);
    for p in &paths {
        assert!(!p.exists(), "{} left behind by Drop", p.display());
    }

    // Invalid limit: error, nothing left.
    let err = m
        .create_run(
            "t_invalid",
            &CgroupLimits {
                cpu_quota: Some(-1.0),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("invalid limit"), "{err}");
    for base in m.base_dirs() {
        for e in std::fs::read_dir(base).unwrap().flatten() {
            let n = e.file_name().into_string().unwrap();
            assert!(!n.contains("t_invalid"), "{n} left behind after error");
        }
    }
}

#[test]
fn cpu_usage_grows_for_joined_child() {
    let Some(m) = manager("cpu_usage_grows") else {
        return;
    };
    let run = m.create_run("t_cpu", &CgroupLimits::default()).unwrap();
    let mut child = spawn_in(&run, "while :; do :; done");
    let t0 = Instant::now();
    let mut last = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        last = run.cpu_usage_ns().unwrap();
        if last > 200_000_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(last > 200_000_000, "cpu usage only {last} ns");
    let t = Instant::now();
    for _ in 0..1000 {
        run.cpu_usage_ns().unwrap();
    }
    eprintln!("cpu_usage_ns: {:?} per call", t.elapsed() / 1000);
    assert!(procs(&run).contains(&(child.id() as i32)));
    let u = run.usage().unwrap();
    assert!(u.cpu_ns >= last);
    assert!(u.user_ns + u.sys_ns > 0, "{u:?}");
    run.kill_all().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(run.is_empty());
    run.remove().unwrap();
}

#[test]
fn memory_limit_oom_kills() {
    let Some(m) = manager("memory_limit_oom_kills") else {
        return;
    };
    let limit = 64u64 << 20;
    let run = m
        .create_run(
            "t_oom",
            &CgroupLimits {
                memory: Some(limit),
                ..Default::default()
            },
        )
        .unwrap();
    // dd allocates a 256 MiB buffer and fills it from /dev/zero.
    let mut child = spawn_in(
        &run,
        "exec dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null",
    );
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "dd status {st:?}");
    assert!(run.oom_killed().unwrap());
    let u = run.usage().unwrap();
    eprintln!("oom usage: {u:?}");
    assert!(
        u.memory_peak_bytes >= limit * 9 / 10 && u.memory_peak_bytes <= limit + (1 << 20),
        "peak {} vs limit {limit}",
        u.memory_peak_bytes
    );
    assert!(!run.pids_limit_hit());
    run.remove().unwrap();
}

#[test]
fn pids_limit_enforced() {
    let Some(m) = manager("pids_limit_enforced") else {
        return;
    };
    let run = m
        .create_run(
            "t_pids",
            &CgroupLimits {
                pids: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
    let mut child = spawn_in(
        &run,
        "for i in 1 2 3 4 5 6 7 8; do sleep 0.5 & done 2>/dev/null; wait",
    );
    let _ = child.wait().unwrap();
    assert!(run.pids_limit_hit(), "pids.events max not incremented");
    let u = run.usage().unwrap();
    if let Some(p) = u.pids_peak {
        assert!(p <= 4, "pids peak {p}");
    }
    run.kill_all().unwrap();
    run.remove().unwrap();
}

#[test]
fn kill_all_kills_grandchildren() {
    let Some(m) = manager("kill_all_kills_grandchildren") else {
        return;
    };
    let run = m
        .create_run(
            "t_kill",
            &CgroupLimits {
                pids: Some(64),
                ..Default::default()
            },
        )
        .unwrap();
    let mut child = spawn_in(
        &run,
        "sleep 100 & sleep 100 & (sleep 100 & sleep 100) & sleep 100",
    );
    let t0 = Instant::now();
    while procs(&run).len() < 5 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(procs(&run).len() >= 5, "only {:?}", procs(&run));
    let t = Instant::now();
    let r = run.kill_all();
    eprintln!("kill_all took {:?}: {r:?}", t.elapsed());
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    let t0 = Instant::now();
    while !run.is_empty() && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(run.is_empty(), "left: {:?}", procs(&run));
    r.unwrap();
    run.remove().unwrap();
}

#[test]
fn sweep_stale_removes_only_dead_owners() {
    let Some(m) = manager("sweep_stale") else {
        return;
    };
    // A pid that is certainly dead (and start time 1 won't match a reuse).
    let mut c = Command::new("/bin/true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let me = std::process::id();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let my_start: u64 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let stale = format!("sandbox-{dead}-1-0-sweeptest");
    let live = format!("sandbox-{me}-{my_start}-999999-sweeptest");
    let other = format!("sandbox-notours-{dead}-sweeptest");
    let mut made = Vec::new();
    for base in m.base_dirs() {
        for n in [&stale, &live, &other] {
            let d = base.join(n);
            std::fs::create_dir(&d).unwrap();
            made.push(d);
        }
    }
    let n = m.sweep_stale_filtered(&|name| name.ends_with("-sweeptest"));
    let left: Vec<_> = made.iter().filter(|d| d.exists()).cloned().collect();
    // Clean up what should remain before asserting.
    for d in &left {
        let _ = std::fs::remove_dir(d);
    }
    assert_eq!(n, 1, "removed count");
    for d in &made {
        let name = d.file_name().unwrap().to_str().unwrap();
        assert_eq!(left.contains(d), name != stale, "{}", d.display());
    }
}

#[test]
fn kill_all_during_fork_storm() {
    let Some(m) = manager("kill_all_during_fork_storm") else {
        return;
    };
    let run = m
        .create_run(
            "t_storm",
            &CgroupLimits {
                pids: Some(32),
                ..Default::default()
            },
        )
        .unwrap();
    let mut child = spawn_in(&run, "while :; do (sleep 100 &) 2>/dev/null; done");
    std::thread::sleep(Duration::from_millis(300));
    assert!(procs(&run).len() > 5, "{:?}", procs(&run));
    let t = Instant::now();
    run.kill_all().unwrap();
    eprintln!("kill_all (fork storm) took {:?}", t.elapsed());
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(run.is_empty(), "left: {:?}", procs(&run));
    run.remove().unwrap();
}
