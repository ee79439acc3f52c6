//! Test harness for `sandbox serve`: start the real binary on a free
//! loopback port, a tiny blocking HTTP/1.1 client, clean shutdown.
#![allow(dead_code)]

pub mod http;

pub use http::{Response, free_port, request};

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Option<Child>,
    pub addr: String,
    pub token: Option<String>,
    pub dir: tempfile::TempDir,
    pub work_dir: PathBuf,
}

impl Server {
    /// Start `sandbox serve` with extra args; waits for /healthz.
    pub fn start(extra: &[&str], token: Option<&str>) -> Server {
        Server::start_with_env(extra, token, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_with_env(extra: &[&str], token: Option<&str>, env: &[(&str, &str)]) -> Server {
        Server::start_in(None, extra, token, env)
    }

    /// [`Server::start_with_env`] on a given work directory (default: one
    /// of its own).
    pub fn start_in(
        work_dir: Option<&std::path::Path>,
        extra: &[&str],
        token: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let work_dir = work_dir.map_or_else(|| dir.path().join("jobs"), |w| w.to_path_buf());
        let addr = format!("127.0.0.1:{}", free_port());
        // As tests/common's SANDBOX: the static build when scripts/test says so.
        let bin = std::env::var("SANDBOX_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sandbox").to_string());
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(&addr)
            .arg("--work-dir")
            .arg(&work_dir)
            .args(extra)
            .env_remove("SANDBOX_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("server.log")).expect("log"),
            ));
        if let Some(t) = token {
            let tf = dir.path().join("token");
            std::fs::write(&tf, format!("{t}\n")).expect("token file");
            cmd.arg("--token-file").arg(&tf);
        }
        let child = cmd.spawn().expect("spawn sandbox serve");
        let mut s = Server {
            child: Some(child),
            addr,
            token: token.map(String::from),
            dir,
            work_dir,
        };
        let t0 = Instant::now();
        loop {
            if let Ok(r) = request(&s.addr, "GET", "/healthz", None, None)
                && r.status == 200
            {
                break;
            }
            if let Some(c) = s.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("server exited early: {st}\n{}", s.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "server did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A value of the Prometheus text at /metrics (`name` with its labels).
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric(&self.get("/metrics").text(), name)
    }

    pub fn req(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let b = body.map(|b| serde_json::to_vec(b).expect("json"));
        request(
            &self.addr,
            method,
            path,
            self.token.as_deref(),
            b.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.req("POST", path, Some(body))
    }

    pub fn get(&self, path: &str) -> Response {
        self.req("GET", path, None)
    }

    /// Submit with wait=true and return the finished job.
    pub fn run(&self, body: &Value) -> Value {
        let r = self.post("/v1/jobs?wait=true", body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Poll until the job is finished.
    pub fn wait_job(&self, id: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let r = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(r.status, 200, "{}", r.text());
            let j = r.json();
            if j["status"] == "completed" || j["status"] == "cancelled" || j["status"] == "failed" {
                return j;
            }
            assert!(t0.elapsed() < timeout, "job {id} did not finish: {j}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait (SIGKILL after 20 s). Returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
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
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What is left in a work directory (a stopped server leaves nothing: its
/// instance directory goes, the base stays for the other servers).
pub fn left_in(work_dir: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(work_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A value of Prometheus text: the sample `name` (with its labels, if any).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Resident memory of a process, bytes (VmRSS of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    st.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb << 10)
        .expect("VmRSS")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
