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

/// Copy `from` into `to` recursively; directories 0777 and files 0666 (0777
/// when executable): the run's uid is not the files' owner, and a build
/// writes into its checkout (npm rewrites package.json, make deletes its
/// outputs).
fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read fixture dir") {
        let e = e.expect("fixture entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            std::fs::create_dir(&dest).expect("mkdir");
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o777))
                .expect("chmod dir");
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy fixture file");
            let mode = if is_executable(&e.path()) {
                0o777
            } else {
                0o666
            };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .expect("chmod file");
        }
    }
}

/// A fresh workspace holding a copy of the fixture project `name`.
fn workspace(name: &str) -> tempfile::TempDir {
    let ws = tempfile::Builder::new()
        .prefix(&format!("ci-tools-{name}-"))
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod workspace");
    copy_tree(&fixture(name), ws.path());
    ws
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
    // The program is a real file of the workspace.
    assert_eq!(
        host_output(&ws.path().join("calc"), &["12"]),
        "fib(12)=144 primes<=12: 5\n"
    );
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
}

#[test]
fn git_in_the_workspace() {
    if !ready("git_in_the_workspace", &["git"]) {
        return;
    }
    let ws = workspace("git");
    // The checkout belongs to the host user who made it, not to the run's
    // uid, so git needs it declared safe (as CI runners do for checkouts made
    // by another user, e.g. actions/checkout); HOME is the workspace.
    let o = step(
        "git",
        ws.path(),
        &[],
        "git config --global --add safe.directory /src \
         && git init -q . && git config user.email ci@example.com && git config user.name CI \
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
}
