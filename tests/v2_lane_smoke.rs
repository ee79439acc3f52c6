//! Smoke test for the cgroup v2 CI lane (`.ci/v2-lane`, see `.ci/v2-lane.md`).
//! Only does something inside the lane (`V2LANE=1`, set by the lane's guest):
//! creates a child of its own cgroup, sets memory.max / pids.max, runs a
//! child process in it and checks memory.peak and the OOM kill.
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

const CG: &str = "/sys/fs/cgroup";
const ALLOC_ENV: &str = "V2LANE_SMOKE_ALLOC_MIB";

fn in_lane() -> bool {
    std::env::var_os("V2LANE").is_some()
}

fn own_cgroup() -> PathBuf {
    let s = fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = s
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("cgroup v2 entry");
    Path::new(CG).join(rel.trim_start_matches('/'))
}

/// Enable memory+pids for children of our cgroup. Outside the root cgroup the
/// no-internal-processes rule means we must first move into a leaf of our own.
fn prepare_base() -> PathBuf {
    let base = own_cgroup();
    if base != Path::new(CG) {
        let sup = base.join("supervisor");
        let _ = fs::create_dir(&sup);
        fs::write(sup.join("cgroup.procs"), "0").unwrap();
    }
    fs::write(base.join("cgroup.subtree_control"), "+memory +pids").unwrap();
    base
}

fn run_in(cg: &Path, mib: usize) -> ExitStatus {
    let procs = cg.join("cgroup.procs");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "v2_lane_alloc_child", "--test-threads=1"])
        .env(ALLOC_ENV, mib.to_string())
        .stdout(Stdio::null());
    // SAFETY: only a write(2) to a cgroup file between fork and exec.
    unsafe { cmd.pre_exec(move || fs::write(&procs, "0")) };
    cmd.status().unwrap()
}

/// Entry point of the child process spawned by the test below.
#[test]
fn v2_lane_alloc_child() {
    let Ok(mib) = std::env::var(ALLOC_ENV) else {
        return;
    };
    let mut v = vec![0u8; mib.parse::<usize>().unwrap() << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&v);
}

#[test]
fn v2_lane_memory_max_peak_and_oom() {
    if !in_lane() || std::env::var_os(ALLOC_ENV).is_some() {
        eprintln!("not in the cgroup v2 lane (V2LANE unset): skipped");
        return;
    }
    let base = prepare_base();
    let cg = base.join(format!("smoke{}", std::process::id()));
    fs::create_dir(&cg).unwrap();
    fs::write(cg.join("memory.max"), (64u64 << 20).to_string()).unwrap();
    fs::write(cg.join("memory.swap.max"), "0").unwrap();
    fs::write(cg.join("pids.max"), "16").unwrap();

    let st = run_in(&cg, 24);
    let peak: u64 = fs::read_to_string(cg.join("memory.peak"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(st.success(), "24 MiB child: {st:?}");
    assert!((24 << 20..=64 << 20).contains(&peak), "memory.peak {peak}");

    let st = run_in(&cg, 200);
    let events = fs::read_to_string(cg.join("memory.events")).unwrap();
    assert_eq!(
        st.signal(),
        Some(libc::SIGKILL),
        "200 MiB child should be OOM-killed: {st:?}"
    );
    assert!(events.contains("oom_kill 1"), "memory.events: {events}");
    fs::remove_dir(&cg).unwrap();
}

/// The lane must not depend on the host CPU (an AMX host's xsave size broke
/// the User-Mode Linux lane): the guest runs on QEMU's emulated CPU, whose
/// features are QEMU's own. A lane that passed the host CPU through (KVM,
/// `-cpu host`) would show the host's model name and its AVX-512/AMX flags.
#[test]
fn v2_lane_guest_cpu_is_emulated() {
    if !in_lane() || std::env::var_os(ALLOC_ENV).is_some() {
        eprintln!("not in the cgroup v2 lane (V2LANE unset): skipped");
        return;
    }
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix(':'))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in /proc/cpuinfo"))
    };
    let model = field("model name");
    assert!(
        model.contains("QEMU"),
        "guest CPU is not QEMU's model: {model}"
    );
    let flags: Vec<&str> = field("flags").split_whitespace().collect();
    for host_only in ["amx_tile", "avx512f"] {
        assert!(!flags.contains(&host_only), "guest CPU has {host_only}");
    }
    assert!(flags.contains(&"xsave"), "guest CPU lacks xsave: {flags:?}");
}
