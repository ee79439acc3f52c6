//! Measures the cost of attaching a freshly forked process to a run cgroup.
//!
//! `cargo run --release --example cgroup_attach [iterations]` (root).
//!
//! Methods, each cold (100 ms idle before every attach) and warm (back to back):
//! * (a) the parent writes the child's pid to `cgroup.procs`;
//! * (b) the child writes `"0"` (itself) to `tasks`;
//! * (c) the child writes `"0"` to `cgroup.procs`.
//!
//! On v1 only the memory hierarchy is timed (the cost in question is the
//! global `cgroup_threadgroup_rwsem`, shared by every hierarchy); the full
//! `join_fds` join (all hierarchies) is timed as (b*). On v2 the `tasks` file
//! does not exist for domain cgroups, so (b) is skipped there.
//!
//! This binary stays single-threaded so that `fork` is safe.
//!
//! Results on the 2-core Debian 12 VM, kernel 6.18 hybrid v1 (n=20 cold, 60 warm, medians):
//! (a) parent→cgroup.procs cold 11.6 ms (7–19), warm 0.019 ms;
//! (b) child "0"→tasks cold 0.036 ms, warm 0.008 ms;
//! (c) child "0"→cgroup.procs cold 14.8 ms (7–60), warm 0.011 ms;
//! (b*) child joins all 5 hierarchies via join_fds: cold 0.11 ms, warm 0.05 ms.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use sandbox::limits::{CgroupLimits, CgroupManager, CgroupVersion};

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    ParentProcs,
    ChildTasks,
    ChildProcs,
    ChildJoinAll,
}

/// One attach; returns its duration in ns.
fn attach_once(method: Method, fds: &[i32], procs_path: &std::path::Path) -> u64 {
    let mut p = [0i32; 2];
    // SAFETY: p is a valid 2-int array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    // SAFETY: single-threaded process; the child only calls async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // Child.
        let mut out: u64 = 0;
        if method != Method::ParentProcs {
            let t0 = now_ns();
            for &fd in fds {
                // SAFETY: writes 1 byte from a static buffer.
                if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                    out = u64::MAX;
                }
            }
            if out == 0 {
                out = now_ns() - t0;
            }
        } else {
            // Wait until the parent has attached us (it closes the pipe).
            let mut b = [0u8; 8];
            // SAFETY: valid buffer.
            unsafe {
                libc::close(p[1]);
                libc::read(p[0], b.as_mut_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        // SAFETY: valid buffer; _exit is async-signal-safe.
        unsafe {
            libc::write(p[1], (&out as *const u64).cast(), 8);
            libc::_exit(0);
        }
    }
    let ns;
    if method == Method::ParentProcs {
        let t0 = Instant::now();
        std::fs::write(procs_path, pid.to_string()).expect("write cgroup.procs");
        ns = t0.elapsed().as_nanos() as u64;
        // SAFETY: closing our pipe ends.
        unsafe {
            libc::close(p[1]);
        }
    } else {
        // SAFETY: closing our write end, then reading 8 bytes into a u64.
        unsafe { libc::close(p[1]) };
        let mut v: u64 = 0;
        // SAFETY: valid buffer of 8 bytes.
        let n = unsafe { libc::read(p[0], (&mut v as *mut u64).cast(), 8) };
        assert_eq!(n, 8, "child did not report");
        assert_ne!(v, u64::MAX, "child failed to join");
        ns = v;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child; closing our read end.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(p[0]);
    }
    ns
}

fn stats(v: &mut [u64]) -> String {
    v.sort_unstable();
    let ms = |x: u64| x as f64 / 1e6;
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64 / 1e6;
    format!(
        "median {:7.3} ms  mean {:7.3} ms  min {:7.3}  max {:7.3}  (n={})",
        ms(v[v.len() / 2]),
        mean,
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mgr = CgroupManager::detect().expect("detect cgroups");
    println!("{}", mgr.describe());
    let run = mgr
        .create_run("attachbench", &CgroupLimits::default())
        .expect("create run cgroup");
    let v1 = mgr.version() == CgroupVersion::V1;
    let dir = run.paths()[0].clone();
    let mem_dir = run
        .paths()
        .iter()
        .find(|d| d.join("memory.max_usage_in_bytes").exists() || d.join("memory.current").exists())
        .cloned()
        .unwrap_or(dir);
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(mem_dir.join(name))
            .ok()
    };
    let tasks = open("tasks");
    let procs = open("cgroup.procs").expect("open cgroup.procs");
    let procs_path = mem_dir.join("cgroup.procs");

    let mut methods: Vec<(&str, Method, Vec<i32>)> = vec![(
        "(a) parent writes pid to cgroup.procs",
        Method::ParentProcs,
        vec![],
    )];
    if let Some(t) = &tasks {
        methods.push((
            "(b) child writes 0 to tasks",
            Method::ChildTasks,
            vec![t.as_raw_fd()],
        ));
    }
    methods.push((
        "(c) child writes 0 to cgroup.procs",
        Method::ChildProcs,
        vec![procs.as_raw_fd()],
    ));
    if v1 {
        methods.push((
            "(b*) child joins all (join_fds)",
            Method::ChildJoinAll,
            run.join_fds().to_vec(),
        ));
    }

    for (label, m, fds) in &methods {
        let mut cold = Vec::new();
        for _ in 0..iters {
            std::thread::sleep(Duration::from_millis(100));
            cold.push(attach_once(*m, fds, &procs_path));
        }
        let mut warm = Vec::new();
        for _ in 0..iters * 3 {
            warm.push(attach_once(*m, fds, &procs_path));
        }
        println!("{label:40} cold: {}", stats(&mut cold));
        println!("{:40} warm: {}", "", stats(&mut warm));
    }
    drop(tasks);
    drop(procs);
    run.remove().expect("remove run cgroup");
}
