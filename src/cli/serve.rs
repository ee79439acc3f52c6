//! `sandbox serve`: the HTTP job server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::job::Caps;
use crate::profile::units;
use crate::server::{self, Config};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file: its keys are these flags' long
    /// names (`listen = "127.0.0.1:8080"`, `work-dir = "/var/lib/x"`,
    /// `allow-image = ["python"]`); a flag on the command line overrides
    /// the file's key.
    #[arg(long, value_name = "FILE", display_order = 0)]
    pub config: Option<PathBuf>,
    /// Address to listen on. A non-loopback address requires a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Jobs executed at once (default: number of CPUs).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Jobs waiting for a worker; beyond that, 429.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub queue: usize,
    /// File holding the bearer token (else env SANDBOX_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Largest request body.
    #[arg(long, default_value = "16M", value_name = "SIZE", value_parser = size_text)]
    pub max_body: String,
    /// Finished jobs remembered at most.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub keep_jobs: usize,
    /// How long finished jobs are remembered.
    #[arg(long, default_value = "600s", value_name = "DUR", value_parser = duration_text)]
    pub keep_for: String,
    /// Bytes the results of finished jobs (captured output, copied-out
    /// files) may hold in all; beyond it the oldest are evicted (410).
    /// The default keeps 16 jobs at the --max-job-output default.
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = size_text)]
    pub results_budget: String,
    /// Bytes of events kept per job for GET /v1/jobs/{id}/events (at
    /// least 256K); beyond it the oldest are dropped and a late reader is
    /// told of the gap.
    #[arg(long, default_value = "4M", value_name = "SIZE", value_parser = size_text)]
    pub events_buffer: String,
    /// Bytes the events of finished jobs may hold in all; beyond it the
    /// oldest finished jobs keep only their job.ended event.
    #[arg(long, default_value = "64M", value_name = "SIZE", value_parser = size_text)]
    pub events_budget: String,
    /// Event streams (GET /v1/jobs/{id}/events) open at once; beyond, 429.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_event_streams: usize,
    /// Time between keep-alive comments on an idle event stream.
    #[arg(long, default_value = "15s", value_name = "DUR", value_parser = duration_text)]
    pub event_keepalive: String,
    /// Base directory of job workspaces (default $TMPDIR/sandbox-jobs).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Size limit of a job's workspace (checked after every step).
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = size_text)]
    pub workspace_size: String,
    /// Server maximum CPU time per step.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = duration_text)]
    pub max_cpu_time: String,
    /// Server maximum wall time per step.
    #[arg(long, default_value = "120s", value_name = "DUR", value_parser = duration_text)]
    pub max_wall_time: String,
    /// Server maximum captured stdout (and stderr) per run.
    #[arg(long, default_value = "1M", value_name = "SIZE", value_parser = size_text)]
    pub max_output: String,
    /// Captured output kept per job (all runs); later runs keep no bodies.
    #[arg(long, default_value = "16M", value_name = "SIZE", value_parser = size_text)]
    pub max_job_output: String,
    /// Let jobs name an image matching PATTERN (repeatable): a reference
    /// (`python` allows every tag of docker.io/library/python; `python:3.12`
    /// that tag only) or a glob over the normalized reference
    /// (`127.0.0.1:5000/*`). Without it, jobs cannot name images. A
    /// missing image is pulled once, by the first job that needs it.
    #[arg(long, value_name = "PATTERN")]
    pub allow_image: Vec<String>,
    /// Credentials for pulls: a Docker config.json (default
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json when present).
    #[arg(long, value_name = "FILE")]
    pub registry_creds: Option<PathBuf>,
    /// PEM certificates pulls trust besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// Let pulls use plain HTTP to this registry (repeatable; loopback
    /// registries need no flag).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// A pull still running after this long is stopped (its jobs fail).
    #[arg(long, default_value = "30m", value_name = "DUR", value_parser = duration_text)]
    pub pull_timeout: String,
    /// Time a client has to send a request's headers, and the longest idle
    /// time between requests on a keep-alive connection; then it is closed.
    #[arg(long, default_value = "5s", value_name = "DUR", value_parser = duration_text)]
    pub header_timeout: String,
    /// Time a client has, once its headers are in, to send the whole
    /// request body; then 408 and the connection is closed.
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = duration_text)]
    pub body_timeout: String,
    /// Time a response (an event stream above all) may wait on a client
    /// that takes none of it; then the connection is closed.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = duration_text)]
    pub write_timeout: String,
    /// Connections open at once; more wait in the accept queue (default:
    /// RLIMIT_NOFILE less 64, at least 16).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// On SIGTERM/SIGINT, how long running jobs may go on finishing (no
    /// new ones are taken, queued ones are cancelled); then they are
    /// cancelled. A second signal cancels them at once. SIGHUP never
    /// stops the server: it reloads the profiles.
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = duration_text)]
    pub drain_timeout: String,
    /// Turn off the Judge0-compatible API at /judge0 (on by default; see
    /// docs/judge0.md).
    #[arg(long)]
    pub no_judge0: bool,
    /// Log lines on stderr as text, or as one JSON object per line (else
    /// env SANDBOX_LOG_FORMAT; default text). Every request is logged once
    /// under target sandbox::access.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<super::LogFormat>,
    /// Files a job request may carry; beyond, 400.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_files: usize,
    /// Steps a job request may have; beyond, 400.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_steps: usize,
    /// Tests a step may have; beyond, 400.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_tests: usize,
    /// Arguments (argv entries) a step's command may have; beyond, 400.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_argv: usize,
}

/// A SIZE flag's text, checked by clap (so that a bad value in a
/// `--config` file is named by its key): kept as text, parsed again below.
fn size_text(s: &str) -> Result<String, units::UnitError> {
    units::parse_size(s).map(|_| s.to_string())
}

/// A DUR flag's text, checked by clap as [`size_text`].
fn duration_text(s: &str) -> Result<String, units::UnitError> {
    units::parse_duration(s).map(|_| s.to_string())
}

fn config(
    a: ServeArgs,
    store: Option<&std::path::Path>,
    notify: Option<server::notify::Notifier>,
) -> anyhow::Result<Config> {
    let token = match &a.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("--token-file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("SANDBOX_TOKEN")
            .ok()
            .map(|t| t.trim().to_string()),
    };
    if token.as_deref() == Some("") {
        anyhow::bail!("the token is empty");
    }
    let size =
        |flag: &str, s: &str| units::parse_size(s).map_err(|e| anyhow::anyhow!("{flag}: {e}"));
    let dur =
        |flag: &str, s: &str| units::parse_duration(s).map_err(|e| anyhow::anyhow!("{flag}: {e}"));
    let mut caps = Caps {
        max_files: a.max_files,
        max_steps: a.max_steps,
        max_tests: a.max_tests,
        max_argv: a.max_argv,
        workspace_size: size("--workspace-size", &a.workspace_size)?,
        max_job_output: size("--max-job-output", &a.max_job_output)?,
        ..Caps::default()
    };
    caps.max_limits.cpu_time = Some(dur("--max-cpu-time", &a.max_cpu_time)?);
    caps.max_limits.wall_time = Some(dur("--max-wall-time", &a.max_wall_time)?);
    caps.max_limits.output = Some(size("--max-output", &a.max_output)?);
    let workers = a
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 || a.queue == 0 {
        anyhow::bail!("--workers and --queue must be at least 1");
    }
    let header_timeout = dur("--header-timeout", &a.header_timeout)?;
    if header_timeout.is_zero() {
        anyhow::bail!("--header-timeout must be more than 0");
    }
    let body_timeout = dur("--body-timeout", &a.body_timeout)?;
    if body_timeout.is_zero() {
        anyhow::bail!("--body-timeout must be more than 0");
    }
    let write_timeout = dur("--write-timeout", &a.write_timeout)?;
    if write_timeout.is_zero() {
        anyhow::bail!("--write-timeout must be more than 0");
    }
    let max_connections = a
        .max_connections
        .unwrap_or_else(server::default_max_connections);
    if max_connections == 0 {
        anyhow::bail!("--max-connections must be at least 1");
    }
    let allow_images = crate::image::AllowList::parse(&a.allow_image)
        .map_err(|e| anyhow::anyhow!("--allow-image: {e}"))?;
    let images = if allow_images.is_empty() {
        None
    } else {
        let dir = crate::image::store_path(store);
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let store =
            crate::image::Store::open(&dir).context("--allow-image: opening the image store")?;
        let pulls = super::image_cmd::ChildPull {
            creds: a.registry_creds.clone(),
            ca: a.registry_ca.clone(),
            insecure_registries: a.insecure_registry.clone(),
            timeout: dur("--pull-timeout", &a.pull_timeout)?,
        };
        Some(std::sync::Arc::new(crate::runner::Images::new(
            store,
            crate::runner::PullPolicy::Never,
            Some(super::image_cmd::fetch_in_child(dir, pulls)),
        )))
    };
    let event_keepalive = dur("--event-keepalive", &a.event_keepalive)?;
    if event_keepalive.is_zero() {
        anyhow::bail!("--event-keepalive must be more than 0");
    }
    Ok(Config {
        images,
        allow_images,
        listen: a.listen,
        workers,
        queue: a.queue,
        token,
        max_body: size("--max-body", &a.max_body)? as usize,
        keep_jobs: a.keep_jobs,
        keep_for: dur("--keep-for", &a.keep_for)?,
        results_budget: size("--results-budget", &a.results_budget)?,
        events_buffer: size("--events-buffer", &a.events_buffer)?,
        events_budget: size("--events-budget", &a.events_budget)?,
        max_event_streams: a.max_event_streams,
        event_keepalive,
        work_dir: a
            .work_dir
            .unwrap_or_else(|| std::env::temp_dir().join("sandbox-jobs")),
        caps,
        header_timeout,
        body_timeout,
        write_timeout,
        max_connections,
        drain_timeout: dur("--drain-timeout", &a.drain_timeout)?,
        notify,
        judge0: !a.no_judge0,
    })
}

pub fn run(args: ServeArgs, store: Option<&std::path::Path>) -> i32 {
    match super::LogFormat::resolve(args.log_format) {
        Ok(f) => super::daemon_logging(f),
        Err(e) => {
            eprintln!("sandbox serve: {e}");
            return super::exec::EXIT_SANDBOX_ERROR;
        }
    }
    // Workspaces are tmpfs mounts: keep them in a mount namespace of the
    // server's own (entered now, while single-threaded), so they never show
    // on the host and vanish with the server even if it is SIGKILLed.
    if nix::unistd::geteuid().is_root() {
        use nix::mount::{MsFlags, mount};
        let private = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).and_then(|_| {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
        });
        if let Err(e) = private {
            eprintln!("sandbox serve: cannot enter a private mount namespace: {e}");
            return super::exec::EXIT_SANDBOX_ERROR;
        }
    }
    // The service manager's socket is the server's alone: taken out of the
    // environment so that nothing it starts (image pulls, a profile's
    // env_passthrough) inherits it.
    let manager = std::env::var_os(server::notify::NOTIFY_SOCKET);
    if manager.is_some() {
        // SAFETY: no other thread runs yet (the runtime is started below;
        // the unshare above needs a single-threaded process too), so none
        // reads the environment meanwhile.
        unsafe { std::env::remove_var(server::notify::NOTIFY_SOCKET) };
    }
    let manager = manager.and_then(server::notify::Notifier::new);
    let res = config(args, store, manager).and_then(|cfg| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        rt.block_on(server::serve(cfg))?;
        Ok(())
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sandbox serve: {e:#}");
            super::exec::EXIT_SANDBOX_ERROR
        }
    }
}
