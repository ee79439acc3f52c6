//! Shared helpers for the integration suites: they run the real `sandbox`
//! binary, as root, against hostile programs.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// Path of the binary under test.
/// The binary under test: `$SANDBOX_TEST_BIN` when set (scripts/test runs
/// some suites again against the static build of scripts/build), else the
/// one cargo built for the tests.
pub static SANDBOX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("SANDBOX_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sandbox").to_string())
});

/// The host uid of strict's runs in [`pinned_profile`]: one fixed id,
/// outside the default range, so a host process can share a run's uid.
pub const PINNED_UID: u32 = 0x6F00_8000;

/// A profile like strict whose runs are all host uid [`PINNED_UID`] (a
/// fixed id: the uid of a range would be cleared of other processes before
/// each job, and a host process sharing it is what the cases need). Its
/// path.
pub fn pinned_profile() -> String {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pinned-uid.toml");
    let text = format!(
        "extends = \"strict\"\n[process]\nhost_uid = {PINNED_UID}\nhost_gid = {PINNED_UID}\n"
    );
    if std::fs::read_to_string(&p).ok().as_deref() != Some(text.as_str()) {
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &text).expect("write pinned profile");
        std::fs::rename(&tmp, &p).expect("install pinned profile");
    }
    p.to_string_lossy().into_owned()
}

/// Whether a host uid is one the sandbox's runs get: the default range of
/// the bundled profiles, [`PINNED_UID`], or the old fixed 65534.
pub fn is_run_uid(uid: u32) -> bool {
    (0x7000_0000..0x7200_0000).contains(&uid) || uid == PINNED_UID || uid == 65534
}

/// The output of one `sandbox` invocation.
#[derive(Debug)]
pub struct Out {
    /// Exit code of `sandbox` itself (-1 if it was killed by a signal).
    pub code: i32,
    /// Raw stdout of `sandbox`.
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// stdout parsed as JSON, when it is a single JSON value.
    pub json: Option<Value>,
    /// Wall time of the whole `sandbox` invocation.
    pub elapsed: Duration,
    /// Pid of the `sandbox` process (its cgroups are named `sandbox-<pid>-<n>`).
    pub pid: u32,
}

impl Out {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// The JSON result; panics with context when stdout was not JSON.
    pub fn j(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "sandbox stdout is not JSON (code {}):\nstdout: {}\nstderr: {}",
                self.code,
                self.stdout_str(),
                self.stderr
            )
        })
    }
    pub fn status(&self) -> &str {
        self.j()["status"].as_str().unwrap_or("<none>")
    }
    /// The program's stdout from the JSON result (decoded when base64).
    pub fn prog_stdout(&self) -> String {
        json_body(self.j(), "stdout")
    }
    pub fn prog_stderr(&self) -> String {
        json_body(self.j(), "stderr")
    }
    pub fn usage(&self, key: &str) -> f64 {
        self.j()["usage"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("usage.{key} missing in {}", self.j()))
    }
    /// Assert that stderr never contains a Rust panic.
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "sandbox panicked:\n{}",
            self.stderr
        );
    }
}

/// Decode `stdout`/`stderr` of a JSON result into a (lossy) string.
pub fn json_body(v: &Value, key: &str) -> String {
    String::from_utf8_lossy(&json_body_bytes(v, key)).into_owned()
}

pub fn json_body_bytes(v: &Value, key: &str) -> Vec<u8> {
    use base64::Engine;
    let s = v[key].as_str().unwrap_or("");
    match v[format!("{key}_encoding")].as_str() {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("valid base64"),
        _ => s.as_bytes().to_vec(),
    }
}

/// A `Command` for the sandbox binary with stdin closed.
pub fn sandbox_cmd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(&*SANDBOX);
    // In-process runs: these suites check the run's own cgroups and
    // processes (a resident helper has its own suite, tests/helper.rs).
    c.args(args)
        .stdin(Stdio::null())
        .env("SANDBOX_HELPER", "off");
    c
}

/// Run `sandbox ARGS...` to completion; afterwards check that this run left
/// no cgroup behind.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    run_cmd(sandbox_cmd(args))
}

/// `sandbox exec --json EXTRA... -- CMD...`
pub fn exec_json(extra: &[&str], cmd: &[&str]) -> Out {
    let mut a: Vec<&str> = vec!["exec", "--json"];
    a.extend_from_slice(extra);
    a.push("--");
    a.extend_from_slice(cmd);
    run(&a)
}

/// `sandbox exec --json EXTRA... -- sh -c SCRIPT`
pub fn sh_json(extra: &[&str], script: &str) -> Out {
    exec_json(extra, &["sh", "-c", script])
}

pub fn run_cmd(mut c: Command) -> Out {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let child = c.spawn().expect("spawn sandbox");
    let pid = child.id();
    track(pid);
    let o = child.wait_with_output().expect("wait sandbox");
    let elapsed = start.elapsed();
    let json = serde_json::from_slice::<Value>(&o.stdout).ok();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        json,
        elapsed,
        pid,
    };
    out.assert_no_panic();
    assert_no_cgroups_of(pid);
    out
}

/// Loud skip unless we are root. Returns true when the test may proceed.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    eprintln!("\n!!!!!!!! SKIPPED (needs root): {test} !!!!!!!!\n");
    false
}

/// Serialises CPU-timing-sensitive tests within one test binary.
pub fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random-enough unique token for file names and markers.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{tag}-{}-{:x}-{}",
        std::process::id(),
        t & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temp directory world-readable so the sandboxed uid can use it
/// (bind it with `--ro-bind DIR:/t`).
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("sandbox-it-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A compiled C program living in its own temp dir.
pub struct CProg {
    pub dir: tempfile::TempDir,
    pub name: String,
}

impl CProg {
    /// Host path of the binary.
    pub fn host_path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }
    /// `--ro-bind DIR:/t` value.
    pub fn bind(&self) -> String {
        format!("{}:/t", self.dir.path().display())
    }
    /// Path of the binary inside the sandbox.
    pub fn sb_path(&self) -> String {
        format!("/t/{}", self.name)
    }
}

/// Compile `src` with the host gcc; the binary is named `name`.
pub fn compile_c(name: &str, src: &str) -> CProg {
    compile_c_flags(name, src, &[])
}

pub fn compile_c_flags(name: &str, src: &str, flags: &[&str]) -> CProg {
    let dir = tempdir();
    let c = dir.path().join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let bin = dir.path().join(name);
    let o = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&bin)
        .arg(&c)
        .args(flags)
        .output()
        .expect("run gcc");
    assert!(
        o.status.success(),
        "gcc failed for {name}:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    CProg {
        dir,
        name: name.to_string(),
    }
}

// ---------------------------------------------------------------- leftovers

/// Pids of host processes whose cmdline contains `marker` (excluding us).
pub fn procs_with(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut v = vec![];
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(mut f) = std::fs::File::open(e.path().join("cmdline")) else {
            continue;
        };
        let mut b = vec![];
        if f.read_to_end(&mut b).is_err() {
            continue;
        }
        let s = String::from_utf8_lossy(&b).replace('\0', " ");
        if s.contains(marker) {
            v.push((pid, s));
        }
    }
    v
}

/// Wait up to `within` for no process with `marker` in its cmdline; panic
/// with the survivors otherwise.
pub fn assert_no_process_with(marker: &str, within: Duration) {
    let t = Instant::now();
    loop {
        let p = procs_with(marker);
        if p.is_empty() {
            return;
        }
        if t.elapsed() > within {
            panic!("processes with marker {marker:?} survived: {p:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Directories under which the sandbox creates its per-run cgroups: our own
/// cgroup in each v1 controller of interest, and the v2 equivalent.
pub fn our_cgroup_dirs() -> Vec<PathBuf> {
    let s = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut dirs = vec![];
    for l in s.lines() {
        let mut it = l.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if ctrls.is_empty() {
            // v2 (unified) entry: pure v2 at /sys/fs/cgroup, hybrid at .../unified.
            for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                if Path::new(base).join("cgroup.controllers").exists() {
                    dirs.push(Path::new(base).join(rel));
                }
            }
            continue;
        }
        for c in ctrls.split(',') {
            if ["memory", "pids", "cpu", "cpuacct", "freezer"].contains(&c) {
                dirs.push(Path::new("/sys/fs/cgroup").join(c).join(rel));
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// All `sandbox-*` cgroup directories below our cgroups.
pub fn sandbox_cgroups() -> Vec<PathBuf> {
    let mut v = vec![];
    for d in our_cgroup_dirs() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("sandbox-") && e.path().is_dir() {
                    v.push(e.path());
                }
            }
        }
    }
    v
}

fn cgroup_owner_pid(p: &Path) -> Option<i32> {
    let n = p.file_name()?.to_str()?;
    n.strip_prefix("sandbox-")?.split('-').next()?.parse().ok()
}

/// Cgroups left behind by the sandbox process `pid` (which has exited).
pub fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    sandbox_cgroups()
        .into_iter()
        .filter(|p| cgroup_owner_pid(p) == Some(pid as i32))
        .collect()
}

pub fn assert_no_cgroups_of(pid: u32) {
    let left = cgroups_of(pid);
    assert!(
        left.is_empty(),
        "sandbox (pid {pid}) left cgroups behind: {left:?}"
    );
}

/// Pids of the `sandbox` processes this test binary started: the stale
/// cgroup check only considers theirs, so other users of the host (other
/// suites running concurrently) cannot make it fail.
static OURS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Record a `sandbox` process started by a test (done by `run*`; call it for
/// processes spawned by hand).
pub fn track(pid: u32) {
    OURS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Sandbox processes a test SIGKILLed on purpose: their cgroups cannot be
/// cleaned up by the sandbox itself, the killing test handles them.
static KILLED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Register a sandbox pid about to be SIGKILLed by a test.
pub fn mark_killed(pid: u32) {
    KILLED.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Remove cgroups left behind by the sandbox process `pid` (retrying while
/// their last tasks die); used so later tests are not polluted.
pub fn remove_cgroups_of(pid: u32) {
    let t = Instant::now();
    loop {
        let left = cgroups_of(pid);
        if left.is_empty() || t.elapsed() > Duration::from_secs(3) {
            return;
        }
        for d in left {
            let _ = std::fs::remove_dir(&d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn overlay_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" - overlay "))
        .count()
}

fn overlay_baseline() -> usize {
    static B: OnceLock<usize> = OnceLock::new();
    *B.get_or_init(overlay_mounts)
}

/// Record the host's state before a test (call at the start).
pub fn host_baseline() {
    overlay_baseline();
}

/// The host-leftover check: no process containing `marker`, no overlay
/// mount beyond the baseline, no cgroup left by a sandbox process of ours
/// that has exited.
pub fn assert_host_clean(marker: Option<&str>) {
    if let Some(m) = marker {
        assert_no_process_with(m, Duration::from_secs(1));
    }
    let n = overlay_mounts();
    assert!(
        n <= overlay_baseline(),
        "overlay mounts leaked into the host mount namespace: {n} > {}",
        overlay_baseline()
    );
    let stale: Vec<PathBuf> = sandbox_cgroups()
        .into_iter()
        .filter(|p| match cgroup_owner_pid(p) {
            Some(pid) => {
                OURS.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&(pid as u32))
                    && !Path::new(&format!("/proc/{pid}")).exists()
                    && !KILLED
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(&(pid as u32))
            }
            None => false,
        })
        .collect();
    assert!(stale.is_empty(), "stale sandbox cgroups: {stale:?}");
}

/// Collect unique numbers of a whitespace-separated listing.
pub fn numeric_entries(s: &str) -> HashSet<u64> {
    s.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The host's 1-minute load average (for failure messages).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Timing assertions on a shared, possibly loaded 2-core host: run `f` up
/// to `attempts` times and pass on the first success. Verdict assertions
/// belong outside `f` (or as hard panics inside it); only the load-sensitive
/// bounds should be returned as `Err`.
/// `f` receives whether the host was quiet (>= 80% idle CPU) before the
/// attempt.
pub fn with_timing_retries(attempts: usize, mut f: impl FnMut(bool) -> Result<(), String>) {
    let mut errs = vec![];
    for i in 0..attempts {
        // Other work on the host (builds, other suites) makes wall-clock
        // bounds meaningless; wait (bounded) for the CPUs to be mostly idle.
        let quiet = wait_for_quiet_cpu(Duration::from_secs(15));
        match f(quiet) {
            Ok(()) => {
                if i > 0 {
                    eprintln!(
                        "NOTE: timing bound met on attempt {} after: {errs:?}",
                        i + 1
                    );
                }
                return;
            }
            Err(e) => errs.push(format!("attempt {}: {e} (loadavg {})", i + 1, loadavg())),
        }
    }
    panic!("timing bound missed on every attempt:\n{}", errs.join("\n"));
}

fn cpu_idle_total() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (idle, f.iter().take(8).sum())
}

/// Fraction of all CPUs idle over `over`.
pub fn cpu_idle_fraction(over: Duration) -> f64 {
    let (i0, t0) = cpu_idle_total();
    std::thread::sleep(over);
    let (i1, t1) = cpu_idle_total();
    if t1 <= t0 {
        return 1.0;
    }
    (i1 - i0) as f64 / (t1 - t0) as f64
}

/// Wait up to `max` until at least 80% of the host's CPU time is idle;
/// false if it never was.
pub fn wait_for_quiet_cpu(max: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < max {
        if cpu_idle_fraction(Duration::from_millis(300)) >= 0.8 {
            return true;
        }
    }
    eprintln!(
        "NOTE: host still busy after {max:?} (loadavg {}); measuring anyway",
        loadavg()
    );
    false
}

/// CLOCK_MONOTONIC in ns (shared by host and sandbox: no time namespace).
pub fn monotonic_ns() -> i64 {
    // SAFETY: a zeroed timespec is a valid value.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to our own timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}
