//! The hostile catalogue (issue #7): every case is an attack on the sandbox
//! with the outcome it must get. Each runs alone, then as many copies at
//! once as there are CPUs, then the host is checked for leftovers (see
//! tests/hostile/harness.rs and tests/hostile/README.md). Needs root; skips
//! loudly otherwise.
//!
//! Every case holds a process-wide lock, so this file's cases never share
//! the machine with each other; timing bounds are generous (the parallel
//! copies share the CPUs).

mod common;
mod common_server;
#[path = "hostile/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

/// `case! { /// what it attacks → the outcome; fn name(opts) |c| { body } }`:
/// a `#[test]` that runs `body` alone, in parallel, then checks the host.
macro_rules! case {
    ($(#[$m:meta])* fn $name:ident($opts:expr) |$c:ident| $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            harness::run_case(stringify!($name), $opts, &|$c: &harness::Ctx| $body);
        }
    };
}

static KERNEL: CProg = CProg::new("kernel", include_str!("hostile/kernel.c"), &[]);
static EXHAUST: CProg = CProg::new("exhaust", include_str!("hostile/exhaust.c"), &["-pthread"]);
static TIMING: CProg = CProg::new("timing", include_str!("hostile/timing.c"), &["-pthread"]);
static FS: CProg = CProg::new("fs", include_str!("hostile/fs.c"), &[]);
static ESCAPE: CProg = CProg::new("escape", include_str!("hostile/escape.c"), &[]);
static CHANNELS: CProg = CProg::new("channels", include_str!("hostile/channels.c"), &[]);
/// ident, installed setuid root.
static SETUID: CProg =
    CProg::new("ident", include_str!("hostile/ident.c"), &["-DSETUID"]).with_post(make_setuid);
/// ident, with every capability in its file capabilities.
static FILECAPS: CProg =
    CProg::new("ident", include_str!("hostile/ident.c"), &["-DFILECAPS"]).with_post(make_filecaps);

fn make_setuid(dir: &Path) {
    let bin = dir.join("ident");
    std::os::unix::fs::chown(&bin, Some(0), Some(0)).expect("chown");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
}

fn make_filecaps(dir: &Path) {
    let bin = dir.join("ident");
    // struct vfs_cap_data, revision 2, effective: every capability permitted.
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&u32::MAX.to_le_bytes()); // permitted, caps 0-31
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0x1ffu32.to_le_bytes()); // permitted, caps 32-40
    v.extend_from_slice(&0u32.to_le_bytes());
    let p = std::ffi::CString::new(bin.to_str().expect("utf8 path")).expect("path");
    // SAFETY: valid C strings and buffer.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"security.capability".as_ptr(),
            v.as_ptr().cast(),
            v.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr security.capability: {}",
        std::io::Error::last_os_error()
    );
}

// ------------------------------------------------------------ helpers

/// The program's stdout lines.
fn lines(o: &Out) -> Vec<String> {
    o.prog_stdout().lines().map(String::from).collect()
}

/// The program's stdout is exactly these lines.
#[track_caller]
fn assert_lines(o: &Out, want: &[&str]) {
    assert_eq!(lines(o), want, "stdout of {}", o.j());
}

/// Run kernel.c with these attacks; each must get exactly its result.
#[track_caller]
fn kernel_expect(c: &Ctx, extra: &[&str], want: &[(&str, &str)]) {
    let names: Vec<&str> = want.iter().map(|w| w.0).collect();
    let o = c.c(&KERNEL, extra, &names);
    verdict(&o, "ok", 0);
    let expect: Vec<String> = want.iter().map(|(n, r)| format!("{n}: {r}")).collect();
    assert_eq!(lines(&o), expect, "kernel probes: {}", o.j());
}

/// Spawning a host process stays fast (the machine was not exhausted).
#[track_caller]
fn host_responsive() {
    let t = Instant::now();
    assert!(Command::new("true").status().expect("spawn true").success());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "host spawn took {:?}",
        t.elapsed()
    );
}

/// Host root can still use what the kernel counts per user: exhaust.c's
/// `peruser` run directly on the host (an epoll watch, a POSIX timer, a
/// queued signal), and `timeout` (which only warns, "timer_create:
/// Resource temporarily unavailable", when it cannot arm its timer).
#[track_caller]
fn host_root_per_user_ok(when: &str) {
    let p = Command::new(EXHAUST.dir().join("exhaust"))
        .arg("peruser")
        .output()
        .expect("run exhaust on the host");
    assert_eq!(
        String::from_utf8_lossy(&p.stdout),
        "epoll_ctl: ok\ntimer_create: ok\nsigqueue: ok\n",
        "host root {when}"
    );
    let t = Command::new("timeout")
        .args(["5", "true"])
        .output()
        .expect("run timeout");
    assert!(
        t.status.success() && t.stderr.is_empty(),
        "host root's timeout {when}: {}",
        String::from_utf8_lossy(&t.stderr)
    );
}

/// A host process with the host uid of runs under [`common::pinned_profile`],
/// as a victim for signal attacks. Killed and reaped on drop.
struct Victim(std::process::Child);

impl Victim {
    fn spawn() -> Victim {
        let c = Command::new("/usr/bin/sleep")
            .arg("60")
            .uid(common::PINNED_UID)
            .gid(common::PINNED_UID)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn victim");
        Victim(c)
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Host file planted for a case; removed on drop.
struct Planted(Vec<std::path::PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A job step running `/bin/sh -c SCRIPT` with small limits.
fn sh_step(script: &str) -> serde_json::Value {
    json!({"command": ["/bin/sh", "-c", script],
           "limits": {"cpu_time": "2s", "wall_time": "5s", "memory": "64M"}})
}

/// A job step running `python3 -c SRC`.
fn py_step(src: &str) -> serde_json::Value {
    json!({"command": ["/usr/bin/python3", "-c", src],
           "limits": {"cpu_time": "2s", "wall_time": "5s", "memory": "64M"}})
}

/// The host's core_pattern, set to a piped handler (run by the kernel as
/// host root) that logs the crashing program's name, while any copy of the
/// case holds a guard; the original pattern is restored by the last one.
struct CorePipe {
    log: std::path::PathBuf,
}

static CORE_PIPE: std::sync::Mutex<(usize, Option<String>)> = std::sync::Mutex::new((0, None));
const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

impl CorePipe {
    fn install() -> CorePipe {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile");
        std::fs::create_dir_all(&dir).expect("scratch");
        let handler = dir.join("core-handler.sh");
        let log = dir.join("core-handler.log");
        let mut g = CORE_PIPE.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == 0 {
            std::fs::write(
                &handler,
                format!(
                    "#!/bin/sh\necho \"$1\" >> {}\ncat > /dev/null\n",
                    log.display()
                ),
            )
            .expect("handler");
            std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();
            let _ = std::fs::remove_file(&log);
            let old = std::fs::read_to_string(CORE_PATTERN).expect("core_pattern");
            let new = format!("|{} %e", handler.display());
            assert!(new.len() < 128, "core_pattern too long: {new}");
            std::fs::write(CORE_PATTERN, &new).expect("set core_pattern");
            g.1 = Some(old);
        }
        g.0 += 1;
        CorePipe { log }
    }

    /// Names the handler was invoked for.
    fn invocations(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for CorePipe {
    fn drop(&mut self) {
        let mut g = CORE_PIPE.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0
            && let Some(old) = g.1.take()
        {
            std::fs::write(CORE_PATTERN, old.trim_end()).expect("restore core_pattern");
        }
    }
}

/// fs.epoll.max_user_watches lowered (host-wide, for every user) while any
/// copy of a case holds a guard, so that one run can reach it. The original
/// is kept in a file until the last guard puts it back, and a value left
/// lowered by a test process that died is restored before the next change.
struct EpollWatchLimit;

static EPOLL_LOW: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
const EPOLL_MAX: &str = "/proc/sys/fs/epoll/max_user_watches";

fn epoll_saved() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("epoll_max_user_watches.orig")
}

/// Puts back a value saved by an earlier change, if one is still saved.
fn epoll_restore() {
    if let Ok(old) = std::fs::read_to_string(epoll_saved()) {
        std::fs::write(EPOLL_MAX, old.trim()).expect("restore fs.epoll.max_user_watches");
        std::fs::remove_file(epoll_saved()).expect("remove saved value");
    }
}

/// Epoll watches host root holds now (tfd lines of its epoll fds).
fn root_epoll_watches() -> u64 {
    let mut n = 0;
    for pid in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = pid.path();
        let root =
            std::fs::metadata(&dir).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        if !root {
            continue;
        }
        for fd in std::fs::read_dir(dir.join("fdinfo"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            n += info.lines().filter(|l| l.starts_with("tfd:")).count() as u64;
        }
    }
    n
}

impl EpollWatchLimit {
    fn lower() -> EpollWatchLimit {
        let mut g = EPOLL_LOW.lock().unwrap_or_else(|e| e.into_inner());
        if *g == 0 {
            epoll_restore();
            let old = std::fs::read_to_string(EPOLL_MAX).expect("read max_user_watches");
            std::fs::write(epoll_saved(), &old).expect("save max_user_watches");
            // Above what host root holds (its processes keep working), and
            // within the 110 x 110 watches exhaust.c can add.
            let low = root_epoll_watches() + 3000;
            assert!(
                low < 110 * 110,
                "host root holds too many epoll watches to lower the limit"
            );
            std::fs::write(EPOLL_MAX, low.to_string()).expect("lower max_user_watches");
        }
        *g += 1;
        EpollWatchLimit
    }
}

impl Drop for EpollWatchLimit {
    fn drop(&mut self) {
        let mut g = EPOLL_LOW.lock().unwrap_or_else(|e| e.into_inner());
        *g -= 1;
        if *g == 0 {
            epoll_restore();
        }
    }
}

fn meminfo_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// =================================================== resource exhaustion

case! {
    /// C fork bomb (every process forks forever) → pids cap holds it, CPU limit ends it: time_limit (124), host responsive.
    fn fork_bomb_c(cli()) |c| {
        let o = c.c(&EXHAUST, &["--pids-limit", "16", "--time-limit", "0.5s", "--wall-time-limit", "5s"], &["forkbomb"]);
        verdict(&o, "time_limit", 124);
        assert!(o.elapsed < Duration::from_secs(4), "took {:?}", o.elapsed);
        host_responsive();
    }
}

case! {
    /// Shell fork bomb `b(){ b|b& }; b` → held at 16 pids; the shell dies of "Cannot fork" or the wall limit: runtime_error/123 within 4 s.
    fn fork_bomb_shell(cli()) |c| {
        let o = c.exec(
            &["--pids-limit", "16", "--wall-time-limit", "1s"],
            &["/bin/sh", "-c", "b() { b | b & }; b; wait; sleep 30", &c.tag()],
        );
        match o.status() {
            "runtime_error" => assert!(o.prog_stderr().contains("Cannot fork"), "{}", o.j()),
            "wall_time_limit" => assert_eq!(o.code, 123),
            s => panic!("fork bomb got {s}: {}", o.j()),
        }
        if let Some(p) = o.j()["usage"]["pids_peak"].as_u64() {
            assert!(p <= 16, "pids_peak {p}");
        }
        assert!(o.elapsed < Duration::from_secs(4), "took {:?}", o.elapsed);
        host_responsive();
    }
}

case! {
    /// Python fork loop counting its successes → fork fails with EAGAIN before 16 processes: ok, count < 16.
    fn fork_bomb_python(cli()) |c| {
        let py = include_str!("hostile/fork_bomb.py");
        let o = c.exec(&["--pids-limit", "16"], &["/usr/bin/python3", "-c", py, &c.tag()]);
        verdict(&o, "ok", 0);
        let out = o.prog_stdout();
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{out}");
        let n: u32 = f[1].parse().expect("count");
        assert!(n < 16, "{n} forks under a pids limit of 16");
        assert_eq!(f[2], "11", "errno EAGAIN expected: {out}");
    }
}

case! {
    /// Thread bomb (pthread_create until it fails) → EAGAIN before the pids limit of 16: ok, at most 15 threads.
    fn thread_bomb(cli()) |c| {
        let o = c.c(&EXHAUST, &["--pids-limit", "16"], &["threadbomb"]);
        verdict(&o, "ok", 0);
        let out = o.prog_stdout();
        let n: u32 = out.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("count");
        assert!(n < 16 && out.contains("EAGAIN"), "{out}");
    }
}

case! {
    /// 256 MiB malloc'ed and touched under a 32M limit → memory_limit (122), peak at the limit.
    fn touched_memory_over_limit(cli()) |c| {
        let o = c.c(&EXHAUST, &["--memory-limit", "32M"], &["touch", "256"]);
        verdict(&o, "memory_limit", 122);
        assert!(o.usage("memory_peak_bytes") <= (33 << 20) as f64, "{}", o.j());
    }
}

case! {
    /// 4 GiB of address space reserved but untouched under a 32M limit → not charged: ok, peak under 8 MiB.
    fn untouched_memory_is_free(cli()) |c| {
        let o = c.c(&EXHAUST, &["--memory-limit", "32M"], &["reserve", "4096"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["reserved 4096 MiB"]);
        assert!(o.usage("memory_peak_bytes") < (8 << 20) as f64, "{}", o.j());
    }
}

case! {
    /// 8 children each touching 12 MiB (each under the limit, 96 MiB together) with 64M → the limit is on the sum: memory_limit.
    fn many_children_each_under_limit(cli()) |c| {
        let o = c.c(&EXHAUST, &["--memory-limit", "64M", "--wall-time-limit", "5s"], &["children", "8", "12"]);
        verdict(&o, "memory_limit", 122);
        // The same children, fewer of them, fit: the verdict is not a fluke.
        let o = c.c(&EXHAUST, &["--memory-limit", "64M", "--wall-time-limit", "5s"], &["children", "3", "12"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["children touched 3"]);
    }
}

case! {
    /// Unbounded recursion (1 KiB frames) with the default 256M stack → SIGSEGV at the stack limit: runtime_error (139).
    fn deep_recursion_hits_stack_limit(cli()) |c| {
        let o = c.c(&EXHAUST, &[], &["recurse"]);
        verdict(&o, "runtime_error", 139);
        assert_eq!(signal(&o), "SIGSEGV");
    }
}

case! {
    /// Unbounded recursion under a 32M memory limit → the stack is charged to the cgroup: memory_limit (122).
    fn deep_recursion_hits_memory_limit(cli()) |c| {
        let o = c.c(&EXHAUST, &["--memory-limit", "32M"], &["recurse"]);
        verdict(&o, "memory_limit", 122);
    }
}

case! {
    /// Three 40 MiB files into the 64M /tmp → ENOSPC inside, never more than 64 MiB, nothing on the host: ok.
    fn tmpfs_fill(cli()) |c| {
        let o = c.sh(
            &["--memory-limit", "256M"],
            "for i in 1 2 3; do head -c 40M /dev/zero > /tmp/f$i 2>/dev/null || echo full; done; \
             du -sk /tmp | cut -f1",
        );
        verdict(&o, "ok", 0);
        let l = lines(&o);
        assert_eq!(l[0], "full", "{}", o.j());
        let kb: u64 = l.last().and_then(|s| s.parse().ok()).expect("du");
        assert!(kb <= 64 * 1024, "/tmp holds {kb} KiB");
    }
}

case! {
    /// /dev/shm written until it fails → ENOSPC at its 16M size: ok, at most 16 MiB.
    fn dev_shm_fill(cli()) |c| {
        let o = c.sh(
            &[],
            "head -c 64M /dev/zero > /dev/shm/fill 2>/dev/null || echo full; stat -c %s /dev/shm/fill",
        );
        verdict(&o, "ok", 0);
        let l = lines(&o);
        assert_eq!(l[0], "full", "{}", o.j());
        let size: u64 = l[1].parse().expect("size");
        assert!(size <= 16 << 20, "/dev/shm file of {size} bytes");
    }
}

case! {
    /// Empty files created in /tmp until it fails (inode exhaustion) → inodes are charged memory: memory_limit (122).
    fn inode_exhaustion_tmp(cli()) |c| {
        let o = c.c(&EXHAUST, &["--memory-limit", "32M", "--time-limit", "5s"], &["inodes", "/tmp"]);
        verdict(&o, "memory_limit", 122);
    }
}

case! {
    /// Empty files in a job workspace until it fails → the workspace tmpfs runs out of inodes: workspace_limit.
    fn inode_exhaustion_workspace(http(&["--workspace-size", "4M"])) |c| {
        let j = c.srv().run(&json!({"steps": [
            sh_step("i=0; while true 2>/dev/null > f$i; do i=$((i+1)); done; echo $i"),
            {"command": ["/bin/true"]}
        ]}));
        assert_eq!(j["steps"][0]["status"], "workspace_limit", "{j}");
        assert_eq!(j["steps"][1]["status"], "skipped", "{j}");
        let n: u64 = j["steps"][0]["stdout"].as_str().unwrap_or("").trim().parse().expect("count");
        assert!((500..=2048).contains(&n), "{n} files in a 4M workspace");
    }
}

case! {
    /// open() until it fails → RLIMIT_NOFILE (256) stops it: ok, 253 fds then EMFILE.
    fn fd_flood(cli()) |c| {
        let o = c.c(&EXHAUST, &[], &["fdflood"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["fds 253 stopped by EMFILE"]);
    }
}

case! {
    /// 8 processes each filling as many pipes as fds allow → pipe buffers are charged: memory_limit (122).
    fn pipe_flood(cli()) |c| {
        // 24M: under the host's per-uid pipe quota (fs.pipe-user-pages-soft,
        // 64 MiB), which would otherwise shrink the pipes before the
        // memory limit is reached.
        let o = c.c(&EXHAUST, &["--memory-limit", "24M", "--pids-limit", "32"], &["pipeflood", "8"]);
        verdict(&o, "memory_limit", 122);
    }
}

case! {
    /// 16 processes filling unix socket buffers (SO_SNDBUF maxed) → socket memory is charged: memory_limit (122).
    fn socket_buffer_flood(cli()) |c| {
        let o = c.c(&EXHAUST, &["--memory-limit", "64M", "--pids-limit", "32"], &["sockflood", "16"]);
        verdict(&o, "memory_limit", 122);
    }
}

case! {
    /// inotify instances until failure → inotify_init1 is not in strict's allow-list: killed by SIGSYS (159).
    fn inotify_flood(cli()) |c| {
        let o = c.c(&EXHAUST, &[], &["inotify"]);
        verdict(&o, "runtime_error", 159);
        assert_eq!(signal(&o), "SIGSYS");
    }
}

case! {
    /// 6 runs each leaving a touched 16 MiB SysV segment, a semaphore set and a queued message → no host IPC object, host Shmem does not grow.
    fn sysv_left_behind_across_runs(cli()) |c| {
        let shmem0 = meminfo_kb("Shmem:");
        for _ in 0..6 {
            let o = c.c(&EXHAUST, &[], &["sysvleak", "16"]);
            verdict(&o, "ok", 0);
            assert!(o.prog_stdout().starts_with("leaked shm "), "{}", o.j());
            assert!(o.prog_stdout().contains("sent 0"), "{}", o.j());
        }
        // 6 leaked segments would be 96 MiB of Shmem; other host activity
        // moves it a little, so the bound is generous.
        let t = Instant::now();
        loop {
            let grown = meminfo_kb("Shmem:").saturating_sub(shmem0);
            if grown < 48 * 1024 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(3), "host Shmem grew by {grown} KiB");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

case! {
    /// 40 children crashing (SEGV, ABRT, BUS, ILL) → no core file anywhere: ok, "crashes 40 cores 0".
    fn crash_loop_leaves_no_core_files(cli()) |c| {
        let o = c.c(&EXHAUST, &[], &["crashloop", "40"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["crashes 40 cores 0"]);
    }
}

case! {
    /// Host core_pattern is a pipe; crashes, also after lowering RLIMIT_CORE to 0 → the root-run handler is never invoked.
    fn piped_core_pattern_never_invoked(cli()) |c| {
        let pipe = CorePipe::install();
        let o = c.c(&EXHAUST, &[], &["crashloop", "8"]);
        verdict(&o, "ok", 0);
        let o = c.c(&EXHAUST, &[], &["corecrash"]);
        verdict(&o, "runtime_error", 139);
        assert_lines(&o, &["setrlimit(RLIMIT_CORE, 0): Operation not permitted"]);
        // The handler would have run synchronously with the crash; give a
        // slow one a moment anyway.
        std::thread::sleep(Duration::from_millis(100));
        let inv = pipe.invocations();
        assert!(!inv.contains("exhaust"), "host core handler ran for the sandboxed program: {inv}");
    }
}

// =================================================== per-user kernel counters

case! {
    /// A run queues a blocked real-time signal until refused and holds them → stopped at its own 1024 (limits.pending_signals), charged to the run's own uid: host root's `timeout` (timer_create) and a concurrent run's epoll_ctl, timer_create and sigqueue still work.
    fn pending_signals_spare_host_root_and_other_runs(cli()) |c| {
        let mut a = Bg::start(c, &["--ro-bind", &EXHAUST.bind()], &[&EXHAUST.sb(), "sigqueue", "4"]);
        assert_eq!(a.line(), "queued 1024 stopped by EAGAIN\n", "run A's queue is bounded by its own limit");
        assert_eq!(a.line(), "holding\n");
        host_root_per_user_ok("while a run held its signals");
        let b = c.c(&EXHAUST, &[], &["peruser"]);
        verdict(&b, "ok", 0);
        assert_lines(&b, &["epoll_ctl: ok", "timer_create: ok", "sigqueue: ok"]);
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// The per-user rlimits inside, then 16 MiB locked with mlock and SHM_LOCK → each soft = hard at strict's values (1024 signals, 800K of message queues, 8M locked, pids + 1 processes); both locks refused with ENOMEM.
    fn per_user_rlimits_are_set(cli()) |c| {
        let o = c.c(&EXHAUST, &[], &["peruserlimits"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &[
            "sigpending 1024/1024",
            "msgqueue 819200/819200",
            "memlock 8388608/8388608",
            "nproc 65/65",
            "mlock 16M: ENOMEM",
            "SHM_LOCK 16M: ENOMEM",
        ]);
    }
}

case! {
    /// The same flood under a profile raising limits.pending_signals past the host's own limit → the run stops where its user namespace's owner (the job's uid, not root) is full: host root's `timeout` still works.
    fn pending_signals_charged_to_the_jobs_uid_not_root(cli()) |c| {
        let prof = c.profile("extends = \"strict\"\n[limits]\npending_signals = 10000000\n");
        let mut a = Bg::start(c, &["--profile", &prof, "--ro-bind", &EXHAUST.bind()], &[&EXHAUST.sb(), "sigqueue", "4"]);
        let first = a.line();
        assert!(first.starts_with("queued ") && first.ends_with("stopped by EAGAIN\n"), "{first}");
        assert_eq!(a.line(), "holding\n");
        host_root_per_user_ok(&format!("while a run held {}", first.trim_end()));
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// With fs.epoll.max_user_watches lowered, run A adds epoll watches until refused and holds them → run B, concurrently, still adds its own (each job is a host uid of its own).
    fn epoll_watches_not_shared_between_runs(cli()) |c| {
        let _low = EpollWatchLimit::lower();
        let mut a = Bg::start(c, &["--ro-bind", &EXHAUST.bind()], &[&EXHAUST.sb(), "epoll", "4"]);
        let first = a.line();
        assert!(first.ends_with("stopped by ENOSPC\n"), "run A did not reach the limit: {first}");
        assert_eq!(a.line(), "holding\n");
        let b = c.c(&EXHAUST, &[], &["peruser"]);
        verdict(&b, "ok", 0);
        assert_lines(&b, &["epoll_ctl: ok", "timer_create: ok", "sigqueue: ok"]);
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// Run A fills pipes up to the per-user pipe quota; run B, concurrently, gets a full-size pipe → 65536 (each job is a host uid of its own).
    fn pipe_quota_not_shared_between_runs(cli()) |c| {
        let bind = EXHAUST.bind();
        let mut a = Bg::start(c, &["--ro-bind", &bind, "--memory-limit", "512M", "--pids-limit", "32"], &["/t/exhaust", "pipeflood", "16"]);
        assert!(a.line().starts_with("pipes filled"), "run A did not fill its pipes");
        let o = c.exec(&[], &["/usr/bin/python3", "-c", "import fcntl, os; r, w = os.pipe(); print(fcntl.fcntl(w, 1032))"]);
        verdict(&o, "ok", 0);
        assert_eq!(o.prog_stdout(), "65536\n", "run B's pipe capacity depends on run A");
        a.finish();
    }
}

case! {
    /// Run A keeps 400 fds in flight over SCM_RIGHTS; run B, concurrently, passes 3 fds → sent (the in-flight count is per host uid, and each job has its own).
    fn unix_fd_passing_quota_not_shared_between_runs(cli()) |c| {
        let mut a = Bg::start(c, &[], &["/usr/bin/python3", "-c", include_str!("hostile/scm_hold.py")]);
        assert_eq!(a.line(), "holding\n");
        let o = c.exec(&[], &["/usr/bin/python3", "-c", include_str!("hostile/scm_send.py")]);
        verdict(&o, "ok", 0);
        assert_eq!(o.prog_stdout(), "sent\n", "run B's fd passing depends on run A");
        a.finish();
    }
}

/// The pid of the host process running `/bin/sh -c SCRIPT` (not the
/// `sandbox` process whose own arguments carry the same script).
fn shell_running(script: &str) -> Option<u32> {
    let want = format!("/bin/sh\0-c\0{script}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (cmd == want.as_bytes()).then_some(pid)
    })
}

case! {
    /// A profile with one fixed host uid (65534, shared with the host's nobody) runs a program holding a secret in its environment; a host process of uid 65534 reads its /proc environ and enters its user namespace → EACCES and refused (the namespace stays root's).
    fn fixed_host_uid_is_not_the_namespace_owner(cli()) |c| {
        let prof = c.profile("extends = \"strict\"\n[process]\nhost_uid = 65534\nhost_gid = 65534\n");
        let script = format!("echo started; sleep 2; : fixed-{}", c.tag());
        let mut a = Bg::start(c, &["--profile", &prof, "--env", "SECRET=run-secret"], &["/bin/sh", "-c", &script]);
        assert_eq!(a.line(), "started\n");
        let pid = shell_running(&script).expect("the run's shell on the host");
        let as_nobody = |script: &str| {
            Command::new("/bin/sh")
                .args(["-c", script])
                .uid(65534)
                .gid(65534)
                .output()
                .expect("run as nobody")
        };
        let env = as_nobody(&format!("cat /proc/{pid}/environ"));
        assert!(!env.status.success(), "nobody read the run's environment: {}", String::from_utf8_lossy(&env.stdout));
        assert!(!String::from_utf8_lossy(&env.stdout).contains("run-secret"));
        let enter = as_nobody(&format!("nsenter -U -t {pid} true"));
        assert!(!enter.status.success(), "nobody entered the run's user namespace");
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// A job of a profile without a pid namespace leaves a daemon behind (its supervisor SIGKILLed); the next job given the same uid (a range of one) → the leftover is killed before that job starts.
    fn leftover_of_a_crashed_job_is_cleared_before_reuse(cli()) |c| {
        let uid = 0x7100_a000 + 2 * c.copy as u32 + if c.parallel { 1 } else { 0 };
        let prof = c.profile(&format!(
            "extends = \"strict\"\n[namespaces]\npid = false\nmount = false\n[filesystem]\nsystem_dirs = []\ntmpfs = []\n\
             [process]\nhost_uid = {{ first = {uid}, count = 1, wait = \"20s\" }}\n"
        ));
        let daemon = format!("sleep 60; : leftover-{}", c.tag());
        let mut a = Bg::start(c, &["--profile", &prof], &["/bin/sh", "-c", &format!("setsid /bin/sh -c '{daemon}' </dev/null >/dev/null 2>&1 & echo started; sleep 60")]);
        assert_eq!(a.line(), "started\n");
        let t0 = Instant::now();
        let left = loop {
            if let Some(p) = shell_running(&daemon) {
                break p;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "the daemon never started");
            std::thread::sleep(Duration::from_millis(20));
        };
        // SAFETY: signalling the sandbox process we started.
        unsafe { libc::kill(a.child.id() as i32, libc::SIGKILL) };
        let _ = a.child.wait();
        assert!(std::path::Path::new(&format!("/proc/{left}")).exists(), "the daemon died with its job");
        let b = c.exec(&["--profile", &prof], &["/bin/sh", "-c", "awk '{print $2}' /proc/self/uid_map"]);
        verdict(&b, "ok", 0);
        assert_eq!(b.prog_stdout().trim(), uid.to_string(), "job B got another uid");
        let t0 = Instant::now();
        while std::path::Path::new(&format!("/proc/{left}/cmdline")).exists()
            && std::fs::read(format!("/proc/{left}/cmdline")).is_ok_and(|c| !c.is_empty())
        {
            assert!(t0.elapsed() < Duration::from_secs(2), "job A's daemon lives on beside job B");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

case! {
    /// /proc/1/cmdline, /proc/1/environ, /proc/cmdline and /proc/sys/kernel/random/boot_id read inside → "sandbox-init" (no host path given on the command line), unreadable, empty, a boot id of the run's own.
    fn host_identity_hidden_in_proc(cli()) |c| {
        let marker = format!("/hostile-marker-{}", std::process::id());
        let o = c.sh(
            &["--ro-bind", &format!("/etc:{marker}")],
            "tr '\\0' ' ' </proc/1/cmdline; echo; cat /proc/1/environ >/dev/null 2>&1 && echo environ-readable; \
             od -An -c /proc/cmdline; cat /proc/sys/kernel/random/boot_id",
        );
        verdict(&o, "ok", 0);
        let out = o.prog_stdout();
        let l: Vec<&str> = out.lines().collect();
        assert_eq!(l.len(), 3, "{}", o.j());
        assert_eq!(l[0].trim_end(), "sandbox-init", "init's command line: {}", o.j());
        assert!(!out.contains(&marker), "host command line visible: {}", o.j());
        assert_eq!(l[1].trim(), "\\n", "/proc/cmdline inside: {}", o.j());
        let host = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("host boot_id");
        assert_ne!(l[2], host.trim(), "the host's boot id is visible");
        assert_eq!(l[2].len(), 36, "a boot id: {}", l[2]);
        let again = c.sh(&[], "cat /proc/sys/kernel/random/boot_id");
        assert_ne!(again.prog_stdout().trim(), l[2], "two runs share a boot id");
    }
}

// =================================================== time

case! {
    /// Two threads burning CPU under a 0.5 s limit → CPU of all threads is summed: time_limit (124), 500–1000 ms used.
    fn cpu_in_threads(cli()) |c| {
        let o = c.c(&TIMING, &["--time-limit", "0.5s", "--wall-time-limit", "5s"], &["threads", "2"]);
        verdict(&o, "time_limit", 124);
        let cpu = o.usage("cpu_ms");
        assert!((500.0..1000.0).contains(&cpu), "cpu_ms {cpu}: {}", o.j());
    }
}

case! {
    /// Two children burning CPU that nobody waits for while the parent sleeps → counted anyway: time_limit (124).
    fn cpu_in_unwaited_children(cli()) |c| {
        let o = c.c(&TIMING, &["--time-limit", "0.5s", "--wall-time-limit", "5s"], &["orphans", "2"]);
        verdict(&o, "time_limit", 124);
        assert!(o.elapsed < Duration::from_secs(4), "took {:?}", o.elapsed);
        assert!(o.usage("cpu_ms") >= 500.0, "{}", o.j());
    }
}

case! {
    /// CPU burnt in the kernel (read() of /dev/zero into 1 MiB) → system time counts: time_limit (124), mostly sys.
    fn cpu_in_system_time(cli()) |c| {
        let o = c.c(&TIMING, &["--time-limit", "0.5s", "--wall-time-limit", "5s"], &["systime"]);
        verdict(&o, "time_limit", 124);
        assert!(o.usage("sys_ms") > 0.5 * o.usage("cpu_ms"), "{}", o.j());
    }
}

case! {
    /// `sleep 30` under a 0.5 s wall limit → wall_time_limit (123) well before 3 s.
    fn sleep_vs_wall_limit(cli()) |c| {
        let o = c.exec(&["--wall-time-limit", "0.5s"], &["/usr/bin/sleep", "30"]);
        verdict(&o, "wall_time_limit", 123);
        assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);
    }
}

case! {
    /// pause() forever → wall_time_limit (123), ~0 CPU.
    fn pause_vs_wall_limit(cli()) |c| {
        let o = c.c(&TIMING, &["--wall-time-limit", "0.5s"], &["pause"]);
        verdict(&o, "wall_time_limit", 123);
        assert!(o.usage("cpu_ms") < 100.0, "{}", o.j());
    }
}

case! {
    /// Python select() on nothing, forever → wall_time_limit (123).
    fn select_vs_wall_limit(cli()) |c| {
        let o = c.exec(
            &["--wall-time-limit", "1s"],
            &["/usr/bin/python3", "-c", "import select; select.select([], [], [])"],
        );
        verdict(&o, "wall_time_limit", 123);
    }
}

case! {
    /// The program SIGSTOPs itself → a stopped process is still killed: wall_time_limit (123).
    fn sigstop_self_vs_wall_limit(cli()) |c| {
        let o = c.sh(&["--wall-time-limit", "0.5s"], "kill -STOP $$; echo resumed");
        verdict(&o, "wall_time_limit", 123);
        assert_eq!(o.prog_stdout(), "", "{}", o.j());
    }
}

case! {
    /// Every catchable signal ignored, then sleep → the limit uses SIGKILL: wall_time_limit (123).
    fn signals_ignored_vs_wall_limit(cli()) |c| {
        let o = c.c(&TIMING, &["--wall-time-limit", "0.5s"], &["ignore_signals_sleep"]);
        verdict(&o, "wall_time_limit", 123);
    }
}

case! {
    /// `cat` blocked on the caller's stdin pipe that is never written nor closed → wall_time_limit (123), sandbox returns.
    fn blocked_stdin_vs_wall_limit(cli()) |c| {
        let mut cmd = c.cmd(&["exec", "--json", "--wall-time-limit", "0.5s", "--", "/usr/bin/cat"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        c.track(child.id());
        let stdin = child.stdin.take(); // held open, never written
        let t0 = Instant::now();
        let out = child.wait_with_output().expect("wait");
        drop(stdin);
        assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
        assert_eq!(out.status.code(), Some(123));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["status"], "wall_time_limit", "{v}");
    }
}

case! {
    /// Spin until 503 ms of CPU then exit 0, between two 10 ms samples of a 500 ms limit → still time_limit (124).
    fn exit_just_past_cpu_limit(cli()) |c| {
        let o = c.c(&TIMING, &["--time-limit", "0.5s", "--wall-time-limit", "5s"], &["exit_after", "503"]);
        verdict(&o, "time_limit", 124);
    }
}

case! {
    /// Spin until 350 ms of CPU then exit 0 under a 500 ms limit → no false positive: ok.
    fn exit_under_cpu_limit(cli()) |c| {
        let o = c.c(&TIMING, &["--time-limit", "0.5s", "--wall-time-limit", "5s"], &["exit_after", "350"]);
        verdict(&o, "ok", 0);
    }
}

case! {
    /// raise(SIGXCPU) at once → a self-inflicted signal is not a verdict: runtime_error, SIGXCPU (152).
    fn self_raised_sigxcpu(cli()) |c| {
        let o = c.c(&TIMING, &["--time-limit", "1s"], &["raise", "24"]);
        verdict(&o, "runtime_error", 152);
        assert_eq!(signal(&o), "SIGXCPU");
    }
}

case! {
    /// raise(SIGXFSZ) at once → runtime_error, SIGXFSZ (153), not output/file limit.
    fn self_raised_sigxfsz(cli()) |c| {
        let o = c.c(&TIMING, &["--output-limit", "1M"], &["raise", "25"]);
        verdict(&o, "runtime_error", 153);
        assert_eq!(signal(&o), "SIGXFSZ");
    }
}

case! {
    /// raise(SIGKILL) at once → not mistaken for an OOM or limit kill: runtime_error, SIGKILL (137).
    fn self_raised_sigkill(cli()) |c| {
        let o = c.c(&TIMING, &["--memory-limit", "32M", "--time-limit", "1s"], &["raise", "9"]);
        verdict(&o, "runtime_error", 137);
        assert_eq!(signal(&o), "SIGKILL");
    }
}

case! {
    /// The program lowers its own RLIMIT_CPU to 1 s under a 5 s limit → the kernel's SIGXCPU is not time_limit: runtime_error (152).
    fn own_rlimit_cpu_is_not_time_limit(cli()) |c| {
        let o = c.c(&TIMING, &["--time-limit", "5s"], &["own_rlimit_cpu"]);
        verdict(&o, "runtime_error", 152);
        let cpu = o.usage("cpu_ms");
        // RLIMIT_CPU is checked against the kernel's tick-sampled process
        // time, which can run ahead of the exact cgroup figure under load.
        assert!((500.0..2500.0).contains(&cpu), "cpu_ms {cpu}");
    }
}

case! {
    /// settimeofday, clock_settime (+1 h), adjtimex, clock_adjtime → EPERM each; the host clock does not move.
    fn clock_changes_refused(cli()) |c| {
        let skew = || {
            let real = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs_f64();
            real - common::monotonic_ns() as f64 / 1e9
        };
        let before = skew();
        kernel_expect(c, &[], &[
            ("settimeofday", "errno EPERM"),
            ("clock_settime", "errno EPERM"),
            ("adjtimex", "errno EPERM"),
            ("clock_adjtime", "errno EPERM"),
        ]);
        assert!((skew() - before).abs() < 0.5, "host clock moved");
    }
}

// =================================================== I/O

case! {
    /// `yes` on stdout with a 1M output limit → output_limit (121), exactly 1 MiB kept, truncated.
    fn stdout_flood(cli()) |c| {
        let o = c.exec(&["--output-limit", "1M"], &["/usr/bin/yes"]);
        verdict(&o, "output_limit", 121);
        let out = json_body_bytes(o.j(), "stdout");
        assert_eq!(out.len(), 1 << 20);
        assert!(out.chunks(2).all(|c| c == b"y\n"));
        assert_eq!(o.j()["stdout_truncated"], true);
        assert_eq!(o.j()["stderr_truncated"], false);
    }
}

case! {
    /// `yes` on stderr with a 1M output limit → output_limit (121) on stderr, stdout untouched.
    fn stderr_flood(cli()) |c| {
        let o = c.sh(&["--output-limit", "1M"], "echo start; yes >&2");
        verdict(&o, "output_limit", 121);
        assert_eq!(json_body_bytes(o.j(), "stderr").len(), 1 << 20);
        assert_eq!(o.j()["stderr_truncated"], true);
        assert_eq!(o.prog_stdout(), "start\n");
        assert_eq!(o.j()["stdout_truncated"], false);
    }
}

case! {
    /// `yes` passed through to the caller (no --json) with a 1M limit → exit 121 after exactly 1 MiB on stdout.
    fn stdout_flood_passthrough(cli()) |c| {
        let o = c.run(c.cmd(&["exec", "--output-limit", "1M", "--", "/usr/bin/yes"]));
        assert_eq!(o.code, 121, "{}", o.stderr);
        assert_eq!(o.stdout.len(), 1 << 20);
    }
}

case! {
    /// Every byte value (invalid UTF-8) on stdout and stderr → returned losslessly as base64.
    fn binary_output_roundtrip(cli()) |c| {
        let o = c.exec(&[], &["/usr/bin/python3", "-c",
            "import sys; b = bytes(range(256)) * 64; sys.stdout.buffer.write(b); sys.stderr.buffer.write(b[::-1])"]);
        verdict(&o, "ok", 0);
        let want: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
        assert_eq!(o.j()["stdout_encoding"], "base64");
        assert_eq!(o.j()["stderr_encoding"], "base64");
        assert_eq!(json_body_bytes(o.j(), "stdout"), want);
        let rev: Vec<u8> = want.iter().rev().copied().collect();
        assert_eq!(json_body_bytes(o.j(), "stderr"), rev);
    }
}

case! {
    /// Terminal escape sequences, NUL and CR in valid UTF-8 output → returned byte for byte inside the JSON string.
    fn escape_sequences_and_nul_roundtrip(cli()) |c| {
        let o = c.sh(&[], r"printf '\033]0;pwned\007\033[2J\000\r\nok\342\202\254'");
        verdict(&o, "ok", 0);
        assert_eq!(o.j()["stdout_encoding"], "utf8");
        assert_eq!(json_body_bytes(o.j(), "stdout"), b"\x1b]0;pwned\x07\x1b[2J\x00\r\nok\xe2\x82\xac");
    }
}

case! {
    /// A 64 MiB --stdin file the program never reads → ok at once, no stall.
    fn never_reads_large_stdin_file(cli()) |c| {
        let f = c.case.home.join(format!("stdin-{}", c.tag()));
        std::fs::write(&f, vec![b'x'; 64 << 20]).expect("stdin file");
        let o = c.exec(&["--stdin", f.to_str().expect("utf8")], &["/usr/bin/true"]);
        let _ = std::fs::remove_file(&f);
        verdict(&o, "ok", 0);
        assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);
    }
}

case! {
    /// The caller pipes 64 MiB into stdin, the program exits without reading → ok at once, the writer sees EPIPE.
    fn never_reads_large_stdin_pipe(cli()) |c| {
        let mut cmd = c.cmd(&["exec", "--json", "--", "/usr/bin/true"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        c.track(child.id());
        let mut w = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..64 {
                if w.write_all(&chunk).is_err() {
                    return false;
                }
            }
            true
        });
        let t0 = Instant::now();
        let out = child.wait_with_output().expect("wait");
        assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["status"], "ok", "{v}");
        assert!(!writer.join().expect("writer"), "all 64 MiB were consumed by someone");
    }
}

case! {
    /// One byte written at offset 100 MiB (sparse file past the 64M file-size limit) → killed by SIGXFSZ: runtime_error (153).
    fn sparse_file_past_file_size_limit(cli()) |c| {
        let o = c.c(&FS, &[], &["sparse", "/tmp/sparse", "100"]);
        verdict(&o, "runtime_error", 153);
        assert_eq!(signal(&o), "SIGXFSZ");
        assert_lines(&o, &["writing"]);
    }
}

case! {
    /// A file grown 64 KiB at a time (SIGXFSZ ignored) and a 1 GiB ftruncate → EFBIG at exactly 64 MiB: ok.
    fn growing_file_vs_file_size_limit(cli()) |c| {
        let o = c.c(&FS, &[], &["grow", "/tmp/grow"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["size 67108864 stopped by EFBIG"]);
        let o = c.c(&FS, &[], &["bigtrunc", "/tmp/big", "1024"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["ftruncate EFBIG"]);
    }
}

case! {
    /// A job step growing a file under a 1M file_size limit → EFBIG at exactly 1 MiB.
    fn growing_file_vs_job_file_size(http(&[])) |c| {
        let mut step = py_step(include_str!("hostile/grow_file.py"));
        step["limits"]["file_size"] = json!("1M");
        let j = c.srv().run(&json!({"steps": [step]}));
        assert_eq!(j["steps"][0]["status"], "ok", "{j}");
        assert_eq!(j["steps"][0]["stdout"], "1048576 27\n", "{j}");
    }
}

// =================================================== filesystem

case! {
    /// Outputs that are symlinks to /etc/shadow, to a host secret, and paths through a symlinked / → per-file errors, no host byte returned.
    fn copy_out_symlinks(http(&[])) |c| {
        let secret = format!("SECRET-{}", c.tag());
        let host = c.case.home.join(format!("secret-{}", c.tag()));
        std::fs::write(&host, &secret).expect("plant");
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let _planted = Planted(vec![host.clone()]);
        let hp = host.display().to_string();
        let script = format!(
            "ln -s /etc/shadow shadow; ln -s {hp} secret; ln -s / root; mkdir d; ln -s /etc d/etc; ln -s ../secret d/up"
        );
        let r = c.srv().post("/v1/jobs?wait=true", &json!({
            "steps": [sh_step(&script)],
            "outputs": ["shadow", "secret", format!("root{hp}"), "root/etc/passwd", "d/etc/passwd", "d/up"]
        }));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.text().contains(&secret), "host secret returned: {}", r.text());
        for f in ["/etc/passwd", "/etc/shadow"] {
            let first = std::fs::read_to_string(f).unwrap_or_default();
            let first = first.lines().next().unwrap_or("?");
            assert!(!r.text().contains(first), "host {f} returned: {}", r.text());
        }
        let j = r.json();
        for (k, v) in j["outputs"].as_object().expect("outputs") {
            assert!(v["error"].is_string() && v.get("content").is_none(), "{k}: {v}");
        }
        assert!(j["outputs"]["shadow"]["error"].as_str().unwrap_or("").contains("symbolic link"), "{j}");
    }
}

case! {
    /// An output that is a FIFO (nobody writes it) → per-file error naming the FIFO, the job returns at once.
    fn copy_out_fifo_does_not_hang(http(&[])) |c| {
        let t0 = Instant::now();
        let j = c.srv().run(&json!({"steps": [sh_step("mkfifo out; mkfifo out2")], "outputs": ["out", "out2"]}));
        assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
        assert!(j["outputs"]["out"]["error"].as_str().unwrap_or("").contains("FIFO"), "{j}");
        assert!(j["outputs"]["out2"]["error"].is_string(), "{j}");
    }
}

case! {
    /// Device node (mknod) and unix-socket outputs → mknod refused, the socket is a per-file error, never read.
    fn copy_out_device_and_socket(http(&[])) |c| {
        let j = c.srv().run(&json!({"steps": [sh_step(
            "mknod dev c 1 3 2>/dev/null && echo MKNOD-OK; \
             /usr/bin/python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('sock')\"; ls")],
            "outputs": ["dev", "sock"]}));
        assert_eq!(j["steps"][0]["status"], "ok", "{j}");
        assert_eq!(j["steps"][0]["stdout"], "sock\n", "{j}");
        assert_eq!(j["outputs"]["dev"]["error"], "no such file", "{j}");
        assert!(j["outputs"]["sock"]["error"].is_string(), "{j}");
        assert!(j["outputs"]["sock"].get("content").is_none(), "{j}");
    }
}

case! {
    /// Hard link to a host file (refused: another filesystem) and one 1.5 MiB file under 6 names → job output budget of 4M holds.
    fn copy_out_hard_links(http(&["--max-job-output", "4M"])) |c| {
        let j = c.srv().run(&json!({"steps": [sh_step(
            "ln /etc/passwd hl 2>/dev/null && echo LINKED; head -c 1572864 /dev/zero > big; \
             for i in 1 2 3 4 5 6; do ln big l$i; done")],
            "outputs": ["hl", "l1", "l2", "l3", "l4", "l5", "l6"]}));
        assert_eq!(j["steps"][0]["stdout"], "", "{j}");
        assert_eq!(j["outputs"]["hl"]["error"], "no such file", "{j}");
        let got: u64 = (1..=6)
            .filter_map(|i| j["outputs"][format!("l{i}")]["size"].as_u64())
            .sum();
        assert!(got > 0 && got <= 4 << 20, "{got} bytes returned under a 4 MiB budget");
    }
}

case! {
    /// A double-forked daemon keeps swapping the output between a file and a symlink to /etc/passwd → dies with the step; never a host byte.
    fn copy_out_swap_race_daemon(http(&[])) |c| {
        let script = "echo regular > out.txt; \
             (setsid sh -c 'while :; do ln -sf /etc/passwd t1; mv -f t1 out.txt; echo regular > t2; mv -f t2 out.txt; done' &); \
             sleep 0.1";
        let r = c.srv().post("/v1/jobs?wait=true", &json!({"steps": [sh_step(script)], "outputs": ["out.txt"]}));
        assert_eq!(r.status, 200, "{}", r.text());
        let first = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        assert!(!r.text().contains(first.lines().next().unwrap_or("?")), "host file returned: {}", r.text());
        let o = &r.json()["outputs"]["out.txt"];
        assert!(o["content"] == "regular\n" || o["error"].is_string(), "{o}");
    }
}

case! {
    /// A 60 MiB sparse output file → refused as larger than the 8 MiB copy-out cap, the server does not read it.
    fn copy_out_huge_sparse_file(http(&[])) |c| {
        let j = c.srv().run(&json!({"steps": [sh_step("truncate -s 60M big")], "outputs": ["big"]}));
        assert_eq!(j["steps"][0]["status"], "ok", "{j}");
        assert!(j["outputs"]["big"]["error"].as_str().unwrap_or("").contains("cap"), "{j}");
    }
}

case! {
    /// Classic chroot escape (chroot into a subdir, fchdir out, climb "..", chroot ".") → chroot EPERM, "/" stays the sandbox's.
    fn chroot_escape(cli()) |c| {
        let o = c.c(&FS, &[], &["chroot_escape"]);
        verdict(&o, "ok", 0);
        let l = lines(&o);
        assert_eq!(l[..2], ["chroot EPERM", "chroot-dot EPERM"], "{}", o.j());
        let root: Vec<&str> = l[2].trim_start_matches("root:").split_whitespace().collect();
        for bad in ["home", "root", "var", "srv", "opt", "run", "boot", "sys", "work", "oldroot", "newroot"] {
            assert!(!root.contains(&bad), "/{bad} visible: {root:?}");
        }
    }
}

case! {
    /// World-readable secrets in /root, /home, /var/tmp, /srv, /opt, /run, host /tmp, the caller's cwd and env → none visible.
    fn host_secrets_invisible(cli()) |c| {
        let tag = c.tag();
        let secret = format!("SECRET-{tag}");
        let mut planted = Planted(vec![]);
        let mut paths = vec![];
        for d in ["/root", "/home", "/var/tmp", "/srv", "/opt", "/run", "/tmp"] {
            std::fs::create_dir_all(d).expect("dir");
            let p = Path::new(d).join(&tag);
            std::fs::write(&p, &secret).expect("plant");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            planted.0.push(p.clone());
            paths.push(p.display().to_string());
        }
        let cwd = c.case.home.join(format!("cwd-{tag}"));
        std::fs::create_dir_all(&cwd).expect("cwd");
        std::fs::write(cwd.join("secret"), &secret).expect("plant");
        planted.0.push(cwd.join("secret"));
        let mut script = String::new();
        for p in &paths {
            script.push_str(&format!("cat {p} 2>/dev/null; ls {p} 2>/dev/null; "));
        }
        script.push_str(&format!(
            "cat {0}/secret 2>/dev/null; ls {0} 2>/dev/null; cat secret 2>/dev/null; env; \
             find / -maxdepth 3 -name '{tag}' -not -path '/proc/*' 2>/dev/null; \
             grep -rsl '{secret}' /etc /tmp /dev/shm 2>/dev/null; echo done",
            cwd.display()
        ));
        let mut cmd = c.cmd(&["exec", "--json", "--", "/bin/sh", "-c", &script]);
        cmd.current_dir(&cwd).env(format!("HOSTILE_{}", tag.replace('-', "_")), &secret);
        let o = c.run(cmd);
        let _ = std::fs::remove_dir_all(&cwd);
        drop(planted);
        verdict(&o, "ok", 0);
        let out = o.prog_stdout();
        assert!(out.ends_with("done\n"), "{}", o.j());
        assert!(!out.contains(&secret), "a host secret leaked: {out}");
        assert!(!out.contains(&tag), "a host path was visible: {out}");
    }
}

case! {
    /// While job A holds a secret in its workspace, job B searches /, /proc, /tmp and A's host workspace path → finds nothing.
    fn other_jobs_secrets_invisible(http(&["--workers", "4"])) |c| {
        let (s1, s2) = ("SECRET-", c.tag());
        let secret = format!("{s1}{s2}");
        let a = c.srv().post("/v1/jobs", &json!({"steps": [sh_step(&format!(
            "echo {secret} > secret; echo {secret} > /tmp/s; echo {secret} > /dev/shm/s; sleep 1.5"))]}));
        assert_eq!(a.status, 202, "{}", a.text());
        let id = a.json()["id"].as_str().expect("id").to_string();
        let t0 = Instant::now();
        while c.srv().get(&format!("/v1/jobs/{id}")).json()["status"] != "running" {
            assert!(t0.elapsed() < Duration::from_secs(10), "job A never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        // The workspace is in the server's instance directory.
        let instance = std::fs::read_dir(&c.srv().work_dir)
            .expect("work dir")
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("instance-"))
            .expect("an instance directory")
            .path();
        let ws = instance.join(&id);
        assert!(ws.is_dir(), "job A's workspace at {}", ws.display());
        let probe = format!(
            "cat {ws}/secret 2>/dev/null; ls {ws} 2>/dev/null; ls /box /tmp /dev/shm; \
             cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr '\\0' ' '; \
             find / -maxdepth 4 -name secret -not -path '/proc/*' 2>/dev/null; \
             p1={s1}; p2={s2}; grep -rs \"$p1$p2\" /tmp /dev/shm /box 2>/dev/null; echo done",
            ws = ws.display()
        );
        let b = c.srv().run(&json!({"steps": [sh_step(&probe)]}));
        let out = b["steps"][0]["stdout"].as_str().unwrap_or("").to_string();
        assert!(out.ends_with("done\n"), "{b}");
        assert!(!out.contains(&secret), "job B saw job A's secret: {out}");
        let ja = c.srv().wait_job(&id, Duration::from_secs(20));
        assert_eq!(ja["steps"][0]["status"], "ok", "{ja}");
    }
}

case! {
    /// A host mount made under a bound, shared directory during a run → not propagated into the sandbox; the run's mounts never reach the host.
    fn mount_propagation(cli()) |c| {
        let d = c.case.home.join(format!("prop-{}", c.tag()));
        std::fs::create_dir_all(d.join("m")).expect("dirs");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Make the bound directory a shared mount (as on a systemd host),
        // so a sandbox that forgot to make its mounts private would see
        // the host's later mounts below it.
        use nix::mount::{MntFlags, MsFlags, mount, umount2};
        mount(Some(&d), &d, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        mount(None::<&str>, &d, None::<&str>, MsFlags::MS_SHARED, None::<&str>).expect("make-shared");
        let bind = format!("{}:/t", d.display());
        let script = "echo ready; i=0; while [ $i -lt 40 ]; do [ -e /t/m/flag ] && { echo propagated; exit 0; }; \
                      sleep 0.05; i=$((i+1)); done; echo private";
        let mi_before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mut bg = Bg::start(c, &["--ro-bind", &bind], &["/bin/sh", "-c", script]);
        assert_eq!(bg.line(), "ready\n");
        let m = d.join("m");
        mount(Some("tmpfs"), &m, Some("tmpfs"), MsFlags::empty(), Some("size=1M")).expect("host tmpfs mount");
        std::fs::write(m.join("flag"), "x").expect("flag");
        let mi_during = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let (code, rest) = bg.finish();
        umount2(&m, MntFlags::MNT_DETACH).expect("umount");
        umount2(&d, MntFlags::MNT_DETACH).expect("umount");
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!((code, rest.as_str()), (0, "private\n"), "host mount propagated into the sandbox");
        let leaked: Vec<&str> = mi_during
            .lines()
            .filter(|l| !mi_before.contains(l) && !l.contains("/prop-") && sandbox_like_mount(l))
            .collect();
        assert!(leaked.is_empty(), "sandbox mounts visible on the host during the run: {leaked:?}");
    }
}

/// Host mounts made by a case; detached on drop (also when it fails).
struct Mounted(Vec<std::path::PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

case! {
    /// Nested binds (D:/t, then E:/t/sub) with D a shared host mount → every mount inside is private; nothing appears on the host.
    fn nested_binds_stay_inside(cli()) |c| {
        use nix::mount::{MsFlags, mount};
        let d = c.case.home.join(format!("nest-{}", c.tag()));
        let (outer, inner) = (d.join("outer"), d.join("inner"));
        std::fs::create_dir_all(outer.join("sub")).expect("dirs");
        std::fs::create_dir_all(&inner).expect("dirs");
        std::fs::write(inner.join("marker"), "inner\n").expect("marker");
        for p in [&d, &outer, &outer.join("sub"), &inner] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::set_permissions(inner.join("marker"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut guard = Mounted(vec![]);
        mount(Some(&outer), &outer, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        guard.0.push(outer.clone());
        mount(None::<&str>, &outer, None::<&str>, MsFlags::MS_SHARED, None::<&str>).expect("make-shared");
        // A leaked copy of the inner bind would land here: detach it too.
        guard.0.push(outer.join("sub"));
        let before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let (b1, b2) = (format!("{}:/t", outer.display()), format!("{}:/t/sub", inner.display()));
        let o = c.exec(&["--ro-bind", &b1, "--ro-bind", &b2],
            &["/bin/sh", "-c", "cat /t/sub/marker; grep -c shared: /proc/self/mountinfo; true"]);
        let after = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let below = format!("{}/", outer.display());
        let leaked: Vec<&str> = after.lines().filter(|l| !before.contains(l) && l.contains(&below)).collect();
        verdict(&o, "ok", 0);
        assert_eq!(o.prog_stdout(), "inner\n0\n", "shared mounts inside the sandbox: {}", o.j());
        assert!(leaked.is_empty(), "a bind of the run appeared on the host: {leaked:?}");
        drop(guard);
        let _ = std::fs::remove_dir_all(&d);
    }
}

case! {
    /// Writes to /proc/sys knobs (core_pattern, hostname, drop_caches, ...), /proc/sysrq-trigger, oom_score_adj, /sys → all fail; host values unchanged.
    fn proc_sys_and_sys_writes_refused(cli()) |c| {
        let knobs = ["/proc/sys/kernel/hostname", "/proc/sys/kernel/shm_rmid_forced", "/proc/sys/fs/file-max"];
        let before: Vec<String> = knobs.iter().map(|k| std::fs::read_to_string(k).unwrap_or_default()).collect();
        let o = c.c(&FS, &[], &["procsys"]);
        verdict(&o, "ok", 0);
        let l = lines(&o);
        assert_eq!(l.len(), 13, "{}", o.j());
        for line in &l {
            assert!(!line.ends_with(" ok"), "write succeeded: {line}");
        }
        let after: Vec<String> = knobs.iter().map(|k| std::fs::read_to_string(k).unwrap_or_default()).collect();
        assert_eq!(before, after);
    }
}

case! {
    /// /sys and cgroupfs: absent, cgroup namespace hides host paths, no cgroup mount inside → nothing to write to.
    fn sys_and_cgroupfs_unreachable(cli()) |c| {
        let o = c.sh(&[], "ls /sys 2>/dev/null && echo SYS-VISIBLE; cat /proc/self/cgroup; \
                          grep -c cgroup /proc/self/mountinfo; echo 0 > /sys/fs/cgroup/cgroup.procs 2>/dev/null && echo WROTE; true");
        verdict(&o, "ok", 0);
        let l = lines(&o);
        assert!(!o.prog_stdout().contains("SYS-VISIBLE") && !o.prog_stdout().contains("WROTE"), "{}", o.j());
        assert_eq!(l.last().map(String::as_str), Some("0"), "cgroup mounts inside: {}", o.j());
        for cg in &l[..l.len() - 1] {
            assert!(cg.ends_with(":/"), "host cgroup path revealed: {cg}");
        }
    }
}

case! {
    /// mknod of block/char devices and open of host device nodes (/dev/mem, /dev/kmsg, disks, tty, kvm, ...) → EPERM/ENOENT; /dev minimal.
    fn host_device_nodes(cli()) |c| {
        let o = c.c(&FS, &[], &["devices"]);
        verdict(&o, "ok", 0);
        let l = lines(&o);
        assert_eq!(l[..3], ["mknod-block EPERM", "mknod-mem EPERM", "mknod-fifo ok"], "{}", o.j());
        for line in &l[3..] {
            assert!(line.ends_with(" ENOENT"), "host device reachable: {line}");
        }
        let o = c.sh(&[], "ls /dev | tr '\\n' ' '");
        assert_eq!(o.prog_stdout(), "fd full null ptmx pts random shm stderr stdin stdout urandom zero ", "{}", o.j());
    }
}

case! {
    /// Open /proc/self/exe and /proc/1/exe (the sandbox binary) for writing, rewrite /usr/bin/env → EACCES each; host binaries unchanged.
    fn proc_exe_overwrite(cli()) |c| {
        let o = c.c(&FS, &[], &["procexe"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &[
            "self-exe EACCES",
            "init-exe-write EACCES",
            "init-exe-read EACCES",
            "init-exe-readlink EACCES",
            "usr-bin-env-write EACCES",
        ]);
    }
}

// =================================================== privilege and kernel surface

case! {
    /// Capability sets of the program and of a child it execs → all five empty, no_new_privs, seccomp filter on.
    fn capability_sets_empty(cli()) |c| {
        let o = c.sh(&[], "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; echo child; \
                          /usr/bin/python3 -c \"print(open('/proc/self/status').read())\" | grep -E '^(Cap|NoNewPrivs|Seccomp:)'");
        verdict(&o, "ok", 0);
        let out = o.prog_stdout();
        let (me, child) = out.split_once("child\n").expect("marker");
        for part in [me, child] {
            let l: Vec<&str> = part.lines().collect();
            assert_eq!(l.len(), 7, "{part}");
            for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                assert!(l.contains(&format!("{k}:\t0000000000000000").as_str()), "{k} in {part}");
            }
            assert!(l.contains(&"NoNewPrivs:\t1") && l.contains(&"Seccomp:\t2"), "{part}");
        }
    }
}

case! {
    /// A setuid-root binary, and the host's su/passwd → nosuid + no_new_privs: still uid 1000, no capability.
    fn setuid_binaries_gain_nothing(cli()) |c| {
        let o = c.c(&SETUID, &[], &[]);
        verdict(&o, "ok", 0);
        let out = o.prog_stdout();
        assert!(out.starts_with("uid 1000 euid 1000 suid 1000\n"), "{out}");
        assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
        let o = c.sh(&[], "/usr/bin/su -c 'id -u' root </dev/null 2>&1; /usr/bin/passwd -S root 2>&1; id -u");
        let l = lines(&o);
        assert_eq!(l.last().map(String::as_str), Some("1000"), "{}", o.j());
        assert!(!l.iter().any(|x| x == "0"), "su ran as root: {}", o.j());
    }
}

case! {
    /// A binary carrying every capability in its security.capability xattr → file capabilities ignored: CapPrm/CapEff 0.
    fn file_capabilities_gain_nothing(cli()) |c| {
        let o = c.c(&FILECAPS, &[], &[]);
        verdict(&o, "ok", 0);
        let out = o.prog_stdout();
        assert!(out.contains("CapPrm:\t0000000000000000") && out.contains("CapEff:\t0000000000000000"), "{out}");
    }
}

case! {
    /// New namespaces via unshare, clone (NEWUSER/NEWPID), clone3, setns → EPERM, SIGSYS or ENOSYS; never created.
    fn nested_namespaces_refused(cli()) |c| {
        kernel_expect(c, &[], &[
            ("unshare_user", "errno EPERM"),
            ("unshare_mnt", "errno EPERM"),
            ("unshare_net", "errno EPERM"),
            ("clone_newuser", "signal 31"),
            ("clone_newpid", "signal 31"),
            ("clone3_newuser", "errno ENOSYS"),
            ("setns", "errno EPERM"),
        ]);
        let o = c.exec(&[], &["/usr/bin/unshare", "-r", "/usr/bin/id", "-u"]);
        assert_ne!(o.status(), "ok", "{}", o.j());
        assert!(!o.prog_stdout().contains('0'), "{}", o.j());
    }
}

case! {
    /// i386 ABI through int 0x80 (getpid, unshare) → the filter checks the architecture: killed by SIGSYS.
    fn i386_abi_bypass(cli()) |c| {
        kernel_expect(c, &[], &[("int80_getpid", "signal 31"), ("int80_unshare", "signal 31")]);
    }
}

case! {
    /// x32 ABI (syscall nr | 0x40000000: getpid, unshare) → killed by SIGSYS.
    fn x32_abi_bypass(cli()) |c| {
        kernel_expect(c, &[], &[("x32_getpid", "signal 31"), ("x32_unshare", "signal 31")]);
    }
}

/// A pseudo-terminal pair (master, slave) of the host.
fn host_pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc pty calls; every fd is checked and then owned.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(s >= 0, "open pty slave");
        (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s))
    }
}

case! {
    /// The caller's stdin is a terminal; the program tries TIOCSTI (also with high bits set), TIOCLINUX, stty → EPERM/no tty; the terminal is untouched.
    fn tiocsti_into_callers_terminal(cli()) |c| {
        use std::os::fd::AsRawFd;
        let (master, slave) = host_pty();
        // SAFETY: tcgetattr on our own fd into a zeroed struct.
        let attrs = |fd: i32| unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(fd, &mut t), 0);
            (t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag)
        };
        let before = attrs(slave.as_raw_fd());
        let bind = KERNEL.bind();
        let mut cmd = c.cmd(&["exec", "--json", "--ro-bind", &bind, "--", "/bin/sh", "-c",
            "tty; stty raw -echo 2>/dev/null && echo STTY-OK; /t/kernel tiocsti tiocsti_highbits tioclinux"]);
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup slave")));
        let o = c.run(cmd);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["not a tty", "tiocsti: errno EPERM", "tiocsti_highbits: errno EPERM", "tioclinux: errno EPERM"]);
        assert_eq!(attrs(slave.as_raw_fd()), before, "terminal settings changed");
        // Nothing was pushed into the terminal's input queue.
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD into an int.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(n, 0, "{n} bytes injected into the caller's terminal");
        drop(master);
    }
}

case! {
    /// io_uring_setup, bpf(BPF_MAP_CREATE), perf_event_open, userfaultfd → EPERM each.
    fn io_uring_bpf_perf_userfaultfd_refused(cli()) |c| {
        kernel_expect(c, &[], &[
            ("io_uring", "errno EPERM"),
            ("bpf", "errno EPERM"),
            ("perf_event_open", "errno EPERM"),
            ("userfaultfd", "errno EPERM"),
        ]);
    }
}

case! {
    /// ptrace of a sibling, of init, TRACEME; process_vm_readv/writev of a sibling and init; /proc/1/mem → EPERM/EACCES.
    fn ptrace_and_process_vm_refused(cli()) |c| {
        kernel_expect(c, &[], &[
            ("ptrace_sibling", "errno EPERM"),
            ("ptrace_init", "errno EPERM"),
            ("ptrace_traceme", "errno EPERM"),
            ("process_vm_readv_sibling", "errno EPERM"),
            ("process_vm_writev_init", "errno EPERM"),
            ("proc1_mem", "errno EACCES"),
        ]);
    }
}

case! {
    /// init_module, finit_module, kexec_load, reboot, open_by_handle_at, swapon, open_tree, fsopen → not allowed at all: SIGSYS.
    fn modules_kexec_reboot_killed(cli()) |c| {
        kernel_expect(c, &[], &[
            ("init_module", "signal 31"),
            ("finit_module", "signal 31"),
            ("kexec_load", "signal 31"),
            ("reboot", "signal 31"),
            ("open_by_handle_at", "signal 31"),
            ("swapon", "signal 31"),
            ("open_tree", "signal 31"),
            ("fsopen", "signal 31"),
        ]);
    }
}

case! {
    /// mount tmpfs, bind-mount /, umount /proc, pivot_root, chroot, sethostname, setuid(0) → EPERM or SIGSYS.
    fn mount_family_refused(cli()) |c| {
        kernel_expect(c, &[], &[
            ("mount_tmpfs", "errno EPERM"),
            ("mount_bind_root", "errno EPERM"),
            ("umount_proc", "errno EPERM"),
            ("pivot_root", "errno EPERM"),
            ("chroot", "errno EPERM"),
            ("sethostname", "signal 31"),
            ("setuid0", "signal 31"),
        ]);
    }
}

case! {
    /// set*uid/set*gid/setgroups, to root, to another id and to its own ids → strict kills every one (SIGSYS).
    fn setid_calls_killed_under_strict(cli()) |c| {
        kernel_expect(c, &[], &[
            ("setresuid0", "signal 31"),
            ("setreuid0", "signal 31"),
            ("setgid0", "signal 31"),
            ("setresgid0", "signal 31"),
            ("setfsuid0", "signal 31"),
            ("setfsgid0", "signal 31"),
            ("setgroups_drop", "signal 31"),
            ("setresuid_own", "signal 31"),
            ("setresgid_own", "signal 31"),
            ("setuid_own", "signal 31"),
        ]);
    }
}

case! {
    /// Under ci, set*uid/set*gid to root or another id → EINVAL (not mapped), setfsuid/setfsgid(0) → unchanged, setgroups → EPERM; to its own ids → works (make's seteuid); namespaces, mount, sethostname still refused; still uid/gid 1000.
    fn ci_identity_calls_gain_nothing(cli()) |c| {
        // ci binds the directory it is started in at /workspace: a scratch one.
        let ws = c.case.home.join(format!("ci-ws-{}", c.tag()));
        std::fs::create_dir_all(&ws).expect("workspace");
        std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let bind = KERNEL.bind();
        let mut cmd = c.cmd(&["exec", "--json", "--profile", "ci", "--ro-bind", &bind, "--", "/bin/sh", "-c",
            "/t/kernel setuid0 setresuid0 setreuid0 setuid_other setgid0 setresgid0 setfsuid0 setfsgid0 \
             setgroups_drop setgroups_root setresuid_own setresgid_own setuid_own \
             unshare_user clone_newuser setns mount_tmpfs sethostname kexec_load \
             && id -u && id -g && id -G && grep -E '^CapEff' /proc/self/status"]);
        cmd.current_dir(&ws);
        let o = c.run(cmd);
        let _ = std::fs::remove_dir_all(&ws);
        verdict(&o, "ok", 0);
        assert_lines(&o, &[
            // Root and any other id are not even mapped in the run's user
            // namespace (EINVAL); a mapped one it does not hold would be
            // EPERM (no CAP_SETUID/CAP_SETGID), as setfsuid/setfsgid show.
            "setuid0: errno EINVAL",
            "setresuid0: errno EINVAL",
            "setreuid0: errno EINVAL",
            "setuid_other: errno EINVAL",
            "setgid0: errno EINVAL",
            "setresgid0: errno EINVAL",
            "setfsuid0: errno EPERM",
            "setfsgid0: errno EPERM",
            "setgroups_drop: errno EPERM",
            "setgroups_root: errno EPERM",
            "setresuid_own: SUCCEEDED",
            "setresgid_own: SUCCEEDED",
            "setuid_own: SUCCEEDED",
            "unshare_user: errno EPERM",
            "clone_newuser: signal 31",
            "setns: errno EPERM",
            "mount_tmpfs: errno EPERM",
            "sethostname: signal 31",
            "kexec_load: signal 31",
            "1000",
            "1000",
            "1000",
            "CapEff:\t0000000000000000",
        ]);
    }
}

case! {
    /// AF_PACKET/AF_ALG/AF_VSOCK sockets, personality(ADDR_NO_RANDOMIZE), a host TCP listener, the internet → refused/unreachable.
    fn sockets_personality_network(cli()) |c| {
        kernel_expect(c, &[], &[
            ("af_packet", "errno EAFNOSUPPORT"),
            ("af_alg", "errno EAFNOSUPPORT"),
            ("af_vsock", "errno EAFNOSUPPORT"),
            ("personality", "errno EPERM"),
        ]);
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let port = l.local_addr().expect("addr").port();
        let py = include_str!("hostile/connect_out.py");
        let o = c.exec(&[], &["/usr/bin/python3", "-c", py, &port.to_string()]);
        verdict(&o, "ok", 0);
        assert!(!o.prog_stdout().contains("CONNECTED"), "{}", o.j());
        l.set_nonblocking(true).expect("nonblocking");
        assert!(l.accept().is_err(), "the host listener got a connection");
    }
}

case! {
    /// setrlimit/prlimit64 lowering RLIMIT_CORE (also via a pointer with zero low bits, resource with high bits) → EPERM; reading works.
    fn core_rlimit_stays_one(cli()) |c| {
        kernel_expect(c, &[], &[
            ("core_rlimit_zero", "errno EPERM"),
            ("core_prlimit_zero", "errno EPERM"),
            ("core_prlimit_highptr", "errno EPERM"),
            ("core_setrlimit_highbits", "errno EPERM"),
            ("core_prlimit_read", "SUCCEEDED"),
        ]);
    }
}

case! {
    /// The caller leaks fds 7 (a host file), 8 (a TCP listener), 9 (/root) without CLOEXEC → the program has only 0, 1, 2.
    fn leaked_fds_cli(cli()) |c| {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/etc/hostname").expect("file");
        let sock = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let dir = std::fs::File::open("/root").expect("dir");
        let fds = [file.as_raw_fd(), sock.as_raw_fd(), dir.as_raw_fd()];
        let mut cmd = c.cmd(&["exec", "--json", "--", "/bin/sh", "-c",
            "ls /proc/self/fd | tr '\\n' ' '; cat <&7 2>/dev/null && echo READ7; ls -l /proc/self/fd | grep -c socket"]);
        // SAFETY: dup2 in the forked child onto fixed numbers (no CLOEXEC).
        unsafe {
            cmd.pre_exec(move || {
                for (i, fd) in fds.iter().enumerate() {
                    if libc::dup2(*fd, 7 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let o = c.run(cmd);
        verdict(&o, "runtime_error", 1);
        assert_eq!(o.prog_stdout(), "0 1 2 3 0\n", "{}", o.j());
    }
}

case! {
    /// A job lists its fds while another job runs → no server socket, no other run's pipe: only 0, 1, 2.
    fn leaked_fds_server(http(&["--workers", "2"])) |c| {
        let a = c.srv().post("/v1/jobs", &json!({"steps": [sh_step("sleep 1")]}));
        assert_eq!(a.status, 202);
        let id = a.json()["id"].as_str().expect("id").to_string();
        std::thread::sleep(Duration::from_millis(100));
        let j = c.srv().run(&json!({"steps": [sh_step(
            "ls /proc/self/fd | tr '\\n' ' '; ls -l /proc/self/fd | grep -c socket")]}));
        assert_eq!(j["steps"][0]["stdout"], "0 1 2 3 0\n", "{j}");
        c.srv().wait_job(&id, Duration::from_secs(20));
    }
}

// =================================================== process escape

/// A `sandbox exec` (output passed through) running in the background.
struct Bg {
    child: std::process::Child,
    out: Option<std::io::BufReader<std::process::ChildStdout>>,
    /// Where the run's stderr goes, shown when its stdout ends early.
    err: std::path::PathBuf,
}

impl Bg {
    fn start(c: &Ctx, extra: &[&str], cmd: &[&str]) -> Bg {
        let mut a: Vec<&str> = vec!["exec"];
        a.extend_from_slice(extra);
        a.push("--");
        a.extend_from_slice(cmd);
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let err = c.case.home.join(format!("bg-{}-{n}.stderr", c.tag()));
        let mut child = c
            .cmd(&a)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).expect("bg stderr file"))
            .spawn()
            .expect("spawn sandbox");
        c.track(child.id());
        let out = child.stdout.take().map(std::io::BufReader::new);
        Bg { child, out, err }
    }

    fn out(&mut self) -> &mut std::io::BufReader<std::process::ChildStdout> {
        self.out.as_mut().expect("stdout still open")
    }

    /// The next line of the program's stdout ("" at EOF, after printing
    /// how the run ended and its stderr, for the failure that follows).
    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut s = String::new();
        let _ = self.out().read_line(&mut s);
        if s.is_empty() {
            let t0 = Instant::now();
            let st = loop {
                match self.child.try_wait() {
                    Ok(None) if t0.elapsed() < Duration::from_secs(5) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    r => break r,
                }
            };
            eprintln!(
                "background run's stdout ended early ({st:?}); its stderr:\n{}",
                std::fs::read_to_string(&self.err).unwrap_or_default()
            );
        }
        s
    }

    /// Wait for the end; (exit code, rest of stdout).
    fn finish(mut self) -> (i32, String) {
        let mut rest = String::new();
        if let Some(mut o) = self.out.take() {
            let _ = o.read_to_string(&mut rest);
        }
        let st = self.child.wait().expect("wait");
        (st.code().unwrap_or(-1), rest)
    }

    /// Close our end of the program's stdout, then wait.
    fn close_and_wait(mut self) -> std::process::ExitStatus {
        drop(self.out.take());
        self.child.wait().expect("wait")
    }
}

impl Drop for Bg {
    /// A case that failed half-way leaves no child behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

case! {
    /// Double fork + setsid daemon (argv[0] = marker) holding the output pipes → run ends at once: ok; the daemon is gone from the host.
    fn double_fork_setsid_daemon(cli()) |c| {
        let o = c.c(&ESCAPE, &[], &["daemon", &c.tag()]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["main exits"]);
        assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);
    }
}

case! {
    /// A setsid daemon that keeps writing to stdout after main exits → the run ends with main: ok within 3 s.
    fn daemon_keeps_writing_output(cli()) |c| {
        let o = c.c(&ESCAPE, &["--output-limit", "1M"], &["daemon_writer", &c.tag()]);
        verdict(&o, "ok", 0);
        assert!(o.prog_stdout().contains("main exits"), "{}", o.j());
        assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);
    }
}

case! {
    /// A detached process that keeps forking after main exits → everything dies with the run: ok within 3 s.
    fn fork_storm_after_main_exits(cli()) |c| {
        let o = c.c(&ESCAPE, &["--pids-limit", "16"], &["forkstorm", &c.tag()]);
        verdict(&o, "ok", 0);
        assert!(o.elapsed < Duration::from_secs(3), "took {:?}", o.elapsed);
    }
}

case! {
    /// 40 zombies never reaped, then exit → init reaps them: ok, nothing left.
    fn unreaped_zombies(cli()) |c| {
        let o = c.c(&ESCAPE, &[], &["zombies", "40"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["zombies 40"]);
    }
}

case! {
    /// kill(-1, SIGKILL) inside, with a host process of the same host uid (a profile pinned to one uid) → ESRCH inside, the host process lives.
    fn kill_minus_one(cli()) |c| {
        let mut v = Victim::spawn();
        let o = c.c(&ESCAPE, &["--profile", &common::pinned_profile()], &["killall"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["kill(-1) = -1 (No such process)", "after"]);
        assert!(v.alive(), "kill(-1) in the sandbox killed a host process");
    }
}

case! {
    /// SIGSTOP/SIGTERM/SIGSEGV/SIGKILL to pid 1 (init) and to the parent → ignored by init: the run completes normally.
    fn signals_to_init_and_parent(cli()) |c| {
        let o = c.c(&ESCAPE, &[], &["siginit"]);
        verdict(&o, "ok", 0);
        assert_eq!(lines(&o).last().map(String::as_str), Some("survived"), "{}", o.j());
    }
}

case! {
    /// SIGKILL to every pid number up to 100000 (the supervisor, host processes) → nothing outside is reachable: ok, 0 delivered.
    fn signal_sweep_all_pids(cli()) |c| {
        let mut v = Victim::spawn();
        let o = c.c(&ESCAPE, &["--profile", &common::pinned_profile()], &["sweep", "100000"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["delivered 0"]);
        assert!(v.alive(), "the sweep killed a host process");
    }
}

/// SIGNAL the `sandbox exec` supervisor of a sleeping program; everything
/// in the run must die with it, and its cgroups be swept by the next run.
fn signal_supervisor(c: &Ctx, sig: i32) {
    let tag = c.tag();
    let mut bg = Bg::start(
        c,
        &[],
        &["/bin/sh", "-c", "echo started; sleep 30; :", &tag],
    );
    assert_eq!(bg.line(), "started\n");
    let pid = bg.child.id();
    common::mark_killed(pid);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, sig) };
    let (code, _) = bg.finish();
    assert_ne!(code, 0);
    let tagcg = format!("/sandbox-{pid}-");
    let t0 = Instant::now();
    loop {
        let left: Vec<(i32, String)> = common::procs_with(&tag)
            .into_iter()
            .chain(
                std::fs::read_dir("/proc")
                    .expect("proc")
                    .flatten()
                    .filter_map(|e| {
                        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                        let cg = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
                        cg.contains(&tagcg).then_some((pid, cg))
                    }),
            )
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the run outlived its supervisor: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next run of the sandbox removes the dead supervisor's cgroups.
    let t0 = Instant::now();
    while !common::cgroups_of(pid).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "stale cgroups never swept: {:?}",
            common::cgroups_of(pid)
        );
        verdict(&c.exec(&[], &["/usr/bin/true"]), "ok", 0);
    }
}

case! {
    /// SIGKILL of the `sandbox exec` supervisor mid-run → PDEATHSIG takes the run down; its cgroups are swept by the next run.
    fn sigkill_of_supervisor(cli()) |c| {
        signal_supervisor(c, libc::SIGKILL);
    }
}

case! {
    /// SIGTERM of the `sandbox exec` supervisor mid-run → the run dies with it, nothing left.
    fn sigterm_of_supervisor(cli()) |c| {
        signal_supervisor(c, libc::SIGTERM);
    }
}

case! {
    /// The caller closes its end of the supervisor's stdout while `yes` floods it (passthrough) → the supervisor still ends the run.
    fn supervisor_stdout_closed(cli()) |c| {
        let mut bg = Bg::start(c, &["--wall-time-limit", "5s"], &["/usr/bin/yes", &c.tag()]);
        let mut buf = vec![0u8; 65536];
        bg.out().read_exact(&mut buf).expect("some output");
        let t0 = Instant::now();
        let st = bg.close_and_wait();
        assert!(t0.elapsed() < Duration::from_secs(4), "supervisor hung {:?}", t0.elapsed());
        assert!(st.code().is_some_and(|c| c != 0), "{st}");
    }
}

// =================================================== cross-job channels

case! {
    /// Run A writes a secret to /tmp and /dev/shm and stays; run B, concurrently, looks → both directories are empty for B.
    fn tmp_and_shm_between_concurrent_runs(cli()) |c| {
        let (s1, s2) = ("SECRET-", c.tag());
        let mut a = Bg::start(c, &[], &["/bin/sh", "-c",
            &format!("echo {s1}{s2} > /tmp/x; echo {s1}{s2} > /dev/shm/x; echo ready; sleep 1")]);
        assert_eq!(a.line(), "ready\n");
        let o = c.sh(&[], &format!("ls -A /tmp /dev/shm; p1={s1}; p2={s2}; grep -rs \"$p1$p2\" /tmp /dev/shm; true"));
        verdict(&o, "ok", 0);
        assert_eq!(o.prog_stdout(), "/dev/shm:\n\n/tmp:\n", "{}", o.j());
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// Run A leaves files in /tmp, /dev/shm and $HOME; the next run B looks → nothing survived.
    fn files_between_consecutive_runs(cli()) |c| {
        let o = c.sh(&[], "echo x > /tmp/left; echo x > /dev/shm/left; echo x > $HOME/.left; mkdir /tmp/d; echo done");
        verdict(&o, "ok", 0);
        let o = c.sh(&[], "ls -A /tmp /dev/shm $HOME");
        verdict(&o, "ok", 0);
        assert_eq!(o.prog_stdout(), "/dev/shm:\n\n/tmp:\n\n/tmp:\n", "{}", o.j());
    }
}

case! {
    /// Run A creates SysV shm/sem/msg with a fixed key and holds them; run B, concurrently, opens that key → ENOENT for all three.
    fn sysv_ipc_between_concurrent_runs(cli()) |c| {
        let bind = CHANNELS.bind();
        let mut a = Bg::start(c, &["--ro-bind", &bind], &["/t/channels", "shm_put", "0x5a5a7777", "secret", "1"]);
        assert_eq!(a.line(), "planted\n");
        let o = c.c(&CHANNELS, &[], &["shm_get", "0x5a5a7777"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["shm absent: ENOENT", "sem absent: ENOENT", "msg absent: ENOENT"]);
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// Run A leaves SysV objects behind and exits; the next run opens the key → ENOENT for all three.
    fn sysv_ipc_between_consecutive_runs(cli()) |c| {
        let o = c.c(&CHANNELS, &[], &["shm_put", "0x5a5a7778", "secret", "0"]);
        verdict(&o, "ok", 0);
        let o = c.c(&CHANNELS, &[], &["shm_get", "0x5a5a7778"]);
        assert_lines(&o, &["shm absent: ENOENT", "sem absent: ENOENT", "msg absent: ENOENT"]);
    }
}

case! {
    /// Run A listens on an abstract unix socket; run B, concurrently, connects to that name → ECONNREFUSED (separate network namespaces).
    fn abstract_socket_between_runs(cli()) |c| {
        let name = format!("hostile-{}", c.tag());
        let bind = CHANNELS.bind();
        let mut a = Bg::start(c, &["--ro-bind", &bind], &["/t/channels", "abs_listen", &name, "secret", "1"]);
        assert_eq!(a.line(), "listening\n");
        let o = c.c(&CHANNELS, &[], &["abs_connect", &name]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["socket absent: ECONNREFUSED"]);
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// Run A holds flock and a POSIX lock on /etc/passwd; run B, concurrently, tests them → free, and /proc/locks shows nothing of A.
    fn file_locks_between_runs(cli()) |c| {
        let bind = CHANNELS.bind();
        let mut a = Bg::start(c, &["--ro-bind", &bind], &["/t/channels", "lock_hold", "/etc/passwd", "1"]);
        assert_eq!(a.line(), "locked\n");
        let o = c.c(&CHANNELS, &[], &["lock_try", "/etc/passwd"]);
        verdict(&o, "ok", 0);
        assert_lines(&o, &["flock free", "posix-lock free", "proc-locks 0"]);
        assert_eq!(a.finish().0, 0);
    }
}

case! {
    /// Server jobs one after another (containers are prepared ahead in a pool) → a job finds nothing of the previous one in /tmp, /dev/shm, $HOME, SysV IPC, processes.
    fn server_jobs_share_no_container(http(&["--workers", "2"])) |c| {
        let s = c.srv();
        let plant = "echo x > /tmp/left; echo x > /dev/shm/left; echo x > $HOME/.left; \
                     (setsid sleep 30 &); ipcmk -M 4096 >/dev/null; ipcmk -Q >/dev/null; echo planted";
        let look = "ls -A /tmp /dev/shm $HOME; ipcs -m -q | grep -c '^0x'; ls /proc | grep -c '^[0-9]'";
        for _ in 0..3 {
            let j = s.run(&json!({"steps": [sh_step(plant)]}));
            assert_eq!(j["steps"][0]["stdout"], "planted\n", "{j}");
            let j = s.run(&json!({"steps": [sh_step(look)]}));
            // /tmp is also $HOME; the processes: sh, ls and grep at most, plus init.
            let out = j["steps"][0]["stdout"].as_str().unwrap_or("").to_string();
            let l: Vec<&str> = out.lines().collect();
            assert_eq!(l[..6], ["/dev/shm:", "", "/tmp:", "", "/tmp:", "0"], "{j}");
            let procs: u32 = l[6].parse().expect("count");
            assert!(procs <= 5, "{procs} processes visible: {j}");
        }
    }
}

case! {
    /// Kernel keyrings (not namespaced: a channel between concurrent and consecutive runs) via keyctl join, add_key, request_key → EPERM each.
    fn keyrings_refused(cli()) |c| {
        kernel_expect(c, &[], &[
            ("keyctl", "errno EPERM"),
            ("add_key", "errno EPERM"),
            ("request_key", "errno EPERM"),
        ]);
    }
}

// =================================================== HTTP API

/// Send raw bytes on a fresh connection, then read the answer (for up to
/// `wait`); "" when the server closed without answering.
fn raw_http(addr: &str, bytes: &[u8], wait: Duration) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP status of a raw answer (0 when there is none).
fn raw_status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The server still answers and runs jobs.
#[track_caller]
fn server_healthy(s: &Srv) {
    assert_eq!(s.get("/healthz").status, 200, "healthz");
    let j = s.run(&json!({"steps": [{"command": ["/bin/echo", "alive"]}]}));
    assert_eq!(j["steps"][0]["stdout"], "alive\n", "{j}");
}

/// A 400 naming `field`.
#[track_caller]
fn rejected(s: &Srv, body: &Value, field: &str) {
    let r = s.post("/v1/jobs", body);
    assert_eq!(r.status, 400, "{body}: {}", r.text());
    assert_eq!(r.json()["field"], field, "{body}: {}", r.text());
}

case! {
    /// A 1 MiB body, and a 10 GiB Content-Length streaming 128 KiB, against --max-body 64K → 413 once past 64 KiB, nothing more read.
    fn oversized_bodies(http(&["--max-body", "64K"])) |c| {
        let s = c.srv();
        let big = json!({"steps": [{"command": ["/bin/true"]}], "files": [{"path": "a", "content": "x".repeat(1 << 20)}]});
        let r = s.post("/v1/jobs", &big);
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.json()["error"].is_string());
        let t0 = Instant::now();
        let head = format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            10u64 << 30,
            "[".repeat(128 << 10)
        );
        let a = raw_http(&s.addr, head.as_bytes(), Duration::from_secs(5));
        assert_eq!(raw_status(&a), 413, "{a}");
        assert!(t0.elapsed() < Duration::from_secs(4), "took {:?}", t0.elapsed());
        server_healthy(s);
    }
}

case! {
    /// Absurd limits (huge, negative, zero, NaN, floats, 1e30, overflowing sizes) → 400 naming the field; tiny valid ones → clean verdicts.
    fn absurd_limits(http(&[])) |c| {
        let s = c.srv();
        for (k, v) in [
            ("cpu_time", json!("99999999999999s")), ("cpu_time", json!("1e9s")), ("cpu_time", json!("NaN")),
            ("cpu_time", json!("0s")), ("cpu_time", json!("1ns")), ("wall_time", json!("-1s")),
            ("wall_time", json!(5)), ("memory", json!("1E")), ("memory", json!("99999999999999999999")),
            ("memory", json!("-1")), ("memory", json!(1e30)), ("memory", json!("4G")), ("pids", json!(1e20)),
            ("pids", json!(-1)), ("pids", json!(0)), ("pids", json!(1.5)), ("pids", json!(100000)),
            ("open_files", json!(1u64 << 40)), ("stack", json!("1T")), ("output", json!("1T")),
        ] {
            rejected(s, &json!({"steps": [{"command": ["/bin/echo", "hi"], "limits": {k: v}}]}), &format!("steps[0].limits.{k}"));
        }
        // Tiny but valid: each run ends with a proper verdict.
        let j = s.run(&json!({"steps": [
            {"command": ["/bin/echo", "hi"], "limits": {"output": "0"}, "continue_on_failure": true},
            {"command": ["/bin/echo", "hi"], "limits": {"memory": "1"}, "continue_on_failure": true},
            {"command": ["/bin/echo", "hi"], "limits": {"stack": "1"}, "continue_on_failure": true},
            {"command": ["/bin/echo", "hi"], "limits": {"open_files": 1}, "continue_on_failure": true},
            {"command": ["/bin/echo", "hi"], "limits": {"file_size": "1"}, "continue_on_failure": true},
            {"command": ["/bin/echo", "hi"], "limits": {"pids": 2}, "continue_on_failure": true},
            {"command": ["/bin/echo", "hi"], "limits": {"cpu_time": "1ms", "wall_time": "1ms"}, "continue_on_failure": true},
        ]}));
        let st: Vec<&str> = j["steps"].as_array().expect("steps").iter().map(|s| s["status"].as_str().unwrap_or("?")).collect();
        assert_eq!(st[..6], ["output_limit", "memory_limit", "runtime_error", "runtime_error", "ok", "ok"], "{j}");
        assert!(["ok", "time_limit", "wall_time_limit"].contains(&st[6]), "{j}");
        server_healthy(s);
    }
}

case! {
    /// Malformed JSON: truncated, trailing garbage, 30000-deep nesting, invalid UTF-8, empty, null, a string, bad `wait` → 400 each, server fine.
    fn malformed_json(http(&[])) |c| {
        let s = c.srv();
        let deep = format!("{}{}", "[".repeat(30000), "]".repeat(30000));
        let bodies: Vec<Vec<u8>> = vec![
            b"{\"steps\": [".to_vec(),
            b"{\"steps\": [{\"command\": [\"/bin/true\"]}]} trailing".to_vec(),
            deep.into_bytes(),
            b"{\"steps\":[{\"command\":[\"/bin/echo\",\"\xff\xfe\"]}]}".to_vec(),
            b"".to_vec(),
            b"null".to_vec(),
            b"\"steps\"".to_vec(),
            b"{\"steps\": [{\"command\": [\"/bin/true\"]}]}\x00".to_vec(),
        ];
        for b in &bodies {
            let r = s.req("POST", "/v1/jobs", Some(b));
            assert_eq!(r.status, 400, "{:?}: {}", String::from_utf8_lossy(&b[..b.len().min(60)]), r.text());
            assert!(r.json()["error"].is_string());
        }
        let r = s.req("POST", "/v1/jobs?wait=maybe", Some(br#"{"steps": [{"command": ["/bin/true"]}]}"#));
        assert_eq!(r.status, 400, "{}", r.text());
        server_healthy(s);
    }
}

case! {
    /// NUL bytes in argv, env names and values, file and output paths, the profile → 400 naming the field; NUL in stdin is data.
    fn nul_bytes(http(&[])) |c| {
        let s = c.srv();
        let t = json!([{"command": ["/bin/true"]}]);
        rejected(s, &json!({"steps": [{"command": ["/bin/tr\u{0}ue"]}]}), "steps[0].command[0]");
        rejected(s, &json!({"steps": [{"command": ["/bin/echo", "a\u{0}b"]}]}), "steps[0].command[1]");
        rejected(s, &json!({"steps": [{"command": ["/bin/true"], "env": {"A": "x\u{0}y"}}]}), "steps[0].env.A");
        rejected(s, &json!({"steps": [{"command": ["/bin/true"], "env": {"A\u{0}B": "x"}}]}), "steps[0].env.A\u{0}B");
        rejected(s, &json!({"steps": t, "files": [{"path": "a\u{0}b"}]}), "files[0].path");
        rejected(s, &json!({"steps": t, "outputs": ["a\u{0}b"]}), "outputs[0]");
        rejected(s, &json!({"steps": t, "profile": "str\u{0}ict"}), "profile");
        let j = s.run(&json!({"steps": [{"command": ["/bin/cat"], "stdin": "a\u{0}b"}]}));
        assert_eq!(j["steps"][0]["status"], "ok", "{j}");
        assert_eq!(json_body_bytes(&j["steps"][0], "stdout"), b"a\x00b", "{j}");
    }
}

case! {
    /// `..`, absolute and `.` paths in files/outputs, path-like profiles, traversal in URLs (plain and %2f) → 400/404, no host file served.
    fn traversal_paths(http(&[])) |c| {
        let s = c.srv();
        let t = json!([{"command": ["/bin/true"]}]);
        for (i, p) in ["../x", "a/../../x", "/etc/x", "./a", "a/./b", ".."].iter().enumerate() {
            rejected(s, &json!({"steps": t, "files": [{"path": p}]}), "files[0].path");
            rejected(s, &json!({"steps": t, "outputs": [p]}), "outputs[0]");
            let _ = i;
        }
        for p in ["../../etc/passwd", "/etc/passwd", "profiles/strict.toml", "strict.toml", "../strict"] {
            rejected(s, &json!({"steps": t, "profile": p}), "profile");
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let first = passwd.lines().next().unwrap_or("?").to_string();
        for u in [
            "/v1/jobs/../../etc/passwd", "/v1/jobs/..%2f..%2fetc%2fpasswd", "/v1/profiles/..%2f..%2fetc%2fpasswd",
            "/v1/profiles/%2fetc%2fpasswd", "/v1/profiles/..%2Fprofiles%2Fstrict.toml", "/../../etc/passwd",
            "/v1/jobs/%00", "/v1/jobs/%2e%2e",
        ] {
            let a = raw_http(&s.addr, format!("GET {u} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(), Duration::from_secs(5));
            assert!([400, 404].contains(&raw_status(&a)), "{u}: {a}");
            assert!(!a.contains(&first), "{u} served a host file: {a}");
        }
    }
}

case! {
    /// 1000 simultaneous job submissions (wait=true) on 2 workers and a 64-slot queue → each 200 (ok) or 429, no error, server fine.
    fn thousand_parallel_requests(http(&["--workers", "2", "--queue", "64"])) |c| {
        let s = c.srv();
        let n = 1000;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let body = serde_json::to_vec(&json!({"steps": [{"command": ["/bin/echo", "x"], "expected_stdout": "x"}]})).expect("json");
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (addr, barrier, body) = (s.addr.clone(), barrier.clone(), body.clone());
                std::thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn(move || {
                        barrier.wait();
                        // A burst beyond the listen backlog (128) makes the
                        // kernel fall back to SYN cookies, and some of those
                        // connections are reset: a client retries those.
                        let mut resets = 0;
                        loop {
                            match common_server::request(&addr, "POST", "/v1/jobs?wait=true", None, Some(&body)) {
                                Ok(r) => return (r, resets),
                                Err(e) if resets < 5 => {
                                    resets += 1;
                                    let _ = e;
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                Err(e) => panic!("no answer after {resets} resets: {e}"),
                            }
                        }
                    })
                    .expect("thread")
            })
            .collect();
        let (mut ok, mut busy, mut resets) = (0, 0, 0);
        for h in hs {
            let (r, rs) = h.join().expect("thread");
            resets += rs;
            match r.status {
                200 => {
                    assert_eq!(r.json()["steps"][0]["status"], "ok", "{}", r.text());
                    ok += 1;
                }
                429 => busy += 1,
                other => panic!("unexpected {other}: {}", r.text()),
            }
        }
        assert_eq!(ok + busy, n);
        assert!(ok >= 1, "nothing accepted");
        if resets > 0 {
            eprintln!("NOTE: {resets} connections reset during the burst (listen backlog 128) and retried");
        }
        server_healthy(s);
    }
}

case! {
    /// Clients that disconnect while their wait=true job runs, and mid-upload → jobs finish, the server frees every connection.
    fn client_aborts(http(&[])) |c| {
        let s = c.srv();
        let body = serde_json::to_vec(&json!({"steps": [sh_step("sleep 0.3")]})).expect("json");
        for _ in 0..5 {
            let mut t = std::net::TcpStream::connect(&s.addr).expect("connect");
            let head = format!(
                "POST /v1/jobs?wait=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            t.write_all(head.as_bytes()).expect("head");
            t.write_all(&body).expect("body");
            std::thread::sleep(Duration::from_millis(50));
            drop(t);
        }
        for _ in 0..20 {
            let mut t = std::net::TcpStream::connect(&s.addr).expect("connect");
            let head = "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{\"steps\": [";
            t.write_all(head.as_bytes()).expect("head");
            t.write_all(&[b' '; 100_000]).expect("part");
            drop(t);
        }
        s.wait_idle(Duration::from_secs(20));
        server_healthy(s);
    }
}

case! {
    /// Token configured: every endpoint without a token, with a wrong one, a prefix, another scheme → 401 and no job ever submitted.
    fn unauthenticated_calls(http(&[]).token("hostile-token-0123456789")) |c| {
        let s = c.srv();
        let job = br#"{"steps": [{"command": ["/bin/true"]}]}"#;
        for (m, p) in [
            ("POST", "/v1/jobs"), ("POST", "/v1/jobs?wait=true"), ("GET", "/v1/jobs/x"), ("DELETE", "/v1/jobs/x"),
            ("GET", "/v1/profiles"), ("GET", "/v1/profiles/strict"), ("GET", "/metrics"), ("GET", "/openapi.json"),
        ] {
            for tok in [None, Some(""), Some("wrong"), Some("hostile-token-012345678"), Some("hostile-token-0123456789x")] {
                let r = common_server::request(&s.addr, m, p, tok, (m == "POST").then_some(&job[..])).expect("request");
                assert_eq!(r.status, 401, "{m} {p} with {tok:?}: {}", r.text());
            }
            let raw = format!("{m} {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic aG9zdGlsZS10b2tlbi0wMTIzNDU2Nzg5Og==\r\n\r\n");
            assert_eq!(raw_status(&raw_http(&s.addr, raw.as_bytes(), Duration::from_secs(5))), 401, "{m} {p} basic");
        }
        assert_eq!(common_server::request(&s.addr, "GET", "/healthz", None, None).expect("healthz").status, 200);
        // Only the harness's warm-up job was ever submitted.
        assert_eq!(s.metric("sandbox_jobs_submitted_total"), Some(1.0));
    }
}

case! {
    /// 300 idle connections plus 100 stalled mid-header (slowloris) → /healthz and jobs still served within 2 s; fds released after.
    fn idle_and_stalled_connections(http(&[])) |c| {
        let s = c.srv();
        let mut conns = Vec::new();
        for i in 0..400 {
            let mut t = std::net::TcpStream::connect(&s.addr).expect("connect");
            if i >= 300 {
                t.write_all(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Le").expect("partial");
            }
            conns.push(t);
        }
        let t0 = Instant::now();
        server_healthy(s);
        assert!(t0.elapsed() < Duration::from_secs(2), "served in {:?}", t0.elapsed());
        drop(conns);
    }
}

case! {
    /// 300 idle unauthenticated connections against a 256-fd server → at the connection cap the oldest idle ones are closed, new clients are served at once.
    fn unauthenticated_connection_exhaustion(http(&[]).token("hostile-token-0123456789").server_nofile(256)) |c| {
        let s = c.srv();
        let conns: Vec<_> = (0..300).filter_map(|_| std::net::TcpStream::connect(&s.addr).ok()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let a = raw_http(&s.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(3));
        drop(conns);
        assert_eq!(raw_status(&a), 200, "healthz unanswered after {:?} while {} idle connections were open", t0.elapsed(), 300);
    }
}

case! {
    /// Garbage on the wire: binary noise, HTTP/0.9, a 1 MiB header, bad chunked encoding, CL+TE smuggling → 4xx or closed; server fine.
    fn garbage_http(http(&[])) |c| {
        let s = c.srv();
        let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let big_header = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
        let cases: Vec<Vec<u8>> = vec![
            noise,
            b"GET /healthz\r\n\r\n".to_vec(),
            big_header.into_bytes(),
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/profiles HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            b"\r\n\r\n\r\n".to_vec(),
        ];
        for b in &cases {
            let a = raw_http(&s.addr, b, Duration::from_secs(1));
            let st = raw_status(&a);
            assert!(st == 0 || (400..500).contains(&st), "{:?} → {a}", String::from_utf8_lossy(&b[..b.len().min(60)]));
        }
        server_healthy(s);
    }
}

case! {
    /// 50 concurrent DELETEs of one running job plus 50 of unknown ids → 200/404 only; the job ends cancelled, its run killed.
    fn cancel_storm(http(&[])) |c| {
        let s = c.srv();
        let r = s.post("/v1/jobs", &json!({"steps": [sh_step(&format!("sleep 30; : {}", c.tag())), {"command": ["/bin/true"]}]}));
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["id"].as_str().expect("id").to_string();
        let t0 = Instant::now();
        while s.get(&format!("/v1/jobs/{id}")).json()["status"] != "running" {
            assert!(t0.elapsed() < Duration::from_secs(10), "never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        let hs: Vec<_> = (0..100)
            .map(|i| {
                let (addr, id) = (s.addr.clone(), id.clone());
                std::thread::spawn(move || {
                    let path = if i % 2 == 0 { format!("/v1/jobs/{id}") } else { format!("/v1/jobs/{i:032x}") };
                    common_server::request(&addr, "DELETE", &path, None, None).expect("delete").status
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            let st = h.join().expect("thread");
            assert_eq!(st, if i % 2 == 0 { 200 } else { 404 });
        }
        let j = s.wait_job(&id, Duration::from_secs(10));
        assert_eq!(j["status"], "cancelled", "{j}");
        assert_eq!(j["steps"][0]["status"], "cancelled", "{j}");
        assert_eq!(j["steps"][1]["status"], "skipped", "{j}");
    }
}

case! {
    /// 20 jobs each sending 2 MiB (a 1 MiB file, 2 tests of 256 KiB stdin and expected output) and keeping 1.5 MiB of results, against --results-budget 4M → the server's RSS stays within its start + the budget + 32 MiB (it kept every request and result before: +70 MiB per copy), the oldest results answer 410 naming the flag, /metrics holds ≤ 4 MiB.
    fn results_flood_server_memory(http(&["--results-budget", "4M"])) |c| {
        const MIB: usize = 1 << 20;
        let s = c.srv();
        let start = common_server::rss_bytes(s.pid);
        let t = json!({"stdin": "z".repeat(MIB / 4), "expected_stdout": "z".repeat(MIB / 4)});
        let job = json!({
            "files": [{"path": "in", "content": "x".repeat(MIB)}],
            "steps": [{"command": ["/bin/cat"], "tests": [t, t]}],
            "outputs": ["in"],
        });
        let mut ids = Vec::new();
        let mut peak = start;
        for _ in 0..20 {
            let j = s.run(&job);
            assert_eq!(j["outputs"]["in"]["size"], MIB, "{}", j["outputs"]);
            assert_eq!(j["steps"][0]["status"], "ok", "{}", j["steps"]);
            ids.push(j["id"].as_str().expect("id").to_string());
            peak = peak.max(common_server::rss_bytes(s.pid));
        }
        // Measured: +22 MiB alone, +10 MiB from a start of 21 MiB in parallel.
        let bound = start + (4 << 20) + (32 << 20);
        assert!(peak <= bound, "server RSS reached {} MiB from {} MiB", peak >> 20, start >> 20);
        let r = s.get(&format!("/v1/jobs/{}", ids[0]));
        assert_eq!(r.status, 410, "{}", r.text());
        assert!(r.json()["error"].as_str().unwrap_or("").contains("--results-budget 4M"), "{}", r.text());
        let held = s.metric("sandbox_results_bytes").expect("sandbox_results_bytes");
        assert!(held <= (4 << 20) as f64, "{held} bytes held");
        if !c.parallel {
            // Alone, nothing finished after it: the newest result is whole.
            let last = s.get(&format!("/v1/jobs/{}", ids[19]));
            assert_eq!(last.status, 200, "{}", last.text());
            assert_eq!(last.json()["outputs"]["in"]["size"], MIB);
        }
    }
}
