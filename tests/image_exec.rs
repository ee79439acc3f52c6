//! Runs in images of the store, end to end: `sandbox exec --image`, the
//! profile key `filesystem.image`, and `"image"` in a job of `sandbox serve`
//! (`--allow-image`). The images are busybox images made offline by umoci
//! (image_common::busybox_images): base (user app, workdir /home/app,
//! PATH=/bin, Cmd /bin/sh) and v2 (whiteouts and an opaque directory on
//! top). Needs root and the tools `.ci/run` installs; skips loudly without.
//!
//! Busybox as a user other than root calls setgid/setuid at start (to the
//! ids it already has): strict kills that, so the runs use the profile
//! `images` (strict with those calls allowed), from an override directory.

mod image_common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use image_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sandbox");

/// A store with the images imported as local/bb:base and local/bb:v2 (one
/// per test: tests remove images).
fn store() -> Option<(tempfile::TempDir, PathBuf)> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let img = DIR
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-exec");
            let archive = "skopeo copy -q oci:img:v2 docker-archive:v2.tar:repo:v2\n";
            busybox_images(&dir, &[], archive).then_some(dir)
        })
        .as_deref()?;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    std::fs::write(dir.path().join("profiles/images.toml"), IMAGES_PROFILE).unwrap();
    // The layout's first image is base; the docker save archive holds v2.
    for (src, tag) in [("img", "base"), ("v2.tar", "v2")] {
        let o = Command::new(BIN)
            .arg("--store")
            .arg(&store)
            .args(["image", "import"])
            .arg(img.join(src))
            .args(["--name", &format!("local/bb:{tag}")])
            .output()
            .unwrap();
        assert!(o.status.success(), "import {tag}: {}", text(&o.stderr));
    }
    Some((dir, store))
}

const IMAGES_PROFILE: &str = "extends = \"strict\"\n[seccomp]\nallow_add = [\"setuid\", \"setgid\", \"setresuid\", \"setresgid\"]\n";

/// The override directory of `store()`'s profiles.
fn profiles(store: &Path) -> PathBuf {
    store.parent().unwrap().join("profiles")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn exec(store: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--store")
        .arg(store)
        .arg("exec")
        .args(if args.contains(&"--profile") {
            &[][..]
        } else {
            &["--profile", "images"]
        })
        .args(args)
        .env("SANDBOX_PROFILE_DIR", profiles(store))
        .env_remove("SANDBOX_HELPER_SOCKET")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: stdout {} stderr {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[test]
fn the_image_decides_user_workdir_env_and_command() {
    let Some((_d, st)) = store() else { return };
    // No command: Cmd (/bin/sh) with the image's user, workdir and PATH;
    // a script on stdin shows them.
    let script = st.parent().unwrap().join("script");
    std::fs::write(&script, "id -u; id -g; pwd; echo \"$PATH\"; ls /data\n").unwrap();
    let out = ok(&exec(
        &st,
        &[
            "--image",
            "local/bb:base",
            "--stdin",
            script.to_str().unwrap(),
        ],
    ));
    assert_eq!(out, "1000\n1000\n/home/app\n/bin\none\ntwo\n");
    // --cwd and --env override the image; a given command replaces Cmd.
    let out = ok(&exec(
        &st,
        &[
            "--image",
            "local/bb:base",
            "--cwd",
            "/tmp",
            "--env",
            "PATH=/nowhere:/bin",
            "--",
            "sh",
            "-c",
            "pwd; echo $PATH",
        ],
    ));
    assert_eq!(out, "/tmp\n/nowhere:/bin\n");
    // The image user owns its home (as in the image) and writes there;
    // nothing reaches the store.
    let out = ok(&exec(
        &st,
        &[
            "--image",
            "local/bb:base",
            "--",
            "sh",
            "-c",
            "echo x > f && ls -n f | cut -c1-30",
        ],
    ));
    assert!(out.starts_with("-rw-r--r--    1 1000     1000"), "{out}");
    let home = Command::new("sh")
        .arg("-c")
        .arg(format!("find {} -path '*home/app/f'", st.display()))
        .output()
        .unwrap();
    assert_eq!(text(&home.stdout), "", "a run's write reached the store");
}

#[test]
fn whiteouts_show_the_upper_image_as_docker_does() {
    let Some((_d, st)) = store() else { return };
    let out = ok(&exec(
        &st,
        &[
            "--image",
            "local/bb:v2",
            "--",
            "sh",
            "-c",
            "ls /data; cat /v2; test -e /etc/motd || echo no-motd",
        ],
    ));
    assert_eq!(out, "three\nv2\nno-motd\n");
}

#[test]
fn a_missing_image_is_named_and_never_pulled_with_pull_never() {
    let Some((_d, st)) = store() else { return };
    let o = exec(
        &st,
        &["--image", "local/none:v9", "--pull", "never", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(125));
    let err = text(&o.stderr);
    assert!(
        err.contains("docker.io/local/none:v9") && err.contains("not in the store"),
        "{err}"
    );
    let o = exec(
        &st,
        &[
            "--image",
            "local/bb:base",
            "--pull",
            "sometimes",
            "--",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("--pull"), "{}", text(&o.stderr));
    let o = exec(&st, &["--image", "Not/A Ref", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("--image"), "{}", text(&o.stderr));
    // Without an image, a command is required.
    let o = exec(&st, &[]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("no command"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_profile_names_its_image() {
    let Some((d, st)) = store() else { return };
    let p = d.path().join("p.toml");
    std::fs::write(
        &p,
        "extends = \"images\"\n[filesystem]\nimage = \"local/bb:v2\"\n",
    )
    .unwrap();
    let out = ok(&exec(
        &st,
        &["--profile", p.to_str().unwrap(), "--", "cat", "/v2"],
    ));
    assert_eq!(out, "v2\n");
    // --image wins over the profile's.
    let o = exec(
        &st,
        &[
            "--profile",
            p.to_str().unwrap(),
            "--image",
            "local/bb:base",
            "--",
            "cat",
            "/v2",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    // Both a root directory and an image: an error naming both keys.
    std::fs::write(
        &p,
        "extends = \"strict\"\n[filesystem]\nimage = \"local/bb:v2\"\nroot = \"/srv\"\n",
    )
    .unwrap();
    let o = exec(&st, &["--profile", p.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let err = text(&o.stderr);
    assert!(
        err.contains("filesystem.image") && err.contains("filesystem.root"),
        "{err}"
    );
}

#[test]
fn removal_waits_for_the_runs_using_an_image() {
    let Some((_d, st)) = store() else { return };
    let run = Command::new(BIN)
        .arg("--store")
        .arg(&st)
        .args(["exec", "--profile", "images", "--image", "local/bb:v2"])
        .args(["--", "sh", "-c", "sleep 2; cat /v2 /data/three"])
        .env("SANDBOX_PROFILE_DIR", profiles(&st))
        .env_remove("SANDBOX_HELPER_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for args in [
        &["rm", "local/bb:v2"][..],
        &["rm", "local/bb:base"],
        &["prune"],
    ] {
        let o = Command::new(BIN)
            .arg("--store")
            .arg(&st)
            .arg("image")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    let o = run.wait_with_output().unwrap();
    assert_eq!(ok(&o), "v2\n3\n", "the run lost its layers");
    // Once it ended, a prune frees them.
    let o = Command::new(BIN)
        .arg("--store")
        .arg(&st)
        .args(["image", "prune"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let left = std::fs::read_dir(st.join("layers/sha256")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "layers left after the run ended and a prune");
}

// ---- the job API

struct Server {
    child: Child,
    port: u16,
    _work: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn serve(store: &Path, extra: &[&str]) -> Server {
    let work = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "2",
        ])
        .arg("--work-dir")
        .arg(work.path().join("jobs"))
        .args(extra)
        .env("SANDBOX_PROFILE_DIR", profiles(store))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        port,
        _work: work,
    }
}

#[test]
fn jobs_name_images_the_server_allows() {
    let Some((_d, st)) = store() else { return };
    let srv = serve(&st, &["--allow-image", "local/bb"]);
    let (code, j) = post_job(
        srv.port,
        r#"{"profile":"images","image":"local/bb:v2","files":[{"path":"in.txt","content":"hi"}],
            "steps":[{"command":["sh","-c","cat in.txt; id -u; cat /v2; ls /data; echo out > o.txt"]}],
            "outputs":["o.txt"]}"#,
    );
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["image"], "docker.io/local/bb:v2", "{j}");
    let s = &j["steps"][0];
    assert_eq!(s["status"], "ok", "{j}");
    assert_eq!(s["stdout"], "hi1000\nv2\nthree\n", "{j}");
    // The workspace belongs to the image's user: it wrote o.txt.
    assert_eq!(j["outputs"]["o.txt"]["content"], "out\n", "{j}");
    // Not matching --allow-image: 400 naming the field.
    let (code, j) = post_job(
        srv.port,
        r#"{"image":"busybox","steps":[{"command":["true"]}]}"#,
    );
    assert_eq!(code, 400, "{j}");
    assert_eq!(j["field"], "image", "{j}");
    // Not a reference: 400 naming the field.
    let (code, j) = post_job(
        srv.port,
        r#"{"image":"A B","steps":[{"command":["true"]}]}"#,
    );
    assert_eq!((code, j["field"].as_str()), (400, Some("image")), "{j}");
    // Allowed but in no store and no registry holds it: the job ends with
    // status failed and an error naming the image.
    let (code, j) = post_job(
        srv.port,
        r#"{"image":"local/bb:v9","steps":[{"command":["true"]}]}"#,
    );
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["status"], "failed", "{j}");
    let err = j["error"].as_str().unwrap_or_default();
    assert!(err.contains("docker.io/local/bb:v9"), "{j}");
    drop(srv);
    // A server without --allow-image runs no images.
    let srv = serve(&st, &[]);
    let (code, j) = post_job(
        srv.port,
        r#"{"image":"local/bb:v2","steps":[{"command":["true"]}]}"#,
    );
    assert_eq!((code, j["field"].as_str()), (400, Some("image")), "{j}");
    assert!(
        j["error"].as_str().unwrap().contains("--allow-image"),
        "{j}"
    );
}

// ---- a real Debian root

/// What `mmdebstrap` builds: Debian 12's minbase with python3, as a tar.
const DEBIAN_RECIPE: [&str; 5] = [
    "--variant=minbase",
    "--include=python3-minimal",
    "--mode=root",
    "--format=tar",
    "bookworm",
];

/// The Debian root tar, built once per machine with `mmdebstrap` from
/// Debian's packages (~2 min, 190 MB) and kept under /var/cache by its
/// recipe.
fn debian_root() -> PathBuf {
    let key = DEBIAN_RECIPE.join(" ");
    let hash: u32 = key
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    let dir = Path::new("/var/cache/sandbox-tests");
    std::fs::create_dir_all(dir).unwrap();
    let tar = dir.join(format!("debian-bookworm-python3-{hash:08x}.tar"));
    if !tar.exists() {
        let tmp = dir.join(format!("debian.{}.tmp", std::process::id()));
        let o = Command::new("mmdebstrap")
            .args(DEBIAN_RECIPE)
            .arg(&tmp)
            .output()
            .expect("mmdebstrap (apt-get install mmdebstrap)");
        assert!(o.status.success(), "mmdebstrap: {}", text(&o.stderr));
        std::fs::rename(&tmp, &tar).unwrap();
    }
    tar
}

#[test]
fn a_debian_root_with_python_runs_under_strict() {
    if !is_root() || !have("umoci") || !have("mmdebstrap") {
        eprintln!("SKIPPED: needs root, umoci and mmdebstrap (apt-get install umoci mmdebstrap)");
        return;
    }
    let root = debian_root();
    let d = tempfile::tempdir().unwrap();
    let layout = d.path().join("layout");
    let l = layout.to_str().unwrap();
    let img = format!("{l}:py");
    for args in [
        vec!["init", "--layout", l],
        vec!["new", "--image", &img],
        vec!["raw", "add-layer", "--image", &img, root.to_str().unwrap()],
        vec![
            "config",
            "--image",
            &img,
            "--config.cmd",
            "python3",
            "--config.env",
            "PATH=/usr/local/bin:/usr/bin:/bin",
        ],
    ] {
        let o = Command::new("umoci").args(&args).output().unwrap();
        assert!(o.status.success(), "umoci {args:?}: {}", text(&o.stderr));
    }
    let st = d.path().join("store");
    let o = Command::new(BIN)
        .arg("--store")
        .arg(&st)
        .args(["image", "import", l, "--name", "local/debian:py"])
        .output()
        .unwrap();
    assert!(o.status.success(), "import: {}", text(&o.stderr));
    // A judged Python program, strict as for any submission: reads stdin,
    // sees Debian's root (not the host's), runs as the image's root, which
    // is an unprivileged id with no capability.
    let input = d.path().join("in");
    std::fs::write(&input, "2 40\n").unwrap();
    let o = Command::new(BIN)
        .arg("--store")
        .arg(&st)
        .args(["exec", "--profile", "strict", "--image", "local/debian:py", "--stdin"])
        .arg(&input)
        .args([
            "--",
            "python3",
            "-c",
            "import os, sys; a, b = map(int, sys.stdin.read().split()); \
             print(a + b, open('/etc/debian_version').read().split('.')[0], os.getuid(), flush=True); \
             os.setuid(5)",
        ])
        .env_remove("SANDBOX_HELPER_SOCKET")
        .output()
        .unwrap();
    // setuid(5) without CAP_SETUID: strict kills the call (SIGSYS, 128+31).
    assert_eq!(text(&o.stdout), "42 12 0\n", "{}", text(&o.stderr));
    assert_eq!(o.status.code(), Some(128 + 31), "{}", text(&o.stderr));
}

#[test]
fn an_image_user_beyond_the_job_block_is_refused() {
    let Some((d, st)) = store() else { return };
    // The base image with User 70000 (valid in an image; the job's block
    // holds 65536 ids).
    let layout = d.path().join("high");
    let src = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-exec/img");
    let o = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&layout)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let img = format!("{}:base", layout.display());
    let o = Command::new("umoci")
        .args([
            "config",
            "--image",
            &img,
            "--tag",
            "high",
            "--config.user",
            "70000:70000",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "umoci: {}", text(&o.stderr));
    let o = Command::new(BIN)
        .arg("--store")
        .arg(&st)
        .args(["image", "import"])
        .arg(&layout)
        .args(["--name", "local/bb:high"])
        .output()
        .unwrap();
    assert!(o.status.success(), "import: {}", text(&o.stderr));
    // sandbox exec: refused, exit 125, naming the block.
    let o = exec(&st, &["--image", "local/bb:high", "--", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("beyond the job's block"),
        "{}",
        text(&o.stderr)
    );
    // A job: failed before its workspace is given to that user.
    let srv = serve(&st, &["--allow-image", "local/bb"]);
    let (code, j) = post_job(
        srv.port,
        r#"{"profile":"images","image":"local/bb:high","files":[{"path":"a","content":"x"}],"steps":[{"command":["true"]}]}"#,
    );
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["status"], "failed", "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap_or_default()
            .contains("beyond the job's block"),
        "{j}"
    );
}
