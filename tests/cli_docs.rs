//! `sandbox completions SHELL` and `sandbox man`: the scripts and pages are
//! generated from the clap definition and accepted by the tools that use them.

use std::process::{Command, Stdio};

fn sandbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
}

fn stdout_of(args: &[&str]) -> String {
    let out = sandbox().args(args).output().expect("run sandbox");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn bash_completion_parses_and_registers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("sandbox.bash");
    let text = stdout_of(&["completions", "bash"]);
    assert!(
        text.contains("exec") && text.contains("--memory-limit"),
        "{text}"
    );
    std::fs::write(&script, &text).expect("write script");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sourced in a shell, it registers a completion function for `sandbox`.
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" && complete -p sandbox"#)
        .arg("bash")
        .arg(&script)
        .output()
        .expect("bash");
    let registered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        registered.starts_with("complete ") && registered.trim_end().ends_with(" sandbox"),
        "{registered}"
    );
    // The function it names completes subcommands.
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1"; f=$(complete -p sandbox | sed -n 's/.*-F \([^ ]*\).*/\1/p');
               COMP_WORDS=(sandbox pro); COMP_CWORD=1; COMP_LINE="sandbox pro"; COMP_POINT=${#COMP_LINE};
               "$f" sandbox pro sandbox; printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(&script)
        .output()
        .expect("bash");
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(words.lines().any(|w| w == "profile"), "{words}");
}

#[test]
fn every_shell_gets_a_script() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let text = stdout_of(&["completions", shell]);
        assert!(text.contains("check-host"), "{shell}: {text}");
    }
    if have("zsh") {
        let text = stdout_of(&["completions", "zsh"]);
        let out = Command::new("zsh")
            .args(["-n", "-c", &text])
            .output()
            .expect("zsh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = sandbox()
        .args(["completions", "tcsh"])
        .output()
        .expect("run sandbox");
    assert_eq!(
        out.status.code(),
        Some(125),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_page_renders() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH SANDBOX 1"), "{page}");
    assert!(page.contains(".SH \"EXIT STATUS\"") && page.contains("SANDBOX_PROFILE_DIR"));
    if have("man") {
        let mut child = Command::new("man")
            .args(["-l", "-"])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("man");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(page.as_bytes())
            .expect("write page");
        let out = child.wait_with_output().expect("man");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for heading in [
            "NAME",
            "SYNOPSIS",
            "SUBCOMMANDS",
            "EXIT STATUS",
            "ENVIRONMENT",
        ] {
            assert!(text.lines().any(|l| l == heading), "{heading}:\n{text}");
        }
        assert!(text.contains("SANDBOX(1)"), "{text}");
    }
}

#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pages = dir.path().join("man1");
    let out = sandbox()
        .arg("man")
        .arg("--dir")
        .arg(&pages)
        .output()
        .expect("run sandbox");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "sandbox.1",
        "sandbox-exec.1",
        "sandbox-serve.1",
        "sandbox-profile-check.1",
        "sandbox-image-import.1",
        "sandbox-completions.1",
    ] {
        let text =
            std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let title = name.trim_end_matches(".1").to_uppercase();
        assert!(text.contains(&format!(".TH {title} 1")), "{name}: {text}");
    }
    let exec = std::fs::read_to_string(pages.join("sandbox-exec.1")).expect("exec page");
    assert!(exec.contains("memory\\-limit"), "{exec}");
    assert!(
        !std::fs::read_dir(&pages).expect("dir").any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .contains("seccomp")),
        "hidden commands have no page"
    );
    // A directory that cannot be made: 125 and one line naming it.
    let out = sandbox()
        .args(["man", "--dir", "/proc/self/nope"])
        .output()
        .expect("run sandbox");
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("sandbox: writing manual pages into /proc/self/nope"),
        "{err}"
    );
}
