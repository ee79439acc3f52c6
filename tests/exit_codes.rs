//! One exit-code contract (docs/exec.md): 125 for every error of the sandbox
//! or the invocation, and under `--json` one JSON object on stdout even then.

use std::process::{Command, Output};

fn sandbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(args)
        // No helper: errors must come from this process.
        .env("SANDBOX_HELPER", "off")
        .env_remove("SANDBOX_PROFILE_DIR")
        .output()
        .expect("run sandbox")
}

/// Exit 125, one line on stderr naming `word`, and (with `--json`) exactly
/// one JSON object on stdout whose `error` names it too.
fn assert_error(args: &[&str], word: &str) {
    let o = sandbox(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {stderr}");
    assert!(stderr.contains(word), "{args:?}: {stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    if args
        .iter()
        .take_while(|a| **a != "--")
        .any(|a| *a == "--json")
    {
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("{args:?}: stdout is not one JSON document ({e}): {stdout:?}")
        });
        assert_eq!(v["status"], "sandbox_error", "{args:?}: {v}");
        let err = v["error"].as_str().expect("error is a string");
        assert!(err.contains(word), "{args:?}: {v}");
        assert!(!err.contains('\n'), "{args:?}: {v}");
    } else {
        assert_eq!(stdout, "", "{args:?}");
    }
}

#[test]
fn exec_errors_under_json_are_json() {
    assert_error(&["exec", "--json", "--bogus", "--", "/bin/true"], "--bogus");
    assert_error(&["exec", "--bogus", "--json"], "--bogus");
    assert_error(
        &["exec", "--json", "-p", "nosuch", "--", "/bin/true"],
        "nosuch",
    );
    assert_error(
        &["exec", "--json", "--memory-limit", "12Q", "--", "/bin/true"],
        "--memory-limit",
    );
    // A zero limit is refused with the flag's name, before any run.
    assert_error(
        &["exec", "--json", "--memory-limit", "0", "--", "/bin/true"],
        "--memory-limit: must be greater than zero",
    );
    assert_error(
        &["exec", "--memory-limit", "0", "--", "/bin/true"],
        "greater than zero",
    );
    // After `--`, `--json` belongs to the program: a plain usage error.
    assert_error(&["exec", "--bogus", "--", "--json"], "--bogus");
}

#[test]
fn profile_show_errors_are_125_and_json() {
    assert_error(&["profile", "show", "nosuch"], "unknown profile \"nosuch\"");
    assert_error(
        &["profile", "show", "nosuch", "--json"],
        "unknown profile \"nosuch\"",
    );
    assert_error(
        &["profile", "show", "--json", "--bogus", "strict"],
        "--bogus",
    );
}

#[test]
fn image_and_check_host_errors_are_125_and_json() {
    let store = tempfile::tempdir().expect("tempdir");
    let s = store.path().to_str().expect("utf-8 path");
    assert_error(
        &["--store", s, "image", "inspect", "nope", "--json"],
        "nope",
    );
    assert_error(&["--store", s, "image", "inspect", "nope"], "nope");
    assert_error(&["--store", s, "image", "rm", "nope", "--json"], "nope");
    assert_error(
        &["--store", s, "image", "ls", "--json", "--bogus"],
        "--bogus",
    );
    assert_error(&["check-host", "--json", "--bogus"], "--bogus");
    // Help is an answer, not an error.
    let o = sandbox(&["check-host", "--json", "--help"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn serve_start_up_errors_are_125() {
    // A non-loopback listener without a token is refused before binding.
    let o = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("SANDBOX_TOKEN")
        .output()
        .expect("run sandbox");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("without a token"), "{err}");
}
