//! `sandbox exec`: the command-line face of the runner.
//!
//! Exit codes (documented in docs/exec.md): the program's own code; 128+N when
//! killed by signal N; 124 time_limit, 123 wall_time_limit, 122
//! memory_limit, 121 output_limit; 125 an error of the sandbox itself (bad
//! profile, bad flag, setup failure); 126 found but not executable; 127 not
//! found.

use std::path::PathBuf;

use crate::exec::ExecRequest;
use crate::profile::{self, BindMount, LimitOverrides, RootSource};
use crate::runner::{Images, PullPolicy, RunSpec, Sandbox, Status};

pub const EXIT_TIME_LIMIT: i32 = 124;
pub const EXIT_WALL_TIME_LIMIT: i32 = 123;
pub const EXIT_MEMORY_LIMIT: i32 = 122;
pub const EXIT_OUTPUT_LIMIT: i32 = 121;
pub const EXIT_SANDBOX_ERROR: i32 = 125;

/// The profile of `sandbox exec` without `--profile`.
pub const DEFAULT_PROFILE: &str = "strict";

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Profile to run under: a bundled name or a path to a TOML file
    /// (default: strict; with --language, the preset's run profile).
    #[arg(short, long, value_name = "NAME|PATH")]
    pub profile: Option<String>,
    /// Compile (if the language needs it) and run FILE with language preset
    /// ID (`sandbox language list`); stdin and the limit flags are the run's.
    #[arg(long, value_name = "ID")]
    pub language: Option<String>,
    /// Expose a host path read-only at DEST (repeatable).
    #[arg(long = "ro-bind", value_name = "SRC:DEST")]
    pub ro_bind: Vec<String>,
    /// Expose a host path read-write at DEST (repeatable).
    #[arg(long, value_name = "SRC:DEST")]
    pub bind: Vec<String>,
    /// Working directory inside the sandbox.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Add an environment variable (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Feed FILE as standard input.
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// CPU time limit (e.g. 2s, 500ms).
    #[arg(long, value_name = "DUR")]
    pub time_limit: Option<String>,
    /// Wall-clock limit (e.g. 5s).
    #[arg(long, value_name = "DUR")]
    pub wall_time_limit: Option<String>,
    /// Memory limit (e.g. 256M).
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// Maximum number of processes/threads.
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<String>,
    /// Cap on captured stdout and, separately, on stderr (e.g. 1M).
    #[arg(long, value_name = "SIZE")]
    pub output_limit: Option<String>,
    /// Capture stdout/stderr and print ONE JSON result object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the JSON result without the output bodies to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Run in image REF (e.g. busybox, debian:12, 127.0.0.1:5000/app:v1)
    /// instead of the profile's root; pulled first if the store lacks it.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// When to pull the run's image: missing (default), never, always.
    #[arg(long, value_name = "WHEN", default_value = "missing")]
    pub pull: String,
    /// The source file to compile and run (with --language only).
    #[arg(value_name = "FILE", requires = "language")]
    pub file: Option<PathBuf>,
    /// The program and its arguments (in an image: optional, the image's
    /// entrypoint and command by default).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A user error in the invocation: printed as one line, exit 125.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{flag}: {msg}")]
    Flag { flag: &'static str, msg: String },
    #[error("{0}")]
    Profile(String),
}

fn parse_bind(flag: &'static str, s: &str, writable: bool) -> Result<BindMount, ExecError> {
    let (src, dest) = s.split_once(':').ok_or_else(|| ExecError::Flag {
        flag,
        msg: format!("{s:?} is not of the form SRC:DEST"),
    })?;
    if src.is_empty() || !dest.starts_with('/') {
        return Err(ExecError::Flag {
            flag,
            msg: format!("{s:?}: SRC must be non-empty and DEST an absolute path"),
        });
    }
    Ok(BindMount {
        source: PathBuf::from(src),
        dest: PathBuf::from(dest),
        writable,
        optional: false,
    })
}

fn flag_err(flag: &'static str) -> impl Fn(profile::units::UnitError) -> ExecError {
    move |e| ExecError::Flag {
        flag,
        msg: e.to_string(),
    }
}

/// Checks and parses the flags, once (every flag error is found here,
/// before any profile is read), into the request that runs in-process or
/// goes to the helper.
pub fn request(a: &ExecArgs, store: Option<&std::path::Path>) -> Result<ExecRequest, ExecError> {
    let dur = |s: &Option<String>, flag: &'static str| {
        s.as_deref()
            .map(|s| {
                let d = profile::units::parse_duration(s).map_err(flag_err(flag))?;
                if d.is_zero() {
                    return Err(ExecError::Flag {
                        flag,
                        msg: "must be greater than zero".into(),
                    });
                }
                Ok(d)
            })
            .transpose()
    };
    let size = |s: &Option<String>, flag: &'static str| {
        s.as_deref()
            .map(
                |s| match profile::units::parse_size(s).map_err(flag_err(flag))? {
                    // (a zero limit would fail every run, and only at run time)
                    0 => Err(ExecError::Flag {
                        flag,
                        msg: "must be greater than zero".into(),
                    }),
                    n => Ok(n),
                },
            )
            .transpose()
    };
    let mut limits = LimitOverrides {
        cpu_time: dur(&a.time_limit, "--time-limit")?,
        wall_time: dur(&a.wall_time_limit, "--wall-time-limit")?,
        memory: size(&a.memory_limit, "--memory-limit")?,
        output: size(&a.output_limit, "--output-limit")?,
        ..LimitOverrides::default()
    };
    if let Some(s) = &a.pids_limit {
        let n: u64 = s.trim().parse().map_err(|_| ExecError::Flag {
            flag: "--pids-limit",
            msg: format!("{s:?} is not a whole number of processes"),
        })?;
        if n == 0 {
            return Err(ExecError::Flag {
                flag: "--pids-limit",
                msg: "must be at least 1".into(),
            });
        }
        limits.pids = Some(n);
    }
    let mut binds = Vec::new();
    for s in &a.ro_bind {
        binds.push(parse_bind("--ro-bind", s, false)?);
    }
    for s in &a.bind {
        binds.push(parse_bind("--bind", s, true)?);
    }
    let mut env = Vec::new();
    for s in &a.env {
        let (k, v) = s.split_once('=').ok_or_else(|| ExecError::Flag {
            flag: "--env",
            msg: format!("{s:?} is not of the form KEY=VALUE"),
        })?;
        if k.is_empty() {
            return Err(ExecError::Flag {
                flag: "--env",
                msg: format!("{s:?}: empty variable name"),
            });
        }
        env.push((k.to_string(), v.to_string()));
    }
    if let Some(cwd) = &a.cwd
        && !cwd.is_absolute()
    {
        return Err(ExecError::Flag {
            flag: "--cwd",
            msg: format!(
                "{} is not an absolute path inside the sandbox",
                cwd.display()
            ),
        });
    }
    if let Some(p) = &a.stdin
        && let Err(e) = std::fs::File::open(p)
    {
        return Err(ExecError::Flag {
            flag: "--stdin",
            msg: format!("{}: {e}", p.display()),
        });
    }
    let pull = PullPolicy::parse(&a.pull).ok_or_else(|| ExecError::Flag {
        flag: "--pull",
        msg: format!("{:?}: expected missing, never or always", a.pull),
    })?;
    let image = a
        .image
        .as_deref()
        .map(|i| {
            Images::normalize(i).map_err(|e| ExecError::Flag {
                flag: "--image",
                msg: e.to_string(),
            })
        })
        .transpose()?;
    Ok(ExecRequest {
        image,
        pull,
        store: {
            let s = crate::image::store_path(store);
            std::path::absolute(&s).unwrap_or(s)
        },
        profile: a.profile.clone().unwrap_or_else(|| DEFAULT_PROFILE.into()),
        argv: a.command.clone(),
        binds,
        env,
        workdir: a.cwd.clone(),
        limits,
        stdin: a.stdin.clone(),
        capture: a.json,
    })
}

/// The request's profile, prepared, and its run (in this process).
pub fn prepare(req: &ExecRequest) -> Result<(Sandbox, RunSpec), ExecError> {
    let prof = profile::load(&req.profile).map_err(|e| ExecError::Profile(e.to_string()))?;
    let in_image = req.image.is_some() || matches!(prof.filesystem.root, RootSource::Image(_));
    if req.argv.is_empty() && !in_image {
        return Err(ExecError::Flag {
            flag: "COMMAND",
            msg: "no command given (only a run in an image may omit it: the image's entrypoint and command run)".into(),
        });
    }
    let images = if in_image {
        let store = crate::image::Store::open(&req.store)
            .map_err(|e| ExecError::Profile(format!("image store: {e}")))?;
        Some(Images::new(store, req.pull, super::image_cmd::fetch()))
    } else {
        None
    };
    let sb = Sandbox::open(prof, req.image.as_deref(), images.as_ref())
        .map_err(|e| ExecError::Profile(e.to_string()))?;
    let spec = req.spec(&sb.profile);
    Ok((sb, spec))
}

/// Whether the run was cancelled from outside (a `sandbox exec` run only
/// is when the helper serving it stops before it ends).
fn was_cancelled(r: &crate::runner::RunResult) -> bool {
    r.cancelled
}

/// The exit code of `sandbox exec` for run `r` (docs/exec.md).
pub fn exit_code(r: &crate::runner::RunResult) -> i32 {
    if was_cancelled(r) {
        return EXIT_SANDBOX_ERROR;
    }
    match r.status() {
        Status::Ok | Status::RuntimeError => match (r.exit_code, r.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            _ => EXIT_SANDBOX_ERROR,
        },
        Status::TimeLimit => EXIT_TIME_LIMIT,
        Status::WallTimeLimit => EXIT_WALL_TIME_LIMIT,
        Status::MemoryLimit => EXIT_MEMORY_LIMIT,
        Status::OutputLimit => EXIT_OUTPUT_LIMIT,
        Status::SandboxError => EXIT_SANDBOX_ERROR,
    }
}

pub fn run(a: ExecArgs, store: Option<&std::path::Path>) -> i32 {
    if a.language.is_some() {
        // Two runs sharing a workspace: always in this process (the helper
        // serves single runs).
        return super::language_cmd::exec_file(&a, store);
    }
    let t0 = std::time::Instant::now();
    let fail = |e: &dyn std::fmt::Display| super::fail(a.json, e);
    let req = match request(&a, store) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let served = match crate::helper::client_socket() {
        Some(path) => match crate::helper::client::exec(&path, &req) {
            crate::helper::client::Outcome::Served(r) => Some(r),
            crate::helper::client::Outcome::NotServed => None,
        },
        None => None,
    };
    let res = match served {
        Some(r) => {
            tracing::debug!(
                ms = t0.elapsed().as_secs_f64() * 1e3,
                "exec served by the helper"
            );
            r
        }
        None => {
            let (sb, spec) = match prepare(&req) {
                Ok(x) => x,
                Err(e) => return fail(&e),
            };
            let t1 = std::time::Instant::now();
            let res = sb.run(&spec);
            tracing::debug!(
                setup_ms = (t1 - t0).as_secs_f64() * 1e3,
                run_ms = t1.elapsed().as_secs_f64() * 1e3,
                "exec (setup: profile, seccomp compile, cgroup detection)"
            );
            res
        }
    };
    if let Some(path) = &a.report {
        let body = serde_json::to_string_pretty(&res.to_json(false)).unwrap_or_default();
        if let Err(e) = std::fs::write(path, body + "\n") {
            return fail(&format_args!("--report {}: {e}", path.display()));
        }
    }
    if a.json {
        match serde_json::to_string(&res.to_json(true)) {
            Ok(s) => {
                use std::io::Write;
                // A closed stdout (e.g. `| head`) is the reader's choice, not an error.
                let _ = writeln!(std::io::stdout().lock(), "{s}");
            }
            Err(e) => {
                eprintln!("sandbox: encoding the result: {e}");
                return EXIT_SANDBOX_ERROR;
            }
        }
    } else {
        match res.status() {
            _ if was_cancelled(&res) => {
                eprintln!(
                    "sandbox: cancelled: the helper serving this run stopped before it ended"
                );
            }
            Status::Ok | Status::RuntimeError if !res.exec_failed => {}
            _ => {
                let msg = res
                    .message
                    .clone()
                    .unwrap_or_else(|| res.status().as_str().into());
                if res.exec_failed {
                    eprintln!("sandbox: cannot execute {msg}");
                } else {
                    eprintln!("sandbox: {}: {msg}", res.status().as_str());
                }
            }
        }
    }
    exit_code(&res)
}
