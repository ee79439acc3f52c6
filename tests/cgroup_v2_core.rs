//! v2 code paths that need no controllers (cgroup.procs, cgroup.kill,
//! cpu.stat, clone3 CLONE_INTO_CGROUP), run on whatever cgroup2 mount this
//! process is in — on a hybrid machine, the controller-less `unified` one.
//! Skips loudly when not root or no cgroup2 mount is usable.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandbox::limits::{CgroupLimits, CgroupManager, CgroupVersion};

fn our_cgroup2_dir() -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = mi.lines().find(|l| l.contains(" - cgroup2 "))?;
    let f: Vec<&str> = line.split(' ').collect();
    if f.get(3) != Some(&"/") {
        return None;
    }
    let mp = PathBuf::from(f.get(4)?);
    let pc = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = pc.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = mp.join(path.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(dir)
}

#[test]
fn v2_clone_into_cgroup_cpu_and_kill() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: v2_clone_into_cgroup: not root");
        return;
    }
    let Some(base) = our_cgroup2_dir() else {
        eprintln!("SKIPPED: v2_clone_into_cgroup: no usable cgroup2 mount");
        return;
    };
    let m = CgroupManager::v2_unchecked(base);
    assert_eq!(m.version(), CgroupVersion::V2);
    let run = match m.create_run("t_v2core", &CgroupLimits::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("SKIPPED: v2_clone_into_cgroup: {e}");
            return;
        }
    };
    let fd = run.clone_into_fd().expect("v2 has a directory fd");
    let sh = CString::new("/bin/sh").unwrap();
    let c = CString::new("-c").unwrap();
    let script = CString::new("sleep 100 & while :; do :; done").unwrap();
    let argv = [sh.as_ptr(), c.as_ptr(), script.as_ptr(), std::ptr::null()];
    // The runner's own clone3 wrapper: the child is born in the cgroup.
    let pid = sandbox::isolation::sys::clone3(0, None, Some(fd));
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::execv(sh.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(
        pid > 0,
        "clone3: {}",
        std::io::Error::from_raw_os_error((-pid) as i32)
    );
    let procs = std::fs::read_to_string(run.paths()[0].join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    let t0 = Instant::now();
    let mut last = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        last = run.cpu_usage_ns().unwrap();
        if last > 100_000_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(last > 100_000_000, "cpu usage {last}");
    run.kill_all().unwrap();
    let mut st = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid as i32, &mut st, 0) };
    assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL);
    assert!(run.is_empty());
    let p = run.paths()[0].clone();
    run.remove().unwrap();
    assert!(!p.exists());
}
