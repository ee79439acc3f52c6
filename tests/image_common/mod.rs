//! Shared by the image suites: OCI layouts written by hand from layer tars
//! (made with `sandbox::image::testing::TarBuilder`), and an overlay mount of
//! a resolved image's layers in a private mount namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sandbox::image::Digest;
use sandbox::image::testing::gzip;
use serde_json::{Value, json};

pub const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips a test that needs root, loudly.
#[macro_export]
macro_rules! need_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
    };
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds small images offline in `dir` (emptied first) with Debian's
/// umoci from busybox-static: the OCI layout `img` with tags `base` (busybox,
/// /etc/passwd with user app, /etc/motd, /data/{one,two}; user app, cmd
/// /bin/sh) and `v2` (base plus a layer deleting /etc/motd and /data/*:
/// whiteouts), then runs `extra` (sh) in `dir`. False, with a loud SKIPPED,
/// without root, umoci, skopeo, busybox or one of `tools`.
pub fn busybox_images(dir: &Path, tools: &[&str], extra: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return false;
    }
    let missing: Vec<&str> = ["umoci", "skopeo", "busybox"]
        .iter()
        .chain(tools)
        .copied()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED: missing {missing:?} (.ci/run installs them)");
        return false;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let busybox = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let script = r#"
set -eu
umoci init --layout img
umoci new --image img:base
umoci unpack --image img:base b
r=b/rootfs
mkdir -p $r/bin $r/etc $r/home/app $r/tmp $r/data
cp "$BUSYBOX" $r/bin/busybox
for c in sh ls cat id; do ln -s busybox $r/bin/$c; done
printf 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' > $r/etc/passwd
printf 'root:x:0:\napp:x:1000:\nstaff:x:50:app\n' > $r/etc/group
echo hello > $r/etc/motd
echo 1 > $r/data/one; echo 2 > $r/data/two
chown 1000:1000 $r/home/app; chmod 1777 $r/tmp
umoci repack --image img:base b
umoci config --image img:base --config.user app --config.cmd /bin/sh --config.env PATH=/bin --config.workingdir /home/app
rm -rf b
umoci unpack --image img:base b
rm $r/etc/motd; rm -rf $r/data; mkdir $r/data; echo 3 > $r/data/three; echo v2 > $r/v2
umoci repack --image img:v2 b
rm -rf b
"#;
    let out = Command::new("sh")
        .args(["-c", &format!("{script}{extra}")])
        .current_dir(dir)
        .env("BUSYBOX", busybox.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the images: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Writes `bytes` as a blob of the layout; returns its descriptor fields.
pub fn blob(layout: &Path, bytes: &[u8]) -> (Digest, u64) {
    let d = Digest::of(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.hex()), bytes).unwrap();
    (d, bytes.len() as u64)
}

/// The image config for `layers` (uncompressed tars) with `extra` merged
/// into its `config` section.
pub fn config_json(layers: &[Vec<u8>], extra: Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": extra,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// Adds an image (gzip layers) to the layout; returns the manifest's
/// descriptor as JSON (for index.json).
pub fn add_image(layout: &Path, layers: &[Vec<u8>], extra: Value) -> Value {
    let (cd, cs) = blob(layout, &config_json(layers, extra));
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            let (d, s) = blob(layout, &gzip(l));
            json!({"mediaType": GZ, "digest": d.to_string(), "size": s})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
        "layers": descs,
    }))
    .unwrap();
    let (md, ms) = blob(layout, &manifest);
    json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": ms})
}

/// Writes `oci-layout` and `index.json` naming each manifest by `ref.name`.
pub fn finish_layout(layout: &Path, entries: &[(Value, &str)]) {
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(d, name)| {
            let mut d = d.clone();
            d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
            d
        })
        .collect();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
}

/// A layout holding one image.
pub fn layout_of(dir: &Path, layers: &[Vec<u8>], extra: Value, name: &str) -> PathBuf {
    let l = dir.join(format!("layout-{}", name.replace(['/', ':'], "_")));
    let d = add_image(&l, layers, extra);
    finish_layout(&l, &[(d, name)]);
    l
}

/// Mounts the layers (lowest first) as a read-only overlay in a private
/// mount namespace and runs `script` there with `$M` the mount point;
/// returns its stdout. `userxattr`: the option the sandbox's runs use.
pub fn in_overlay(layers: &[PathBuf], userxattr: bool, script: &str) -> String {
    let m = tempfile::tempdir().unwrap();
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let mut opts = format!("lowerdir={}", lower.join(":"));
    if userxattr {
        opts.push_str(",userxattr");
    }
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t overlay overlay -o {opts} \"$M\" && {script}"
        ))
        .env("M", m.path())
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "overlay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the entries of a directory of the store (sorted).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `sandbox --store STORE image ARGS...`, never with the machine's own
/// `~/.docker/config.json`.
pub fn image_cmd(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .arg("--store")
        .arg(store)
        .arg("image")
        .args(args)
        .env("DOCKER_CONFIG", store.with_extension("no-docker-config"))
        .env_remove("HOME")
        .output()
        .unwrap()
}

/// [`image_cmd`], which must succeed: its stdout.
pub fn image_ok(store: &Path, args: &[&str]) -> String {
    let o = image_cmd(store, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// POSTs a job to `sandbox serve` on 127.0.0.1:PORT and waits for it:
/// (HTTP status, the JSON answer).
pub fn post_job(port: u16, body: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/jobs?wait=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp[9..12].parse().unwrap();
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    // Chunked or not, the JSON object is the text between the braces.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    (status, serde_json::from_str(json).unwrap())
}
