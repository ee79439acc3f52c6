//! Real build tools under `--profile ci` (issue #15, part 1): each test
//! copies a small project from tests/ci_tools/ into a fresh workspace, builds
//! it with the real `sandbox` binary the way a CI runner would
//! (`sandbox exec --profile ci --bind $WS:/src --cwd /src -- ...`), and checks
//! what the build produced: the built program's output inside the run, and
//! where cheap the artifacts on the host. Before ci allowed the identity
//! calls of build tools, `make` died here with "Bad system call".
//!
//! A tool missing from the host skips its test loudly (`.ci/run` installs
//! every one from Debian). Nothing here touches the network: pip and npm
//! install local packages offline, cargo builds a crate without
//! dependencies with `--offline`, go builds with the standard library only
//! and `GOPROXY=off`. Needs root; skips loudly otherwise.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The fixture projects.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ci_tools")
        .join(name)
}

/// ci's PATH inside the run (strict's `process.env.PATH`).
const RUN_PATH: [&str; 3] = ["/usr/local/bin", "/usr/bin", "/bin"];

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the test may run: root, and every tool on the run's PATH (the
/// host's system directories are what a ci run sees). Says loudly why not.
fn ready(test: &str, tools: &[&str]) -> bool {
    if !require_root(test) {
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !RUN_PATH
                .iter()
                .any(|d| is_executable(&Path::new(d).join(t)))
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED ({test}): {} not installed in {} (.ci/run installs them) !!!!!!!!\n",
        missing.join(", "),
        RUN_PATH.join(":")
    );
    false
}

/// The host user the checkouts belong to: a regular uid (and gid) outside
/// the sandbox's range (0x70000000...), the tests' pinned uid (0x6F008000)
/// and any login user.
const OWNER: u32 = 0x6E00_1234;

/// Copy `from` into `to` recursively, as a checkout: directories `dir`,
/// files 0644 (0755 when executable), everything owned by `owner`.
fn copy_tree(from: &Path, to: &Path, dir: u32, owner: u32) {
    for e in std::fs::read_dir(from).expect("read fixture dir") {
        let e = e.expect("fixture entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            std::fs::create_dir(&dest).expect("mkdir");
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(dir))
                .expect("chmod dir");
            copy_tree(&e.path(), &dest, dir, owner);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy fixture file");
            let mode = if is_executable(&e.path()) {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .expect("chmod file");
        }
        std::os::unix::fs::lchown(&dest, Some(owner), Some(owner)).expect("chown");
    }
}

/// A fresh checkout of the fixture project `name`, as git leaves one
/// (0755, files 0644), owned by `owner`.
fn checkout(name: &str, owner: u32) -> tempfile::TempDir {
    let ws = tempfile::Builder::new()
        .prefix(&format!("ci-tools-{name}-"))
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod workspace");
    std::os::unix::fs::chown(ws.path(), Some(owner), Some(owner)).expect("chown workspace");
    copy_tree(&fixture(name), ws.path(), 0o755, owner);
    ws
}

/// A fresh checkout of the fixture project `name`, owned by [`OWNER`].
fn workspace(name: &str) -> tempfile::TempDir {
    checkout(name, OWNER)
}

/// Every file and directory under `dir` (not following symlinks), with its
/// host uid and gid.
fn owners(dir: &Path) -> Vec<(PathBuf, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            if m.is_dir() {
                todo.push(p.clone());
            }
            out.push((p, m.uid(), m.gid()));
        }
    }
    out
}

/// Everything the build left in the checkout belongs to [`OWNER`] on the
/// host (uid and gid): nothing is root's or a job's.
#[track_caller]
fn assert_owned_by_owner(dir: &Path) {
    let all = owners(dir);
    assert!(!all.is_empty());
    let foreign: Vec<_> = all
        .iter()
        .filter(|(_, u, g)| (*u, *g) != (OWNER, OWNER))
        .take(5)
        .collect();
    assert!(foreign.is_empty(), "not the owner's: {foreign:?}");
}

/// One build step: `sandbox exec --json --profile ci --bind WS:/src --cwd /src
/// EXTRA... -- /bin/sh -c SCRIPT`, started in the workspace (so ci's own
/// `/workspace` bind, and with it `HOME`, is the same directory).
fn step(test: &str, ws: &Path, extra: &[&str], script: &str) -> Out {
    let bind = format!("{}:/src", ws.display());
    let mut a: Vec<&str> = vec![
        "exec",
        "--json",
        "--profile",
        "ci",
        "--bind",
        &bind,
        "--cwd",
        "/src",
    ];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    let mut c = sandbox_cmd(&a);
    c.current_dir(ws);
    let o = run_cmd(c);
    if let Some(u) = o.json.as_ref().map(|j| &j["usage"]) {
        eprintln!(
            "{test}: {} in {:.0} ms wall, {:.0} ms CPU, memory peak {:.0} MiB, pids peak {}",
            o.json
                .as_ref()
                .map_or("?", |j| j["status"].as_str().unwrap_or("?")),
            u["wall_ms"].as_f64().unwrap_or(0.0),
            u["cpu_ms"].as_f64().unwrap_or(0.0),
            u["memory_peak_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            u["pids_peak"]
        );
    }
    o
}

/// The step ended `ok` with exit code 0, and each of `want` is a whole line
/// of its stdout.
#[track_caller]
fn assert_built(o: &Out, want: &[&str]) {
    let j = o.j();
    assert!(
        j["status"] == "ok" && j["exit_code"] == 0,
        "build failed: status {} exit {} signal {}\nstdout:\n{}\nstderr:\n{}",
        j["status"],
        j["exit_code"],
        j["signal"],
        o.prog_stdout(),
        o.prog_stderr()
    );
    let out = o.prog_stdout();
    for w in want {
        assert!(
            out.lines().any(|l| l == *w),
            "missing line {w:?} in stdout:\n{out}\nstderr:\n{}",
            o.prog_stderr()
        );
    }
}

/// Run a program the build left in the workspace, on the host.
fn host_output(prog: &Path, args: &[&str]) -> String {
    let o = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", prog.display()));
    assert!(o.status.success(), "{}: {:?}", prog.display(), o);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn make_builds_and_runs_its_tests() {
    if !ready("make_builds_and_runs_its_tests", &["make", "cc"]) {
        return;
    }
    let ws = workspace("make");
    let o = step(
        "make",
        ws.path(),
        &[],
        "make test && make clean && make test && make",
    );
    assert_built(
        &o,
        &[
            "cc -O2 -Wall -Werror -c main.c",
            "cc -O2 -Wall -Werror -o calc main.o fib.o primes.o",
            "fib(30)=832040 primes<=30: 10",
            "rm -f calc main.o fib.o primes.o",
            "make: 'calc' is up to date.",
        ],
    );
    // The program is a real file of the workspace, and the owner's.
    assert_eq!(
        host_output(&ws.path().join("calc"), &["12"]),
        "fib(12)=144 primes<=12: 5\n"
    );
    assert_owned_by_owner(ws.path());
}

#[test]
fn make_parallel_jobs() {
    if !ready("make_parallel_jobs", &["make", "cc"]) {
        return;
    }
    let ws = workspace("make");
    // -j4: a jobserver and four compilers at once; then a touched source
    // rebuilds only its object (make's timestamps in the bound workspace).
    let o = step(
        "make -j4",
        ws.path(),
        &[],
        "make -j4 test && sleep 1 && touch fib.c && make -j4 calc",
    );
    assert_built(&o, &["fib(30)=832040 primes<=30: 10"]);
    let out = o.prog_stdout();
    let compiles = |f: &str| {
        out.lines()
            .filter(|l| *l == format!("cc -O2 -Wall -Werror -c {f}.c"))
            .count()
    };
    assert_eq!(
        (compiles("main"), compiles("fib"), compiles("primes")),
        (1, 2, 1),
        "{out}"
    );
    assert_eq!(
        host_output(&ws.path().join("calc"), &["30"]),
        "fib(30)=832040 primes<=30: 10\n"
    );
    assert_owned_by_owner(ws.path());
}

#[test]
fn cmake_and_ninja() {
    if !ready("cmake_and_ninja", &["cmake", "ctest", "ninja", "c++"]) {
        return;
    }
    let ws = workspace("cmake");
    let o = step(
        "cmake + ninja",
        ws.path(),
        &[],
        "cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null \
         && cmake --build build && cd build && ctest --output-on-failure && ./app",
    );
    assert_built(
        &o,
        &[
            "[4/4] Linking CXX executable app",
            "100% tests passed, 0 tests failed out of 1",
            "3 shapes, total area 46",
        ],
    );
    assert!(ws.path().join("build/build.ninja").is_file());
    assert_eq!(
        host_output(&ws.path().join("build/app"), &[]),
        "3 shapes, total area 46\n"
    );
    assert_owned_by_owner(ws.path());
}

#[test]
fn gcc_and_gxx_shared_library() {
    if !ready("gcc_and_gxx_shared_library", &["gcc", "g++"]) {
        return;
    }
    let ws = workspace("cc");
    let o = step(
        "gcc/g++",
        ws.path(),
        &[],
        "gcc -O2 -Wall -fPIC -shared -o libvec.so vec.c \
         && g++ -O2 -Wall -std=c++17 -pthread -o mixed main.cpp -L. -lvec -Wl,-rpath,'$ORIGIN' \
         && ./mixed",
    );
    assert_built(&o, &["dot=1001000"]);
    // $ORIGIN: the program finds its library on the host as well.
    assert_eq!(host_output(&ws.path().join("mixed"), &[]), "dot=1001000\n");
    assert_owned_by_owner(ws.path());
}

#[test]
fn git_in_the_workspace() {
    if !ready("git_in_the_workspace", &["git"]) {
        return;
    }
    let ws = workspace("git");
    // The run acts as the checkout's owner, so git trusts the checkout
    // without any safe.directory (its check compares the repository's
    // owner with the run's euid); HOME is the workspace.
    let o = step(
        "git",
        ws.path(),
        &[],
        "git init -q . && git config user.email ci@example.com && git config user.name CI \
         && git add -A && git commit -q -m first \
         && echo 'echo \"version 2\"' >> version.sh && git commit -q -am second \
         && git log --format='%an: %s' && git rev-list --count HEAD && git status --porcelain \
         && git show --name-only --format= HEAD",
    );
    assert_built(&o, &[]);
    // The log (newest first), the count, a clean status (no line), the file
    // the second commit changed.
    assert_eq!(o.prog_stdout(), "CI: second\nCI: first\n2\nversion.sh\n");
    assert!(ws.path().join(".git/HEAD").is_file());
    assert_owned_by_owner(ws.path());
}

#[test]
fn python_venv_and_pip_install() {
    if !ready("python_venv_and_pip_install", &["python3"]) {
        return;
    }
    let ws = workspace("python");
    // pip builds the local package (an in-tree PEP 517 backend, in an
    // isolated build environment) and installs it with its console script,
    // without an index.
    let o = step(
        "python venv + pip",
        ws.path(),
        &[],
        "python3 -m venv venv && venv/bin/pip install --no-index ./pkg \
         && venv/bin/greet \
         && venv/bin/python -c 'import greet, sys; print(greet.__file__.startswith(sys.prefix + \"/lib/\"))'",
    );
    assert_built(
        &o,
        &[
            "Successfully installed greet-1.0",
            "greet: sum of squares 285",
            "True",
        ],
    );
    assert!(ws.path().join("venv/bin/greet").is_file());
    assert_owned_by_owner(ws.path());
}

#[test]
fn node_npm_install_and_worker_threads() {
    if !ready("node_npm_install_and_worker_threads", &["node", "npm"]) {
        return;
    }
    let ws = workspace("node");
    let o = step(
        "node + npm",
        ws.path(),
        // No registry, ever: offline, and no update check.
        &[
            "--env",
            "npm_config_offline=true",
            "--env",
            "npm_config_update_notifier=false",
        ],
        "npm install --no-audit --no-fund ./lib && npm test",
    );
    assert_built(&o, &["workers: 4, sum: 499999500000"]);
    let pkg = std::fs::read_to_string(ws.path().join("package.json")).expect("package.json");
    assert!(pkg.contains("\"sumlib\": \"file:lib\""), "{pkg}");
    assert!(ws.path().join("node_modules/sumlib").exists());
    assert_owned_by_owner(ws.path());
}

#[test]
fn java_javac_jar() {
    if !ready("java_javac_jar", &["javac", "jar", "java"]) {
        return;
    }
    let ws = workspace("java");
    let o = step(
        "javac + java",
        ws.path(),
        &[],
        "javac -d out src/demo/*.java && jar cfe app.jar demo.Main -C out . && java -jar app.jar",
    );
    assert_built(&o, &["java: sum of squares below 1000 = 332833500"]);
    assert!(ws.path().join("out/demo/Counter.class").is_file());
    assert!(ws.path().join("app.jar").is_file());
    assert_owned_by_owner(ws.path());
}

/// The Rust toolchain that builds this project (rustup's, as a rule): its
/// sysroot, whose `bin` holds cargo and rustc.
fn rust_sysroot() -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let o = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let root = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    (o.status.success() && is_executable(&root.join("bin/cargo"))).then_some(root)
}

#[test]
fn cargo_offline_build_and_test() {
    if !require_root("cargo_offline_build_and_test") {
        return;
    }
    let Some(sysroot) = rust_sysroot() else {
        eprintln!(
            "\n!!!!!!!! SKIPPED (cargo_offline_build_and_test): no Rust toolchain with cargo !!!!!!!!\n"
        );
        return;
    };
    if !ready("cargo_offline_build_and_test", &["cc"]) {
        return;
    }
    // The host's toolchain, read-only at /opt/rust (a rustup toolchain lives
    // under root's home, which no run sees). HOME is the workspace, so
    // cargo's registry cache is empty: a crate without dependencies needs
    // none.
    let ws = workspace("cargo");
    let bind = format!("{}:/opt/rust", sysroot.display());
    let o = step(
        "cargo",
        ws.path(),
        &[
            "--ro-bind",
            &bind,
            "--env",
            "PATH=/opt/rust/bin:/usr/local/bin:/usr/bin:/bin",
        ],
        "cargo build --offline --release && ./target/release/ciapp && cargo test --offline 2>&1",
    );
    assert_built(
        &o,
        &[
            "cargo: longest chain below 100000 starts at 77031 (350 steps)",
            "test tests::known_values ... ok",
        ],
    );
    assert!(
        o.prog_stdout()
            .contains("test result: ok. 1 passed; 0 failed"),
        "{}",
        o.prog_stdout()
    );
    assert_eq!(
        host_output(&ws.path().join("target/release/ciapp"), &[]),
        "cargo: longest chain below 100000 starts at 77031 (350 steps)\n"
    );
    assert_owned_by_owner(ws.path());
}

#[test]
fn go_standard_library_build() {
    if !ready("go_standard_library_build", &["go"]) {
        return;
    }
    let ws = workspace("go");
    // Never fetch: no proxy, no toolchain download, modules as go.mod says.
    let o = step(
        "go",
        ws.path(),
        &[
            "--env",
            "GOFLAGS=-mod=mod",
            "--env",
            "GOPROXY=off",
            "--env",
            "GOTOOLCHAIN=local",
            // The build cache and module path in the checkout, as a CI
            // step keeps them (and nowhere else is writable and kept).
            "--env",
            "GOCACHE=/src/.cache/go-build",
            "--env",
            "GOPATH=/src/.gopath",
        ],
        "go vet ./... && go test ./... && go build -o app . && ./app",
    );
    assert_built(
        &o,
        &["go: sum below 1000000 = 499999500000 (GOMAXPROCS>0: true)"],
    );
    assert!(
        o.prog_stdout()
            .lines()
            .any(|l| l.starts_with("ok  \texample.com/ciapp/stats")),
        "{}",
        o.prog_stdout()
    );
    assert_eq!(
        host_output(&ws.path().join("app"), &[]),
        "go: sum below 1000000 = 499999500000 (GOMAXPROCS>0: true)\n"
    );
    assert!(ws.path().join(".cache/go-build").is_dir(), "GOCACHE");
    assert_owned_by_owner(ws.path());
}

// ---- issue #15, part 2: whose files a step leaves behind

/// A checkout cloned on the host by its owner (`.git` and all belong to
/// [`OWNER`], 0755): the step acts as the owner (uid 1000 inside is
/// [`OWNER`] on the host), git works in it without any safe.directory, and
/// everything it writes belongs to [`OWNER`].
#[test]
fn checkout_owner_owns_the_artifacts() {
    if !ready("checkout_owner_owns_the_artifacts", &["git", "make", "cc"]) {
        return;
    }
    let ws = checkout("make", 0);
    // The host side of a CI job: clone (here: init and commit) as root,
    // then hand the checkout to its user, as a runner does.
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=host", "-c", "user.email=host@example.com"])
            .args(args)
            .current_dir(ws.path())
            .output()
            .expect("git on the host");
        assert!(o.status.success(), "git {args:?}: {o:?}");
    };
    git(&["init", "-q", "."]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "checkout"]);
    for (p, _, _) in owners(ws.path()) {
        std::os::unix::fs::lchown(&p, Some(OWNER), Some(OWNER)).expect("chown");
    }
    std::os::unix::fs::chown(ws.path(), Some(OWNER), Some(OWNER)).expect("chown");
    let o = step(
        "checkout owner",
        ws.path(),
        &[],
        "cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' && id -u && id -g \
         && make -j2 test && git status --porcelain && echo calc >> .gitignore \
         && git add .gitignore && git -c user.name=CI -c user.email=ci@example.com commit -q -m ignore \
         && git status --porcelain && git log --format=%s",
    );
    assert_built(&o, &[]);
    let out = o.prog_stdout();
    // The maps (the owner's ids, not the job's), the ids inside.
    let ids = format!(" 1000 {OWNER} 1\n 1000 {OWNER} 1\n1000\n1000\n");
    assert!(out.starts_with(&ids), "{out}");
    // make's outputs untracked, then calc ignored and committed.
    assert!(
        out.contains("fib(30)=832040 primes<=30: 10\n?? calc\n?? fib.o\n?? main.o\n?? primes.o\n"),
        "{out}"
    );
    assert!(
        out.ends_with("?? fib.o\n?? main.o\n?? primes.o\nignore\ncheckout\n"),
        "{out}"
    );
    assert_owned_by_owner(ws.path());
    // The host's own git agrees the commit happened.
    let log = Command::new("git")
        .args(["-c", "safe.directory=*", "log", "--format=%an %s"])
        .current_dir(ws.path())
        .output()
        .expect("git log");
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "CI ignore\nhost checkout\n"
    );
}

/// A root-owned checkout: the run is never host root: it keeps the job's
/// uid from the range, and what it writes belongs to that uid.
#[test]
fn root_owned_checkout_never_runs_as_root() {
    if !require_root("root_owned_checkout_never_runs_as_root") {
        return;
    }
    let ws = checkout("make", 0);
    // World-writable, or the job's uid could not write at all.
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = step(
        "root-owned checkout",
        ws.path(),
        &[],
        "cat /proc/self/uid_map | tr -s ' ' && mkdir out && echo built > out/artifact",
    );
    assert_built(&o, &[]);
    let map: Vec<u32> = o
        .prog_stdout()
        .split_whitespace()
        .map(|n| n.parse().expect("uid_map field"))
        .collect();
    assert_eq!((map[0], map[2]), (1000, 1), "{map:?}");
    assert!(is_run_uid(map[1]) && map[1] != 0, "host uid {}", map[1]);
    for (p, u, g) in owners(ws.path()) {
        if p.starts_with(ws.path().join("out")) {
            assert_eq!((u, g), (map[1], map[1]), "{}", p.display());
        } else {
            assert_eq!((u, g), (0, 0), "{}", p.display());
        }
    }
}

/// `/` or a home directory as the checkout, or as ci's implicit bind of
/// the caller's directory, is refused before anything runs.
#[test]
fn root_and_home_directories_refused() {
    if !require_root("root_and_home_directories_refused") {
        return;
    }
    let refused = |o: &Out, what: &str| {
        assert_eq!(o.code, 125, "{o:?}");
        assert!(
            o.stderr.contains(what) && o.stderr.contains("may not get it read-write"),
            "{}",
            o.stderr
        );
    };
    let ws = checkout("make", OWNER);
    // An explicit --bind of / as the checkout.
    let mut c = sandbox_cmd(&[
        "exec",
        "--profile",
        "ci",
        "--bind",
        "/:/src",
        "--cwd",
        "/src",
        "--",
        "/bin/true",
    ]);
    c.current_dir(ws.path());
    refused(
        &run_cmd(c),
        "bind / on /src: / is the host's root directory",
    );
    // Next to a checkout the run acts as the owner of, no other writable
    // bind may be a home either.
    let mut c = sandbox_cmd(&[
        "exec",
        "--profile",
        "ci",
        "--bind",
        "/root:/h",
        "--cwd",
        "/workspace",
        "--",
        "/bin/true",
    ]);
    c.current_dir(ws.path());
    refused(
        &run_cmd(c),
        "bind /root on /h: /root is the home directory of root",
    );
    // ci's implicit bind of the caller's directory: / and root's home.
    for (dir, what) in [
        ("/", "bind . on /workspace: / is the host's root directory"),
        (
            "/root",
            "bind . on /workspace: /root is the home directory of root",
        ),
    ] {
        let mut c = sandbox_cmd(&["exec", "--profile", "ci", "--", "/bin/true"]);
        c.current_dir(dir);
        refused(&run_cmd(c), what);
    }
    // A project inside a home is fine (here: a checkout; the home itself
    // is what may not be bound).
    let mut c = sandbox_cmd(&["exec", "--profile", "ci", "--", "/bin/true"]);
    c.current_dir(ws.path());
    assert_eq!(run_cmd(c).code, 0);
}

/// Acting as the checkout's owner reaches nothing else of the owner's: a
/// host process of [`OWNER`] is neither seen nor signalled (its own pid
/// namespace), a file of [`OWNER`]'s outside the checkout is not there,
/// no other id can be taken, and the run has no capability.
#[test]
fn checkout_owner_reaches_nothing_else_of_the_owners() {
    if !require_root("checkout_owner_reaches_nothing_else_of_the_owners") {
        return;
    }
    let ws = workspace("make");
    // The owner's own host process and a private file of the owner's.
    let mut host = Command::new("setpriv")
        .args([
            &format!("--reuid={OWNER}"),
            &format!("--regid={OWNER}"),
            "--clear-groups",
            "sleep",
            "60",
        ])
        .spawn()
        .expect("setpriv sleep");
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "owner's secret\n").expect("secret");
    std::os::unix::fs::chown(&secret, Some(OWNER), Some(OWNER)).expect("chown");
    std::os::unix::fs::chown(secret_dir.path(), Some(OWNER), Some(OWNER)).expect("chown");
    let script = format!(
        "id -u; kill -0 {pid} 2>/dev/null && echo SIGNALLED || echo no such process; \
         ls /proc | grep -c '^[0-9]' ; cat {secret} 2>/dev/null || echo secret not there; \
         grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status | tr '\\t' ' '; \
         setpriv --reuid=0 true 2>/dev/null && echo BECAME ROOT || echo no root",
        pid = host.id(),
        secret = secret.display()
    );
    let o = step("owner's other processes", ws.path(), &[], &script);
    let alive = host.try_wait().expect("try_wait").is_none();
    let _ = host.kill();
    let _ = host.wait();
    assert_built(&o, &[]);
    let out = o.prog_stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "no such process", "{out}");
    // Only the run's own processes: sh, ls, grep (and init at most).
    let n: u32 = lines[2].parse().expect("count");
    assert!(n <= 5, "{n} processes visible:\n{out}");
    assert_eq!(lines[3], "secret not there", "{out}");
    assert_eq!(
        &lines[4..],
        &[
            "CapPrm: 0000000000000000",
            "CapEff: 0000000000000000",
            "CapBnd: 0000000000000000",
            "no root",
        ],
        "{out}"
    );
    assert!(alive, "the owner's host process died during the run");
}

/// Everyday commands of build scripts that strict kills run under ci, or
/// get a clean EPERM: `cp -a` and `tar --xattrs` (extended attributes),
/// `ps` (NUMA policy), `ionice` (the real-time class refused), `chrt`
/// (refused), user.* attributes set and trusted.* refused. strict still
/// kills `cp -a`, `ps` and `ionice` ("Bad system call").
#[test]
fn everyday_commands_are_never_killed_under_ci() {
    if !ready(
        "everyday_commands_are_never_killed_under_ci",
        &["python3", "ps", "ionice", "chrt"],
    ) {
        return;
    }
    let ws = workspace("make");
    let o = step(
        "everyday commands",
        ws.path(),
        &[],
        "cp -a main.c copy.c && echo cp ok; tar --xattrs -cf t.tar copy.c && echo tar ok; \
         ps -e -o comm= | grep -qx ps && echo ps ok; ionice -c3 true && echo ionice ok; \
         ionice -c1 true 2>/dev/null || echo ionice rt refused; \
         chrt -b 0 true 2>/dev/null || echo chrt refused; \
         python3 -c 'import os; os.setxattr(\"copy.c\", \"user.ci\", b\"1\"); print(\"user xattr\", os.getxattr(\"copy.c\", \"user.ci\").decode())'; \
         python3 -c 'import os; os.setxattr(\"copy.c\", \"trusted.ci\", b\"1\")' 2>/dev/null || echo trusted xattr refused",
    );
    assert_built(&o, &[]);
    assert_eq!(
        o.prog_stdout(),
        "cp ok\ntar ok\nps ok\nionice ok\nionice rt refused\nchrt refused\nuser xattr 1\ntrusted xattr refused\n",
        "{}",
        o.prog_stderr()
    );
    assert_owned_by_owner(ws.path());
    // strict: the same calls kill.
    for cmd in ["cp -a /etc/hostname /tmp/h", "ps -e", "ionice -c3 true"] {
        let o = run_cmd(sandbox_cmd(&["exec", "--json", "--", "/bin/sh", "-c", cmd]));
        let j = o.j();
        assert_eq!(j["exit_code"], 128 + 31, "{cmd}: {j}");
        assert!(
            o.prog_stderr().contains("Bad system call"),
            "{cmd}: {}",
            o.prog_stderr()
        );
    }
}
