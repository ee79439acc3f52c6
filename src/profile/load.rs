//! Loading: bundled name or path → source files → `extends` chain (with
//! cycle detection) → merged raw profile → validated [`Profile`].

use std::path::{Path, PathBuf};

use super::Profile;
use super::bundled;
use super::error::{ProfileError, ProfileWarning};
use super::schema::{RawFilesystem, RawProfile, Scalar, apply_adds, merge};
use super::source::{Locator, SourceFile, read_profile_file};
use super::validate::validate_linted;

/// Maximum `extends` depth.
const MAX_DEPTH: usize = 16;

/// A parent named by `extends` must be a regular file: a device or a FIFO
/// (`/dev/zero`, `/dev/stdin`) could block or never end.
fn read_parent_file(path: &Path) -> std::io::Result<String> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    read_profile_file(path)
}

/// Whether a profile reference is a path (contains '/' or ends in `.toml`)
/// rather than a bundled name.
pub fn is_path(name_or_path: &str) -> bool {
    name_or_path.contains('/') || name_or_path.ends_with(".toml")
}

/// Load a profile by bundled name (`strict`) or by path (`./my.toml`).
pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
    load_with_sources(name_or_path).map(|(p, _)| p)
}

/// [`load`], plus the display name of every file it was made from (a path
/// for files read from disk; `strict.toml` for an embedded one): what a
/// cache of loaded profiles must watch.
pub fn load_with_sources(name_or_path: &str) -> Result<(Profile, Vec<String>), ProfileError> {
    load_inner(name_or_path, None)
}

/// [`load`] for `sandbox profile check`: the profile and its warnings
/// (located like errors), which never refuse it.
pub fn check(name_or_path: &str) -> Result<(Profile, Vec<ProfileWarning>), ProfileError> {
    let mut warnings = Vec::new();
    let (p, _) = load_inner(name_or_path, Some(&mut warnings))?;
    Ok((p, warnings))
}

fn load_inner(
    name_or_path: &str,
    mut lint: Option<&mut Vec<ProfileWarning>>,
) -> Result<(Profile, Vec<String>), ProfileError> {
    let mut files = Vec::new();
    let raw = if is_path(name_or_path) {
        let path = PathBuf::from(name_or_path);
        let text = read_profile_file(&path).map_err(|source| ProfileError::Io {
            path: name_or_path.to_string(),
            source,
        })?;
        load_rec(
            name_or_path,
            path_id(&path),
            text,
            parent_dir(&path),
            &mut Vec::new(),
            &mut files,
            lint.as_deref_mut(),
        )?
    } else {
        let b = bundled::get(name_or_path).map_err(|e| match e {
            bundled::GetError::Unknown => ProfileError::UnknownProfile {
                name: name_or_path.to_string(),
                available: bundled::names().join(", "),
                hint: super::names::suggestion_suffix(super::names::did_you_mean(
                    name_or_path,
                    bundled::names().iter().map(String::as_str),
                )),
            },
            bundled::GetError::Io(path, source) => ProfileError::Io { path, source },
        })?;
        load_rec(
            &b.display,
            format!("bundled:{name_or_path}"),
            b.text,
            b.dir,
            &mut Vec::new(),
            &mut files,
            lint.as_deref_mut(),
        )?
    };
    let p = validate_linted(raw, name_or_path, &Locator { files: &files }, lint)?;
    Ok((p, files.into_iter().map(|f| f.display).collect()))
}

/// Parse a profile from a string. `origin` is the name used in errors (and as
/// the profile's name); relative `extends` paths are resolved against
/// `origin`'s directory when it looks like a path, else the current directory.
pub fn parse_str(src: &str, origin: &str) -> Result<Profile, ProfileError> {
    parse_inner(src, origin, None)
}

/// [`parse_str`] with the warnings of [`check`].
pub fn check_str(src: &str, origin: &str) -> Result<(Profile, Vec<ProfileWarning>), ProfileError> {
    let mut warnings = Vec::new();
    let p = parse_inner(src, origin, Some(&mut warnings))?;
    Ok((p, warnings))
}

fn parse_inner(
    src: &str,
    origin: &str,
    mut lint: Option<&mut Vec<ProfileWarning>>,
) -> Result<Profile, ProfileError> {
    let mut files = Vec::new();
    let dir = if origin.contains('/') {
        parent_dir(Path::new(origin))
    } else {
        None
    };
    let raw = load_rec(
        origin,
        format!("str:{origin}"),
        src.to_string(),
        dir,
        &mut Vec::new(),
        &mut files,
        lint.as_deref_mut(),
    )?;
    validate_linted(raw, origin, &Locator { files: &files }, lint)
}

fn parent_dir(p: &Path) -> Option<PathBuf> {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
}

fn path_id(p: &Path) -> String {
    match std::fs::canonicalize(p) {
        Ok(c) => format!("path:{}", c.display()),
        Err(_) => format!("path:{}", p.display()),
    }
}

fn load_rec(
    display: &str,
    id: String,
    text: String,
    dir: Option<PathBuf>,
    stack: &mut Vec<(String, String)>,
    files: &mut Vec<SourceFile>,
    mut lint: Option<&mut Vec<ProfileWarning>>,
) -> Result<RawProfile, ProfileError> {
    let (sf, raw): (SourceFile, RawProfile) = SourceFile::parse_into(display, text)?;
    check_names(&raw, &sf)?;
    check_modes(&raw, &sf)?;
    stack.push((id, display.to_string()));
    let me = files.len();
    files.push(sf);
    let Some(ext) = raw.extends.clone() else {
        stack.pop();
        return Ok(apply_adds(raw));
    };
    let here = &files[me];
    let ext_err =
        |msg: String| here.error_at(here.offset_of("extends").unwrap_or(0), "extends", &msg);
    if stack.len() > MAX_DEPTH {
        return Err(ext_err(format!(
            "extends chain deeper than {MAX_DEPTH} profiles"
        )));
    }
    let (pid, pdisplay, ptext, pdir) = if is_path(&ext) {
        let p = Path::new(&ext);
        let full: PathBuf = match (&dir, p.is_absolute()) {
            (Some(d), false) => d.join(p),
            _ => p.to_path_buf(),
        }
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect();
        let pdisplay = full.display().to_string();
        let text = read_parent_file(&full)
            .map_err(|e| ext_err(format!("cannot read parent profile \"{pdisplay}\": {e}")))?;
        (path_id(&full), pdisplay, text, parent_dir(&full))
    } else {
        match bundled::get(&ext) {
            Ok(b) => (format!("bundled:{ext}"), b.display, b.text, b.dir),
            Err(bundled::GetError::Unknown) => {
                let dym =
                    super::names::did_you_mean(&ext, bundled::names().iter().map(String::as_str));
                return Err(ext_err(format!(
                    "unknown bundled profile \"{ext}\" (available: {}{}; a path must contain '/' or end in .toml)",
                    bundled::names().join(", "),
                    dym.map(|d| format!("; did you mean \"{d}\"?"))
                        .unwrap_or_default()
                )));
            }
            Err(bundled::GetError::Io(path, e)) => {
                return Err(ext_err(format!(
                    "cannot read parent profile \"{path}\": {e}"
                )));
            }
        }
    };
    if stack.iter().any(|(sid, _)| *sid == pid) {
        let mut chain: Vec<&str> = stack.iter().map(|(_, d)| d.as_str()).collect();
        chain.push(&pdisplay);
        return Err(ext_err(format!("extends cycle: {}", chain.join(" -> "))));
    }
    let parent = load_rec(
        &pdisplay,
        pid,
        ptext,
        pdir,
        stack,
        files,
        lint.as_deref_mut(),
    )?;
    stack.pop();
    if let Some(w) = lint {
        dropped_mounts(&parent, &raw, &pdisplay, &files[me], w);
    }
    Ok(merge(parent, raw))
}

/// Warn when a child's `[[filesystem.bind]]` or `[[filesystem.tmpfs]]`
/// replaces an inherited list and so drops a mount the parent had (a child
/// of `ci` adding one bind would lose `/workspace`): `bind_add` and
/// `tmpfs_add` append. A list set to `[]` is taken as meant.
fn dropped_mounts(
    parent: &RawProfile,
    child: &RawProfile,
    parent_name: &str,
    sf: &SourceFile,
    warnings: &mut Vec<ProfileWarning>,
) {
    let Some(cf) = &child.filesystem else {
        return;
    };
    let none = RawFilesystem::default();
    let pf = parent.filesystem.as_ref().unwrap_or(&none);
    fn dests<'a>(l: impl Iterator<Item = Option<&'a String>>) -> Vec<&'a str> {
        l.flatten().map(|d| d.trim_end_matches('/')).collect()
    }
    let default_tmp = ["/tmp".to_string()];
    let cases = [
        (
            "bind",
            cf.bind
                .as_ref()
                .map(|l| dests(l.iter().map(|b| b.dest.as_ref()))),
            dests(
                pf.bind
                    .iter()
                    .flatten()
                    .chain(pf.bind_add.iter().flatten())
                    .map(|b| b.dest.as_ref()),
            ),
        ),
        (
            "tmpfs",
            cf.tmpfs
                .as_ref()
                .map(|l| dests(l.iter().map(|t| t.dest.as_ref()))),
            match &pf.tmpfs {
                // No file set it: the default /tmp.
                None => dests(default_tmp.iter().map(Some)),
                Some(l) => dests(l.iter().map(|t| t.dest.as_ref())),
            }
            .into_iter()
            .chain(dests(
                pf.tmpfs_add.iter().flatten().map(|t| t.dest.as_ref()),
            ))
            .collect(),
        ),
    ];
    for (what, child_list, inherited) in cases {
        let Some(child_list) = child_list else {
            continue;
        };
        if child_list.is_empty() {
            continue;
        }
        let lost: Vec<&str> = inherited
            .iter()
            .filter(|d| !child_list.contains(d))
            .copied()
            .collect();
        if lost.is_empty() {
            continue;
        }
        let key = format!("filesystem.{what}");
        let off = sf
            .offset_of(&key)
            .or_else(|| sf.offset_of(&format!("{key}[0]")))
            .unwrap_or(0);
        let e = sf.error_at(
            off,
            &key,
            &format!(
                "this list replaces the {what} mounts inherited from {parent_name}, dropping {} (arrays replace in `extends`: to add to the inherited list use [[filesystem.{what}_add]])",
                lost.join(", ")
            ),
        );
        warnings.push(e.into());
    }
}

/// Refuse a `mode` written as a decimal integer (`mode = 1777` is 1777,
/// octal 3361, not the 1777 that was meant), in the file and at the element
/// that has it. `0o1777` and `"1777"` are octal.
fn check_modes(raw: &RawProfile, sf: &SourceFile) -> Result<(), ProfileError> {
    let Some(f) = &raw.filesystem else {
        return Ok(());
    };
    for (list, v) in [("tmpfs", &f.tmpfs), ("tmpfs_add", &f.tmpfs_add)] {
        for (i, t) in v.iter().flatten().enumerate() {
            let Some(Scalar::Int(n)) = t.mode else {
                continue;
            };
            let key = format!("filesystem.{list}[{i}].mode");
            let Some(text) = sf.value_text(&key) else {
                continue;
            };
            let digits = text.trim().trim_start_matches('+').replace('_', "");
            let decimal = digits.bytes().all(|b| b.is_ascii_digit());
            if !decimal || n < 8 {
                continue;
            }
            let meant = if digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                digits.trim_start_matches('0').to_string()
            } else {
                format!("{n:o}")
            };
            return Err(sf.error_at(
                sf.offset_of(&key).unwrap_or(0),
                &key,
                &format!(
                    "mode {digits} is a decimal integer (octal {n:o}): write modes in octal, 0o{meant} or \"{meant}\""
                ),
            ));
        }
    }
    Ok(())
}

/// Check the syscall names of one file before merging, so that a bad name in
/// `allow_add`/`deny_add` (or in a parent) is reported in the file and at the
/// element that has it.
fn check_names(raw: &RawProfile, sf: &SourceFile) -> Result<(), ProfileError> {
    let Some(s) = &raw.seccomp else { return Ok(()) };
    let lists = [
        ("allow", &s.allow),
        ("allow_add", &s.allow_add),
        ("deny", &s.deny),
        ("deny_add", &s.deny_add),
    ];
    for (key, list) in lists {
        for (i, name) in list.iter().flatten().enumerate() {
            if !super::names::syscall_known(name) {
                let k = format!("seccomp.{key}[{i}]");
                let off = sf.offset_of(&k).unwrap_or(0);
                return Err(sf.error_at(
                    off,
                    &k,
                    &format!(
                        "unknown syscall \"{name}\"{}",
                        super::names::suggest_syscall(name)
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{RootSource, SeccompAction};

    #[test]
    fn extends_merges_tables_and_replaces_arrays() {
        let src = r#"
extends = "strict"
description = "child"
[filesystem]
system_dirs = ["/usr"]
[process]
hostname = "judge"
[process.env]
EXTRA = "1"
[limits]
memory = "1G"
"#;
        let p = parse_str(src, "child.toml").unwrap();
        let strict = load("strict").unwrap();
        assert_eq!(p.description, "child");
        // array replaced
        assert_eq!(p.filesystem.system_dirs, vec![PathBuf::from("/usr")]);
        // sibling keys of a merged table are inherited
        assert_eq!(p.filesystem.tmpfs, strict.filesystem.tmpfs);
        assert_eq!(p.filesystem.root, RootSource::Host);
        assert_eq!(p.process.hostname, "judge");
        assert_eq!(p.process.uid, 1000);
        // env merges key by key
        assert_eq!(p.process.env.get("EXTRA").map(String::as_str), Some("1"));
        assert_eq!(
            p.process.env.get("LANG").map(String::as_str),
            Some("C.UTF-8")
        );
        assert_eq!(p.limits.memory, Some(1 << 30));
        assert_eq!(p.limits.pids, strict.limits.pids);
        assert_eq!(p.seccomp, strict.seccomp);
    }

    #[test]
    fn allow_add_appends_and_allow_replaces() {
        let p = parse_str(
            "extends = \"strict\"\n[seccomp]\nallow_add = [\"vhangup\", \"read\"]\n",
            "c.toml",
        )
        .unwrap();
        let strict = load("strict").unwrap();
        assert_eq!(p.seccomp.allow.len(), strict.seccomp.allow.len() + 1);
        assert_eq!(p.seccomp.allow.last().map(String::as_str), Some("vhangup"));
        let p = parse_str(
            "extends = \"strict\"\n[seccomp]\nallow = [\"read\", \"execve\", \"exit_group\"]\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(p.seccomp.allow, ["read", "execve", "exit_group"]);
        assert_eq!(p.seccomp.default_action, SeccompAction::KillProcess);
    }

    #[test]
    fn mount_adds_follow_the_list_they_extend() {
        let dir = tempfile::tempdir().unwrap();
        // No file sets `tmpfs`: adds go after the default /tmp, and a
        // grandchild's adds after its parent's.
        std::fs::write(
            dir.path().join("base.toml"),
            "[seccomp]\nenabled = false\n[[filesystem.tmpfs_add]]\ndest = \"/a\"\n",
        )
        .unwrap();
        let dests = |p: &Profile| -> Vec<String> {
            p.filesystem
                .tmpfs
                .iter()
                .map(|t| t.dest.display().to_string())
                .collect()
        };
        let child = |text: &str| {
            let path = dir.path().join("child.toml");
            std::fs::write(&path, text).unwrap();
            check(path.to_str().unwrap()).unwrap()
        };
        let (p, w) = child("extends = \"base.toml\"\n[[filesystem.tmpfs_add]]\ndest = \"/b\"\n");
        assert_eq!(dests(&p), ["/tmp", "/a", "/b"]);
        assert!(w.is_empty(), "{w:?}");
        // A child's own list replaces the parent's list and its adds.
        let (p, w) = child(
            "extends = \"base.toml\"\n[[filesystem.tmpfs]]\ndest = \"/c\"\n[[filesystem.tmpfs_add]]\ndest = \"/d\"\n",
        );
        assert_eq!(dests(&p), ["/c", "/d"]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.contains("dropping /tmp, /a"), "{}", w[0]);
        // bind_add in a profile without extends appends to its own list.
        let (p, _) = check_str(
            "[seccomp]\nenabled = false\n[[filesystem.bind_add]]\nsource = \"/b\"\ndest = \"/b\"\n\
             [[filesystem.bind]]\nsource = \"/a\"\ndest = \"/a\"\noptional = true\n",
            "own.toml",
        )
        .unwrap();
        let binds: Vec<_> = p.filesystem.binds.iter().map(|b| b.dest.clone()).collect();
        assert_eq!(binds, [PathBuf::from("/a"), PathBuf::from("/b")]);
    }

    #[test]
    fn parent_files_are_bounded() {
        // Found in review while fuzzing: `extends = "/dev/zero"` made the
        // loader read without end (fuzz/regressions/profile/extends-dev-zero).
        for dev in ["/dev/zero", "/dev/null"] {
            let e = parse_str(&format!("extends = \"{dev}\"\n"), "c.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
        let e = load("/dev/zero").unwrap_err().to_string();
        assert!(e.contains("larger than 1048576 bytes"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, format!("description = \"{}\"\n", "x".repeat(1 << 20))).unwrap();
        let e = parse_str(
            "extends = \"big.toml\"\n",
            dir.path().join("c.toml").to_str().unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("larger than 1048576 bytes"), "{e}");
    }

    #[test]
    fn defaults_without_extends() {
        let p = parse_str("[seccomp]\nenabled = false\n", "min.toml").unwrap();
        assert!(p.namespaces.user && p.namespaces.network && p.namespaces.cgroup);
        assert!(p.process.no_new_privs);
        assert_eq!(p.process.uid, 1000);
        assert_eq!(p.process.host_ids, crate::profile::HostIds::default_range());
        assert_eq!(p.filesystem.workdir, PathBuf::from("/tmp"));
        assert_eq!(p.filesystem.tmpfs[0].mode, 0o1777);
        use crate::profile::Limits;
        assert_eq!(
            p.limits,
            Limits {
                pending_signals: Some(Limits::DEFAULT_PENDING_SIGNALS),
                message_queue: Some(Limits::DEFAULT_MESSAGE_QUEUE),
                locked_memory: Some(Limits::DEFAULT_LOCKED_MEMORY),
                ..Limits::default()
            }
        );
        assert!(p.capabilities.keep.is_empty());
    }

    #[test]
    fn relative_extends_paths_and_parent_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "extends = \"strict\"\n[limits]\npids = 7\nmemory = \"7X\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("child.toml"),
            "extends = \"base.toml\"\n[limits]\nmemory = \"7M\"\n",
        )
        .unwrap();
        let child = dir.path().join("child.toml");
        let p = load(child.to_str().unwrap()).unwrap();
        assert_eq!(p.limits.pids, Some(7));
        assert_eq!(p.limits.memory, Some(7 << 20));
        // The parent alone is invalid, and the error names the parent's file.
        std::fs::write(dir.path().join("child2.toml"), "extends = \"base.toml\"\n").unwrap();
        let e = load(dir.path().join("child2.toml").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{}:4:1: limits.memory:",
                dir.path().join("base.toml").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn value_forms() {
        let src = r#"
extends = "strict"
[[filesystem.tmpfs]]
dest = "/a"
size = 1048576
mode = 0o700
[[filesystem.tmpfs]]
dest = "/b"
mode = "1777"
[limits]
cpu_time = 2
wall_time = 2.5
memory = 1073741824
cpu_quota = 0.5
[[seccomp.rule]]
syscall = "socket"
args = [{ index = 0, op = "eq", value = 1 }, { index = 1, op = "masked_eq", mask = 0xf, value = 1 }]
action = "errno:EAFNOSUPPORT"
"#;
        let p = parse_str(src, "forms.toml").unwrap();
        assert_eq!(p.filesystem.tmpfs[0].size, 1 << 20);
        assert_eq!(p.filesystem.tmpfs[0].mode, 0o700);
        assert_eq!(p.filesystem.tmpfs[1].mode, 0o1777);
        assert_eq!(p.filesystem.tmpfs[1].size, 64 << 20);
        assert_eq!(p.limits.cpu_time, Some(std::time::Duration::from_secs(2)));
        assert_eq!(
            p.limits.wall_time,
            Some(std::time::Duration::from_millis(2500))
        );
        assert_eq!(p.limits.memory, Some(1 << 30));
        assert_eq!(p.limits.cpu_quota, Some(0.5));
        let r = p.seccomp.rules.last().unwrap();
        assert_eq!(r.args[1].op, crate::profile::ArgOp::MaskedEq(0xf));
        assert_eq!(
            r.action,
            SeccompAction::Errno(libc::EAFNOSUPPORT, "EAFNOSUPPORT".into())
        );
        for (bad, key) in [
            ("[limits]\nmemory = 1.5\n", "limits.memory"),
            ("[limits]\ncpu_quota = 0.0\n", "limits.cpu_quota"),
            (
                "[[filesystem.tmpfs]]\ndest = \"/x\"\nmode = \"999\"\n",
                "filesystem.tmpfs[0].mode",
            ),
            ("[process]\nuid = -1\n", "process.uid"),
            (
                "[seccomp]\nallow = [\"read\"]\ndefault_action = \"allow\"\n",
                "seccomp.allow",
            ),
        ] {
            let e = parse_str(&format!("extends = \"strict\"\n{bad}"), "bad.toml").unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
    }

    #[test]
    fn run_as_checkout_owner_is_cis_and_needs_namespaces() {
        assert!(load("ci").unwrap().process.run_as_checkout_owner);
        assert!(!load("strict").unwrap().process.run_as_checkout_owner);
        let ok = "extends = \"strict\"\n[process]\nrun_as_checkout_owner = true\n";
        assert!(
            parse_str(ok, "ok.toml")
                .unwrap()
                .process
                .run_as_checkout_owner
        );
        // Without a pid namespace something could outlive the run as the
        // owner (user and mount off are refused by other rules first).
        let e = parse_str(&format!("{ok}[namespaces]\npid = false\n"), "bad.toml")
            .expect_err("pid = false accepted");
        assert_eq!(e.key(), Some("process.run_as_checkout_owner"), "{e}");
    }

    #[test]
    fn shown_toml_round_trips() {
        for name in ["strict", "ci", "net-bind"] {
            let p = load(name).unwrap();
            let text = crate::profile::view::to_toml(&p).unwrap();
            let mut q = parse_str(&text, name).unwrap_or_else(|e| panic!("{e}\n{text}"));
            q.name = p.name.clone();
            assert_eq!(p, q, "{name}");
        }
    }

    #[test]
    fn unknown_bundled_name_lists_available() {
        let e = load("stric").unwrap_err().to_string();
        assert!(
            e.contains("available: ci, net-bind, strict") && e.contains("did you mean \"strict\""),
            "{e}"
        );
    }

    #[test]
    fn error_display_format() {
        let e = parse_str("[seccomp]\nallow = [\"opn\"]\n", "strict.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "strict.toml:2:10: seccomp.allow[0]: unknown syscall \"opn\" (did you mean \"open\"?)"
        );
        assert_eq!(e.key(), Some("seccomp.allow[0]"));
    }
}
