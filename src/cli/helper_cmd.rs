//! `sandbox helper`: keeps containers ready for `sandbox exec` (see
//! [`crate::helper`]).

use std::path::PathBuf;

use crate::helper::{self, daemon};

#[derive(Debug, clap::Args)]
pub struct HelperArgs {
    /// Socket to listen on (mode 0600; `sandbox exec` looks here unless
    /// SANDBOX_HELPER names another socket or is `off`).
    #[arg(long, default_value = helper::DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// Containers kept ready per profile.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub pool: usize,
    /// Clients served at once; more wait in the socket's backlog.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_clients: usize,
    /// Profile to load and pool at start (repeatable; others are loaded on
    /// first use).
    #[arg(long = "profile", value_name = "NAME|PATH")]
    pub profiles: Vec<String>,
    /// Exit when standard input reaches end of file (for a supervisor that
    /// holds the other end of a pipe).
    #[arg(long)]
    pub lifeline_stdin: bool,
    /// Also serve clients in other cgroups. Their runs then live in the
    /// helper's cgroup, outside any limit on the client's own (by default
    /// such clients run in-process, under their cgroup).
    #[arg(long)]
    pub any_cgroup: bool,
}

pub fn run(a: HelperArgs) -> i32 {
    super::daemon_logging(super::LogFormat::Text);
    if a.pool == 0 || a.pool > 64 {
        eprintln!("sandbox: --pool: must be between 1 and 64");
        return super::exec::EXIT_SANDBOX_ERROR;
    }
    let o = daemon::Options {
        socket: a.socket,
        pool: a.pool,
        max_clients: a.max_clients,
        preload: a.profiles,
        lifeline_stdin: a.lifeline_stdin,
        any_cgroup: a.any_cgroup,
    };
    match daemon::serve(o) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sandbox helper: {e}");
            super::exec::EXIT_SANDBOX_ERROR
        }
    }
}
