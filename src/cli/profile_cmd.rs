//! `sandbox profile list|show|check` and the hidden `__seccomp-test` helper.

use std::ffi::CString;
use std::io::Write;

/// Print a line to stdout, ignoring a closed pipe (`sandbox profile show | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use clap::Subcommand;

use crate::profile::{self, bundled, view::ProfileView};

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// List the bundled profiles (and those in $SANDBOX_PROFILE_DIR) with their descriptions.
    List,
    /// Print a resolved profile (extends applied, defaults filled in). Exit 125 when it cannot be loaded.
    Show {
        /// Bundled name (e.g. strict) or path to a .toml file.
        profile: String,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Validate profiles; prints each warning (FILE:LINE:COL: KEY: warning: ...
    /// for a likely mistake, PATH: warning: KEY: ... for a risky but valid
    /// setting such as the host's network) then "PATH: ok", or one error
    /// line. Exit 0 if all pass (warnings included), 2 otherwise.
    Check {
        /// Profile files (or bundled profile names) to check.
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

pub fn run(cmd: ProfileCommand) -> i32 {
    match cmd {
        ProfileCommand::List => list(),
        ProfileCommand::Show { profile, json } => show(&profile, json),
        ProfileCommand::Check { paths } => check(&paths),
    }
}

fn list() -> i32 {
    let mut code = 0;
    for name in bundled::names() {
        match profile::load(&name) {
            Ok(p) => out!("{name:<12} {}", p.description),
            Err(e) => {
                out!("{name:<12} (invalid: {e})");
                code = 2;
            }
        }
    }
    code
}

fn show(name: &str, json: bool) -> i32 {
    let fail = |e: &dyn std::fmt::Display| super::fail(json, e);
    let p = match profile::load(name) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let view = ProfileView::from(&p);
    let out = if json {
        serde_json::to_string_pretty(&view).map_err(|e| e.to_string())
    } else {
        profile::view::to_toml(&p).map_err(|e| e.to_string())
    };
    match out {
        Ok(s) => {
            out!("{}", s.trim_end());
            0
        }
        Err(e) => fail(&format_args!("cannot render profile: {e}")),
    }
}

fn check(paths: &[String]) -> i32 {
    let mut code = 0;
    for path in paths {
        let res = profile::check(path).and_then(|(p, warnings)| {
            crate::security::seccomp::compile(&p.seccomp)
                .map(|_| (p, warnings))
                .map_err(|e| profile::ProfileError::Invalid {
                    file: path.clone(),
                    line: 1,
                    col: 1,
                    key: "seccomp".into(),
                    message: e.to_string(),
                })
        });
        match res {
            Ok((p, warnings)) => {
                for w in &warnings {
                    out!("{w}");
                }
                // Valid, but worth a second look: still exit 0.
                for (key, msg) in p.warnings() {
                    out!("{path}: warning: {key}: {msg}");
                }
                out!("{path}: ok");
            }
            Err(e) => {
                out!("{e}");
                code = 2;
            }
        }
    }
    code
}

/// Compile PROFILE's filter, set no_new_privs, install it and exec CMD.
pub fn seccomp_test(name: &str, cmd: &[String]) -> i32 {
    let p = match profile::load(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let filters = match crate::security::seccomp::compile(&p.seccomp) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return 2;
        }
    };
    let args: Result<Vec<CString>, _> = cmd.iter().map(|a| CString::new(a.as_bytes())).collect();
    let Ok(args) = args else {
        eprintln!("sandbox: argument contains a NUL byte");
        return 2;
    };
    let Some(prog) = args.first() else {
        eprintln!("sandbox: no command");
        return 2;
    };
    if let Err(e) = crate::security::seccomp::install(&filters) {
        eprintln!("sandbox: {e}");
        return 125;
    }
    let err = nix::unistd::execvp(prog, &args).err();
    // Only reached when execvp failed (if the filter allows write).
    eprintln!(
        "sandbox: exec {}: {}",
        prog.to_string_lossy(),
        err.map(|e| e.to_string()).unwrap_or_default()
    );
    127
}
