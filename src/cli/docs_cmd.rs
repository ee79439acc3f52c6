//! `sandbox completions SHELL` and `sandbox man [--dir DIR]`: shell
//! completion scripts and manual pages generated from the clap definition,
//! so they list exactly the flags the binary takes.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use super::Cli;
use super::exec::EXIT_SANDBOX_ERROR;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write one page per subcommand (sandbox.1, sandbox-exec.1, ...) into
    /// DIR instead of printing sandbox(1) on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// A failure writing the pages.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("writing manual pages into {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Sections of sandbox(1) that clap does not describe: exit status,
/// environment, files, see also. Roff; every line starts with text or a
/// request, none with a stray `.` or `'`.
const EXTRA_ROFF: &str = r#".SH "EXIT STATUS"
For \fBsandbox exec\fR: the program's own exit status; 128+N when signal N (not a limit) killed it;
124 CPU time limit; 123 wall time limit; 122 memory limit; 121 output limit;
125 an error of the sandbox itself (bad flag, bad profile, host failure);
126 the command cannot be executed; 127 the command was not found.
Every other subcommand exits 0 on success and 125 on an error of the sandbox, except
\fBsandbox profile check\fR, \fBsandbox profile list\fR and \fBsandbox language list\fR (2: a profile or preset is invalid) and
\fBsandbox check-host\fR (1: a required host setting is missing).
Usage errors (an unknown flag, a missing argument) exit 125.
.SH ENVIRONMENT
.TP
\fBSANDBOX_LOG\fR, \fBRUST_LOG\fR
Log filter for messages on standard error (e.g. sandbox=debug); off by default, info for serve and helper.
.TP
\fBSANDBOX_PROFILE_DIR\fR
A directory whose NAME.toml files replace or add bundled profiles.
.TP
\fBSANDBOX_PRESET_DIR\fR
A directory whose ID.toml files replace or add bundled language presets (\fBsandbox exec \-\-language\fR).
.TP
\fBSANDBOX_STORE\fR
The image store (default /var/lib/sandbox); \fB\-\-store\fR overrides it.
.TP
\fBSANDBOX_HELPER\fR
The helper socket \fBsandbox exec\fR uses (default /run/sandbox/helper.sock; empty or off: none).
.TP
\fBSANDBOX_TOKEN\fR
The bearer token of \fBsandbox serve\fR when \fB\-\-token\-file\fR is not given.
.TP
\fBTMPDIR\fR
\fBsandbox serve\fR's default work directory is $TMPDIR/sandbox\-jobs.
.TP
\fBDOCKER_CONFIG\fR
Pulls read credentials from $DOCKER_CONFIG/config.json (else ~/.docker/config.json).
.TP
\fBNOTIFY_SOCKET\fR
\fBsandbox serve\fR tells the service manager when it is ready, reloading and stopping (systemd Type=notify).
.SH "SEE ALSO"
The documentation in the source tree: docs/exec.md, docs/profiles.md, docs/languages.md, docs/api.md, docs/helper.md, docs/images.md, docs/operations.md, SECURITY.md.
"#;

/// The command tree with the name the user types.
fn command() -> clap::Command {
    Cli::command().bin_name("sandbox")
}

pub fn completions(args: CompletionsArgs) -> i32 {
    let mut cmd = command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "sandbox", &mut out);
    let _ = out.flush();
    0
}

pub fn man(args: ManArgs) -> i32 {
    let res = match &args.dir {
        Some(dir) => write_pages(dir),
        None => {
            let mut page = Vec::new();
            render_top(&mut page).expect("rendering into memory");
            // A closed pipe (`sandbox man | head`) is not an error.
            let _ = std::io::stdout().lock().write_all(&page);
            Ok(())
        }
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sandbox: {e}");
            EXIT_SANDBOX_ERROR
        }
    }
}

/// A page with the conventional upper-case title (`.TH SANDBOX-EXEC 1`).
fn page(cmd: clap::Command) -> clap_mangen::Man {
    let title = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_uppercase();
    clap_mangen::Man::new(cmd)
        .title(title)
        .source(concat!("sandbox ", env!("CARGO_PKG_VERSION")))
        .manual("sandbox manual")
}

/// sandbox(1): clap's page and the sections above.
fn render_top(w: &mut dyn Write) -> std::io::Result<()> {
    // `--help`'s exit status and environment text: EXTRA_ROFF has them.
    page(command().after_help(None::<&'static str>)).render(w)?;
    w.write_all(EXTRA_ROFF.as_bytes())
}

fn write_pages(dir: &Path) -> Result<(), DocsError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DocsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let top = dir.join("sandbox.1");
    let mut text = Vec::new();
    render_top(&mut text).map_err(err(&top))?;
    std::fs::write(&top, text).map_err(err(&top))?;
    // Built, every subcommand knows its display name (sandbox-profile-check).
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let mut todo: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
    while let Some(sub) = todo.pop() {
        if sub.is_hide_set() {
            continue;
        }
        todo.extend(sub.get_subcommands().cloned());
        let man = page(sub);
        let path = dir.join(man.get_filename());
        man.generate_to(dir).map_err(err(&path))?;
    }
    tracing::debug!(dir = %dir.display(), "manual pages written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_page_has_title_and_extra_sections() {
        let mut page = Vec::new();
        render_top(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH SANDBOX 1"), "{page}");
        assert!(page.contains(".SH \"EXIT STATUS\""));
        assert!(page.contains("\\fBSANDBOX_STORE\\fR"));
        assert!(
            !page.contains("__seccomp-test"),
            "hidden commands stay hidden"
        );
    }
}
