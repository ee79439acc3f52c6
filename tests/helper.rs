//! `sandbox helper` + `sandbox exec`: a run served by the resident helper
//! must look exactly like an in-process one (output, exit code, messages,
//! files, binds, limits), never reuse a container, stop with its client,
//! and serve only its own uid. Needs root (skips loudly otherwise).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A helper on a private socket; it exits when dropped (its stdin closes).
struct Helper {
    child: Option<Child>,
    socket: PathBuf,
    dir: PathBuf,
}

impl Helper {
    fn start(tag: &str, extra: &[&str]) -> Helper {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("helper.sock");
        let log = std::fs::File::create(dir.join("helper.log")).unwrap();
        let child = Command::new(&*SANDBOX)
            .args(["helper", "--lifeline-stdin", "--pool", "1", "--socket"])
            .arg(&socket)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn helper");
        let t0 = Instant::now();
        while !socket.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "helper never listened"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Helper {
            child: Some(child),
            socket,
            dir,
        }
    }

    /// `sandbox ARGS` as a client of this helper, from `cwd`.
    fn cmd(&self, args: &[&str], cwd: &Path) -> Command {
        let mut c = Command::new(&*SANDBOX);
        c.args(args)
            .current_dir(cwd)
            .env("SANDBOX_HELPER", &self.socket)
            .env("SANDBOX_LOG", "sandbox::cli=debug,sandbox::helper=debug")
            .stdin(Stdio::null());
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("helper.log")).unwrap_or_default()
    }

    /// Closes the lifeline and waits for a clean exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        drop(c.stdin.take());
        let t0 = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "helper did not stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn run_with(mut c: Command, stdin: Option<&[u8]>) -> Ran {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut ch = c.spawn().expect("spawn sandbox");
    if let Some(b) = stdin {
        let mut w = ch.stdin.take().unwrap();
        w.write_all(b).unwrap();
    }
    let o = ch.wait_with_output().unwrap();
    Ran {
        code: o.status.code().unwrap_or(-1),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `WRAPPER... sandbox helper --lifeline-stdin --socket SOCK`, once it
/// listens (it stops when its stdin, the returned child's, is closed).
fn helper_under(wrapper: &[&str], sock: &Path) -> Child {
    let child = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(&*SANDBOX)
        .args(["helper", "--lifeline-stdin", "--socket"])
        .arg(sock)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{wrapper:?} helper never listened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Is the sandboxed `/bin/sh -c '...; : TAG'` alive (not merely the
/// `sandbox exec` client, whose command line carries the tag too)?
fn program_running(tag: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|b| b.starts_with(b"/bin/sh\0") && String::from_utf8_lossy(&b).contains(tag))
            .unwrap_or(false)
    })
}

/// Did the helper (not the in-process path) serve this client?
fn served(r: &Ran) -> bool {
    r.stderr.contains("exec served by the helper")
}

/// Stderr without log lines (what a user sees).
fn user_stderr(s: &str) -> String {
    s.lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" INFO "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drops the timing figures from a `--json` result.
fn without_usage(out: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(out)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(out)));
    v.as_object_mut().unwrap().remove("usage");
    v
}

#[test]
fn helper_runs_match_in_process_runs() {
    if !require_root("helper_runs_match_in_process_runs") {
        return;
    }
    let h = Helper::start("helper-parity", &["--profile", "strict"]);
    let work = h.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("in.txt"), "from a file\n").unwrap();
    std::fs::write(work.join("data"), "bound read-only\n").unwrap();
    std::fs::write(
        work.join("pass.toml"),
        "extends = \"strict\"\n[process]\nenv_passthrough = [\"HELPER_T\"]\nhostname = \"from-file\"\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, Option<&[u8]>)> = vec![
        (
            vec![
                "exec",
                "--",
                "/bin/sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        ),
        (vec!["exec", "--", "/bin/sh", "-c", "kill -TERM $$"], None),
        (vec!["exec", "--", "/bin/cat"], Some(b"piped stdin\n")),
        (vec!["exec", "--stdin", "in.txt", "--", "/bin/cat"], None),
        (
            vec![
                "exec",
                "--json",
                "--",
                "/bin/sh",
                "-c",
                "printf 'a\\0b'; echo e >&2",
            ],
            None,
        ),
        (
            vec!["exec", "--ro-bind", "data:/d", "--", "/bin/cat", "/d"],
            None,
        ),
        (
            vec![
                "exec",
                "--ro-bind",
                "data:/d",
                "--",
                "/bin/sh",
                "-c",
                "echo x > /d",
            ],
            None,
        ),
        (
            vec![
                "exec",
                "--env",
                "A=1",
                "--cwd",
                "/tmp",
                "--",
                "/bin/sh",
                "-c",
                "echo $A $PWD $HELPER_T",
            ],
            None,
        ),
        (
            vec![
                "exec",
                "-p",
                "pass.toml",
                "--",
                "/bin/sh",
                "-c",
                "echo $HELPER_T $(hostname)",
            ],
            None,
        ),
        (
            vec![
                "exec",
                "--time-limit",
                "200ms",
                "--",
                "/bin/sh",
                "-c",
                "while :; do :; done",
            ],
            None,
        ),
        (
            vec![
                "exec",
                "--memory-limit",
                "32M",
                "--",
                "/usr/bin/python3",
                "-c",
                "b = bytearray(200 << 20)",
            ],
            None,
        ),
        (
            vec!["exec", "--output-limit", "1K", "--", "/usr/bin/yes"],
            None,
        ),
        (vec!["exec", "--", "/no/such/program"], None),
        (
            vec!["exec", "-p", "no-such-profile", "--", "/bin/true"],
            None,
        ),
        (vec!["exec", "-p", "missing.toml", "--", "/bin/true"], None),
        (
            vec!["exec", "--ro-bind", "nonexistent:/x", "--", "/bin/true"],
            None,
        ),
        (vec!["exec", "--time-limit", "0", "--", "/bin/true"], None),
    ];
    for (args, stdin) in &cases {
        let mut local = h.cmd(args, &work);
        local.env("SANDBOX_HELPER", "off").env("HELPER_T", "passed");
        let mut remote = h.cmd(args, &work);
        remote.env("HELPER_T", "passed");
        let a = run_with(local, *stdin);
        let b = run_with(remote, *stdin);
        assert_eq!(
            a.code, b.code,
            "{args:?}: exit codes\n{}\n{}",
            a.stderr, b.stderr
        );
        if args.contains(&"--json") {
            assert_eq!(
                without_usage(&a.stdout),
                without_usage(&b.stdout),
                "{args:?}"
            );
        } else {
            assert_eq!(
                String::from_utf8_lossy(&a.stdout),
                String::from_utf8_lossy(&b.stdout),
                "{args:?}: stdout"
            );
        }
        let (ea, eb) = (user_stderr(&a.stderr), user_stderr(&b.stderr));
        // CPU figures in limit messages differ run to run.
        let digits = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "#");
        assert_eq!(digits(&ea), digits(&eb), "{args:?}: stderr");
        assert!(
            !served(&a),
            "{args:?}: SANDBOX_HELPER=off must run in-process"
        );
        // Flag, profile and bind-source errors are left to the in-process
        // path (which reports them in its usual order); the rest is served.
        let expect_served = !args.contains(&"no-such-profile")
            && !args.contains(&"missing.toml")
            && !args.contains(&"nonexistent:/x")
            && !args.contains(&"0");
        assert_eq!(served(&b), expect_served, "{args:?}: served?\n{}", b.stderr);
    }
    // Spot checks of what both agreed on.
    let r = run_with(
        h.cmd(&["exec", "--", "/bin/sh", "-c", "echo out; exit 3"], &work),
        None,
    );
    assert_eq!((r.code, r.stdout.as_slice()), (3, b"out\n".as_slice()));
    let mut c = h.cmd(
        &[
            "exec",
            "-p",
            "pass.toml",
            "--",
            "/bin/sh",
            "-c",
            "echo $HELPER_T $(hostname)",
        ],
        &work,
    );
    c.env("HELPER_T", "passed");
    assert_eq!(
        String::from_utf8_lossy(&run_with(c, None).stdout),
        "passed from-file\n"
    );
}

#[test]
fn helper_wall_time_is_the_programs_own() {
    if !require_root("helper_wall_time_is_the_programs_own") {
        return;
    }
    let h = Helper::start("helper-wall", &[]);
    // A pooled run's supervisor may notice execve and the end in one
    // wake-up (likeliest when the CPUs are busy, as here); the figure must
    // still be the program's lifetime.
    let hogs: Vec<Child> = (0..2)
        .map(|_| {
            Command::new("/bin/sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    struct Reap(Vec<Child>);
    impl Drop for Reap {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let _hogs = Reap(hogs);
    for (prog, lo, hi, n) in [
        // (Slow kernels, e.g. the emulated guest of the v2 lane, stretch the top.)
        (vec!["/bin/true"], 0.02, 5000.0, 30),
        (vec!["/bin/sleep", "0.05"], 50.0, 10000.0, 3),
    ] {
        for _ in 0..n {
            let mut a = vec!["exec", "--json", "--"];
            a.extend(prog.iter().copied());
            let r = run_with(h.cmd(&a, Path::new("/")), None);
            assert!(served(&r), "{}", r.stderr);
            let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
            let w = v["usage"]["wall_ms"].as_f64().unwrap();
            assert!(
                w >= lo && w <= hi,
                "{prog:?}: wall_ms {w} outside [{lo}, {hi}]"
            );
        }
    }
}

#[test]
fn helper_containers_are_never_reused() {
    if !require_root("helper_containers_are_never_reused") {
        return;
    }
    let h = Helper::start("helper-fresh", &[]);
    let tag = unique("mark");
    for i in 0..5 {
        let script = format!(
            "ls /tmp /dev/shm; touch /tmp/{tag} /dev/shm/{tag}; echo $$ > /tmp/pid; cat /proc/1/stat | cut -d' ' -f1"
        );
        let r = run_with(
            h.cmd(&["exec", "--", "/bin/sh", "-c", &script], Path::new("/")),
            None,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(served(&r), "run {i} not served:\n{}", r.stderr);
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(
            !out.contains(&tag),
            "run {i} saw an earlier run's files: {out}"
        );
    }
}

#[test]
fn helper_cancels_the_run_of_a_client_that_dies() {
    if !require_root("helper_cancels_the_run_of_a_client_that_dies") {
        return;
    }
    let h = Helper::start("helper-cancel", &[]);
    let tag = unique("sleeper");
    let script = format!("sleep 60; : {tag}");
    let mut c = h.cmd(&["exec", "--", "/bin/sh", "-c", &script], Path::new("/"));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut client = c.spawn().unwrap();
    let running = |tag: &str| program_running(tag);
    let t0 = Instant::now();
    while !running(&tag) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the program never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    client.kill().unwrap();
    client.wait().unwrap();
    let t0 = Instant::now();
    while running(&tag) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the run outlived its client by 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn helper_follows_profile_edits() {
    if !require_root("helper_follows_profile_edits") {
        return;
    }
    let h = Helper::start("helper-edit", &[]);
    let p = h.dir.join("edit.toml");
    let host = |name: &str| {
        std::fs::write(
            &p,
            format!("extends = \"strict\"\n[process]\nhostname = \"{name}\"\n"),
        )
        .unwrap();
        let r = run_with(
            h.cmd(
                &["exec", "-p", p.to_str().unwrap(), "--", "/bin/hostname"],
                Path::new("/"),
            ),
            None,
        );
        assert!(served(&r), "{}", r.stderr);
        String::from_utf8_lossy(&r.stdout).trim().to_string()
    };
    assert_eq!(host("first"), "first");
    assert_eq!(host("first"), "first");
    assert_eq!(host("second"), "second");
    // A broken edit is reported as the in-process run reports it.
    std::fs::write(&p, "extends = \"strict\"\n[process]\nhostname = 3\n").unwrap();
    let r = run_with(
        h.cmd(
            &["exec", "-p", p.to_str().unwrap(), "--", "/bin/true"],
            Path::new("/"),
        ),
        None,
    );
    assert_eq!(r.code, 125);
    assert!(user_stderr(&r.stderr).contains("hostname"), "{}", r.stderr);
}

#[test]
fn helper_serves_only_its_own_uid() {
    if !require_root("helper_serves_only_its_own_uid") {
        return;
    }
    let h = Helper::start("helper-uid", &[]);
    let mode = std::fs::metadata(&h.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // Even with the socket opened up, another uid is turned away before
    // its request is read.
    std::fs::set_permissions(&h.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&h.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let py = format!(
        r#"
import os, socket, struct, json
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({:?})
req = json.dumps({{"profile": "strict", "cwd": "/", "argv": ["/bin/true"], "env": [], "workdir": None,
    "limits": {{}}, "capture": True, "caller_env": [], "binds": []}}).encode()
try:
    s.sendall(struct.pack("<I", len(req)) + req)
except OSError:
    pass
n = struct.unpack("<I", s.recv(4))[0]
print(s.recv(n).decode())
"#,
        h.socket.to_str().unwrap()
    );
    let o = Command::new("/usr/bin/python3")
        .args(["-c", &py])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("\"fallback\"") && out.contains("only its own uid"),
        "{out}"
    );
    assert!(
        h.log().contains("refused a client of another uid"),
        "{}",
        h.log()
    );
}

#[test]
fn helper_lifecycle() {
    if !require_root("helper_lifecycle") {
        return;
    }
    let mut h = Helper::start("helper-life", &[]);
    // A second helper on the same socket is refused.
    let o = Command::new(&*SANDBOX)
        .args(["helper", "--socket"])
        .arg(&h.socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already listening"));
    // One that cannot load its --profile says which and leaves no socket.
    let bad = h.dir.join("bad.sock");
    let o = Command::new(&*SANDBOX)
        .args(["helper", "--profile", "no-such-profile", "--socket"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--profile no-such-profile"),
        "{o:?}"
    );
    assert!(!bad.exists(), "socket left behind");
    let r = run_with(h.cmd(&["exec", "--", "/bin/true"], Path::new("/")), None);
    assert!(served(&r) && r.code == 0, "{}", r.stderr);
    let st = h.stop();
    assert!(st.success(), "{st:?}");
    assert!(!h.socket.exists(), "socket left behind");
    // With the helper gone, exec runs in-process.
    let r = run_with(h.cmd(&["exec", "--", "/bin/true"], Path::new("/")), None);
    assert!(!served(&r) && r.code == 0, "{}", r.stderr);
    // A dead helper's socket file is replaced, and SIGTERM stops the new
    // helper cleanly too.
    drop(std::os::unix::net::UnixListener::bind(&h.socket).unwrap());
    assert!(h.socket.exists());
    let mut h2 = Command::new(&*SANDBOX)
        .args(["helper", "--socket"])
        .arg(&h.socket)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let r = run_with(h.cmd(&["exec", "--", "/bin/true"], Path::new("/")), None);
        if served(&r) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the new helper never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the helper this test started.
    unsafe { libc::kill(h2.id() as i32, libc::SIGTERM) };
    let st = h2.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert!(!h.socket.exists());
}

#[test]
fn helper_declines_clients_whose_context_differs() {
    if !require_root("helper_declines_clients_whose_context_differs") {
        return;
    }
    let h = Helper::start("helper-ctx", &[]);
    let me = run_with(h.cmd(&["exec", "--", "/bin/true"], Path::new("/")), None);
    assert!(served(&me), "{}", me.stderr);
    // Each wrapper changes something a run inherits: the client runs
    // in-process, and keeps it.
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["/usr/bin/nice", "-n", "7"],
            "nice value",
            "cut -d' ' -f19 /proc/self/stat",
        ),
        (&["/usr/bin/unshare", "-n"], "network namespace", "true"),
        (
            &["/usr/bin/prlimit", "--msgqueue=300:300"],
            "rlimits",
            "grep -o 'msgqueue size *300' /proc/self/limits",
        ),
        (
            &["/usr/bin/taskset", "-c", "0"],
            "CPU affinity",
            "grep Cpus_allowed_list /proc/self/status",
        ),
    ];
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (wrap, what, probe) in cases {
        if what == "CPU affinity" && cpus < 2 {
            eprintln!("(one CPU: taskset -c 0 changes nothing; case skipped)");
            continue;
        }
        let mut argv: Vec<&str> = wrap.to_vec();
        argv.push(&SANDBOX);
        argv.extend(["exec", "--", "/bin/sh", "-c", probe]);
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..])
            .env("SANDBOX_HELPER", &h.socket)
            .env("SANDBOX_LOG", "sandbox::cli=debug,sandbox::helper=debug")
            .stdin(Stdio::null());
        let r = run_with(c, None);
        assert_eq!(r.code, 0, "{wrap:?}: {}", r.stderr);
        assert!(!served(&r), "{wrap:?} was served:\n{}", r.stderr);
        assert!(
            r.stderr.contains(what),
            "{wrap:?}: reason should name {what}:\n{}",
            r.stderr
        );
        let out = String::from_utf8_lossy(&r.stdout);
        match what {
            "nice value" => assert_eq!(out.trim(), "7"),
            "rlimits" => assert!(out.contains("msgqueue size"), "{out}"),
            "CPU affinity" => assert_eq!(out.trim(), "Cpus_allowed_list:\t0"),
            _ => {}
        }
    }
}

#[test]
fn helper_profile_edit_spares_runs_in_progress() {
    if !require_root("helper_profile_edit_spares_runs_in_progress") {
        return;
    }
    let h = Helper::start("helper-edit-run", &[]);
    let p = h.dir.join("p.toml");
    let write = |name: &str| {
        std::fs::write(
            &p,
            format!("extends = \"strict\"\n[process]\nhostname = \"{name}\"\n"),
        )
        .unwrap()
    };
    write("one");
    let pp = p.to_str().unwrap().to_string();
    // The profile's first run makes its own container; later ones take the
    // pool's, whose inits die with the pool's thread.
    let r = run_with(
        h.cmd(&["exec", "-p", &pp, "--", "/bin/true"], Path::new("/")),
        None,
    );
    assert!(served(&r), "{}", r.stderr);
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = h.cmd(
        &[
            "exec",
            "-p",
            &pp,
            "--",
            "/bin/sh",
            "-c",
            "sleep 1; hostname",
        ],
        Path::new("/"),
    );
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let long = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Changing the profile replaces its pool while the first run goes on.
    write("two");
    let r = run_with(
        h.cmd(&["exec", "-p", &pp, "--", "/bin/hostname"], Path::new("/")),
        None,
    );
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "two");
    let o = long.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exec served by the helper"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "one");
}

#[test]
fn helper_and_client_insist_on_their_own_uid() {
    if !require_root("helper_and_client_insist_on_their_own_uid") {
        return;
    }
    // A socket in a directory others may write is refused.
    let open = std::env::temp_dir().join(unique("helper-777"));
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = Command::new(&*SANDBOX)
        .args(["helper", "--socket"])
        .arg(open.join("h.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&open);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not be writable"),
        "{o:?}"
    );
    // A root client does not hand its stdio to a helper of another uid.
    let dir = std::env::temp_dir().join(unique("helper-nobody"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let sock = dir.join("h.sock");
    let mut other = helper_under(
        &[
            "/usr/bin/setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ],
        &sock,
    );
    let mut c = Command::new(&*SANDBOX);
    c.args(["exec", "--", "/bin/echo", "ran"])
        .env("SANDBOX_HELPER", &sock)
        .env("SANDBOX_LOG", "sandbox::cli=debug")
        .stdin(Stdio::null());
    let r = run_with(c, None);
    drop(other.stdin.take());
    let _ = other.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (r.code, r.stdout.as_slice()),
        (0, b"ran\n".as_slice()),
        "{}",
        r.stderr
    );
    assert!(!served(&r));
    assert!(r.stderr.contains("it runs as uid 65534"), "{}", r.stderr);
}

#[test]
fn helper_serves_clients_in_parallel() {
    if !require_root("helper_serves_clients_in_parallel") {
        return;
    }
    let h = Helper::start("helper-par", &["--max-clients", "4"]);
    let t0 = Instant::now();
    let kids: Vec<Child> = (0..12)
        .map(|i| {
            let mut c = h.cmd(
                &[
                    "exec",
                    "--",
                    "/bin/sh",
                    "-c",
                    &format!("sleep 0.4; echo {i}"),
                ],
                Path::new("/"),
            );
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        let o = k.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(err.contains("exec served by the helper"), "{err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{i}\n"));
    }
    // 12 runs of 0.4 s, at most 4 at a time: at least 3 rounds.
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1200),
        "{took:?}: more than 4 at once"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn helper_leaves_terminals_to_the_in_process_path() {
    if !require_root("helper_leaves_terminals_to_the_in_process_path") {
        return;
    }
    let h = Helper::start("helper-tty", &[]);
    // stdin on a pseudo-terminal: job control must stay the shell's.
    let py = r#"
import os, subprocess, sys
m, s = os.openpty()
r = subprocess.run(sys.argv[1:], stdin=s, capture_output=True)
os.write(m, b"")
sys.stdout.buffer.write(r.stdout)
sys.stderr.buffer.write(r.stderr)
sys.exit(r.returncode)
"#;
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-c", py])
        .arg(&*SANDBOX)
        .args(["exec", "--", "/bin/echo", "tty"])
        .env("SANDBOX_HELPER", &h.socket)
        .env("SANDBOX_LOG", "sandbox::cli=debug,sandbox::helper=debug")
        .stdin(Stdio::null());
    let r = run_with(c, None);
    assert_eq!(
        (r.code, r.stdout.as_slice()),
        (0, b"tty\n".as_slice()),
        "{}",
        r.stderr
    );
    assert!(!served(&r), "{}", r.stderr);
    assert!(r.stderr.contains("a terminal"), "{}", r.stderr);
}

#[test]
fn helper_runs_keep_the_nice_value() {
    if !require_root("helper_runs_keep_the_nice_value") {
        return;
    }
    // A helper started at nice 5 serves clients at nice 5; its pooled
    // containers (made by a thread at nice 19) run them at 5 again.
    let dir = std::env::temp_dir().join(unique("helper-nice"));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("h.sock");
    let mut helper = helper_under(&["/usr/bin/nice", "-n", "5"], &sock);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut c = Command::new("/usr/bin/nice");
        c.args(["-n", "5"])
            .arg(&*SANDBOX)
            .args([
                "exec",
                "--",
                "/bin/sh",
                "-c",
                "cut -d' ' -f19 /proc/self/stat",
            ])
            .env("SANDBOX_HELPER", &sock)
            .env("SANDBOX_LOG", "sandbox::cli=debug")
            .stdin(Stdio::null());
        let r = run_with(c, None);
        assert!(served(&r), "{}", r.stderr);
        seen.push(String::from_utf8_lossy(&r.stdout).trim().to_string());
        // Let the pool make the next container ahead.
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(helper.stdin.take());
    let _ = helper.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(seen, ["5", "5", "5"]);
}

#[test]
fn helper_stop_cancels_runs_at_a_second_signal() {
    if !require_root("helper_stop_cancels_runs_at_a_second_signal") {
        return;
    }
    let mut h = Helper::start("helper-stop", &[]);
    let tag = unique("stopper");
    let script = format!("sleep 60; : {tag}");
    let mut c = h.cmd(&["exec", "--", "/bin/sh", "-c", &script], Path::new("/"));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let client = c.spawn().unwrap();
    let running = |tag: &str| program_running(tag);
    let t0 = Instant::now();
    while !running(&tag) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the program never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = h.child.as_ref().unwrap().id() as i32;
    // The first SIGTERM lets the run go on (grace); the second cancels it.
    // SAFETY: signalling the helper this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // Taken (the socket goes first) before the second is sent: two pending
    // SIGTERMs would merge into one.
    let t0 = Instant::now();
    while h.socket.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the first signal was not taken"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(running(&tag), "the first signal already ended the run");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t0 = Instant::now();
    let o = client.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exec served by the helper"), "{err}");
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("sandbox: cancelled: the helper serving this run stopped"),
        "{err}"
    );
    let st = h.child.as_mut().unwrap().wait().unwrap();
    h.child = None;
    assert!(st.success(), "{st:?}");
    assert!(!running(&tag), "the run outlived the helper");
}

#[test]
fn helper_sighup_reloads_and_keeps_serving() {
    if !require_root("helper_sighup_reloads_and_keeps_serving") {
        return;
    }
    let h = Helper::start("helper-hup", &["--profile", "strict"]);
    let echo = |word: &str| {
        let r = run_with(
            h.cmd(&["exec", "--", "/bin/echo", word], Path::new("/")),
            None,
        );
        assert!(served(&r), "{}", r.stderr);
        assert_eq!(r.code, 0, "{}", r.stderr);
        String::from_utf8_lossy(&r.stdout).trim().to_string()
    };
    assert_eq!(echo("before"), "before");
    let pid = h.child.as_ref().expect("running").id() as i32;
    for i in 1..=2 {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let t0 = Instant::now();
        while h.log().matches("SIGHUP: profiles reloaded").count() < i {
            assert!(t0.elapsed() < Duration::from_secs(10), "{}", h.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(echo("after"), "after");
    let mut h = h;
    assert!(h.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert!(h.stop().success());
}
