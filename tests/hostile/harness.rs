//! Harness of the hostile catalogue (tests/hostile.rs).
//!
//! A case is a closure run by [`run_case`]: once alone, then as many copies
//! at once as the machine has CPUs, then the host is checked for what the
//! run may have left behind (see [`HostState::check`]). Cases of this file
//! run one at a time (a process-wide lock): the parallel variant is the
//! only concurrency, so the host checks and timing bounds are about this
//! case alone.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use crate::common::{Out, SANDBOX, Value, json_body_bytes};
pub use crate::common_server::Response;
use crate::common_server::{free_port, request};

/// Where compiled programs and per-case scratch directories live: inside
/// the target directory, never in the host's /tmp.
fn scratch_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile");
    std::fs::create_dir_all(&p).expect("scratch dir");
    p
}

fn fnv(data: &[u8], mut h: u64) -> u64 {
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

// ------------------------------------------------------------ C programs

/// A hostile C program from tests/hostile/, compiled once per test binary
/// (cached across runs by the hash of its source) into its own directory,
/// which a case exposes read-only at `/t` inside the sandbox.
pub struct CProg {
    pub name: &'static str,
    pub src: &'static str,
    pub flags: &'static [&'static str],
    /// Extra setup of the directory after compiling (setuid bits, xattrs).
    pub post: Option<fn(&Path)>,
    dir: OnceLock<PathBuf>,
}

impl CProg {
    pub const fn new(
        name: &'static str,
        src: &'static str,
        flags: &'static [&'static str],
    ) -> CProg {
        CProg {
            name,
            src,
            flags,
            post: None,
            dir: OnceLock::new(),
        }
    }

    pub const fn with_post(mut self, post: fn(&Path)) -> CProg {
        self.post = Some(post);
        self
    }

    /// Host directory holding the binary (compiled on first use).
    pub fn dir(&self) -> &Path {
        self.dir.get_or_init(|| {
            let mut h = fnv(self.src.as_bytes(), 0xcbf2_9ce4_8422_2325);
            for f in self.flags {
                h = fnv(f.as_bytes(), h);
            }
            let dir = scratch_root().join(format!("{}-{h:016x}", self.name));
            let bin = dir.join(self.name);
            if !bin.exists() {
                std::fs::create_dir_all(&dir).expect("prog dir");
                let c = dir.join(format!("{}.c", self.name));
                std::fs::write(&c, self.src).expect("write source");
                let tmp = dir.join(format!(".{}.{}", self.name, std::process::id()));
                let o = Command::new("gcc")
                    .args(["-O1", "-Wall", "-o"])
                    .arg(&tmp)
                    .arg(&c)
                    .args(self.flags)
                    .output()
                    .expect("run gcc");
                assert!(
                    o.status.success(),
                    "gcc failed for {}:\n{}",
                    self.name,
                    String::from_utf8_lossy(&o.stderr)
                );
                std::fs::rename(&tmp, &bin).expect("rename binary");
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            if let Some(post) = self.post {
                post(&dir);
            }
            dir
        })
    }

    /// `--ro-bind DIR:/t`.
    pub fn bind(&self) -> String {
        format!("{}:/t", self.dir().display())
    }

    /// The binary's path inside the sandbox.
    pub fn sb(&self) -> String {
        format!("/t/{}", self.name)
    }
}

// ------------------------------------------------------------ the server

/// A `sandbox serve` started for one case, with its own work directory.
pub struct Srv {
    child: Mutex<Option<Child>>,
    pub addr: String,
    pub token: Option<String>,
    pub pid: u32,
    pub work_dir: PathBuf,
    log: PathBuf,
    fd_baseline: usize,
}

impl Srv {
    fn start(opts: &Opts, home: &Path, tmpdir: &Path) -> Srv {
        let args = opts.server.as_deref().unwrap_or_default();
        let token = opts.token.as_deref();
        let work_dir = home.join("jobs");
        let log = home.join("server.log");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(&*SANDBOX);
        cmd.arg("serve")
            .arg("--listen")
            .arg(&addr)
            .arg("--work-dir")
            .arg(&work_dir)
            // Jobs still running at the end are cancelled well within
            // stop()'s 20 s before SIGKILL.
            .args(["--drain-timeout", "5s"])
            .args(args)
            .env_remove("SANDBOX_TOKEN")
            .env("TMPDIR", tmpdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
        if let Some(t) = token {
            let tf = home.join("token");
            std::fs::write(&tf, format!("{t}\n")).expect("token file");
            cmd.arg("--token-file").arg(&tf);
        }
        if let Some(n) = opts.server_nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit in the forked child, before exec.
            unsafe {
                cmd.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn sandbox serve");
        let pid = child.id();
        crate::common::track(pid);
        let mut s = Srv {
            child: Mutex::new(Some(child)),
            addr,
            token: token.map(String::from),
            pid,
            work_dir,
            log,
            fd_baseline: 0,
        };
        let t0 = Instant::now();
        loop {
            if let Ok(r) = request(&s.addr, "GET", "/healthz", None, None)
                && r.status == 200
            {
                break;
            }
            if let Some(c) = lock(&s.child).as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("server exited early: {st}\n{}", s.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "server did not come up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Warm up (the profile's prepared sandbox is cached on first use),
        // then count the fds every later check compares against.
        let warm = s.run(&serde_json::json!({"steps": [{"command": ["/bin/true"]}]}));
        assert_eq!(warm["steps"][0]["status"], "ok", "warm-up job: {warm}");
        s.fd_baseline = s.stable_fds();
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One raw request with this server's token.
    pub fn req(&self, method: &str, path: &str, body: Option<&[u8]>) -> Response {
        request(&self.addr, method, path, self.token.as_deref(), body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.req("POST", path, Some(&serde_json::to_vec(body).expect("json")))
    }

    pub fn get(&self, path: &str) -> Response {
        self.req("GET", path, None)
    }

    /// Submit with `wait=true`; the finished job.
    pub fn run(&self, body: &Value) -> Value {
        let r = self.post("/v1/jobs?wait=true", body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Poll a job until it is finished.
    pub fn wait_job(&self, id: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let j = self.get(&format!("/v1/jobs/{id}")).json();
            if j["status"] == "completed" || j["status"] == "cancelled" || j["status"] == "failed" {
                return j;
            }
            assert!(t0.elapsed() < timeout, "job {id} did not finish: {j}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Open fds of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The fd count once it has not changed for half a second (the server
    /// refills its pool of prepared containers in the background), at most
    /// after 5 s.
    fn stable_fds(&self) -> usize {
        let t0 = Instant::now();
        let (mut last, mut same) = (self.fd_count(), 0);
        while same < 5 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
            let n = self.fd_count();
            same = if n == last { same + 1 } else { 0 };
            last = n;
        }
        last
    }

    /// Wait (bounded) for the fd count to come down to `want`; the last count.
    fn settled_fds(&self, want: usize, within: Duration) -> usize {
        let t0 = Instant::now();
        loop {
            let n = self.fd_count();
            if n <= want || t0.elapsed() > within {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A value of the Prometheus text at /metrics.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.get("/metrics")
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// No job running or queued (bounded wait).
    pub fn wait_idle(&self, within: Duration) {
        let t0 = Instant::now();
        loop {
            let running = self.metric("sandbox_jobs_running").unwrap_or(-1.0);
            let queued = self.metric("sandbox_queue_depth").unwrap_or(-1.0);
            if running == 0.0 && queued == 0.0 {
                return;
            }
            assert!(
                t0.elapsed() < within,
                "server still busy after {within:?}: running {running}, queued {queued}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server-side checks: idle, no fd growth, graceful exit, work dir gone.
    fn finish(&self) {
        self.wait_idle(Duration::from_secs(30));
        let n = self.settled_fds(self.fd_baseline, Duration::from_secs(5));
        assert!(
            n <= self.fd_baseline,
            "server fds grew from {} to {n}: {:?}",
            self.fd_baseline,
            fd_targets(self.pid)
        );
        let st = self.stop().expect("server status");
        assert!(st.success(), "server exit {st}\n{}", self.log());
        // The base stays (other servers may share it); its instance
        // directory, and every workspace in it, went.
        let left: Vec<_> = std::fs::read_dir(&self.work_dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "server left in its work dir {}: {left:?}",
            self.work_dir.display()
        );
        let log = self.log();
        assert!(!log.contains("panicked"), "server panicked:\n{log}");
    }

    /// SIGTERM and wait (SIGKILL after 20 s).
    fn stop(&self) -> Option<std::process::ExitStatus> {
        let mut c = lock(&self.child).take()?;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.stop();
    }
}

fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------ cases

/// What a case needs besides the CLI.
#[derive(Default, Clone)]
pub struct Opts {
    server: Option<Vec<String>>,
    token: Option<String>,
    server_nofile: Option<u64>,
}

/// A case driving `sandbox exec`.
pub fn cli() -> Opts {
    Opts::default()
}

/// A case driving a `sandbox serve` started for it with these arguments.
pub fn http(args: &[&str]) -> Opts {
    Opts {
        server: Some(args.iter().map(|s| s.to_string()).collect()),
        token: None,
        server_nofile: None,
    }
}

impl Opts {
    pub fn token(mut self, t: &str) -> Opts {
        self.token = Some(t.to_string());
        self
    }

    /// Start the server with this RLIMIT_NOFILE (soft and hard).
    pub fn server_nofile(mut self, n: u64) -> Opts {
        self.server_nofile = Some(n);
        self
    }
}

/// State shared by the alone run and the parallel copies of one case.
pub struct Case {
    pub name: String,
    /// Unique to this case execution; put it in argv of anything that might
    /// outlive the run (the host is searched for it afterwards).
    pub marker: String,
    /// TMPDIR of every sandbox process the case starts: must stay empty.
    pub tmpdir: PathBuf,
    /// Scratch space of the case (removed at the end).
    pub home: PathBuf,
    /// `sandbox` processes started by the case (their cgroups are
    /// `sandbox-<pid>-*`).
    pids: Mutex<Vec<u32>>,
    pub srv: Option<Srv>,
}

/// One execution of a case body: the alone run (`copy` 0, `parallel`
/// false) or one of the parallel copies.
pub struct Ctx<'a> {
    pub case: &'a Case,
    pub copy: usize,
    pub parallel: bool,
}

/// The suite's helper socket when `SANDBOX_TEST_HELPER` is set: one
/// `sandbox helper`, started on first use, that stops when this test
/// process exits (its stdin, held here, closes).
fn suite_helper() -> Option<&'static Path> {
    suite_helper_state().map(|(p, _, _)| p.as_path())
}

/// The suite helper's pid (not a leftover of any case).
fn suite_helper_pid() -> Option<i32> {
    suite_helper_state().map(|(_, pid, _)| *pid)
}

fn suite_helper_state() -> Option<&'static (PathBuf, i32, Child)> {
    // The child (with its stdin) lives as long as the test process.
    static H: OnceLock<Option<(PathBuf, i32, Child)>> = OnceLock::new();
    H.get_or_init(|| {
        std::env::var_os("SANDBOX_TEST_HELPER")?;
        let dir = std::env::temp_dir().join(format!("hostile-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("helper dir");
        // Removed when the test process exits (the helper, whose stdin then
        // closes, stops by itself).
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        let _ = DIR.set(dir.clone());
        extern "C" fn remove_dir() {
            if let Some(d) = DIR.get() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc::atexit(remove_dir) };
        let sock = dir.join("helper.sock");
        let log = std::fs::File::create(dir.join("helper.log")).expect("helper log");
        let child = Command::new(&*SANDBOX)
            .args(["helper", "--lifeline-stdin", "--socket"])
            .arg(&sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sandbox helper");
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the suite's helper never listened"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "hostile: CLI cases served by the helper at {}",
            sock.display()
        );
        let pid = child.id() as i32;
        Some((sock, pid, child))
    })
    .as_ref()
}

impl Ctx<'_> {
    /// A profile file holding `text` (kept in the scratch directory under a
    /// name from its content); its path.
    pub fn profile(&self, text: &str) -> String {
        let p = scratch_root().join(format!(
            "profile-{:016x}.toml",
            fnv(text.as_bytes(), 0xcbf2_9ce4_8422_2325)
        ));
        if std::fs::read_to_string(&p).ok().as_deref() != Some(text) {
            let tmp = p.with_extension(format!("tmp{}", self.tag()));
            std::fs::write(&tmp, text).expect("write profile");
            std::fs::rename(&tmp, &p).expect("install profile");
        }
        p.to_string_lossy().into_owned()
    }

    /// A tag unique to this execution (for file names, keys, markers).
    pub fn tag(&self) -> String {
        format!(
            "{}-{}{}",
            self.case.marker,
            if self.parallel { "p" } else { "a" },
            self.copy
        )
    }

    /// The case's server (panics for CLI cases).
    pub fn srv(&self) -> &Srv {
        self.case.srv.as_ref().expect("this case has no server")
    }

    /// `sandbox ARGS...` with the case's TMPDIR and stdin closed. Runs are
    /// in-process, or served by one `sandbox helper` for the whole suite
    /// when `SANDBOX_TEST_HELPER` is set (scripts/test runs it both ways).
    pub fn cmd<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&*SANDBOX);
        c.args(args)
            .env("TMPDIR", &self.case.tmpdir)
            .stdin(Stdio::null());
        match suite_helper() {
            Some(sock) => c.env("SANDBOX_HELPER", sock),
            None => c.env("SANDBOX_HELPER", "off"),
        };
        c
    }

    /// Record a `sandbox` process started by hand.
    pub fn track(&self, pid: u32) {
        crate::common::track(pid);
        lock(&self.case.pids).push(pid);
    }

    /// Run a command built with [`Ctx::cmd`] to completion.
    pub fn run(&self, c: Command) -> Out {
        let o = crate::common::run_cmd(c);
        lock(&self.case.pids).push(o.pid);
        o
    }

    /// `sandbox exec --json EXTRA... -- CMD...`
    pub fn exec(&self, extra: &[&str], cmd: &[&str]) -> Out {
        let mut a: Vec<&str> = vec!["exec", "--json"];
        a.extend_from_slice(extra);
        a.push("--");
        a.extend_from_slice(cmd);
        self.run(self.cmd(&a))
    }

    /// `sandbox exec --json EXTRA... -- /bin/sh -c SCRIPT`
    pub fn sh(&self, extra: &[&str], script: &str) -> Out {
        self.exec(extra, &["/bin/sh", "-c", script])
    }

    /// Run a catalogue C program: `sandbox exec --json --ro-bind DIR:/t
    /// EXTRA... -- /t/NAME ARGS...`
    pub fn c(&self, p: &CProg, extra: &[&str], args: &[&str]) -> Out {
        let bind = p.bind();
        let sb = p.sb();
        let mut e: Vec<&str> = vec!["--ro-bind", &bind];
        e.extend_from_slice(extra);
        let mut cmd: Vec<&str> = vec![&sb];
        cmd.extend_from_slice(args);
        self.exec(&e, &cmd)
    }
}

/// Assert the JSON verdict and exit code of a `sandbox exec --json` run.
#[track_caller]
pub fn verdict(o: &Out, status: &str, code: i32) {
    assert_eq!(o.status(), status, "verdict: {}", o.j());
    assert_eq!(o.code, code, "exit code of sandbox: {}", o.j());
}

/// The program's signal name, or "" when it exited.
pub fn signal(o: &Out) -> String {
    o.j()["signal"].as_str().unwrap_or("").to_string()
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    lock(&M)
}

/// Number of parallel copies: as many as CPUs.
pub fn copies() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Raise our soft RLIMIT_NOFILE to the hard limit (at most 65536): the
/// HTTP cases hold thousands of connections, and the server started by a
/// case inherits the limit.
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Run a case: alone, then `copies()` at once, then the host checks.
pub fn run_case(name: &str, opts: Opts, body: &(dyn Fn(&Ctx) + Sync)) {
    if !crate::common::require_root(name) {
        return;
    }
    let _g = serial();
    raise_nofile();
    let t0 = Instant::now();
    let before = HostState::capture();
    let case = Case::new(name, &opts);
    body(&Ctx {
        case: &case,
        copy: 0,
        parallel: false,
    });
    let n = copies();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let case = &case;
                s.spawn(move || {
                    body(&Ctx {
                        case,
                        copy: i,
                        parallel: true,
                    })
                })
            })
            .collect();
        let mut first = None;
        for (i, h) in hs.into_iter().enumerate() {
            if let Err(e) = h.join() {
                eprintln!("{name}: parallel copy {i} of {n} failed");
                first.get_or_insert(e);
            }
        }
        if let Some(e) = first {
            std::panic::resume_unwind(e);
        }
    });
    if let Some(s) = &case.srv {
        s.finish();
    }
    before.check(&case);
    eprintln!(
        "{name}: alone + {n} parallel + host checks in {:?}",
        t0.elapsed()
    );
}

impl Case {
    fn new(name: &str, opts: &Opts) -> Case {
        let marker =
            crate::common::unique(&format!("hx{}", &name[..name.len().min(12)])).replace('_', "");
        let home = scratch_root().join(format!("case-{marker}"));
        let tmpdir = home.join("tmp");
        std::fs::create_dir_all(&tmpdir).expect("case dirs");
        let srv = opts
            .server
            .is_some()
            .then(|| Srv::start(opts, &home, &tmpdir));
        Case {
            name: name.to_string(),
            marker,
            tmpdir,
            home,
            pids: Mutex::new(Vec::new()),
            srv,
        }
    }

    fn all_pids(&self) -> Vec<u32> {
        let mut v = lock(&self.pids).clone();
        if let Some(s) = &self.srv {
            v.push(s.pid);
        }
        v
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(s) = self.srv.take() {
            drop(s);
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

// ------------------------------------------------------------ host checks

/// Host binaries whose content must never change.
fn watched_binaries() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "/bin/sh",
        "/usr/bin/env",
        "/usr/bin/python3",
        "/usr/bin/true",
        "/usr/bin/sleep",
        "/etc/passwd",
    ]
    .iter()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .collect();
    v.push(PathBuf::from(&*SANDBOX));
    v
}

fn file_digest(p: &Path) -> String {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return "missing".into();
    };
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    if let Ok(mut f) = std::fs::File::open(p) {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => h = fnv(&buf[..n], h),
            }
        }
    }
    format!(
        "{h:016x} len {} mode {:o} uid {} mtime {}",
        md.len(),
        md.mode(),
        md.uid(),
        md.mtime()
    )
}

fn proc_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// (ppid, real uid) of a process.
fn proc_ppid_uid(pid: i32) -> Option<(i32, u32)> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<i64>().ok())
    };
    Some((field("PPid:")? as i32, field("Uid:")? as u32))
}

fn proc_cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn sysv_ids() -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for kind in ["shm", "sem", "msg"] {
        let t = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")).unwrap_or_default();
        for l in t.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 1 {
                s.insert(format!("{kind} key {} id {}", f[0], f[1]));
            }
        }
    }
    s
}

fn mountinfo() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn dir_entries(d: &str) -> HashSet<OsString> {
    std::fs::read_dir(d)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// A mountinfo line that looks like one of the sandbox's mounts (or lies
/// below the catalogue's scratch directory).
pub fn sandbox_like_mount(line: &str) -> bool {
    let scratch = scratch_root();
    line.contains(scratch.to_str().unwrap_or("\0"))
        || line.contains(" - overlay ")
        || line.contains("upperdir=")
        || line.contains("/newroot")
        || line.contains("/oldroot")
        || line
            .split([',', ' '])
            .filter_map(|o| o.strip_prefix("uid=")?.parse::<u32>().ok())
            .any(super::common::is_run_uid)
        || line.contains(" - devpts ") && line.contains("max=")
}

/// Names the catalogue's programs create in /tmp and /dev/shm inside the
/// sandbox (`f<N>` for the inode floods).
fn written_inside(name: &str) -> bool {
    const NAMES: [&str; 16] = [
        "x", "left", "d", "sparse", "grow", "big", "jail", "fill", "sda", "mem", "fifo", "f1",
        "f2", "f3", "s", "g",
    ];
    NAMES.contains(&name)
        || name
            .strip_prefix('f')
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
}

/// Directories of the host where an escaped program could leave files.
const SHARED_DIRS: [&str; 3] = ["/tmp", "/dev/shm", "/var/tmp"];

/// A snapshot of the host before a case.
pub struct HostState {
    pids: HashSet<i32>,
    mounts: BTreeSet<String>,
    ipc: BTreeSet<String>,
    shared: HashMap<&'static str, HashSet<OsString>>,
    binaries: Vec<(PathBuf, String)>,
}

/// Retry `f` for up to `within` until it returns no complaint.
fn settle(within: Duration, mut f: impl FnMut() -> Vec<String>) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let v = f();
        if v.is_empty() || t0.elapsed() > within {
            return v;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl HostState {
    pub fn capture() -> HostState {
        crate::common::host_baseline();
        HostState {
            pids: proc_pids().into_iter().collect(),
            mounts: mountinfo(),
            ipc: sysv_ids(),
            shared: SHARED_DIRS.iter().map(|d| (*d, dir_entries(d))).collect(),
            binaries: watched_binaries()
                .into_iter()
                .map(|p| {
                    let d = file_digest(&p);
                    (p, d)
                })
                .collect(),
        }
    }

    /// Everything the case may have left on the host.
    pub fn check(&self, case: &Case) {
        let me = std::process::id() as i32;
        let pids = case.all_pids();
        let tags: Vec<String> = pids.iter().map(|p| format!("/sandbox-{p}-")).collect();
        // Processes: our children, anything in our runs' cgroups, anything
        // carrying the marker, any new process of the sandbox's host uid
        // outside every sandbox cgroup (an escapee).
        let left = settle(Duration::from_secs(3), || {
            let mut v = vec![];
            for pid in proc_pids() {
                if pid == me || Some(pid) == suite_helper_pid() {
                    continue;
                }
                let Some((ppid, uid)) = proc_ppid_uid(pid) else {
                    continue;
                };
                let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                let cmd = proc_cmdline(pid);
                let why = if ppid == me {
                    "a child of the test"
                } else if tags.iter().any(|t| cg.contains(t.as_str())) {
                    "in a cgroup of this case's runs"
                } else if cmd.contains(&case.marker) {
                    "carries the case marker"
                } else if super::common::is_run_uid(uid)
                    && ppid == 1
                    && !self.pids.contains(&pid)
                    && !cg.contains("/sandbox-")
                {
                    // Other users of the host run sandboxes too; an
                    // escapee of ours would be an orphan outside every
                    // sandbox cgroup.
                    "new orphan of a run's host uid outside any sandbox cgroup"
                } else {
                    continue;
                };
                v.push(format!("pid {pid} ({why}): {cmd}"));
            }
            v
        });
        assert!(left.is_empty(), "{}: processes left: {left:#?}", case.name);

        // Cgroups named after our sandbox processes, at any depth below ours.
        let cgs = settle(Duration::from_secs(3), || {
            let mut v = vec![];
            let mut stack: Vec<(PathBuf, usize)> = crate::common::our_cgroup_dirs()
                .into_iter()
                .map(|d| (d, 0))
                .collect();
            while let Some((d, depth)) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    if !e.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    let n = e.file_name().to_string_lossy().into_owned();
                    if pids.iter().any(|p| n.starts_with(&format!("sandbox-{p}-"))) {
                        v.push(e.path().display().to_string());
                    } else if depth < 3 {
                        stack.push((e.path(), depth + 1));
                    }
                }
            }
            v
        });
        assert!(cgs.is_empty(), "{}: cgroups left: {cgs:#?}", case.name);

        // New mounts: the sandbox's own (overlays, its root tmpfs, /newroot,
        // workspaces under our scratch directory) would be a leak; others
        // belong to other users of the host and are only reported.
        let mut other = vec![];
        let mounts = settle(Duration::from_secs(1), || {
            let (ours, rest): (Vec<String>, Vec<String>) = mountinfo()
                .difference(&self.mounts)
                .cloned()
                .partition(|l| sandbox_like_mount(l));
            other = rest;
            ours
        });
        if !other.is_empty() {
            eprintln!(
                "NOTE: {}: new host mounts (not the sandbox's): {other:?}",
                case.name
            );
        }
        assert!(
            mounts.is_empty(),
            "{}: new host mounts: {mounts:#?}",
            case.name
        );

        let ipc = settle(Duration::from_secs(2), || {
            sysv_ids().difference(&self.ipc).cloned().collect()
        });
        assert!(
            ipc.is_empty(),
            "{}: new host SysV IPC objects: {ipc:#?}",
            case.name
        );

        let tmp: Vec<String> = dir_entries(case.tmpdir.to_str().unwrap_or("/nonexistent"))
            .into_iter()
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert!(
            tmp.is_empty(),
            "{}: temp files left in TMPDIR: {tmp:?}",
            case.name
        );
        // New entries of the sandbox's host uid in the host's shared temp
        // directories: the names the catalogue's programs write inside (or
        // the marker) would mean a write escaped; others belong to other
        // users of the host and are only reported.
        for d in SHARED_DIRS {
            let new: Vec<String> = dir_entries(d)
                .difference(&self.shared[d])
                .filter(|n| {
                    std::fs::symlink_metadata(Path::new(d).join(n))
                        .is_ok_and(|m| super::common::is_run_uid(m.uid()))
                })
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            let ours: Vec<&String> = new
                .iter()
                .filter(|n| n.contains(&case.marker) || written_inside(n))
                .collect();
            assert!(
                ours.is_empty(),
                "{}: files written inside the sandbox appeared in host {d}: {ours:?}",
                case.name
            );
            if !new.is_empty() {
                eprintln!(
                    "NOTE: {}: new entries of a run's host uid in {d} (not ours): {new:?}",
                    case.name
                );
            }
        }

        for (p, d) in &self.binaries {
            let now = file_digest(p);
            assert_eq!(&now, d, "{}: host file {} changed", case.name, p.display());
        }
    }
}
