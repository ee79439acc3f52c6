//! `sandbox image pull` against a real registry: Debian's `docker-registry`
//! started by each test on 127.0.0.1 (its own config, storage and port;
//! killed by PID when the test ends), images built offline with umoci from
//! busybox-static (tests/image_common) and pushed with skopeo. Plain pulls,
//! a shared base layer not fetched again (the registry's own log counts
//! the requests), pull by digest, an index resolved to the platform, htpasswd
//! basic auth with a Docker config.json, TLS with a CA made by openssl, plain
//! HTTP refused for a non-loopback registry, a zstd layer, concurrent pulls,
//! a pull killed mid-layer (through a throttling loopback proxy), and
//! tampered blobs in the registry's storage. Needs root, docker-registry,
//! umoci, skopeo, busybox, htpasswd and openssl (`.ci/run` installs them);
//! skips loudly without them. Nothing leaves loopback.

mod image_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use image_common::*;
use image_common::{image_cmd as sandbox, image_ok as ok};
use sandbox::image::Digest;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sandbox");

/// The images, built once: the layout `img` (tags base, v2) and `big` (a
/// layout whose one layer is 50 MiB of incompressible bytes).
fn images() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-pull");
        if !busybox_images(&dir, &["docker-registry", "htpasswd", "openssl"], "") {
            return None;
        }
        let mut data = vec![0u8; 50 << 20];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for c in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        let mut t = sandbox::image::testing::TarBuilder::new();
        t.file("random", &data);
        let l = layout_of(&dir, &[t.finish()], json!({}), "big");
        std::fs::rename(l, dir.join("big")).unwrap();
        Some(dir)
    })
    .as_deref()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A docker-registry on 127.0.0.1, killed (by its PID) when dropped.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

#[derive(Default)]
struct RegOpts {
    htpasswd: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
}

impl Registry {
    fn start(o: RegOpts) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = &o.tls {
            cfg += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(h) = &o.htpasswd {
            cfg += &format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                h.display()
            );
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Registry { child, port, dir };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "registry did not start: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The URIs of the GET requests the registry answered, in order.
    fn gets(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("response completed") && l.contains("http.request.method=GET"))
            .filter_map(|l| {
                l.split("http.request.uri=")
                    .nth(1)
                    .and_then(|u| u.split_whitespace().next())
                    .map(|u| u.trim_matches('"').to_string())
            })
            .collect()
    }

    /// Pushes `oci:LAYOUT:TAG` as REPO:TAG with skopeo.
    fn push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A blob's file in the registry's storage.
    fn blob_file(&self, d: &str) -> PathBuf {
        let hex = d.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The child we started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:PORT: status, headers, body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, resp[split + 4..].to_vec())
}

/// A manifest as the registry holds it: its bytes and digest.
fn manifest_of(port: u16, repo: &str, tag: &str) -> (Vec<u8>, Digest) {
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let (st, head, body) = http(
        port,
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", accept)],
        b"",
    );
    assert_eq!(st, 200, "{head}");
    let d = Digest::of(&body);
    (body, d)
}

fn pull_json(store: &Path, args: &[&str]) -> Value {
    let mut a = vec!["pull", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(store, &a)).unwrap()
}

/// Fails with exit `code`; returns stderr (one line).
fn fails(store: &Path, args: &[&str], code: i32) -> String {
    let o = sandbox(store, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// Nothing of any image in the store: no record, no name, no layer, no
/// blob, no scratch directory.
fn assert_empty(store: &Path) {
    for d in ["images/sha256", "layers/sha256", "blobs/sha256", "tmp"] {
        assert_eq!(entries(&store.join(d)), Vec::<String>::new(), "{d}");
    }
    let refs = std::fs::read_to_string(store.join("refs.json")).unwrap_or_default();
    assert!(!refs.contains("app"), "{refs}");
}

#[test]
fn pull_share_base_by_digest_and_present_layers_not_fetched() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    let layout = img.join("img");
    reg.push(&layout, "base", "app:base", &[]);
    reg.push(&layout, "v2", "app:v2", &[]);
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let h = reg.host();

    let base = pull_json(store, &[&format!("{h}/app:base")]);
    assert_eq!(base["name"], json!(format!("{h}/app:base")));
    assert_eq!(
        (base["layers"].as_u64(), base["layers_fetched"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, base_digest) = manifest_of(reg.port, "app", "base");
    assert_eq!(base["digest"], json!(base_digest.to_string()));
    let ls = ok(store, &["ls"]);
    assert!(ls.contains(&format!("{h}/app:base")), "{ls}");
    let inspect = ok(store, &["inspect", &format!("{h}/app:base")]);
    assert!(inspect.contains("\"app\" (uid 1000, gid 1000"), "{inspect}");

    // v2 shares the base layer: only its manifest, config and own layer
    // are fetched.
    let before = reg.gets().len();
    let v2 = pull_json(store, &[&format!("{h}/app:v2")]);
    assert_eq!(
        (
            v2["layers"].as_u64(),
            v2["layers_fetched"].as_u64(),
            v2["layers_present"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let (m, _) = manifest_of(reg.port, "app", "v2");
    let m: Value = serde_json::from_slice(&m).unwrap();
    let base_blob = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let top_blob = m["layers"][1]["digest"].as_str().unwrap().to_string();
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    let new: Vec<String> = reg.gets()[before..].to_vec();
    let blob_gets: Vec<&String> = new.iter().filter(|u| u.contains("/blobs/")).collect();
    assert_eq!(blob_gets.len(), 2, "config and the top layer: {new:?}");
    assert!(
        !new.iter().any(|u| u.contains(&base_blob)),
        "base fetched again: {new:?}"
    );
    assert!(new.iter().any(|u| u.contains(&top_blob)));
    assert_eq!(entries(&store.join("layers/sha256")).len(), 2);

    // Pulled again: every layer present, the config too: the manifest only.
    let before = reg.gets().len();
    let again = pull_json(store, &[&format!("{h}/app:v2")]);
    assert_eq!(
        (
            again["layers_fetched"].as_u64(),
            again["layers_present"].as_u64()
        ),
        (Some(0), Some(2))
    );
    let new: Vec<String> = reg.gets()[before..].to_vec();
    assert!(!new.iter().any(|u| u.contains("/blobs/")), "{new:?}");
    assert!(new.iter().any(|u| u.contains("/manifests/v2")), "{new:?}");
    // Into a store holding both layers but not the config: manifest and
    // config only (the figure bench/image_pull.sh prints).
    let _ = config;

    // By digest: no name added, found by digest.
    let d = v2["digest"].as_str().unwrap().to_string();
    let st2 = tempfile::tempdir().unwrap();
    let store2 = &st2.path().join("s");
    let by = pull_json(store2, &[&format!("{h}/app@{d}")]);
    assert_eq!(by["name"], Value::Null);
    assert_eq!(by["digest"], json!(d));
    let rec: Value = serde_json::from_str(&ok(store2, &["inspect", &d, "--json"])).unwrap();
    assert_eq!(rec["digest"], json!(d));
    // A digest the repository does not have.
    let wrong = format!("{h}/app@sha256:{}", "0".repeat(64));
    let err = fails(store2, &["pull", &wrong], 125);
    assert!(err.contains("manifest unknown"), "{err}");
    // An unknown tag.
    let err = fails(store2, &["pull", &format!("{h}/app:nope")], 125);
    assert!(
        err.contains(&format!("{h}/app: manifest unknown: nope")),
        "{err}"
    );
}

#[test]
fn an_index_resolves_to_the_platform() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    let layout = img.join("img");
    reg.push(&layout, "base", "app:base", &[]);
    reg.push(&layout, "v2", "app:v2", &[]);
    let (b, bd) = manifest_of(reg.port, "app", "base");
    let (v, vd) = manifest_of(reg.port, "app", "v2");
    let mt = "application/vnd.oci.image.manifest.v1+json";
    // arm64 first: the choice is by platform, not by position.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": vd.to_string(), "size": v.len(), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": mt, "digest": bd.to_string(), "size": b.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let (st, head, _) = http(
        reg.port,
        "PUT",
        "/v2/app/manifests/multi",
        &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
        &index,
    );
    assert_eq!(st, 201, "{head}");
    let s = tempfile::tempdir().unwrap();
    let store = &s.path().join("s");
    let h = reg.host();
    let p = pull_json(
        store,
        &[&format!("{h}/app:multi"), "--platform", "linux/amd64"],
    );
    assert_eq!(p["digest"], json!(bd.to_string()));
    assert_eq!(p["index"], json!(Digest::of(&index).to_string()));
    // The index's digest finds the image too.
    ok(store, &["inspect", &Digest::of(&index).to_string()]);
    let arm = pull_json(
        store,
        &[&format!("{h}/app:multi"), "--platform", "linux/arm64"],
    );
    assert_eq!(arm["digest"], json!(vd.to_string()));
    let err = fails(
        store,
        &[
            "pull",
            &format!("{h}/app:multi"),
            "--platform",
            "linux/s390x",
        ],
        125,
    );
    assert!(err.contains("no image for platform linux/s390x"), "{err}");
}

#[test]
fn htpasswd_basic_auth_with_a_docker_config() {
    let Some(img) = images() else { return };
    let d = tempfile::tempdir().unwrap();
    let ht = d.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "user", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&ht, &out.stdout).unwrap();
    let reg = Registry::start(RegOpts {
        htpasswd: Some(ht),
        ..Default::default()
    });
    let h = reg.host();
    reg.push(
        &img.join("img"),
        "base",
        "app:base",
        &["--dest-creds", "user:s3cret"],
    );
    let store = &d.path().join("s");
    let r = format!("{h}/app:base");

    let err = fails(store, &["pull", &r], 125);
    assert!(
        err.contains("unauthorized (401)") && err.contains("no credentials file"),
        "{err}"
    );
    let creds = |name: &str, auth: &str| {
        let p = d.path().join(name);
        std::fs::write(
            &p,
            json!({"auths": {h.clone(): {"auth": auth}}}).to_string(),
        )
        .unwrap();
        p
    };
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let wrong = creds("wrong.json", &b64("user:nope"));
    let err = fails(
        store,
        &["pull", &r, "--creds", wrong.to_str().unwrap()],
        125,
    );
    assert!(
        err.contains("unauthorized (401)")
            && err.contains("user \"user\"")
            && err.contains(wrong.to_str().unwrap()),
        "{err}"
    );
    assert!(!err.contains("nope"), "no secret in errors: {err}");
    let other = d.path().join("other.json");
    std::fs::write(
        &other,
        r#"{"auths": {"elsewhere.example": {"auth": "dTpw"}}}"#,
    )
    .unwrap();
    let err = fails(
        store,
        &["pull", &r, "--creds", other.to_str().unwrap()],
        125,
    );
    assert!(err.contains("has none for"), "{err}");
    let missing = d.path().join("missing.json");
    let err = fails(
        store,
        &["pull", &r, "--creds", missing.to_str().unwrap()],
        125,
    );
    assert!(err.contains("credentials file"), "{err}");
    assert_empty(store);

    let right = creds("right.json", &b64("user:s3cret"));
    let p = pull_json(store, &[&r, "--creds", right.to_str().unwrap()]);
    assert_eq!(p["layers_fetched"], 1);
    // The default file ($DOCKER_CONFIG/config.json) is used when present.
    let dc = d.path().join("dc");
    std::fs::create_dir_all(&dc).unwrap();
    std::fs::copy(&right, dc.join("config.json")).unwrap();
    let st2 = d.path().join("s2");
    let o = Command::new(BIN)
        .arg("--store")
        .arg(&st2)
        .args(["image", "pull", &r])
        .env("DOCKER_CONFIG", &dc)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn tls_with_a_self_signed_ca() {
    let Some(img) = images() else { return };
    let d = tempfile::tempdir().unwrap();
    let script = r#"
set -eu
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=sandbox-test-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile ext 2>/dev/null
"#;
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reg = Registry::start(RegOpts {
        tls: Some((d.path().join("srv.crt"), d.path().join("srv.key"))),
        ..Default::default()
    });
    reg.push(&img.join("img"), "base", "app:base", &[]);
    let store = &d.path().join("s");
    let r = format!("https://{}/app:base", reg.host());
    let err = fails(store, &["pull", &r], 125);
    assert!(
        err.contains("TLS") && err.contains("certificate") && err.contains("--ca"),
        "{err}"
    );
    // Plain HTTP to a TLS port: said as a TLS-less answer, not a hang.
    let err = fails(store, &["pull", &format!("{}/app:base", reg.host())], 125);
    assert!(err.contains("HTTP 400") || err.contains("HTTPS"), "{err}");
    assert_empty(store);
    let ca = d.path().join("ca.crt");
    let p = pull_json(store, &[&r, "--ca", ca.to_str().unwrap()]);
    assert_eq!(p["name"], json!(format!("{}/app:base", reg.host())));
    let bad_ca = d.path().join("srv.csr");
    let err = fails(store, &["pull", &r, "--ca", bad_ca.to_str().unwrap()], 125);
    assert!(err.contains("CA file"), "{err}");
}

#[test]
fn plain_http_to_a_non_loopback_registry_is_refused_before_connecting() {
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let t0 = Instant::now();
    let err = fails(store, &["pull", "http://registry.invalid:5000/app:v1"], 125);
    assert!(
        err.contains("registry.invalid:5000: plain HTTP refused")
            && err.contains("--insecure-registry registry.invalid:5000"),
        "{err}"
    );
    // Refused from the reference alone: no resolver or connection timeout.
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Not a socket opened: no DNS query, no connection (where strace is
    // installed; a loopback pull under the same trace shows its connects).
    if have("strace") && have("docker-registry") {
        let trace = st.path().join("trace");
        let run = |r: &str| {
            Command::new("strace")
                .args([
                    "-f",
                    "-qq",
                    "-e",
                    "trace=socket,connect,sendto,sendmsg",
                    "-o",
                ])
                .arg(&trace)
                .arg(BIN)
                .arg("--store")
                .arg(store)
                .args(["image", "pull", r])
                .env("DOCKER_CONFIG", st.path().join("none"))
                .output()
                .unwrap();
            std::fs::read_to_string(&trace).unwrap_or_default()
        };
        let t = run("http://registry.invalid:5000/app:v1");
        assert!(!t.contains("socket(") && !t.contains("connect("), "{t}");
        let reg = Registry::start(RegOpts::default());
        let t = run(&format!("{}/nothing:here", reg.host()));
        assert!(t.contains("connect("), "the trace sees connections: {t}");
    } else {
        eprintln!("(strace or docker-registry missing: the no-socket check is skipped)");
    }
    // So is a name that is not loopback even if it resolves there, and the
    // flag for another registry does not allow it.
    let err = fails(
        store,
        &[
            "pull",
            "http://localhost.invalid/app",
            "--insecure-registry",
            "other.invalid",
        ],
        125,
    );
    assert!(err.contains("plain HTTP refused"), "{err}");
}

#[test]
fn a_zstd_layer() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    reg.push(
        &img.join("img"),
        "v2",
        "zst:v2",
        &["--dest-compress-format", "zstd", "--dest-compress"],
    );
    let (m, _) = manifest_of(reg.port, "zst", "v2");
    let m: Value = serde_json::from_slice(&m).unwrap();
    assert!(
        m["layers"][0]["mediaType"]
            .as_str()
            .unwrap()
            .ends_with("+zstd"),
        "{m}"
    );
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let p = pull_json(store, &[&format!("{}/zst:v2", reg.host())]);
    assert_eq!(p["layers_fetched"], 2);
    let rec: Value = serde_json::from_str(&ok(
        store,
        &["inspect", "--json", &format!("{}/zst:v2", reg.host())],
    ))
    .unwrap();
    assert!(
        rec["layers"][0]["media_type"]
            .as_str()
            .unwrap()
            .ends_with("+zstd"),
        "{rec}"
    );
}

#[test]
fn concurrent_pulls_of_one_image() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    reg.push(&img.join("img"), "v2", "app:v2", &[]);
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let r = format!("{}/app:v2", reg.host());
    let kids: Vec<_> = (0..3)
        .map(|_| {
            Command::new(BIN)
                .arg("--store")
                .arg(store)
                .args(["image", "pull", "--json", &r])
                .env("DOCKER_CONFIG", st.path().join("none"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut fetched = 0;
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        fetched += v["layers_fetched"].as_u64().unwrap();
    }
    assert_eq!(fetched, 2, "each layer unpacked once");
    assert_eq!(entries(&store.join("layers/sha256")).len(), 2);
    assert_eq!(entries(&store.join("images/sha256")).len(), 1);
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
}

/// A loopback TCP proxy to `target` that sends the answers on slowly
/// (`delay_us` per 16 KiB, changeable), counting the bytes.
struct Proxy {
    port: u16,
    bytes: Arc<AtomicU64>,
    delay_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: u16, delay_us: u64) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let bytes = Arc::new(AtomicU64::new(0));
        let delay = Arc::new(AtomicU64::new(delay_us));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, dl, sp) = (bytes.clone(), delay.clone(), stop.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut down) = c else { continue };
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut down2, mut up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down2, &mut up2);
                    let _ = up2.shutdown(std::net::Shutdown::Write);
                });
                let (b, dl, sp) = (b.clone(), dl.clone(), sp.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    while let Ok(n) = up.read(&mut buf) {
                        if n == 0
                            || sp.load(Ordering::Relaxed)
                            || down.write_all(&buf[..n]).is_err()
                        {
                            break;
                        }
                        b.fetch_add(n as u64, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(dl.load(Ordering::Relaxed)));
                    }
                    let _ = down.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy {
            port,
            bytes,
            delay_us: delay,
            stop,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn a_pull_killed_mid_layer_leaves_nothing_half_visible() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    reg.push(&img.join("big"), "big", "app:big", &[]);
    // ~50 MiB at 16 KiB per 2 ms: ~6 s, long enough to be caught.
    let proxy = Proxy::start(reg.port, 2000);
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let r = format!("127.0.0.1:{}/app:big", proxy.port);
    let mut child = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(["image", "pull", "--quiet", &r])
        .env("DOCKER_CONFIG", st.path().join("none"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let caught = loop {
        if proxy.bytes.load(Ordering::Relaxed) > 2 << 20 {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The child we started, by its PID.
    let _ = child.kill();
    child.wait().unwrap();
    assert!(caught, "the pull finished before it could be killed");
    // Opening the store sweeps the killed pull's scratch directory.
    assert_eq!(ok(store, &["ls", "--json"]).trim(), "[]");
    assert_eq!(entries(&store.join("images/sha256")), Vec::<String>::new());
    assert_eq!(entries(&store.join("layers/sha256")), Vec::<String>::new());
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
    // A later pull succeeds.
    proxy.delay_us.store(0, Ordering::Relaxed);
    let p = pull_json(store, &[&r]);
    assert_eq!(p["layers_fetched"], 1);
    assert!(p["bytes_fetched"].as_u64().unwrap() > 50 << 20);
}

#[test]
fn tampered_blobs_in_the_registry() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    reg.push(&img.join("img"), "v2", "app:v2", &[]);
    let (m, _) = manifest_of(reg.port, "app", "v2");
    let m: Value = serde_json::from_slice(&m).unwrap();
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let r = format!("{}/app:v2", reg.host());

    // The config, same size, one byte changed: a digest mismatch.
    let config = m["config"]["digest"].as_str().unwrap();
    let f = reg.blob_file(config);
    let good = std::fs::read(&f).unwrap();
    let bad = String::from_utf8(good.clone())
        .unwrap()
        .replacen("amd64", "amd65", 1);
    assert_eq!(bad.len(), good.len());
    std::fs::write(&f, bad).unwrap();
    let err = fails(store, &["pull", &r], 125);
    assert!(
        err.contains(&format!("expected digest {config}")) && err.contains("/app:"),
        "{err}"
    );
    assert_empty(store);
    std::fs::write(&f, &good).unwrap();

    // The top layer's last bytes changed: refused, nothing kept (not even
    // the base layer this pull unpacked).
    let top = m["layers"][1]["digest"].as_str().unwrap();
    let f = reg.blob_file(top);
    let mut b = std::fs::read(&f).unwrap();
    let n = b.len();
    for x in &mut b[n - 8..] {
        *x ^= 0xff;
    }
    std::fs::write(&f, &b).unwrap();
    let err = fails(store, &["pull", &r], 125);
    assert!(err.contains(top) || err.contains("layer"), "{err}");
    assert_empty(store);
}

#[test]
fn the_library_from_tokio_with_progress_events() {
    use sandbox::image::Store;
    use sandbox::image::pull::{PullEvent, PullOptions, pull, pull_async};
    use std::sync::Mutex;
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    reg.push(&img.join("img"), "base", "app:base", &[]);
    reg.push(&img.join("img"), "v2", "app:v2", &[]);
    let st = tempfile::tempdir().unwrap();
    let store = Store::open(st.path().join("s")).unwrap();
    let empty_creds = st.path().join("config.json");
    std::fs::write(&empty_creds, r#"{"auths": {}}"#).unwrap();
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let ev = events.clone();
    let opts = PullOptions {
        // Never the machine's own ~/.docker/config.json.
        credentials: Some(empty_creds.clone()),
        progress: Some(Arc::new(move |e: &PullEvent<'_>| {
            let s = match e {
                PullEvent::Manifest { layers, .. } => format!("manifest {}", layers.len()),
                PullEvent::LayerPresent { index, .. } => format!("present {index}"),
                PullEvent::LayerStart { index, .. } => format!("start {index}"),
                PullEvent::LayerBytes { .. } => return,
                PullEvent::LayerDone { index, .. } => format!("done {index}"),
            };
            ev.lock().unwrap().push(s);
        })),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = reg.host();
    let base = rt
        .block_on(pull_async(
            store.clone(),
            format!("{h}/app:base"),
            opts.clone(),
        ))
        .unwrap();
    assert_eq!(base.layers_fetched, 1);
    // The blocking call from inside the runtime (it moves to a thread of its own).
    let v2 = rt
        .block_on(async { pull(&store, &format!("{h}/app:v2"), &opts) })
        .unwrap();
    assert_eq!((v2.layers_fetched, v2.layers_present), (1, 1));
    assert_eq!(v2.name.as_deref(), Some(format!("{h}/app:v2").as_str()));
    assert_eq!(
        *events.lock().unwrap(),
        [
            "manifest 1",
            "start 0",
            "done 0",
            "manifest 2",
            "present 0",
            "start 1",
            "done 1"
        ]
    );
    assert_eq!(
        store.resolve(&format!("{h}/app:v2")).unwrap().layers.len(),
        2
    );
    // Errors are typed and name the registry and repository.
    let e = pull(&store, &format!("{h}/nothing:here"), &opts).unwrap_err();
    assert!(
        matches!(&e, sandbox::image::pull::PullError::ManifestUnknown { registry, repository, .. }
            if *registry == h && repository == "nothing"),
        "{e}"
    );
    assert!(!e.is_local_failure());
}

/// A hostile registry on 127.0.0.1 (a thread answering each request from a
/// table): what Debian's registry would never send. Stops with the test.
fn hostile_registry() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let good = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [],
    }))
    .unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().take(64) {
            let Ok(mut c) = c else { continue };
            let good = good.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut b = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") && req.len() < 16 << 10 {
                    if c.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    req.push(b[0]);
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let ct = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
                let _ = match path.as_str() {
                    "/v2/" => c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"),
                    // Announces 5 MiB, sends 10 bytes, then holds the line.
                    "/v2/announced/manifests/v1" => {
                        let _ = c.write_all(format!("HTTP/1.1 200 OK\r\n{ct}Content-Length: {}\r\n\r\n0123456789", 5 << 20).as_bytes());
                        std::thread::sleep(Duration::from_secs(30));
                        Ok(())
                    }
                    // No length: chunks until the client hangs up (8 MiB at most).
                    "/v2/endless/manifests/v1" => {
                        let _ = c.write_all(format!("HTTP/1.1 200 OK\r\n{ct}Transfer-Encoding: chunked\r\n\r\n").as_bytes());
                        let chunk = vec![b' '; 64 << 10];
                        for _ in 0..128 {
                            if c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).and_then(|()| c.write_all(&chunk)).and_then(|()| c.write_all(b"\r\n")).is_err() {
                                break;
                            }
                        }
                        Ok(())
                    }
                    // A manifest whose Docker-Content-Digest is another one.
                    "/v2/lying/manifests/v1" => c.write_all(
                        format!("HTTP/1.1 200 OK\r\n{ct}Docker-Content-Digest: sha256:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", "1".repeat(64), good.len())
                            .as_bytes(),
                    ).and_then(|()| c.write_all(&good)),
                    "/v2/down/manifests/v1" => c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\nConnection: close\r\n\r\n\x1b[31mdown\n!!"),
                    _ => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            });
        }
    });
    port
}

#[test]
fn hostile_registry_answers() {
    let st = tempfile::tempdir().unwrap();
    let store = &st.path().join("s");
    let port = hostile_registry();
    let r = |repo: &str| format!("127.0.0.1:{port}/{repo}:v1");
    // A manifest announced over the cap: refused before its body is read
    // (the server would hold the line for 30 s).
    let t0 = Instant::now();
    let err = fails(store, &["pull", &r("announced")], 125);
    assert!(
        err.contains("manifest v1: more than 4194304 bytes"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    // No length, endless: capped while read.
    let err = fails(store, &["pull", &r("endless")], 125);
    assert!(
        err.contains("manifest v1: more than 4194304 bytes"),
        "{err}"
    );
    // The registry says the content is another one.
    let err = fails(store, &["pull", &r("lying")], 125);
    assert!(
        err.contains("Docker-Content-Digest") && err.contains("expected digest sha256:1111"),
        "{err}"
    );
    // A 5xx: its body on one line, escaped.
    let err = fails(store, &["pull", &r("down")], 125);
    assert!(err.contains("HTTP 503") && !err.contains('\u{1b}'), "{err}");
    assert_empty(store);
}

// ---- runs that pull: `sandbox exec --image` and jobs of `sandbox serve`

/// Strict with the identity calls busybox makes as a non-root user (it
/// sets the ids it already has at start): the runs below use it, from an
/// override directory.
fn images_profile(dir: &Path) -> PathBuf {
    let p = dir.join("profiles");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("images.toml"),
        "extends = \"strict\"\n[seccomp]\nallow_add = [\"setuid\", \"setgid\", \"setresuid\", \"setresgid\"]\n",
    )
    .unwrap();
    p
}

fn manifest_gets(reg: &Registry, repo_tag: &str) -> usize {
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    let uri = format!("/v2/{repo}/manifests/{tag}");
    reg.gets().iter().filter(|u| **u == uri).count()
}

#[test]
fn exec_pulls_a_missing_image_then_runs_it_offline() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    reg.push(&img.join("img"), "v2", "app:v2", &[]);
    let d = tempfile::tempdir().unwrap();
    let profiles = images_profile(d.path());
    let store = d.path().join("s");
    let r = format!("{}/app:v2", reg.host());
    let exec = |extra: &[&str]| {
        Command::new(BIN)
            .arg("--store")
            .arg(&store)
            .args(["exec", "--profile", "images", "--image", &r])
            .args(extra)
            .args(["--", "sh", "-c", "id -u; cat /v2; ls /data"])
            .env("SANDBOX_PROFILE_DIR", &profiles)
            .env_remove("SANDBOX_HELPER_SOCKET")
            .output()
            .unwrap()
    };
    // --pull never: not pulled, exit 125 naming the image.
    let o = exec(&["--pull", "never"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in the store"));
    assert_eq!(manifest_gets(&reg, "app:v2"), 0);
    // Missing: pulled, then run.
    let o = exec(&[]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "1000\nv2\nthree\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(manifest_gets(&reg, "app:v2"), 1);
    // Present: found by name without the registry.
    drop(reg);
    let o = exec(&[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1000\nv2\nthree\n");
}

#[test]
fn concurrent_jobs_wait_for_one_pull_of_their_image() {
    let Some(img) = images() else { return };
    let reg = Registry::start(RegOpts::default());
    reg.push(&img.join("img"), "v2", "app:v2", &[]);
    let d = tempfile::tempdir().unwrap();
    let profiles = images_profile(d.path());
    let port = free_port();
    let mut srv = Command::new(BIN)
        .arg("--store")
        .arg(d.path().join("s"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "3",
        ])
        .args(["--allow-image", &format!("{}/*", reg.host())])
        .arg("--work-dir")
        .arg(d.path().join("jobs"))
        .env("SANDBOX_PROFILE_DIR", &profiles)
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
    let body = format!(
        r#"{{"profile":"images","image":"{}/app:v2","steps":[{{"command":["sh","-c","cat /v2; id -u"]}}]}}"#,
        reg.host()
    );
    let jobs: Vec<_> = (0..3)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || post_job(port, &body))
        })
        .collect();
    let answers: Vec<(u16, Value)> = jobs.into_iter().map(|h| h.join().unwrap()).collect();
    // A missing image of an unknown registry: the job ends with an error
    // naming it (the server is not stuck on it).
    let (code, missing) = post_job(
        port,
        &format!(
            r#"{{"profile":"images","image":"{}/nope:1","steps":[{{"command":["true"]}}]}}"#,
            reg.host()
        ),
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = srv.wait();
    for (code, j) in &answers {
        assert_eq!(*code, 200, "{j}");
        assert_eq!(j["steps"][0]["stdout"], "v2\n1000\n", "{j}");
    }
    assert_eq!(
        manifest_gets(&reg, "app:v2"),
        1,
        "one pull for the three jobs: {:?}",
        reg.gets()
    );
    assert_eq!(code, 200, "{missing}");
    assert_eq!(missing["status"], "failed", "{missing}");
    let err = missing["error"].as_str().unwrap_or_default();
    assert!(err.contains("nope"), "{missing}");
}
