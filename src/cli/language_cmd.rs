//! `sandbox language list|show` and `sandbox exec --language ID FILE`: a
//! source file compiled and run through a language preset (`crate::preset`)
//! in a fresh workspace bound at `/box` in both steps.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;

use super::exec::{EXIT_SANDBOX_ERROR, ExecArgs};
use crate::job::request::InputFile;
use crate::job::workspace::{Workspace, prepare_base};
use crate::preset::{Preset, Step};
use crate::profile::{self, BindMount, LimitOverrides, RootSource};
use crate::runner::{Images, OutputSpec, RunResult, RunSpec, Sandbox, Status, StdinSpec};

/// Print a line to stdout, ignoring a closed pipe.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// The size of the workspace tmpfs: the source, objects and the binary
/// (a static Go binary is a few MiB; javac's classes far less).
const WORKSPACE_SIZE: u64 = 256 << 20;

/// The largest source file `exec --language` accepts.
const MAX_SOURCE_BYTES: u64 = 16 << 20;

#[derive(Subcommand, Debug)]
pub enum LanguageCommand {
    /// List the language presets (bundled and in $SANDBOX_PRESET_DIR): id,
    /// name, the toolchain's version (run in the sandbox) and Judge0 id.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Do not run the version commands (faster; version shown as "-").
        #[arg(long)]
        no_versions: bool,
    },
    /// Print the preset ID in effect (the override file's text when
    /// $SANDBOX_PRESET_DIR has one). Exit 125 when it cannot be loaded.
    Show {
        /// The preset's id (`sandbox language list` shows them), e.g. cpp17.
        #[arg(value_name = "ID")]
        id: String,
        /// Print the parsed preset as JSON instead of its TOML.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: LanguageCommand) -> i32 {
    match cmd {
        LanguageCommand::List { json, no_versions } => list(json, !no_versions),
        LanguageCommand::Show { id, json } => show(&id, json),
    }
}

/// A preset's limits as the profile files write them.
fn limits_json(l: &LimitOverrides) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let d = |d: std::time::Duration| serde_json::Value::from(format!("{}ms", d.as_millis()));
    let n = |n: u64| serde_json::Value::from(n);
    for (k, v) in [
        ("cpu_time", l.cpu_time.map(d)),
        ("wall_time", l.wall_time.map(d)),
        ("memory", l.memory.map(n)),
        ("output", l.output.map(n)),
        ("file_size", l.file_size.map(n)),
        ("stack", l.stack.map(n)),
        ("pids", l.pids.map(n)),
        ("open_files", l.open_files.map(n)),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    serde_json::Value::Object(m)
}

fn preset_json(p: &Preset, version: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("compile_limits".into(), limits_json(&p.compile_limits));
        o.insert("run_limits".into(), limits_json(&p.run_limits));
        // Environments as objects (KEY: value), as the files write them.
        for (k, env) in [
            ("env", &p.env),
            ("compile_env", &p.compile_env),
            ("run_env", &p.run_env),
        ] {
            let m: serde_json::Map<String, serde_json::Value> = env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            o.insert(k.into(), m.into());
        }
        if let Some(ver) = version {
            o.insert("version".into(), ver.into());
        }
    }
    v
}

/// The toolchain's version as reported inside the sandbox, or why not.
pub fn version(p: &Preset) -> Result<String, String> {
    let step = p.version_step();
    let sb = open_sandbox(&step, None, &None, crate::runner::PullPolicy::Never)?;
    let limits = step.limits(&sb.profile.limits, &LimitOverrides::default());
    let spec = RunSpec {
        argv: step.argv(&limits),
        env: step.env(&limits),
        cwd: Some(step.cwd.into()),
        limits,
        stdin: StdinSpec::Null,
        stdout: OutputSpec::Capture,
        stderr: OutputSpec::Capture,
        ..RunSpec::default()
    };
    let r = sb.run(&spec);
    if r.status() != Status::Ok {
        return Err(r
            .message
            .clone()
            .unwrap_or_else(|| r.status().as_str().to_string()));
    }
    crate::preset::version_line(
        &String::from_utf8_lossy(&r.stdout),
        &String::from_utf8_lossy(&r.stderr),
    )
    .ok_or_else(|| "no output".to_string())
}

fn list(json: bool, versions: bool) -> i32 {
    let all = Preset::all();
    // The version commands run concurrently: a JVM takes a second to say
    // its version, and a dozen in a row would be slow.
    let found: Vec<Option<Result<String, String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .iter()
            .map(|(_, p)| {
                s.spawn(move || match p {
                    Ok(p) if versions => Some(version(p)),
                    _ => None,
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect()
    });
    let mut code = 0;
    let mut rows = Vec::new();
    for ((id, p), ver) in all.iter().zip(found) {
        match p {
            Ok(p) => {
                let version = ver.map(|v| v.unwrap_or_else(|e| format!("(unavailable: {e})")));
                if json {
                    rows.push(preset_json(p, version.as_deref()));
                } else {
                    out!(
                        "{:<12} {:<22} {:<7} {}",
                        id,
                        p.name,
                        p.judge0_id.map(|j| j.to_string()).unwrap_or("-".into()),
                        version.as_deref().unwrap_or("-")
                    );
                }
            }
            Err(e) => {
                code = 2;
                if json {
                    rows.push(serde_json::json!({"id": id, "error": e.to_string()}));
                } else {
                    out!("{id:<12} (invalid: {e})");
                }
            }
        }
    }
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
        );
    }
    code
}

fn show(id: &str, json: bool) -> i32 {
    let p = match Preset::load(id) {
        Ok(p) => p,
        Err(e) => return super::fail(json, &e),
    };
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&preset_json(&p, None)).unwrap_or_default()
        );
    } else {
        out!("# {}", p.origin);
        out!("{}", p.text.trim_end());
    }
    0
}

/// An invocation or setup error of `exec --language` (exit 125).
#[derive(Debug, thiserror::Error)]
enum LangError {
    #[error("{0}")]
    Flag(String),
    #[error(transparent)]
    Preset(#[from] crate::preset::PresetError),
    #[error("{0}")]
    Setup(String),
    #[error("interrupted by {}: the runs were stopped and the workspace removed", crate::runner::result::signal_name(*.0))]
    Interrupted(i32),
}

/// The directory the workspace is made in must not let another user swap
/// it between our steps (root mounts a tmpfs on it and removes it later,
/// by path): owned by root or the caller, and sticky when others may write
/// to it (as /tmp is). `prepare_base` refuses a planted entry; this
/// refuses a parent in which our own entry could be renamed away.
fn safe_temp_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dir)
        .map_err(|e| format!("temporary directory {}: {e}", dir.display()))?;
    // SAFETY: geteuid has no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    let others_write = md.mode() & 0o022 != 0;
    let sticky = md.mode() & 0o1000 != 0;
    if (md.uid() != 0 && md.uid() != me) || (others_write && !sticky) {
        return Err(format!(
            "temporary directory {} (owner uid {}, mode {:o}) lets other users rename what is in it: \
             set TMPDIR to a directory owned by root (or you) that others cannot write, or that is sticky like /tmp",
            dir.display(),
            md.uid(),
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Opens the sandbox of `step`: its profile (or `profile_override`), in
/// `image` (else the step's, else the profile's root).
fn open_sandbox(
    step: &Step,
    profile_override: Option<&str>,
    image: &Option<String>,
    pull: crate::runner::PullPolicy,
) -> Result<Sandbox, String> {
    open_sandbox_in(step, profile_override, image, pull, None)
}

fn open_sandbox_in(
    step: &Step,
    profile_override: Option<&str>,
    image: &Option<String>,
    pull: crate::runner::PullPolicy,
    store: Option<&Path>,
) -> Result<Sandbox, String> {
    let name = profile_override.unwrap_or(&step.profile);
    let prof = profile::load(name).map_err(|e| e.to_string())?;
    let image = match image.as_deref().or(step.image.as_deref()) {
        Some(i) => Some(Images::normalize(i).map_err(|e| format!("image {i}: {e}"))?),
        None => None,
    };
    let in_image = image.is_some() || matches!(prof.filesystem.root, RootSource::Image(_));
    let images = if in_image {
        let store = crate::image::store_path(store);
        let store = crate::image::Store::open(&store).map_err(|e| format!("image store: {e}"))?;
        Some(Images::new(store, pull, super::image_cmd::fetch()))
    } else {
        None
    };
    Sandbox::open(prof, image.as_deref(), images.as_ref()).map_err(|e| e.to_string())
}

/// `sandbox exec --language ID FILE`.
pub fn exec_file(a: &ExecArgs, store: Option<&Path>) -> i32 {
    match exec_file_inner(a, store) {
        Ok(code) => code,
        Err(LangError::Interrupted(sig)) => {
            super::fail(a.json, &LangError::Interrupted(sig));
            128 + sig
        }
        Err(e) => super::fail(a.json, &e),
    }
}

/// The write end of the pipe a signal cancels the runs through (-1: none).
static CANCEL_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// The signal that cancelled the runs (0: none).
static SIGNALLED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    use std::sync::atomic::Ordering;
    SIGNALLED.store(sig, Ordering::SeqCst);
    let fd = CANCEL_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the fd stays open for the
        // rest of the process (leaked on purpose below).
        unsafe { libc::write(fd, b"c".as_ptr().cast(), 1) };
    }
}

/// SIGINT, SIGTERM and SIGHUP cancel the runs instead of killing this
/// process at once: the runs end (the supervisor kills them), the
/// workspace's tmpfs is unmounted and removed, and then the command exits
/// 128 + the signal. (A plain `sandbox exec` leaves nothing mounted, so it
/// keeps the default actions.)
fn cancel_on_signals() -> Option<crate::runner::CancelOn> {
    use nix::fcntl::OFlag;
    use std::os::fd::IntoRawFd;
    // Non-blocking: a handler never waits, however often it runs.
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
    CANCEL_FD.store(w.into_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    let on = crate::runner::CancelOn::new(r);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a valid handler and empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    Some(on)
}

/// A private directory holding the workspace, removed on drop.
struct Base(PathBuf);

impl Drop for Base {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn exec_file_inner(a: &ExecArgs, store: Option<&Path>) -> Result<i32, LangError> {
    let id = a.language.as_deref().unwrap_or_default();
    let flag = |m: &str| Err(LangError::Flag(m.to_string()));
    if !a.command.is_empty() {
        return flag("COMMAND: not with --language (the preset says what runs)");
    }
    if !a.bind.is_empty() || !a.ro_bind.is_empty() {
        return flag("--bind/--ro-bind: not with --language");
    }
    if a.cwd.is_some() {
        return flag("--cwd: not with --language (both steps run in /box)");
    }
    if a.report.is_some() {
        return flag("--report: not with --language (use --json)");
    }
    let Some(file) = &a.file else {
        return flag("FILE: --language needs a source file");
    };
    // The flags every exec takes (limits, --env, --stdin, --image, --pull),
    // checked by the same code.
    let req = super::exec::request(a, store).map_err(|e| LangError::Flag(e.to_string()))?;
    let preset = Preset::load(id)?;
    let source =
        read_source(file).map_err(|e| LangError::Flag(format!("FILE: {}: {e}", file.display())))?;

    let run_step = preset.run_step();
    let compile_step = preset.compile_step();
    let run_sb = open_sandbox_in(
        &run_step,
        a.profile.as_deref(),
        &req.image,
        req.pull,
        Some(&req.store),
    )
    .map_err(LangError::Setup)?;
    let compile_sb = match &compile_step {
        // The same profile and image: the same sandbox serves both steps.
        Some(s) if s.profile == run_sb.profile.name && a.profile.is_none() => None,
        Some(s) => Some(
            open_sandbox_in(s, None, &req.image, req.pull, Some(&req.store))
                .map_err(LangError::Setup)?,
        ),
        None => None,
    };
    let job = run_sb
        .job_ids()
        .map_err(|e| LangError::Setup(e.to_string()))?;
    let (uid, gid) = run_sb.program_host_ids(&job);
    safe_temp_dir(&std::env::temp_dir()).map_err(LangError::Setup)?;
    let base = Base(std::env::temp_dir().join(format!(
        "sandbox-lang-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )));
    prepare_base(&base.0).map_err(|e| LangError::Setup(e.to_string()))?;
    let ws = Workspace::create(&base.0, "box", uid, gid, WORKSPACE_SIZE)
        .map_err(|e| LangError::Setup(e.to_string()))?;
    ws.write_files(&[InputFile {
        path: preset.source.clone(),
        content: source,
        executable: false,
    }])
    .map_err(|e| LangError::Setup(e.to_string()))?;
    let cancel = cancel_on_signals();
    let bind = BindMount {
        source: ws.path().to_path_buf(),
        dest: PathBuf::from(crate::preset::WORKDIR),
        writable: true,
        optional: false,
    };

    let mut compiled = None;
    if let Some(step) = &compile_step {
        let sb = compile_sb.as_ref().unwrap_or(&run_sb);
        let limits = step.limits(&sb.profile.limits, &LimitOverrides::default());
        let spec = RunSpec {
            argv: step.argv(&limits),
            binds: vec![bind.clone()],
            env: step.env(&limits),
            cwd: Some(step.cwd.into()),
            limits,
            stdin: StdinSpec::Null,
            stdout: OutputSpec::Capture,
            stderr: OutputSpec::Capture,
            job: Some(Arc::clone(&job)),
            cancel: cancel.clone(),
            ..RunSpec::default()
        };
        let r = sb.run(&spec);
        if !a.json {
            // The compiler's diagnostics (warnings too) go to stderr.
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&r.stdout);
            let _ = err.write_all(&r.stderr);
        }
        compiled = Some(r);
    }
    let compile_failed = compiled.as_ref().is_some_and(|r| r.status() != Status::Ok);
    let ran = if compile_failed || cancel.as_ref().is_some_and(|c| c.is_set()) {
        None
    } else {
        let limits = run_step.limits(&run_sb.profile.limits, &req.limits);
        let mut env = run_step.env(&limits);
        for (k, v) in &req.env {
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        let out = if a.json {
            OutputSpec::Capture
        } else {
            OutputSpec::PassThrough
        };
        let spec = RunSpec {
            argv: run_step.argv(&limits),
            binds: vec![bind],
            env,
            cwd: Some(run_step.cwd.into()),
            limits,
            stdin: match &req.stdin {
                Some(p) => StdinSpec::File(p.clone()),
                None => StdinSpec::Inherit,
            },
            stdout: out,
            stderr: out,
            job: Some(Arc::clone(&job)),
            cancel,
            ..RunSpec::default()
        };
        Some(run_sb.run(&spec))
    };
    drop(ws);
    drop(base);
    let sig = SIGNALLED.load(std::sync::atomic::Ordering::SeqCst);
    if sig != 0 {
        // The runs were cancelled and the workspace is gone: end as the
        // signal asked (a shell's 128 + N), saying why.
        return Err(LangError::Interrupted(sig));
    }

    let (status, code) = outcome(compiled.as_ref(), ran.as_ref());
    if a.json {
        let v = serde_json::json!({
            "language": preset.id,
            "status": status,
            "compile": compiled.as_ref().map(|r| r.to_json(true)),
            "run": ran.as_ref().map(|r| r.to_json(true)),
        });
        let _ = writeln!(std::io::stdout().lock(), "{v}");
    } else if let Some(r) = compiled.as_ref().filter(|_| compile_failed) {
        eprintln!("sandbox: compile: {}", describe(r));
    } else if let Some(r) = &ran
        && (r.exec_failed || !matches!(r.status(), Status::Ok | Status::RuntimeError))
    {
        eprintln!("sandbox: {}", describe(r));
    }
    Ok(code)
}

/// The overall verdict word and exit code: a failed compile is
/// `compile_error` (its own exit code: the compiler's status, or 121–124
/// for a limit), else the run's.
fn outcome(compiled: Option<&RunResult>, ran: Option<&RunResult>) -> (&'static str, i32) {
    match (compiled, ran) {
        (Some(c), _) if c.status() == Status::SandboxError => {
            ("sandbox_error", super::exec::exit_code(c))
        }
        (Some(c), _) if c.status() != Status::Ok => ("compile_error", super::exec::exit_code(c)),
        (_, Some(r)) => (r.status().as_str(), super::exec::exit_code(r)),
        _ => ("sandbox_error", EXIT_SANDBOX_ERROR),
    }
}

fn describe(r: &RunResult) -> String {
    let msg = r.message.clone();
    match (r.status(), msg) {
        (Status::RuntimeError, _) if !r.exec_failed => match (r.exit_code, r.signal) {
            (Some(c), _) => format!("runtime_error: exit code {c}"),
            (None, Some(s)) => format!(
                "runtime_error: killed by {}",
                crate::runner::result::signal_name(s)
            ),
            _ => "runtime_error".into(),
        },
        (_, Some(m)) if r.exec_failed => format!("cannot execute {m}"),
        (s, Some(m)) => format!("{}: {m}", s.as_str()),
        (s, None) => s.as_str().to_string(),
    }
}

fn read_source(p: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut v = Vec::new();
    f.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut v)?;
    if v.len() as u64 > MAX_SOURCE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than 16 MiB",
        ));
    }
    Ok(v)
}
