//! What a run returns: the verdict, exit code or signal, usage figures and
//! captured output, and its JSON form (the `sandbox exec --json` contract).

use base64::Engine;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    RuntimeError,
    TimeLimit,
    WallTimeLimit,
    MemoryLimit,
    OutputLimit,
    SandboxError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::RuntimeError => "runtime_error",
            Status::TimeLimit => "time_limit",
            Status::WallTimeLimit => "wall_time_limit",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::SandboxError => "sandbox_error",
        }
    }
}

/// A run's resource usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// user + system CPU of every process of the run (cgroup accounting).
    pub cpu_ms: f64,
    pub user_ms: f64,
    pub sys_ms: f64,
    /// From the program's start to the end of its last process.
    pub wall_ms: f64,
    /// Peak memory of the run's cgroup (includes its tmpfs pages).
    pub memory_peak_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_peak: Option<u64>,
}

/// (Serialized by the helper without the bodies, which travel raw.)
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct RunResult {
    pub status: Option<Status>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub message: Option<String>,
    pub usage: Usage,
    #[serde(skip)]
    pub stdout: Vec<u8>,
    #[serde(skip)]
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Set when the program could not be executed at all (126/127 like a shell).
    pub exec_failed: bool,
    /// The run was killed because its caller cancelled it (the cancel fd
    /// turned readable); its message says "cancelled".
    #[serde(default)]
    pub cancelled: bool,
}

impl RunResult {
    pub fn status(&self) -> Status {
        self.status.unwrap_or(Status::SandboxError)
    }

    pub fn sandbox_error(msg: impl Into<String>) -> RunResult {
        RunResult {
            status: Some(Status::SandboxError),
            message: Some(msg.into()),
            ..Default::default()
        }
    }
}

pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}

/// Output body in JSON: UTF-8 text as is; anything else as base64 with
/// `<field>_encoding = "base64"` next to it, so nothing is lost.
pub fn encode_output(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64",
        ),
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct JsonResult {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub message: Option<String>,
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stdout_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stderr_encoding: Option<String>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl RunResult {
    /// The JSON view; `with_output = false` leaves out the bodies (`--report`).
    pub fn to_json(&self, with_output: bool) -> JsonResult {
        let (stdout, so_enc) = encode_output(&self.stdout);
        let (stderr, se_enc) = encode_output(&self.stderr);
        JsonResult {
            status: self.status(),
            exit_code: self.exit_code,
            signal: self.signal.map(signal_name),
            message: self.message.clone(),
            usage: self.usage.clone(),
            stdout: with_output.then_some(stdout),
            stdout_encoding: with_output.then(|| so_enc.to_string()),
            stderr: with_output.then_some(stderr),
            stderr_encoding: with_output.then(|| se_enc.to_string()),
            stdout_truncated: self.stdout_truncated,
            stderr_truncated: self.stderr_truncated,
        }
    }
}
