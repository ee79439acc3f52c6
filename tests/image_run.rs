//! Runs whose root is an image's layers (`Sandbox::with_image`), with
//! layers made here by hand from busybox-static: the layers stack as an
//! overlay (a whiteout hides a lower file), the image's user, environment,
//! working directory and command are the run's, files keep the owners they
//! have in the image as seen from inside (idmapped layers), the image's
//! user writes what it owns (into the throwaway layer) and nothing reaches
//! the layers. Needs root and /bin/busybox (Debian's busybox-static).

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sandbox::profile;
use sandbox::runner::{OutputSpec, RunImage, RunSpec, Sandbox, StdinSpec};

fn ready() -> bool {
    // SAFETY: geteuid has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: needs /bin/busybox (apt-get install busybox-static)");
        return false;
    }
    true
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("chown");
}

/// Two layers: a busybox base with a user `app` (1000) owning /home/app,
/// root-only /etc/secret and /etc/gone; on top a layer that replaces
/// /etc/motd and deletes /etc/gone (an overlay whiteout: a 0/0 device).
fn layers(dir: &Path) -> Vec<PathBuf> {
    let base = dir.join("base");
    let top = dir.join("top");
    for d in ["bin", "etc", "home/app", "tmp"] {
        std::fs::create_dir_all(base.join(d)).expect("mkdir");
    }
    std::fs::create_dir_all(top.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", base.join("bin/busybox")).expect("busybox");
    for tool in [
        "sh", "id", "cat", "ls", "stat", "touch", "echo", "pwd", "env",
    ] {
        symlink("busybox", base.join("bin").join(tool)).expect("symlink");
    }
    std::fs::write(
        base.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(base.join("etc/group"), "root:x:0:\napp:x:1000:\n").expect("group");
    std::fs::write(base.join("etc/motd"), "base\n").expect("motd");
    std::fs::write(base.join("etc/gone"), "should not be seen\n").expect("gone");
    std::fs::write(base.join("etc/secret"), "root only\n").expect("secret");
    std::fs::set_permissions(
        base.join("etc/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::set_permissions(base.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    std::fs::write(base.join("home/app/notes"), "mine\n").expect("notes");
    chown(&base.join("home/app"), 1000, 1000);
    chown(&base.join("home/app/notes"), 1000, 1000);
    std::fs::write(top.join("etc/motd"), "top\n").expect("motd");
    nix::sys::stat::mknod(
        &top.join("etc/gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .expect("whiteout");
    vec![base, top]
}

fn image(layers: Vec<PathBuf>, uid: u32, cmd: &[&str]) -> RunImage {
    RunImage {
        name: "test/handmade:1".into(),
        digest: String::new(),
        layers,
        uid,
        gid: uid,
        env: vec![
            ("PATH".into(), "/bin".into()),
            ("GREETING".into(), "from-image".into()),
        ],
        workdir: Some("/home/app".into()),
        entrypoint: vec![],
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        hold: None,
    }
}

fn run(sb: &Sandbox, argv: &[&str], env: &[(&str, &str)]) -> sandbox::runner::RunResult {
    let spec = RunSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits: sb.profile.limits.clone(),
        stdin: StdinSpec::Null,
        stdout: OutputSpec::Capture,
        stderr: OutputSpec::Capture,
        ..RunSpec::default()
    };
    sb.run(&spec)
}

/// strict, plus the set*id calls busybox makes at every start (harmless
/// in a user namespace with no capability; strict kills them, see #15).
fn profile() -> sandbox::profile::Profile {
    profile::parse_str(
        "extends = \"strict\"\n[seccomp]\nallow_add = [\"setuid\", \"setgid\", \"setgroups\", \"setresuid\", \"setresgid\"]\n",
        "image-test.toml",
    )
    .expect("profile")
}

fn out(r: &sandbox::runner::RunResult) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

#[test]
fn a_run_in_an_image_sees_the_image_as_the_image_has_it() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ls = layers(dir.path());
    let sb = Sandbox::with_image(profile(), image(ls.clone(), 1000, &["id"])).expect("sandbox");

    // No command: the image's; its user, from its /etc/passwd.
    let r = run(&sb, &[], &[]);
    assert_eq!(
        out(&r),
        "uid=1000(app) gid=1000(app) groups=1000(app)\n",
        "{r:?}"
    );

    let script = "pwd; echo $GREETING $EXTRA; cat /etc/motd; \
        ls /etc/gone 2>/dev/null || echo gone-hidden; \
        stat -c '%u %g %n' /home/app /home/app/notes /etc/passwd; \
        cat /etc/secret 2>/dev/null || echo secret-refused; \
        echo more >> /home/app/notes && cat /home/app/notes; \
        touch /etc/x 2>/dev/null || echo etc-refused";
    let r = run(&sb, &["sh", "-c", script], &[("EXTRA", "and-run")]);
    assert_eq!(
        r.status().as_str(),
        "ok",
        "{r:?} {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        out(&r),
        "/home/app\nfrom-image and-run\ntop\ngone-hidden\n\
         1000 1000 /home/app\n1000 1000 /home/app/notes\n0 0 /etc/passwd\n\
         secret-refused\nmine\nmore\netc-refused\n",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // Nothing reached the layers.
    assert_eq!(
        std::fs::read_to_string(ls[0].join("home/app/notes")).unwrap(),
        "mine\n"
    );
    assert!(!ls[0].join("etc/x").exists() && !ls[1].join("etc/x").exists());

    // The next run starts from the image again.
    let r = run(&sb, &["cat", "/home/app/notes"], &[]);
    assert_eq!(out(&r), "mine\n");

    // As the image's root: root inside (no capability on the host), owns
    // what root owns in the image.
    let sb = Sandbox::with_image(profile(), image(ls, 0, &[])).expect("sandbox");
    let r = run(
        &sb,
        &[
            "sh",
            "-c",
            "id -u; cat /etc/secret; echo x > /etc/motd && cat /etc/motd; awk '{print $2}' /proc/self/uid_map 2>/dev/null || cat /proc/self/uid_map",
        ],
        &[],
    );
    let o = out(&r);
    assert!(
        o.starts_with("0\nroot only\nx\n"),
        "{o} {}",
        String::from_utf8_lossy(&r.stderr)
    );
}

#[test]
fn an_image_without_a_command_needs_one_from_the_run() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sb = Sandbox::with_image(profile(), image(layers(dir.path()), 0, &[])).expect("sandbox");
    let r = run(&sb, &[], &[]);
    assert_eq!(r.status().as_str(), "sandbox_error");
    assert!(
        r.message
            .as_deref()
            .unwrap_or("")
            .contains("no command given, and image test/handmade:1 has none"),
        "{r:?}"
    );
}
