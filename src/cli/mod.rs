//! Command-line interface: argument parsing and the `sandbox` subcommands.
//! `profile` subcommands live in `profile_cmd`.

use clap::{Parser, Subcommand};

pub mod profile_cmd;

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
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Profile(cmd) => profile_cmd::run(cmd),
        Command::SeccompTest { profile, cmd } => profile_cmd::seccomp_test(&profile, &cmd),
    }
}
