//! Language presets (`sandbox exec --language ID FILE --json`), each with the
//! five cases of issue #18: an accepted a+b, a compile error (a syntax error
//! for interpreted languages: a nonzero exit, Judge0's NZEC), a time limit,
//! a memory limit and a runtime error; plus `sandbox language list|show`
//! and `$SANDBOX_PRESET_DIR`. One test per language: cargo runs them on
//! parallel threads (the compilers take most of the time).

mod common;

use common::*;
use std::path::Path;

/// What a case expects of the combined JSON result.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// status ok, stdout "5".
    Accepted,
    /// status compile_error: the compile step failed with a nonzero exit.
    CompileError,
    /// No compile step: the run exits nonzero (runtime_error) and stderr
    /// names the problem.
    SyntaxError(&'static str),
    TimeLimit,
    MemoryLimit,
    /// runtime_error with this exit code (or, with `Signal`, this signal).
    Exit(i64),
    Signal(&'static str),
}

struct Lang {
    id: &'static str,
    file: &'static str,
    ab: &'static str,
    /// A compile error, or for interpreted languages a syntax error.
    bad: &'static str,
    bad_expect: Expect,
    tle: &'static str,
    mle: &'static str,
    /// Runs with stdin "0\n".
    rte: &'static str,
    rte_expect: Expect,
}

/// Runs FILE (holding `src`) with `--language id` and checks `want`.
fn case(l: &Lang, what: &str, src: &str, stdin: &str, extra: &[&str], want: Expect) {
    let dir = tempdir();
    let file = dir.path().join(l.file);
    std::fs::write(&file, src).expect("write source");
    let input = dir.path().join("input");
    std::fs::write(&input, stdin).expect("write input");
    let mut args: Vec<String> = ["exec", "--json", "--language", l.id, "--stdin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(input.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(file.display().to_string());
    let o = run(&args);
    let v = o.j();
    let ctx = format!(
        "{} {what}: code {} {v:#}\nstderr: {}",
        l.id, o.code, o.stderr
    );
    let run_status = v["run"]["status"].as_str().unwrap_or("<none>");
    match want {
        Expect::Accepted => {
            assert_eq!(v["status"], "ok", "{ctx}");
            assert_eq!(o.code, 0, "{ctx}");
            assert_eq!(json_body(&v["run"], "stdout").trim(), "5", "{ctx}");
        }
        Expect::CompileError => {
            assert_eq!(v["status"], "compile_error", "{ctx}");
            assert_eq!(v["compile"]["status"], "runtime_error", "{ctx}");
            assert!(v["run"].is_null(), "{ctx}");
            assert_ne!(o.code, 0, "{ctx}");
            let diag = json_body(&v["compile"], "stderr") + &json_body(&v["compile"], "stdout");
            assert!(!diag.trim().is_empty(), "no diagnostics: {ctx}");
        }
        Expect::SyntaxError(word) => {
            assert!(v["compile"].is_null(), "{ctx}");
            assert_eq!(v["status"], "runtime_error", "{ctx}");
            assert_ne!(v["run"]["exit_code"].as_i64().unwrap_or(0), 0, "{ctx}");
            assert!(
                json_body(&v["run"], "stderr").contains(word),
                "stderr lacks {word:?}: {ctx}"
            );
        }
        Expect::TimeLimit => {
            assert_eq!(v["status"], "time_limit", "{ctx}");
            assert_eq!(run_status, "time_limit", "{ctx}");
            assert_eq!(o.code, 124, "{ctx}");
        }
        Expect::MemoryLimit => {
            assert_eq!(v["status"], "memory_limit", "{ctx}");
            assert_eq!(o.code, 122, "{ctx}");
        }
        Expect::Exit(c) => {
            assert_eq!(v["status"], "runtime_error", "{ctx}");
            assert_eq!(v["run"]["exit_code"].as_i64(), Some(c), "{ctx}");
            assert_eq!(o.code as i64, c, "{ctx}");
        }
        Expect::Signal(s) => {
            assert_eq!(v["status"], "runtime_error", "{ctx}");
            assert_eq!(v["run"]["signal"].as_str(), Some(s), "{ctx}");
            assert!(o.code > 128, "{ctx}");
        }
    }
}

fn check(l: &Lang) {
    if !require_root(l.id) {
        return;
    }
    case(l, "a+b", l.ab, "2 3\n", &[], Expect::Accepted);
    case(l, "bad source", l.bad, "", &[], l.bad_expect);
    case(
        l,
        "infinite loop",
        l.tle,
        "",
        &["--time-limit", "1s"],
        Expect::TimeLimit,
    );
    case(
        l,
        "512 MiB",
        l.mle,
        "",
        &["--memory-limit", "128M"],
        Expect::MemoryLimit,
    );
    case(l, "runtime error", l.rte, "0\n", &[], l.rte_expect);
}

#[test]
fn c() {
    check(&Lang {
        id: "c",
        file: "sol.c",
        ab: "#include <stdio.h>\nint main(void){long a,b;if(scanf(\"%ld %ld\",&a,&b)!=2)return 1;printf(\"%ld\\n\",a+b);return 0;}\n",
        bad: "int main(void) { return undeclared; }\n",
        bad_expect: Expect::CompileError,
        tle: "int main(void){volatile unsigned long i=0;for(;;)i++;}\n",
        mle: "#include <stdio.h>\n#include <stdlib.h>\nint main(void){size_t n=(size_t)512<<20;char *volatile p=malloc(n);if(!p)return 3;for(size_t i=0;i<n;i+=4096)p[i]=1;printf(\"%d\\n\",p[n/2]);return 0;}\n",
        rte: "#include <stdio.h>\nint main(void){int z;if(scanf(\"%d\",&z)!=1)return 1;printf(\"%d\\n\",10/z);return 0;}\n",
        rte_expect: Expect::Signal("SIGFPE"),
    });
}

const CPP_TLE: &str = "int main(){volatile unsigned long i=0;for(;;)i++;}\n";
const CPP_MLE: &str = "#include <vector>\n#include <iostream>\nint main(){std::vector<char> v((size_t)512<<20, 1);std::cout<<(int)v[v.size()/2]<<\"\\n\";}\n";
const CPP_RTE: &str = "#include <stdexcept>\nint main(){throw std::runtime_error(\"boom\");}\n";

#[test]
fn cpp17() {
    check(&Lang {
        id: "cpp17",
        file: "sol.cpp",
        // Structured bindings and `if constexpr`: C++17.
        ab: "#include <iostream>\n#include <utility>\nint main(){long a,b;std::cin>>a>>b;auto [x,y]=std::pair(a,b);if constexpr(sizeof(long)>0) std::cout<<x+y<<\"\\n\";}\n",
        bad: "int main(){ undeclared(); }\n",
        bad_expect: Expect::CompileError,
        tle: CPP_TLE,
        mle: CPP_MLE,
        rte: CPP_RTE,
        rte_expect: Expect::Signal("SIGABRT"),
    });
}

#[test]
fn cpp20() {
    check(&Lang {
        id: "cpp20",
        file: "sol.cpp",
        // An abbreviated function template with a concept: C++20 only.
        ab: "#include <concepts>\n#include <iostream>\nauto add(std::integral auto a, std::integral auto b){return a+b;}\nint main(){long a,b;std::cin>>a>>b;std::cout<<add(a,b)<<\"\\n\";}\n",
        bad: "int main(){ undeclared(); }\n",
        bad_expect: Expect::CompileError,
        tle: CPP_TLE,
        mle: CPP_MLE,
        rte: CPP_RTE,
        rte_expect: Expect::Signal("SIGABRT"),
    });
}

#[test]
fn python3() {
    check(&Lang {
        id: "python3",
        file: "sol.py",
        ab: "a, b = map(int, input().split())\nprint(a + b)\n",
        bad: "print(\n",
        bad_expect: Expect::SyntaxError("SyntaxError"),
        tle: "while True:\n    pass\n",
        mle: "s = b'x' * (512 << 20)\nprint(len(s))\n",
        rte: "z = int(input())\nprint(1 // z)\n",
        rte_expect: Expect::Exit(1),
    });
}

#[test]
fn java() {
    check(&Lang {
        id: "java",
        file: "Main.java",
        ab: "import java.util.Scanner;\npublic class Main { public static void main(String[] x) { Scanner s = new Scanner(System.in); long a = s.nextLong(), b = s.nextLong(); System.out.println(a + b); } }\n",
        bad: "public class Main { public static void main(String[] a) { int x = \"s\"; } }\n",
        bad_expect: Expect::CompileError,
        tle: "public class Main { public static void main(String[] a) { long i = 0; while (true) { i++; } } }\n",
        // 64 arrays of 8 MiB, all kept: the heap (-Xmx = the limit) never
        // fills before the cgroup does.
        mle: "public class Main { public static void main(String[] a) { byte[][] k = new byte[64][]; for (int i = 0; i < 64; i++) { k[i] = new byte[8 << 20]; k[i][1] = 1; } System.out.println(k[63][1]); } }\n",
        rte: "public class Main { public static void main(String[] a) { int z = new java.util.Scanner(System.in).nextInt(); System.out.println(1 / z); } }\n",
        rte_expect: Expect::Exit(1),
    });
}

#[test]
fn javascript() {
    check(&Lang {
        id: "javascript",
        file: "sol.js",
        ab: "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\n",
        bad: "console.log(\n",
        bad_expect: Expect::SyntaxError("SyntaxError"),
        tle: "for (;;) {}\n",
        mle: "const b = Buffer.alloc(512 << 20, 1);\nconsole.log(b[12345]);\n",
        rte: "const o = null;\nconsole.log(o.x);\n",
        rte_expect: Expect::Exit(1),
    });
}

#[test]
fn rust() {
    check(&Lang {
        id: "rust",
        file: "sol.rs",
        ab: "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!(\"{}\", v[0] + v[1]); }\n",
        bad: "fn main() { let x: i32 = \"s\"; }\n",
        bad_expect: Expect::CompileError,
        tle: "fn main() { loop {} }\n",
        mle: "fn main() { let v = vec![1u8; 512 << 20]; println!(\"{}\", v[v.len() / 2]); }\n",
        // A panic (integer division by zero) exits 101.
        rte: "fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap(); let z: i32 = s.trim().parse().unwrap(); println!(\"{}\", 1 / z); }\n",
        rte_expect: Expect::Exit(101),
    });
}

#[test]
fn go() {
    check(&Lang {
        id: "go",
        file: "sol.go",
        ab: "package main\nimport \"fmt\"\nfunc main() { var a, b int64; fmt.Scan(&a, &b); fmt.Println(a + b) }\n",
        bad: "package main\nfunc main() { x := 1 }\n",
        bad_expect: Expect::CompileError,
        tle: "package main\nfunc main() { for {} }\n",
        mle: "package main\nimport \"fmt\"\nfunc main() { b := make([]byte, 512<<20); for i := range b { b[i] = 1 }; fmt.Println(b[len(b)/2]) }\n",
        // An unrecovered panic exits 2.
        rte: "package main\nimport \"fmt\"\nfunc main() { var z int; fmt.Scan(&z); fmt.Println(1 / z) }\n",
        rte_expect: Expect::Exit(2),
    });
}

#[test]
fn bash() {
    check(&Lang {
        id: "bash",
        file: "sol.sh",
        ab: "read a b\necho $((a + b))\n",
        bad: "if then fi\n",
        bad_expect: Expect::SyntaxError("syntax error"),
        tle: "while :; do :; done\n",
        mle: "x=$(head -c 600000000 /dev/zero | tr '\\0' a)\necho ${#x}\n",
        // Under `set -u` an unset variable ends the script with status 1
        // (bash goes on after most errors, a division by zero included).
        rte: "set -u\nread z\necho \"$undefined_var\"\necho unreachable\n",
        rte_expect: Expect::Exit(1),
    });
}

#[test]
fn ruby() {
    check(&Lang {
        id: "ruby",
        file: "sol.rb",
        ab: "a, b = gets.split.map(&:to_i)\nputs a + b\n",
        bad: "puts(\n",
        bad_expect: Expect::SyntaxError("syntax error"),
        tle: "loop {}\n",
        mle: "s = 'a' * (512 << 20)\nputs s.size\n",
        rte: "z = gets.to_i\nputs 1 / z\n",
        rte_expect: Expect::Exit(1),
    });
}

#[test]
fn php() {
    check(&Lang {
        id: "php",
        file: "sol.php",
        ab: "<?php\n[$a, $b] = array_map('intval', preg_split('/\\s+/', trim(fgets(STDIN))));\necho $a + $b, \"\\n\";\n",
        bad: "<?php echo (;\n",
        bad_expect: Expect::SyntaxError("Parse error"),
        tle: "<?php while (true) {}\n",
        mle: "<?php $s = str_repeat('a', 512 << 20); echo strlen($s), \"\\n\";\n",
        // An uncaught DivisionByZeroError is a fatal error: exit 255.
        rte: "<?php $z = intval(trim(fgets(STDIN))); echo intdiv(1, $z), \"\\n\";\n",
        rte_expect: Expect::Exit(255),
    });
}

#[test]
fn pascal() {
    check(&Lang {
        id: "pascal",
        file: "sol.pas",
        ab: "program ab;\nvar a, b: int64;\nbegin\n  readln(a, b);\n  writeln(a + b);\nend.\n",
        bad: "program bad;\nbegin\n  writeln(1\nend.\n",
        bad_expect: Expect::CompileError,
        tle: "program tle;\nvar i: longint;\nbegin\n  i := 0;\n  while true do i := i + 1;\nend.\n",
        mle: "program mle;\nvar p: PChar; n, i: SizeInt;\nbegin\n  n := 512 * 1024 * 1024;\n  GetMem(p, n);\n  i := 0;\n  while i < n do begin p[i] := 'a'; i := i + 4096; end;\n  writeln(ord(p[n div 2]));\nend.\n",
        // Division by zero: FPC's run-time error 200, the exit code.
        rte: "program rte;\nvar a, z: longint;\nbegin\n  a := 1;\n  readln(z);\n  writeln(a div z);\nend.\n",
        rte_expect: Expect::Exit(200),
    });
}

/// Every shipped preset loads, and `language list` reports the version
/// its toolchain gives inside the sandbox (the toolchains of Debian in the
/// run's view, not a rustup toolchain under /root).
#[test]
fn list_reports_every_preset_with_its_version() {
    if !require_root("list_reports_every_preset_with_its_version") {
        return;
    }
    let o = run(&["language", "list", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let rows = o.j().as_array().expect("an array").clone();
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    for id in [
        "bash",
        "c",
        "cpp17",
        "cpp20",
        "go",
        "java",
        "javascript",
        "pascal",
        "php",
        "python3",
        "ruby",
        "rust",
    ] {
        assert!(ids.contains(&id), "{id} missing: {ids:?}");
    }
    for r in &rows {
        let ver = r["version"].as_str().unwrap_or("");
        assert!(!ver.is_empty() && !ver.starts_with("(unavailable"), "{r:#}");
        assert!(r["judge0_id"].as_u64().is_some(), "{r:#}");
    }
    let rust = rows.iter().find(|r| r["id"] == "rust").expect("rust");
    assert!(
        rust["version"].as_str().unwrap_or("").starts_with("rustc "),
        "{rust:#}"
    );
    // Every toolchain a preset names is the system's (Debian's), whatever
    // rustup or pyenv have under /root: a run sees only /usr.
    let o = exec_json(
        &[],
        &[
            "sh",
            "-c",
            "for t in gcc g++ python3 javac java node rustc go bash ruby php fpc; do command -v $t; done",
        ],
    );
    assert_eq!(o.status(), "ok", "{:#}", o.j());
    let paths = o.prog_stdout();
    assert_eq!(paths.lines().count(), 12, "{paths}");
    for p in paths.lines() {
        assert!(
            p.starts_with("/usr/bin/") || p.starts_with("/bin/"),
            "{paths}"
        );
    }
}

fn with_preset_dir(dir: &Path, args: &[&str]) -> Out {
    let mut c = sandbox_cmd(args);
    c.env("SANDBOX_PRESET_DIR", dir);
    run_cmd(c)
}

/// A file in $SANDBOX_PRESET_DIR replaces the bundled preset of its id (and
/// adds one with a new id); `show` prints the file in effect; a broken one
/// is an error naming the file and key.
#[test]
fn preset_dir_overrides_and_adds() {
    if !require_root("preset_dir_overrides_and_adds") {
        return;
    }
    let dir = tempdir();
    // python3 replaced by a preset that runs the source with sh, so the
    // output shows which preset ran.
    std::fs::write(
        dir.path().join("python3.toml"),
        "id = \"python3\"\nname = \"Overridden\"\nversion_command = [\"sh\", \"-c\", \"echo over 1.0\"]\nsource = \"main.sh\"\nrun = [\"sh\", \"{source}\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("awk.toml"),
        "id = \"awk\"\nname = \"AWK\"\nversion_command = [\"awk\", \"-W\", \"version\"]\nsource = \"main.awk\"\nrun = [\"awk\", \"-f\", \"{source}\"]\n[run_limits]\ncpu_time = \"1s\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        "id = \"broken\"\nname = \"B\"\nversion_command = [\"true\"]\nsource = \"x\"\nrun = [\"true\"]\n[run_limits]\nmemory = \"12Q\"\n",
    )
    .unwrap();
    let o = with_preset_dir(dir.path(), &["language", "show", "python3"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout_str().contains("Overridden"), "{}", o.stdout_str());
    let src = dir.path().join("prog");
    std::fs::write(&src, "echo from-override\n").unwrap();
    let o = with_preset_dir(
        dir.path(),
        &[
            "exec",
            "--json",
            "--language",
            "python3",
            src.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status(), "ok", "{:#}", o.j());
    assert_eq!(json_body(&o.j()["run"], "stdout"), "from-override\n");
    std::fs::write(&src, "{ print $1 + $2 }\n").unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, "2 3\n").unwrap();
    let o = with_preset_dir(
        dir.path(),
        &[
            "exec",
            "--json",
            "--language",
            "awk",
            "--stdin",
            input.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status(), "ok", "{:#}", o.j());
    assert_eq!(json_body(&o.j()["run"], "stdout"), "5\n");
    // The broken one: exit 125, the file and key named.
    let o = with_preset_dir(dir.path(), &["language", "show", "broken", "--json"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(
        o.stderr.contains("broken.toml:7:") && o.stderr.contains("run_limits.memory"),
        "{}",
        o.stderr
    );
    assert_eq!(o.j()["status"], "sandbox_error");
    // list names it invalid and exits 2, the others still listed.
    let o = with_preset_dir(dir.path(), &["language", "list", "--no-versions"]);
    assert_eq!(o.code, 2, "{}", o.stdout_str());
    assert!(o.stdout_str().contains("awk"), "{}", o.stdout_str());
    assert!(o.stdout_str().contains("(invalid:"), "{}", o.stdout_str());
}

/// Errors of `exec --language` follow the exit-code contract: 125, one
/// line, and one JSON object under --json.
#[test]
fn exec_language_errors_are_125() {
    let dir = tempdir();
    let src = dir.path().join("a.c");
    std::fs::write(&src, "int main(void){return 0;}\n").unwrap();
    let s = src.to_str().unwrap();
    for (args, word) in [
        (
            vec!["exec", "--json", "--language", "nosuch", s],
            "unknown language \"nosuch\"",
        ),
        (
            vec!["exec", "--json", "--language", "c", "/nonexistent/x.c"],
            "FILE: /nonexistent/x.c",
        ),
        (vec!["exec", "--json", "--language", "c"], "FILE"),
        (
            vec!["exec", "--json", "--language", "c", s, "--", "/bin/true"],
            "COMMAND",
        ),
        (
            vec![
                "exec",
                "--json",
                "--language",
                "c",
                "--memory-limit",
                "9Q",
                s,
            ],
            "--memory-limit",
        ),
    ] {
        let o = run(&args);
        assert_eq!(o.code, 125, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(word), "{args:?}: {}", o.stderr);
        assert_eq!(o.j()["status"], "sandbox_error", "{args:?}");
        assert!(
            o.j()["error"].as_str().unwrap_or("").contains(word),
            "{args:?}"
        );
    }
    // `language show` of an unknown id: 125, JSON under --json.
    let o = run(&["language", "show", "nosuch", "--json"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(
        o.stderr.contains("unknown language \"nosuch\""),
        "{}",
        o.stderr
    );
    assert_eq!(o.j()["status"], "sandbox_error");
    // FILE without --language is a usage error.
    let o = run(&["exec", s]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(o.stderr.contains("--language"), "{}", o.stderr);
}

/// SIGTERM (or SIGINT, SIGHUP) stops the runs, unmounts and removes the
/// workspace, and exits 128 + the signal.
#[test]
fn a_signal_stops_the_runs_and_removes_the_workspace() {
    if !require_root("a_signal_stops_the_runs_and_removes_the_workspace") {
        return;
    }
    let dir = tempdir();
    let src = dir.path().join("loop.py");
    std::fs::write(&src, "while True:\n    pass\n").unwrap();
    let mut c = sandbox_cmd(&["exec", "--language", "python3", src.to_str().unwrap()]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("spawn");
    let pid = child.id();
    let marker = format!("/sandbox-lang-{pid}-");
    let mounted = || {
        std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .contains(&marker)
    };
    let t0 = std::time::Instant::now();
    while !mounted() && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(mounted(), "the workspace tmpfs never appeared");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let o = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(!mounted(), "workspace still mounted");
    let leftover = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&marker[1..]));
    assert!(!leftover, "workspace directory left behind");
    assert_no_cgroups_of(pid);
}

/// `exec --language` makes its workspace (a tmpfs root mounts and later
/// removes by path) in $TMPDIR: a directory others may write without the
/// sticky bit would let them swap it in between, so it is refused (125,
/// naming the directory); a sticky one like /tmp is fine.
#[test]
fn exec_language_refuses_a_tmpdir_others_can_rename_in() {
    if !require_root("exec_language_refuses_a_tmpdir_others_can_rename_in") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let src = dir.path().join("a.sh");
    std::fs::write(&src, "echo ran\n").unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let args = [
        "exec",
        "--json",
        "--language",
        "bash",
        src.to_str().unwrap(),
    ];
    let mut c = sandbox_cmd(&args);
    c.env("TMPDIR", &open);
    let o = run_cmd(c);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(o.stderr.contains("lets other users rename"), "{}", o.stderr);
    assert!(o.stderr.contains(open.to_str().unwrap()), "{}", o.stderr);
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "nothing made in it"
    );
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut c = sandbox_cmd(&args);
    c.env("TMPDIR", &open);
    let o = run_cmd(c);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.j()["run"]["stdout"], "ran\n", "{}", o.j());
}
