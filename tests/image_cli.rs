//! `sandbox image` end to end with images made by real tools, offline:
//! Debian's umoci builds a small image from busybox-static (a base, and a
//! second one on top of it whose layer deletes files: whiteouts), skopeo
//! converts it to a `docker save` archive. Imported both ways, the base
//! layer is stored once; ls, inspect, du, rm, prune; a killed import and
//! concurrent imports. Needs root, umoci, skopeo, busybox and unshare
//! (`.ci/run` installs them); skips loudly without them.

mod image_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use image_common::*;
use image_common::{image_cmd as sandbox, image_ok as ok};
use sandbox::image::Store;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sandbox");

/// The images, built once: `img` (an OCI layout with tags base and v2),
/// `img.tar` (the same layout in a tar), `v2.tar` (a docker save archive of
/// v2, as repo:v2). `None` (and a loud SKIPPED) without the tools.
fn images() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-cli");
        busybox_images(
            &dir,
            &["unshare"],
            "skopeo copy -q oci:img:v2 docker-archive:v2.tar:repo:v2\ntar -C img -cf img.tar .\n",
        )
        .then_some(dir)
    })
    .as_deref()
}

fn json_of(store: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(store, args)).unwrap()
}

fn layer_count(store: &Path) -> usize {
    entries(&store.join("layers/sha256")).len()
}

#[test]
fn import_both_ways_and_share_the_base_layer() {
    let Some(img) = images() else { return };
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let base = json_of(
        store,
        &[
            "import",
            img.join("img").to_str().unwrap(),
            "--name",
            "local/bb:base",
            "--json",
        ],
    );
    assert_eq!(base[0]["names"], json!(["docker.io/local/bb:base"]));
    assert_eq!(base[0]["new_layers"], 1);
    let v2 = json_of(
        store,
        &["import", img.join("v2.tar").to_str().unwrap(), "--json"],
    );
    assert_eq!(v2[0]["names"], json!(["docker.io/library/repo:v2"]));
    assert_eq!(
        (v2[0]["layers"].as_u64(), v2[0]["new_layers"].as_u64()),
        (Some(2), Some(1)),
        "the base layer is shared"
    );
    assert_eq!(layer_count(store), 2);
    // The OCI layout in a tar: same manifest as the directory, nothing new.
    let again = json_of(
        store,
        &[
            "import",
            img.join("img.tar").to_str().unwrap(),
            "--name",
            "local/bb:v2",
            "--json",
        ],
    );
    assert_eq!(again[0]["new_layers"], 0);
    assert_eq!(layer_count(store), 2);

    let ls = json_of(store, &["ls", "--json"]);
    assert_eq!(ls.as_array().unwrap().len(), 3, "{ls}");
    let table = ok(store, &["ls"]);
    assert!(
        table.starts_with("NAME") && table.contains("docker.io/library/repo:v2"),
        "{table}"
    );
    let i = json_of(store, &["inspect", "repo:v2", "--json"]);
    assert_eq!(i["run"]["uid"], 1000);
    assert_eq!(i["run"]["gid"], 1000);
    assert_eq!(i["run"]["additional_gids"], json!([50]));
    assert_eq!(i["run"]["cmd"], json!(["/bin/sh"]));
    assert_eq!(i["run"]["env"], json!(["PATH=/bin"]));
    assert_eq!(i["run"]["working_dir"], "/home/app");
    assert_eq!(i["layer_sizes"].as_array().unwrap().len(), 2);
    let text = ok(store, &["inspect", "repo:v2"]);
    assert!(
        text.contains("user:        \"app\" (uid 1000, gid 1000, groups 50)"),
        "{text}"
    );
    let du = json_of(store, &["du", "--json"]);
    assert!(du["shared_bytes"].as_u64().unwrap() > 500_000, "{du}");
    assert!(
        du["disk_bytes"].as_u64().unwrap()
            < du["unique_bytes"].as_u64().unwrap() * 11 / 10 + (64 << 10),
        "{du}"
    );
    assert!(ok(store, &["du"]).contains("shared by several images"));

    // What a run of v2 sees: the base, minus what v2 deleted.
    let r = Store::open(store).unwrap().resolve("repo:v2").unwrap();
    let out = in_overlay(
        &r.layers,
        true,
        "cd \"$M\" && ls data && ls etc && cat v2 && ls -ld tmp home/app | cut -c1-10",
    );
    assert_eq!(out, "three\ngroup\npasswd\nv2\ndrwxr-xr-x\ndrwxrwxrwt\n");
}

#[test]
fn rm_and_prune() {
    let Some(img) = images() else { return };
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    ok(
        store,
        &[
            "import",
            img.join("img").to_str().unwrap(),
            "--name",
            "bb:base",
        ],
    );
    ok(store, &["import", img.join("v2.tar").to_str().unwrap()]);
    // A run of the base holds its layer.
    let run = Store::open(store).unwrap().resolve("bb:base").unwrap();
    let o = sandbox(store, &["rm", "repo:v2"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("untagged: docker.io/library/repo:v2") && text.contains("deleted layer"),
        "{text}"
    );
    assert_eq!(layer_count(store), 1);
    let o = sandbox(store, &["rm", "bb:base"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{o:?}"
    );
    assert_eq!(layer_count(store), 1, "in use: kept");
    drop(run);
    let p = json_of(store, &["prune", "--json"]);
    assert_eq!(p["layers"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(layer_count(store), 0);
    assert_eq!(json_of(store, &["ls", "--json"]), json!([]));
    // Errors: one line, exit 125 (the request's fault or the store's alike).
    for args in [
        &["inspect", "nope"][..],
        &["inspect", "Bad:Ref"],
        &["rm", "nope"],
        &["import", "/nonexistent"],
    ] {
        let o = sandbox(store, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_killed_import_leaves_nothing() {
    let Some(_) = images() else { return };
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    // 48 MiB of incompressible data: long enough to be caught mid-unpack.
    let mut data = vec![0u8; 48 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let mut t = sandbox::image::testing::TarBuilder::new();
    t.file("random", &data);
    let layout = layout_of(st.path(), &[t.finish()], json!({}), "big");
    let mut child = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(["image", "import"])
        .arg(&layout)
        .args(["--name", "big"])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let caught = loop {
        let tmp = entries(&store.join("tmp"));
        if tmp.iter().any(|w| {
            store
                .join("tmp")
                .join(w)
                .join("layer/rootfs/random")
                .exists()
        }) {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .ok();
    child.wait().unwrap();
    assert!(caught, "the import finished before it could be killed");
    assert_eq!(json_of(store, &["ls", "--json"]), json!([]));
    for d in ["layers/sha256", "images/sha256", "tmp"] {
        assert_eq!(entries(&store.join(d)), Vec::<String>::new(), "{d}");
    }
    // Importing again works.
    ok(
        store,
        &["import", layout.to_str().unwrap(), "--name", "big"],
    );
    assert_eq!(layer_count(store), 1);
}

#[test]
fn concurrent_imports_of_one_archive() {
    let Some(img) = images() else { return };
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    // A gzipped docker save archive, imported by three processes at once.
    let gz = st.path().join("v2.tar.gz");
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "gzip -c {} > {}",
                img.join("v2.tar").display(),
                gz.display()
            ),
        ])
        .status()
        .unwrap();
    assert!(out.success());
    let kids: Vec<_> = (0..3)
        .map(|_| {
            Command::new(BIN)
                .arg("--store")
                .arg(store)
                .args(["image", "import", "--json"])
                .arg(&gz)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut new = 0;
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        new += v[0]["new_layers"].as_u64().unwrap();
    }
    assert_eq!(new, 2, "each layer unpacked once");
    assert_eq!(layer_count(store), 2);
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
}
