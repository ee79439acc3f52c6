//! Command-line interface: argument parsing and the `sandbox` subcommands.
//! `profile` subcommands live in `profile_cmd`, `image` ones in `image_cmd`,
//! `language` ones (and `exec --language`) in `language_cmd`.

use clap::{Args, Parser, Subcommand};

pub mod check_host;
pub mod docs_cmd;
pub mod exec;
pub mod helper_cmd;
pub mod image_cmd;
pub mod language_cmd;
pub mod profile_cmd;
pub mod serve;
pub mod serve_config;

#[derive(Parser, Debug)]
#[command(
    name = "sandbox",
    version,
    about = "A declarative Linux sandbox for untrusted code",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `sandbox --help`: the exit-code contract (docs/exec.md,
/// tests/exit_codes.rs) and the environment variables read. sandbox(1)
/// has the same as roff sections of its own (docs_cmd).
pub const AFTER_HELP: &str = "\
Exit status:
  125    an error of the sandbox or of the invocation, for every command (a bad
         flag, profile or config file; a failure of the sandbox or the host)
  exec   the program's own status; 128+N when signal N (not a limit) killed it;
         124 CPU time, 123 wall time, 122 memory, 121 output limit;
         126 cannot be executed; 127 not found
  other  0 on success; profile check/list 2 when a profile is invalid;
         check-host 1 when a required host setting is missing

Environment:
  SANDBOX_TOKEN        serve's bearer token when --token-file is not given
  SANDBOX_STORE        the image store (default /var/lib/sandbox); --store overrides
  SANDBOX_HELPER       the helper socket exec uses (default /run/sandbox/helper.sock;
                       empty or off: none)
  SANDBOX_PROFILE_DIR  a directory whose NAME.toml files replace or add bundled profiles
  SANDBOX_LOG          log filter on stderr (e.g. sandbox=debug; else RUST_LOG);
                       off by default, info for serve and helper
  TMPDIR               serve's default work directory is $TMPDIR/sandbox-jobs
  DOCKER_CONFIG        pulls' credentials, $DOCKER_CONFIG/config.json (else
                       ~/.docker/config.json; HOME)
  NOTIFY_SOCKET        serve notifies the service manager (systemd Type=notify)";

// Flags every subcommand takes (a plain comment: a doc comment would
// become the `about` of `sandbox exec`'s fast path).
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// The image store (default $SANDBOX_STORE, else /var/lib/sandbox).
    #[arg(long, global = true, value_name = "DIR", display_order = 900)]
    pub store: Option<std::path::PathBuf>,
}

// Built once per process from argv: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one program in a fresh sandbox.
    Exec(exec::ExecArgs),
    /// Serve the HTTP job API.
    Serve(serve::ServeArgs),
    /// Keep containers ready for `sandbox exec` (a resident helper).
    Helper(helper_cmd::HelperArgs),
    /// Report the host settings the sandbox depends on or recommends.
    CheckHost {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List, show and check security profiles.
    #[command(subcommand)]
    Profile(profile_cmd::ProfileCommand),
    /// List and show language presets (`sandbox exec --language ID FILE`).
    #[command(subcommand)]
    Language(language_cmd::LanguageCommand),
    /// Import, list, inspect and remove OCI images.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs_cmd::CompletionsArgs),
    /// Print the manual page sandbox(1) as roff, or write every page into a directory.
    Man(docs_cmd::ManArgs),
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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "exec") {
        init_logging();
        // The hot path: clap would otherwise build every subcommand's
        // arguments (serve has two dozen) before parsing; this builds only
        // exec's, with the same name, text and errors (tested below).
        use clap::FromArgMatches;
        let bin = args[0]
            .to_str()
            .and_then(|a| a.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .unwrap_or("sandbox");
        return match exec_command(bin)
            .try_get_matches_from(&args[1..])
            .and_then(|m| {
                Ok((
                    exec::ExecArgs::from_arg_matches(&m)?,
                    GlobalArgs::from_arg_matches(&m)?,
                ))
            }) {
            Ok((a, g)) => exec::run(a, g.store.as_deref()),
            Err(e) => usage_error(e, wants_json(&args)),
        };
    }
    let cli = match parse_full(args) {
        Ok(c) => c,
        Err(Parse::Usage(e, json)) => return usage_error(e, json),
        Err(Parse::Config(e)) => {
            eprintln!("sandbox serve: {e}");
            return exec::EXIT_SANDBOX_ERROR;
        }
    };
    // The daemons set up their own (info by default, --log-format).
    if !matches!(cli.command, Command::Serve(_) | Command::Helper(_)) {
        init_logging();
    }
    match cli.command {
        Command::Exec(a) => exec::run(a, cli.global.store.as_deref()),
        Command::CheckHost { json } => check_host::run(json),
        Command::Serve(a) => serve::run(a, cli.global.store.as_deref()),
        Command::Helper(a) => helper_cmd::run(a),
        Command::Profile(cmd) => profile_cmd::run(cmd),
        Command::Language(cmd) => language_cmd::run(cmd),
        Command::Image(cmd) => image_cmd::run(cmd, cli.global.store.as_deref()),
        Command::Completions(a) => docs_cmd::completions(a),
        Command::Man(a) => docs_cmd::man(a),
        Command::SeccompTest { profile, cmd } => profile_cmd::seccomp_test(&profile, &cmd),
    }
}

/// Why the command line could not be parsed.
enum Parse {
    /// clap's error (or help/version), and whether `--json` was asked for.
    Usage(clap::Error, bool),
    /// `sandbox serve --config FILE` and FILE is unusable.
    Config(serve_config::ConfigError),
}

/// The whole command line; for `serve --config FILE`, with FILE's keys
/// the command line left unset appended as flags (see [`serve_config`]).
fn parse_full(mut args: Vec<std::ffi::OsString>) -> Result<Cli, Parse> {
    use clap::{CommandFactory, FromArgMatches};
    let json = wants_json(&args);
    let mut cmd = Cli::command();
    let mut m = cmd
        .try_get_matches_from_mut(&args)
        .map_err(|e| Parse::Usage(e, json))?;
    if let Some(("serve", sm)) = m.subcommand()
        && let Some(path) = sm.get_one::<std::path::PathBuf>("config")
    {
        let serve = cmd.find_subcommand("serve").expect("serve is a subcommand");
        let extra = serve_config::args_from_file(path, serve, sm).map_err(Parse::Config)?;
        if !extra.is_empty() {
            // serve takes no positional arguments: flags appended last
            // are serve's (or global) ones.
            args.extend(extra);
            m = cmd
                .try_get_matches_from_mut(&args)
                .map_err(|e| Parse::Usage(e, json))?;
        }
    }
    Cli::from_arg_matches_mut(&mut m).map_err(|e| Parse::Usage(e.format(&mut cmd), json))
}

/// `sandbox exec` alone, as `Cli` declares it.
fn exec_command(bin: &str) -> clap::Command {
    GlobalArgs::augment_args(exec::ExecArgs::augment_args(
        clap::Command::new("exec")
            .bin_name(format!("{bin} exec"))
            .about("Run one program in a fresh sandbox"),
    ))
}

/// Whether the command line asks for JSON (`--json` before any `--`):
/// then even a usage error is answered with a JSON object.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// Prints a clap error (or help/version) and returns the exit code.
fn usage_error(e: clap::Error, json: bool) -> i32 {
    // Usage errors are the sandbox's own errors: 125, like env(1) and timeout(1).
    let code = if e.use_stderr() {
        exec::EXIT_SANDBOX_ERROR
    } else {
        0
    };
    let _ = e.print();
    if json && e.use_stderr() {
        // clap's text is several lines (the error, a tip, the usage): the
        // object carries its first line, without clap's "error: ".
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        json_error(first.strip_prefix("error: ").unwrap_or(first));
    }
    code
}

/// A command's error: one line on stderr, under `--json` also the JSON
/// object of [`json_error`]; returns the exit code, 125.
pub(crate) fn fail(json: bool, e: &dyn std::fmt::Display) -> i32 {
    eprintln!("sandbox: {e}");
    if json {
        json_error(&e.to_string());
    }
    exec::EXIT_SANDBOX_ERROR
}

/// The answer of a `--json` command that failed: one JSON object on stdout,
/// `{"status": "sandbox_error", "error": "..."}` (the same `status` as a run
/// the sandbox failed), beside the usual line on stderr.
pub(crate) fn json_error(message: &str) {
    use std::io::Write;
    let v = serde_json::json!({ "status": "sandbox_error", "error": message });
    // A closed stdout is the reader's choice, not another error.
    let _ = writeln!(std::io::stdout().lock(), "{v}");
}

/// How a long-running command writes its log lines (on stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields, and the
    /// spans the event is in (a request's id, a job's id).
    Json,
}

/// An unknown `SANDBOX_LOG_FORMAT`.
#[derive(Debug, thiserror::Error)]
#[error("SANDBOX_LOG_FORMAT: expected text or json, not {0:?}")]
pub struct LogFormatError(String);

impl LogFormat {
    /// The flag's value if given, else `SANDBOX_LOG_FORMAT`'s, else text.
    pub fn resolve(flag: Option<LogFormat>) -> Result<LogFormat, LogFormatError> {
        if let Some(f) = flag {
            return Ok(f);
        }
        match std::env::var("SANDBOX_LOG_FORMAT").as_deref() {
            Err(_) | Ok("") => Ok(LogFormat::Text),
            Ok(v) => <LogFormat as clap::ValueEnum>::from_str(v, true)
                .map_err(|_| LogFormatError(v.to_string())),
        }
    }
}

/// Long-running commands log at info level unless `SANDBOX_LOG` or
/// `RUST_LOG` says otherwise, in `format`. (They set up their logging
/// themselves: [`main`] leaves it to them.)
pub(crate) fn daemon_logging(format: LogFormat) {
    let filter = std::env::var("SANDBOX_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // The span list carries the request and job ids of every line
        // logged inside them.
        LogFormat::Json => b
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_argument_has_help() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut todo = vec![cmd];
        let mut blank = Vec::new();
        while let Some(c) = todo.pop() {
            if c.is_hide_set() {
                continue;
            }
            for a in c.get_arguments() {
                let help = a.get_help().or(a.get_long_help()).map(|h| h.to_string());
                if !a.is_hide_set() && help.is_none_or(|h| h.trim().is_empty()) {
                    blank.push(format!("{} {}", c.get_name(), a.get_id()));
                }
            }
            todo.extend(c.get_subcommands().map(|s| {
                let mut s = s.clone();
                s.build();
                s
            }));
        }
        assert!(blank.is_empty(), "arguments without help: {blank:?}");
    }

    #[test]
    fn help_lists_exit_codes_and_environment() {
        let help = Cli::command().render_long_help().to_string();
        for word in [
            "125",
            "124",
            "SANDBOX_TOKEN",
            "SANDBOX_STORE",
            "NOTIFY_SOCKET",
        ] {
            assert!(help.contains(word), "{word}: {help}");
        }
    }

    #[test]
    fn exec_fast_path_parses_like_the_full_cli() {
        let mut full = Cli::command().bin_name("sandbox");
        full.build();
        let sub = full.find_subcommand_mut("exec").expect("exec subcommand");
        let mut fast = exec_command("sandbox");
        assert_eq!(
            fast.render_long_help().to_string(),
            sub.render_long_help().to_string()
        );
        assert_eq!(
            fast.render_usage().to_string(),
            sub.render_usage().to_string()
        );
        for argv in [
            vec!["exec", "--bogus"],
            vec!["exec", "-p"],
            vec!["exec"],
            vec!["exec", "--json", "--", "/bin/true", "x"],
        ] {
            let a = exec_command("sandbox").try_get_matches_from(&argv);
            let b = Cli::command()
                .bin_name("sandbox")
                .try_get_matches_from(std::iter::once("sandbox").chain(argv.iter().copied()));
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    let b = b.subcommand_matches("exec").expect("exec");
                    assert_eq!(
                        format!("{:?}", a.get_raw("command").map(|v| v.collect::<Vec<_>>())),
                        format!("{:?}", b.get_raw("command").map(|v| v.collect::<Vec<_>>()))
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{argv:?}"),
                (a, b) => panic!("{argv:?}: {a:?} vs {b:?}"),
            }
        }
    }
}
