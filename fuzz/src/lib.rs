//! Fuzz harnesses, shared by the libFuzzer targets (`fuzz/fuzz_targets/*`)
//! and by the regression test of the main crate (`tests/fuzz_regressions.rs`,
//! which includes this file with `#[path]` and replays `fuzz/regressions/`).
//!
//! Each harness feeds untrusted bytes to a decoder exactly as the program
//! does, then checks invariants the rest of the program relies on. A panic
//! (including a failed `assert!`) is a finding; so are a hang (libFuzzer's
//! `-timeout`) and an unbounded allocation (`-rss_limit_mb`,
//! `-malloc_limit_mb`). Only the public API of the `sandbox` library is used.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use sandbox::image::{self, Digest, Document, ImageError, LayerSource, Reference};
use sandbox::job::request::{Caps, check_rel_path, effective_limits, parse_request};
use sandbox::profile::{self, Limits, Profile, units};
use serde_json::Value;

/// Profile parser and validator: the text of a profile file, as `sandbox
/// profile check`/`show`, `exec --profile FILE` and `extends` read it.
///
/// `extends_dir` is where the profile "lives": relative `extends` paths are
/// resolved against it (the harness uses `fuzz/extends/`, which holds a few
/// valid, invalid and cyclic parents); bundled names (`strict`, `ci`,
/// `net-bind`) need no file at all.
///
/// On success: the resolved profile must render as TOML (`profile show`),
/// the rendering must load back to the same profile (documented: "loading it
/// gives the same profile"), must render as JSON, and its seccomp filter
/// must compile or fail with an error (never panic).
pub fn profile(data: &[u8], extends_dir: &Path) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let origin = extends_dir.join("fuzz.toml");
    let origin = origin.to_str().expect("UTF-8 harness path");
    let p = match profile::parse_str(src, origin) {
        Ok(p) => p,
        Err(e) => {
            // Errors are one line (documented; the CLI prints them as is).
            let msg = e.to_string();
            assert!(!msg.contains(['\n', '\r']), "multi-line error: {msg:?}");
            return;
        }
    };
    check_resolved(&p, origin);
}

fn check_resolved(p: &Profile, origin: &str) {
    let shown = profile::view::to_toml(p).expect("a resolved profile renders as TOML");
    let again = profile::parse_str(&shown, origin)
        .unwrap_or_else(|e| panic!("`profile show` output does not load: {e}\n{shown}"));
    assert_eq!(
        &again, p,
        "`profile show` output loads as a different profile:\n{shown}"
    );
    serde_json::to_string(&profile::view::ProfileView::from(p))
        .expect("a resolved profile renders as JSON");
    let _ = sandbox::security::seccomp::compile(&p.seccomp);
}

/// Units (`"256M"`, `"1.5s"`), as profiles, job requests and CLI flags give
/// them. What parses must format back to a string that parses to the same
/// value (`profile show` relies on it).
pub fn units(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = units::parse_size(s) {
        let f = units::format_size(v);
        assert_eq!(units::parse_size(&f), Ok(v), "size {s:?} formats as {f:?}");
    }
    if let Ok(d) = units::parse_duration(s) {
        let f = units::format_duration(d);
        assert_eq!(
            units::parse_duration(&f),
            Ok(d),
            "duration {s:?} formats as {f:?}"
        );
    }
}

/// The bundled profiles' limits, loaded once (as the server does).
fn bundled_limits() -> &'static [(String, Limits)] {
    static L: OnceLock<Vec<(String, Limits)>> = OnceLock::new();
    L.get_or_init(|| {
        profile::bundled::names()
            .into_iter()
            .filter_map(|n| profile::load(&n).ok().map(|p| (n, p.limits)))
            .collect()
    })
}

/// Caps small enough for the fuzzer to reach every "more than N" branch.
fn tiny_caps() -> Caps {
    let mut c = Caps {
        max_files: 3,
        max_steps: 2,
        max_tests: 2,
        max_argv: 3,
        max_arg_len: 16,
        max_outputs: 2,
        ..Caps::default()
    };
    c.max_limits.memory = Some(64 << 20);
    c.max_limits.pids = Some(8);
    c
}

/// The job request decoder: the bytes of a `POST /v1/jobs` body, decoded as
/// the server does (`serde_json::from_slice`, `parse_request`, then the
/// profile-dependent `effective_limits` of every step), under the default
/// caps and under tiny ones.
pub fn job_request(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    job_request_with(&v, &Caps::default());
    job_request_with(&v, &tiny_caps());
}

fn le<T: PartialOrd + Copy + std::fmt::Debug>(got: Option<T>, max: Option<T>, what: &str) {
    if let Some(m) = max {
        let g = got.unwrap_or_else(|| panic!("{what}: no limit, ceiling {m:?}"));
        assert!(g <= m, "{what}: {g:?} above the ceiling {m:?}");
    }
}

fn min_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

fn job_request_with(v: &Value, caps: &Caps) {
    let spec = match parse_request(v, caps) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.message.is_empty(), "empty error message for {}", e.field);
            return;
        }
    };
    // Shape caps hold.
    assert!(!spec.steps.is_empty() && spec.steps.len() <= caps.max_steps);
    assert!(spec.files.len() <= caps.max_files);
    assert!(spec.outputs.len() <= caps.max_outputs);
    assert!(spec.profile.len() <= caps.max_arg_len && !spec.profile.contains('\0'));
    // Paths are normalised, relative, traversal-free, unique, and no file is
    // another's directory.
    let mut paths: Vec<&str> = spec.files.iter().map(|f| f.path.as_str()).collect();
    for p in paths
        .iter()
        .copied()
        .chain(spec.outputs.iter().map(String::as_str))
    {
        assert_eq!(check_rel_path(p, "x").as_deref(), Ok(p), "path {p:?}");
    }
    paths.sort_unstable();
    for w in paths.windows(2) {
        assert_ne!(w[0], w[1], "duplicate file");
        assert!(
            !w[1].starts_with(&format!("{}/", w[0])),
            "{:?} is also a directory",
            w[0]
        );
    }
    for s in &spec.steps {
        assert!(!s.argv.is_empty() && s.argv.len() <= caps.max_argv);
        assert!(!s.argv[0].is_empty());
        for a in s.argv.iter().chain(std::iter::once(&s.name)) {
            assert!(a.len() <= caps.max_arg_len && !a.contains('\0'));
        }
        for (k, val) in &s.env {
            assert!(!k.is_empty() && !k.contains('=') && !k.contains('\0'));
            assert!(val.len() <= caps.max_arg_len && !val.contains('\0'));
        }
        assert!(s.tests.len() <= caps.max_tests);
        // The sandbox's init and the program: fewer than 2 pids cannot run.
        assert!(
            s.limits.pids.is_none_or(|p| p >= 2),
            "pids {:?}",
            s.limits.pids
        );
        if !s.tests.is_empty() {
            assert!(s.stdin.is_empty() && s.expected_stdout.is_none());
        }
    }
    // Profile-dependent limits: the server's check for a known profile; the
    // no-profile-limits case otherwise (the server answers 400 first).
    let none = Limits::default();
    let prof = bundled_limits()
        .iter()
        .find(|(n, _)| *n == spec.profile)
        .map_or(&none, |(_, l)| l);
    let server = &caps.max_limits;
    for (i, s) in spec.steps.iter().enumerate() {
        let field = format!("steps[{i}].limits");
        let Ok(l) = effective_limits(prof, server, &s.limits, &field) else {
            continue;
        };
        // Limits may only tighten: never above min(profile, server).
        le(
            l.cpu_time,
            min_opt(prof.cpu_time, server.cpu_time),
            "cpu_time",
        );
        le(
            l.wall_time,
            min_opt(prof.wall_time, server.wall_time),
            "wall_time",
        );
        le(l.memory, min_opt(prof.memory, server.memory), "memory");
        le(l.pids, min_opt(prof.pids, server.pids), "pids");
        le(l.output, min_opt(prof.output, server.output), "output");
        le(
            l.file_size,
            min_opt(prof.file_size, server.file_size),
            "file_size",
        );
        le(
            l.open_files,
            min_opt(prof.open_files, server.open_files),
            "open_files",
        );
        le(l.stack, min_opt(prof.stack, server.stack), "stack");
        for d in [l.cpu_time, l.wall_time].into_iter().flatten() {
            assert!(d > Duration::ZERO, "zero duration limit");
        }
    }
}

fn one_line(e: &ImageError) {
    let msg = e.to_string();
    assert!(!msg.contains(['\n', '\r']), "multi-line error: {msg:?}");
}

/// Image documents from a registry or an import: the bytes as a manifest
/// or index (`put_manifest`), as an image config (`put_config`), and as a
/// reference (`sandbox image inspect REF`, a pull's name).
///
/// Accepted manifests re-encode to a document that decodes the same;
/// every layer has a media type the unpacker handles; an index picks at
/// most one of its entries for the host. Accepted configs give an absolute
/// working directory and `KEY=VALUE` env entries. An accepted reference is
/// normalized: parsing its rendering gives it back. Errors are one line.
pub fn image_manifest(data: &[u8]) {
    let l = image::Limits::default();
    match image::manifest::decode(data, l.manifest_bytes, "manifest", None) {
        Ok(Document::Manifest(m)) => {
            for d in &m.layers {
                image::manifest::layer_compression(&d.media_type)
                    .expect("accepted layer media type");
            }
            let again = serde_json::to_vec(&m).expect("re-encode");
            let back =
                image::manifest::decode(&again, u64::MAX, "manifest", None).expect("re-decode");
            assert_eq!(back, Document::Manifest(m));
        }
        Ok(Document::Index(i)) => {
            if let Some(d) = image::select_platform(&i, &image::host_platform()) {
                assert!(i.manifests.contains(d));
            }
        }
        Err(e) => one_line(&e),
    }
    match image::config::decode_config(data, l.config_bytes, "config") {
        Ok(c) => {
            let r = image::RunConfig::unresolved(&c);
            assert!(r.working_dir.starts_with('/'));
            assert!(
                r.env
                    .iter()
                    .all(|e| e.split_once('=').is_some_and(|(k, _)| !k.is_empty()))
            );
        }
        Err(e) => one_line(&e),
    }
    if let Ok(s) = std::str::from_utf8(data) {
        match Reference::parse(s) {
            Ok(r) => {
                let shown = r.to_string();
                assert_eq!(
                    Reference::parse(&shown).expect("rendering parses"),
                    r,
                    "{shown}"
                );
            }
            Err(e) => one_line(&e),
        }
        if let Ok(d) = Digest::parse(s) {
            assert_eq!(d.to_string(), s);
        }
    }
}

/// A layer blob (a tar stream, or gzip of one) unpacked as an import or a
/// pull does, under small caps, into `work/layer`; `work/outside` (a
/// sibling) and `work/sentinel` must be untouched whatever the layer says:
/// nothing is created or resolved outside the layer directory. Runs as
/// root in CI (owners and `trusted.*` xattrs), as an ordinary user too.
pub fn image_layer(data: &[u8]) {
    let work = tempfile::tempdir().expect("tempdir");
    let layer = work.path().join("layer");
    let outside = work.path().join("outside");
    std::fs::create_dir(&layer).expect("mkdir");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(work.path().join("sentinel"), b"s").expect("write");
    let limits = image::Limits {
        layer_bytes: 1 << 20,
        layer_inodes: 256,
        ..image::Limits::default()
    };
    let src = LayerSource {
        diff_id: Digest::of(b""),
        blob: None,
    };
    let root = nix::unistd::geteuid().is_root();
    match image::layer::unpack_layer(data, &src, &layer, &limits, root) {
        Ok(_) => {}
        Err(e) => one_line(&e),
    }
    assert_eq!(
        std::fs::read_dir(&outside).expect("outside").count(),
        0,
        "wrote outside the layer"
    );
    assert_eq!(
        std::fs::read(work.path().join("sentinel")).expect("sentinel"),
        b"s"
    );
    let mut names: Vec<_> = std::fs::read_dir(work.path())
        .expect("work")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["layer", "outside", "sentinel"],
        "made something beside the layer"
    );
    if !root {
        // An unprivileged run cannot remove what a 0555 directory holds.
        make_writable(&layer);
    }
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return;
    };
    if md.is_dir() {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// A Docker `config.json` credentials file (`sandbox image pull --creds
/// FILE`, `$DOCKER_CONFIG/config.json`) as `image::pull::creds` decodes it,
/// then looked up for a few registries; the input as a registry name
/// through the scheme rule (`transport`). Errors are one line; a lookup
/// never fails on a file that decoded (only on its entry).
pub fn registry_creds(data: &[u8]) {
    use sandbox::image::pull::{creds, transport};
    match creds::parse(data) {
        Ok(c) => {
            for r in [
                "docker.io",
                "127.0.0.1:5000",
                "[::1]:5000",
                "registry.example",
            ] {
                if let Err(e) = c.lookup(r) {
                    assert!(!e.contains(['\n', '\r']), "multi-line error: {e:?}");
                }
            }
        }
        Err(e) => assert!(!e.contains(['\n', '\r']), "multi-line error: {e:?}"),
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let (_, rest) = transport::split_scheme(s);
        let plain = transport::choose(rest, Some(transport::Scheme::Http), &[]).is_ok();
        assert_eq!(plain, transport::is_loopback(rest));
    }
}

/// The Judge0 request decoder: the bytes of a `POST /judge0/submissions`
/// body (or of a batch), decoded as the server does
/// (`serde_json::from_slice`, then `server::judge0::wire`), with and
/// without base64, against Judge0's own ceilings and tiny ones; the bytes as
/// a `fields` query and as a job id for a token too.
pub fn judge0_request(data: &[u8]) {
    use sandbox::server::judge0::wire::{self, Ceilings};
    if let Ok(s) = std::str::from_utf8(data) {
        match wire::select_fields(Some(s)) {
            Ok(f) => assert!(f.iter().all(|k| wire::ALL_FIELDS.contains(k))),
            Err(e) => assert!(!e.is_empty()),
        }
        let t = wire::token_for(s);
        assert_eq!(t.len(), 36, "token {t:?}");
        assert_eq!(&t[14..15], "4");
        let _ = wire::decode_base64(s);
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let tiny = Ceilings {
        cpu_s: 0.5,
        wall_s: 1.0,
        memory_kb: 4096,
        processes: 2,
        file_size_kb: 1,
        stack_kb: 8,
    };
    for ceil in [Ceilings::default(), tiny] {
        for b64 in [false, true] {
            judge0_check(wire::decode_submission(&v, b64, &ceil), &ceil);
            match wire::decode_batch(&v, b64, &ceil) {
                Ok(list) => {
                    assert!(!list.is_empty() && list.len() <= wire::MAX_BATCH);
                    for s in list {
                        judge0_check(s, &ceil);
                    }
                }
                Err(e) => assert!(!e.is_empty()),
            }
        }
    }
}

/// An accepted submission keeps within the ceilings; a refused one says why.
fn judge0_check(
    r: Result<sandbox::server::judge0::wire::Submission, sandbox::server::judge0::wire::Errors>,
    ceil: &sandbox::server::judge0::wire::Ceilings,
) {
    let s = match r {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.is_empty());
            assert!(
                e.0.values()
                    .all(|m| !m.is_empty() && m.iter().all(|x| !x.is_empty()))
            );
            return;
        }
    };
    assert!(!s.source_code.is_empty());
    if let Some(d) = s.cpu_time_limit {
        assert!(d.as_secs_f64() <= ceil.cpu_s && !d.is_zero(), "{d:?}");
    }
    if let Some(d) = s.wall_time_limit {
        assert!(d.as_secs_f64() <= ceil.wall_s && !d.is_zero(), "{d:?}");
    }
    // A limit left out is the language's default (within the ceiling then).
    let at_most = |got: Option<u64>, max: u64, what: &str| {
        assert!(got.is_none_or(|g| g <= max), "{what}: {got:?} above {max}");
    };
    at_most(s.memory_limit, ceil.memory_kb * 1024, "memory_limit");
    at_most(s.stack_limit, ceil.stack_kb * 1024, "stack_limit");
    at_most(s.max_file_size, ceil.file_size_kb * 1024, "max_file_size");
    at_most(s.max_processes_and_or_threads, ceil.processes, "processes");
    for a in s.compiler_options.iter().chain(&s.command_line_arguments) {
        assert!(!a.is_empty() && !a.contains('\0') && !a.contains(char::is_whitespace));
    }
}
