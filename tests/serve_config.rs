//! `sandbox serve --config FILE`: the file's keys are serve's long flags, a
//! flag on the command line overrides its key, and a bad file is refused
//! (exit 125) naming the key.

mod common_server;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common_server::{free_port, request};

fn bin() -> String {
    std::env::var("SANDBOX_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sandbox").to_string())
}

/// `sandbox serve --config FILE ARGS`, stderr into DIR/server.log.
fn spawn(dir: &Path, config: &str, args: &[&str]) -> Child {
    let file = dir.join("serve.toml");
    std::fs::write(&file, config).expect("config");
    Command::new(bin())
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .args(args)
        .env_remove("SANDBOX_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("server.log")).expect("log"),
        ))
        .spawn()
        .expect("spawn sandbox serve")
}

/// Waits for /healthz at `addr`; panics (with the log) if the server exits.
fn wait_up(child: &mut Child, addr: &str, dir: &Path) {
    let t0 = Instant::now();
    loop {
        if let Ok(r) = request(addr, "GET", "/healthz", None, None)
            && r.status == 200
        {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("server exited: {st}\n{}", log(dir));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "server did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().expect("wait")
}

/// The queue capacity the server reports at /metrics.
fn queue_capacity(addr: &str) -> String {
    let m = request(addr, "GET", "/metrics", None, None).expect("metrics");
    m.text()
        .lines()
        .find_map(|l| l.strip_prefix("sandbox_queue_capacity "))
        .expect("sandbox_queue_capacity")
        .to_string()
}

#[test]
fn config_file_sets_listen_workers_and_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let work = dir.path().join("jobs");
    let config = format!(
        "# serve's settings\nlisten = \"{addr}\"\nworkers = 3\nqueue = 7\nwork-dir = \"{}\"\nallow-image = []\nmax-body = \"1M\"\n",
        work.display()
    );
    let mut child = spawn(dir.path(), &config, &[]);
    wait_up(&mut child, &addr, dir.path());
    assert_eq!(queue_capacity(&addr), "7");
    // The instance directory of this server is in the configured work dir.
    assert!(work.is_dir(), "{}", log(dir.path()));
    assert!(stop(child).success());
    let l = log(dir.path());
    assert!(l.contains("workers=3"), "{l}");
}

#[test]
fn a_flag_overrides_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file_addr = format!("127.0.0.1:{}", free_port());
    let addr = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "listen = \"{file_addr}\"\nqueue = 7\nwork-dir = \"{}\"\n",
        dir.path().join("jobs").display()
    );
    let mut child = spawn(dir.path(), &config, &["--listen", &addr, "--queue=9"]);
    wait_up(&mut child, &addr, dir.path());
    assert_eq!(queue_capacity(&addr), "9");
    assert!(request(&file_addr, "GET", "/healthz", None, None).is_err());
    assert!(stop(child).success());
}

/// Runs serve with a bad config file: exit 125; returns its stderr.
fn refused(config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn(dir.path(), config, &[]);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server took {config:?}\n{}", log(dir.path()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let l = log(dir.path());
    assert_eq!(status.code(), Some(125), "{l}");
    assert!(
        l.contains(&dir.path().join("serve.toml").display().to_string()),
        "{l}"
    );
    l
}

#[test]
fn an_unknown_key_is_refused_by_name() {
    let l = refused("queue = 8\n\nlisten-addr = \"127.0.0.1:1\"\n");
    assert!(l.contains("line 3: unknown key `listen-addr`"), "{l}");
    // Spelled as a flag, not as the struct field.
    let l = refused("work_dir = \"/tmp\"\n");
    assert!(l.contains("unknown key `work_dir`"), "{l}");
    assert!(l.contains("did you mean `work-dir`"), "{l}");
}

#[test]
fn a_wrong_type_is_refused_by_name() {
    let l = refused("workers = \"four\"\n");
    assert!(l.contains("line 1: `workers`: invalid value 'four'"), "{l}");
    let l = refused("queue = 1\nmax-files = [1, 2]\n");
    assert!(
        l.contains("line 2: `max-files` must be a string or a number, not an array"),
        "{l}"
    );
    let l = refused("drain-timeout = \"soon\"\n");
    assert!(l.contains("drain-timeout"), "{l}");
    let l = refused("listen = 8080\n");
    assert!(l.contains("`listen`: invalid value '8080'"), "{l}");
}
