//! Command-line interface: argument parsing and the `sandbox` subcommands.
//! `profile` subcommands live in `profile_cmd`.

use clap::{Parser, Subcommand};

pub mod check_host;
pub mod exec;
pub mod profile_cmd;
pub mod serve;

#[derive(Parser, Debug)]
#[command(
    name = "sandbox",
    version,
    about = "A declarative Linux sandbox for untrusted code"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one program in a fresh sandbox.
    Exec(exec::ExecArgs),
    /// Serve the HTTP job API.
    Serve(serve::ServeArgs),
    /// Report the host settings the sandbox depends on or recommends.
    CheckHost {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List, show and check security profiles.
    #[command(subcommand)]
    Profile(profile_cmd::ProfileCommand),
    /// (testing only) Install PROFILE's seccomp filter (with no_new_privs)
    /// and exec CMD, without any other isolation.
    #[command(name = "__seccomp-test", hide = true)]
    SeccompTest {
        profile: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    init_logging();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Usage errors are the sandbox's own errors: 125, like env(1) and timeout(1).
            let code = if e.use_stderr() {
                exec::EXIT_SANDBOX_ERROR
            } else {
                0
            };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Exec(a) => exec::run(a),
        Command::CheckHost { json } => check_host::run(json),
        Command::Serve(a) => serve::run(a),
        Command::Profile(cmd) => profile_cmd::run(cmd),
        Command::SeccompTest { profile, cmd } => profile_cmd::seccomp_test(&profile, &cmd),
    }
}

/// Logs go to stderr, off unless `SANDBOX_LOG` (or `RUST_LOG`) sets a filter,
/// e.g. `SANDBOX_LOG=sandbox=debug` shows the phases of every run.
fn init_logging() {
    let filter = std::env::var("SANDBOX_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    if filter.is_empty() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
