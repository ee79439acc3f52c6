//! `sandbox profile check|show|list` end to end: the broken-profile corpus
//! must fail with `FILE:LINE:COL: KEY` errors; the bundled profiles must pass.

use std::path::Path;
use std::process::Command;

fn sandbox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandbox"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("SANDBOX_PROFILE_DIR");
    c
}

/// (file in tests/profiles/broken, expected error prefix `FILE:LINE:COL: KEY:`, a word of the message)
const CORPUS: &[(&str, &str, &str)] = &[
    (
        "unknown_key.toml",
        "tests/profiles/broken/unknown_key.toml:6:1: process.hostnme:",
        "did you mean \"hostname\"",
    ),
    (
        "unknown_syscall.toml",
        "tests/profiles/broken/unknown_syscall.toml:8:3: seccomp.allow[2]:",
        "did you mean \"open\"",
    ),
    (
        "unknown_capability.toml",
        "tests/profiles/broken/unknown_capability.toml:4:9: capabilities.keep[0]:",
        "CAP_NET_BIND_SERVICE",
    ),
    (
        "bad_unit.toml",
        "tests/profiles/broken/bad_unit.toml:4:1: limits.memory:",
        "\"512Q\"",
    ),
    (
        "bad_duration.toml",
        "tests/profiles/broken/bad_duration.toml:2:1: limits.cpu_time:",
        "500ms",
    ),
    (
        "bad_errno.toml",
        "tests/profiles/broken/bad_errno.toml:4:1: seccomp.deny_action:",
        "did you mean \"EPERM\"",
    ),
    (
        "cycle_a.toml",
        "tests/profiles/broken/cycle_b.toml:2:1: extends:",
        "cycle_a.toml -> tests/profiles/broken/cycle_b.toml -> tests/profiles/broken/cycle_a.toml",
    ),
    (
        "cycle_b.toml",
        "tests/profiles/broken/cycle_a.toml:2:1: extends:",
        "extends cycle",
    ),
    (
        "cap_net_without_netns.toml",
        "net-bind.toml:13:9: capabilities.keep[0]:",
        "HOST network",
    ),
    (
        "seccomp_without_nnp.toml",
        "tests/profiles/broken/seccomp_without_nnp.toml:4:1: process.no_new_privs:",
        "requires no_new_privs",
    ),
    (
        "allow_and_deny.toml",
        "tests/profiles/broken/allow_and_deny.toml:4:13: seccomp.deny_add[0]:",
        "both",
    ),
    (
        "bind_relative_dest.toml",
        "tests/profiles/broken/bind_relative_dest.toml:5:1: filesystem.bind[0].dest:",
        "absolute",
    ),
    (
        "bind_dotdot.toml",
        "tests/profiles/broken/bind_dotdot.toml:5:1: filesystem.bind[0].dest:",
        "..",
    ),
    (
        "tmpfs_relative.toml",
        "tests/profiles/broken/tmpfs_relative.toml:4:1: filesystem.tmpfs[0].dest:",
        "absolute",
    ),
    (
        "workdir_relative.toml",
        "tests/profiles/broken/workdir_relative.toml:4:1: filesystem.workdir:",
        "absolute",
    ),
    (
        "uid0_no_userns.toml",
        "tests/profiles/broken/uid0_no_userns.toml:7:1: process.uid:",
        "root",
    ),
    (
        "caps_no_userns.toml",
        "tests/profiles/broken/caps_no_userns.toml:13:9: capabilities.keep[0]:",
        "HOST",
    ),
    (
        "host_gid_with_range.toml",
        "tests/profiles/broken/host_gid_with_range.toml:4:1: process.host_gid:",
        "single process.host_uid",
    ),
    (
        "host_uid_range_count.toml",
        "tests/profiles/broken/host_uid_range_count.toml:4:34: process.host_uid.count:",
        "1 to 65536",
    ),
    (
        "bind_without_mountns.toml",
        "tests/profiles/broken/bind_without_mountns.toml:4:1: namespaces.mount:",
        "mount namespace",
    ),
    (
        "zero_limit.toml",
        "tests/profiles/broken/zero_limit.toml:4:1: limits.pids:",
        "positive",
    ),
    (
        "wrong_type.toml",
        "tests/profiles/broken/wrong_type.toml:4:1: namespaces.network:",
        "boolean",
    ),
    (
        "bad_arg_index.toml",
        "tests/profiles/broken/bad_arg_index.toml:5:11: seccomp.rule[0].args[0].index:",
        "0 to 5",
    ),
    (
        "masked_eq_without_mask.toml",
        "tests/profiles/broken/masked_eq_without_mask.toml:5:22: seccomp.rule[0].args[0].op:",
        "mask",
    ),
    (
        "unknown_parent.toml",
        "tests/profiles/broken/unknown_parent.toml:1:1: extends:",
        "did you mean \"strict\"",
    ),
    (
        "bad_action.toml",
        "tests/profiles/broken/bad_action.toml:4:1: seccomp.default_action:",
        "kill_process",
    ),
    (
        "syntax_error.toml",
        "tests/profiles/broken/syntax_error.toml:3:8: (syntax):",
        "invalid TOML",
    ),
    (
        "no_execve.toml",
        "tests/profiles/broken/no_execve.toml:4:1: seccomp.allow:",
        "execve",
    ),
    (
        "parent_broken.toml",
        "tests/profiles/broken/unknown_syscall.toml:8:3: seccomp.allow[2]:",
        "opn",
    ),
];

#[test]
fn broken_corpus_fails_with_located_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles/broken");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CORPUS.iter().map(|(f, _, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every corpus file needs an expectation");

    for (file, prefix, word) in CORPUS {
        let path = format!("tests/profiles/broken/{file}");
        let out = sandbox()
            .args(["profile", "check", &path])
            .output()
            .expect("run sandbox");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{file}: {stdout}");
        let line = stdout.trim_end();
        assert_eq!(
            line.lines().count(),
            1,
            "{file}: error must be one line: {line}"
        );
        assert!(
            line.starts_with(prefix),
            "{file}:\n  got:      {line}\n  expected: {prefix} ..."
        );
        assert!(line.contains(word), "{file}: {line} should mention {word}");
    }
}

#[test]
fn bundled_profiles_pass_check() {
    for name in ["strict", "ci", "net-bind"] {
        let out = sandbox()
            .args(["profile", "check", name])
            .output()
            .expect("run sandbox");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name}: ok\n")
        );
        assert_eq!(out.status.code(), Some(0));
    }
    // The files themselves, by path.
    let out = sandbox()
        .args([
            "profile",
            "check",
            "profiles/strict.toml",
            "profiles/ci.toml",
            "profiles/net-bind.toml",
        ])
        .output()
        .expect("run sandbox");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_mixed_exit_code_and_lines() {
    let out = sandbox()
        .args([
            "profile",
            "check",
            "strict",
            "tests/profiles/broken/bad_unit.toml",
        ])
        .output()
        .expect("run sandbox");
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(s.starts_with("strict: ok\n"), "{s}");
}

#[test]
fn list_and_show() {
    let out = sandbox()
        .args(["profile", "list"])
        .output()
        .expect("run sandbox");
    let s = String::from_utf8_lossy(&out.stdout);
    for name in ["strict", "ci", "net-bind"] {
        assert!(s.lines().any(|l| l.starts_with(name)), "{s}");
    }
    let out = sandbox()
        .args(["profile", "show", "ci", "--json"])
        .output()
        .expect("run sandbox");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["filesystem"]["workdir"], "/workspace");
    assert_eq!(v["limits"]["memory"], "4G");
    assert_eq!(v["seccomp"]["default_action"], "kill_process");
    let out = sandbox()
        .args(["profile", "show", "strict"])
        .output()
        .expect("run sandbox");
    let t: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("toml");
    assert_eq!(t["limits"]["pids"].as_integer(), Some(64));
    let out = sandbox()
        .args(["profile", "show", "strikt"])
        .output()
        .expect("run sandbox");
    assert_eq!(out.status.code(), Some(125));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("available: ci, net-bind, strict") && e.contains("\"strict\""),
        "{e}"
    );
}

#[test]
fn override_dir_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("strict.toml"),
        "description = \"overridden\"\n[seccomp]\nenabled = false\n[process]\nhostname = \"bad host!\"\n",
    )
    .expect("write");
    let out = sandbox()
        .env("SANDBOX_PROFILE_DIR", dir.path())
        .args(["profile", "check", "ci"])
        .output()
        .expect("run sandbox");
    let s = String::from_utf8_lossy(&out.stdout);
    let expect = format!(
        "{}:5:1: process.hostname:",
        dir.path().join("strict.toml").display()
    );
    assert!(s.starts_with(&expect), "{s}");
}

/// Writes `name` in `dir` and runs `sandbox profile check` on it.
fn check_file(dir: &Path, name: &str, text: &str) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write profile");
    let out = sandbox()
        .args(["profile", "check"])
        .arg(&path)
        .output()
        .expect("run sandbox");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn bind_add_appends_to_the_inherited_binds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("add.toml");
    let (code, out) = check_file(
        dir.path(),
        "add.toml",
        "extends = \"ci\"\n[[filesystem.bind_add]]\nsource = \"/etc\"\ndest = \"/data\"\n\
         [[filesystem.tmpfs_add]]\ndest = \"/scratch\"\nsize = \"8M\"\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, format!("{}: ok\n", path.display()), "no warnings");
    let out = sandbox()
        .args(["profile", "show", "--json"])
        .arg(&path)
        .output()
        .expect("run sandbox");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let dests = |k: &str| -> Vec<String> {
        v["filesystem"][k]
            .as_array()
            .expect(k)
            .iter()
            .map(|b| b["dest"].as_str().expect("dest").to_string())
            .collect()
    };
    assert_eq!(dests("bind"), ["/workspace", "/data"]);
    assert_eq!(dests("tmpfs"), ["/tmp", "/scratch"]);
}

#[test]
fn replacing_an_inherited_bind_list_warns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = check_file(
        dir.path(),
        "replace.toml",
        "extends = \"ci\"\n[[filesystem.bind]]\nsource = \"/etc\"\ndest = \"/data\"\n",
    );
    // A warning, not a failure.
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let prefix = format!(
        "{}:2:14: filesystem.bind: warning: ",
        dir.path().join("replace.toml").display()
    );
    assert!(lines[0].starts_with(&prefix), "{out}");
    assert!(
        lines[0].contains("dropping /workspace") && lines[0].contains("bind_add"),
        "{out}"
    );
    assert!(lines[1].ends_with("replace.toml: ok"), "{out}");
    // Keeping the inherited mount (or an explicit empty list) is meant.
    let (_, out) = check_file(
        dir.path(),
        "keep.toml",
        "extends = \"ci\"\n[[filesystem.bind]]\nsource = \"/etc\"\ndest = \"/workspace\"\n",
    );
    assert!(!out.contains("warning"), "{out}");
    let (_, out) = check_file(
        dir.path(),
        "none.toml",
        "extends = \"ci\"\n[filesystem]\nbind = []\n",
    );
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn sizes_without_units_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = check_file(
        dir.path(),
        "sizes.toml",
        "extends = \"strict\"\n[filesystem]\nwritable_layer_size = 4096\n\
         [limits]\nmemory = 256\n",
    );
    assert_eq!(code, Some(0), "{out}");
    let f = dir.path().join("sizes.toml");
    let f = f.display();
    assert!(
        out.contains(&format!(
            "{f}:3:1: filesystem.writable_layer_size: warning: 4096 bytes"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{f}:5:1: limits.memory: warning: 256 bytes"))
            && out.contains("\"256M\""),
        "{out}"
    );
    let (_, out) = check_file(
        dir.path(),
        "fine.toml",
        "extends = \"strict\"\n[limits]\nmemory = \"256M\"\n",
    );
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn decimal_modes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = check_file(
        dir.path(),
        "mode.toml",
        "extends = \"strict\"\n[[filesystem.tmpfs]]\ndest = \"/tmp\"\nmode = 1777\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(
        out.trim_end(),
        format!(
            "{}:4:1: filesystem.tmpfs[0].mode: mode 1777 is a decimal integer (octal 3361): write modes in octal, 0o1777 or \"1777\"",
            dir.path().join("mode.toml").display()
        )
    );
    for ok in ["0o1777", "\"1777\"", "0"] {
        let (code, out) = check_file(
            dir.path(),
            "ok.toml",
            &format!("extends = \"strict\"\n[[filesystem.tmpfs]]\ndest = \"/tmp\"\nmode = {ok}\n"),
        );
        assert_eq!(code, Some(0), "{ok}: {out}");
    }
}

#[test]
fn missing_bind_sources_warn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir");
    let (code, out) = check_file(
        dir.path(),
        "src.toml",
        &format!(
            "extends = \"strict\"\n[[filesystem.bind_add]]\nsource = \"{}\"\ndest = \"/data\"\n\
             [[filesystem.bind_add]]\nsource = \"{}\"\ndest = \"/opt\"\noptional = true\n",
            missing.display(),
            missing.display()
        ),
    );
    assert_eq!(code, Some(0), "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "only the non-optional bind: {out}");
    assert!(
        warnings[0].starts_with(&format!(
            "{}:3:1: filesystem.bind_add[0].source: warning: bind source \"{}\" does not exist",
            dir.path().join("src.toml").display(),
            missing.display()
        )),
        "{out}"
    );
}
