//! The image store through its library API: import, resolve, sharing,
//! atomicity, concurrency, leases against rm/prune, hostile images leaving
//! nothing, and the whiteout view through a real overlay mount (root).

mod image_common;

use std::io::Read;
use std::path::Path;

use image_common::*;
use sandbox::image::testing::{TarBuilder, gzip};
use sandbox::image::{
    BlobSpec, Digest, Document, ImageError, LayerSource, Limits, Reference, Store,
};
use serde_json::json;

fn base_layer() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc")
        .file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .file("etc/group", b"root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
        .file("etc/motd", b"base\n")
        .dir("d")
        .file("d/old", b"old")
        .file("d/keep", b"keep")
        .dir("o")
        .file("o/lower", b"lower")
        .file_mode("big", &[3u8; 200_000], 0o644, 0, 0);
    t.finish()
}

fn top_layer() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file("etc/.wh.motd", b"")
        .file("d/.wh.old", b"")
        .file("o/.wh..wh..opq", b"")
        .file("o/upper", b"upper")
        .file("new", b"new");
    t.finish()
}

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path().join("store")).unwrap();
    (d, s)
}

fn assert_empty(s: &Store) {
    for d in ["layers/sha256", "images/sha256", "blobs/sha256"] {
        assert_eq!(
            entries(&s.path().join(d)),
            Vec::<String>::new(),
            "{d} not empty"
        );
    }
    let s2 = Store::open(s.path()).unwrap();
    assert_eq!(
        entries(&s2.path().join("tmp")),
        Vec::<String>::new(),
        "tmp not swept"
    );
}

#[test]
fn import_resolve_and_share_a_base_layer() {
    need_root!();
    let (dir, s) = store();
    let extra =
        json!({"User": "app", "Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/home/app"});
    let l1 = layout_of(dir.path(), &[base_layer()], extra.clone(), "v1");
    let l2 = layout_of(dir.path(), &[base_layer(), top_layer()], extra, "v2");
    let a = s
        .import(&l1, Some(&Reference::parse("t/a:1").unwrap()))
        .unwrap();
    let b = s
        .import(&l2, Some(&Reference::parse("t/b:1").unwrap()))
        .unwrap();
    assert_eq!(
        (a[0].new_layers, b[0].new_layers),
        (1, 1),
        "the base is unpacked once"
    );
    assert_eq!(entries(&s.path().join("layers/sha256")).len(), 2);
    let r = s.resolve("t/b:1").unwrap();
    assert_eq!(r.reference, "docker.io/t/b:1");
    assert_eq!(r.layers.len(), 2);
    assert_eq!(
        (r.config.uid, r.config.gid, r.config.additional_gids.clone()),
        (1000, 1000, vec![50])
    );
    assert_eq!(r.config.working_dir, "/home/app");
    assert_eq!(r.config.default_command(), ["sh"]);
    assert!(r.lease.len() >= 2);
    // By digest too.
    assert_eq!(s.resolve(&r.digest.to_string()).unwrap().layers, r.layers);
    assert!(matches!(s.resolve("t/c"), Err(ImageError::NotFound { .. })));
    let u = s.usage().unwrap();
    // The top layer holds "upper" and "new": 8 bytes; the rest is shared.
    assert_eq!(u.shared_bytes + 8, u.unique_bytes);
    assert!(u.shared_bytes > 200_000);
    assert!(u.logical_bytes > u.unique_bytes);
    // The store holds each layer's content once: within 1.1x of the unique bytes.
    let on_disk = u.disk_bytes as f64;
    eprintln!(
        "unique {} B, logical {} B, on disk {} B",
        u.unique_bytes, u.logical_bytes, u.disk_bytes
    );
    assert!(on_disk < 1.1 * u.logical_bytes as f64);
    let list = s.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].names, ["docker.io/t/b:1"]);
}

#[test]
fn whiteouts_give_dockers_view_through_overlay() {
    need_root!();
    let (dir, s) = store();
    let l = layout_of(dir.path(), &[base_layer(), top_layer()], json!({}), "v");
    s.import(&l, Some(&Reference::parse("w:1").unwrap()))
        .unwrap();
    let r = s.resolve("w:1").unwrap();
    for userxattr in [false, true] {
        let out = in_overlay(
            &r.layers,
            userxattr,
            "cd \"$M\" && ls -A . etc d o && cat o/upper new",
        );
        let want =
            ".:\nbig\nd\netc\nnew\no\n\nd:\nkeep\n\netc:\ngroup\npasswd\n\no:\nupper\nuppernew";
        assert_eq!(out.trim(), want, "userxattr={userxattr}");
    }
}

/// A reader that fails after `n` bytes, like a connection dropped mid-pull.
struct Broken<R> {
    inner: R,
    left: usize,
}

impl<R: Read> Read for Broken<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("connection reset"));
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

#[test]
fn an_interrupted_ingest_leaves_nothing() {
    let (dir, s) = store();
    let layer = base_layer();
    let gz = gzip(&layer);
    let cfg = config_json(std::slice::from_ref(&layer), json!({}));
    let l = layout_of(dir.path(), std::slice::from_ref(&layer), json!({}), "x");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.join("index.json")).unwrap()).unwrap();
    let md = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let manifest = std::fs::read(l.join("blobs/sha256").join(md.hex())).unwrap();
    {
        let mut ing = s.ingest();
        let (d, doc) = ing.put_manifest(&manifest, Some(&md), None).unwrap();
        assert_eq!(d, md);
        let Document::Manifest(m) = doc else {
            panic!("manifest")
        };
        let c = ing.put_config(&cfg, &m.config.digest).unwrap();
        let src = LayerSource {
            diff_id: c.rootfs.diff_ids[0].clone(),
            blob: Some(BlobSpec {
                digest: Digest::of(&gz),
                size: gz.len() as u64,
                media_type: GZ.into(),
            }),
        };
        let broken = Broken {
            inner: &gz[..],
            left: gz.len() / 2,
        };
        let e = ing.unpack_layer(broken, &src).unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert!(!s.has_layer(&src.diff_id));
        // Dropped without commit: the manifest and config go too.
    }
    assert_empty(&s);
    // What a killed writer leaves (an unlocked scratch directory) is swept.
    std::fs::create_dir_all(s.path().join("tmp/w-dead/layer/rootfs")).unwrap();
    assert_empty(&s);
}

#[test]
fn concurrent_imports_of_one_image() {
    need_root!();
    let (dir, s) = store();
    let l = layout_of(dir.path(), &[base_layer(), top_layer()], json!({}), "c");
    let path = s.path().to_path_buf();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (l, path) = (l.clone(), path.clone());
            std::thread::spawn(move || {
                let s = Store::open(&path).unwrap();
                s.import(&l, Some(&Reference::parse(&format!("c:{i}")).unwrap()))
                    .unwrap()
            })
        })
        .collect();
    let mut new = 0;
    for t in threads {
        let n = t.join().unwrap()[0].new_layers;
        eprintln!("thread: {n} new");
        new += n;
    }
    assert!(new <= 2, "{new} unpacks of 2 layers");
    assert_eq!(entries(&s.path().join("layers/sha256")).len(), 2);
    assert_eq!(s.list().unwrap()[0].names.len(), 4);
    assert_eq!(entries(&s.path().join("tmp")), Vec::<String>::new());
}

#[test]
fn leased_layers_survive_rm_and_prune() {
    need_root!();
    let (dir, s) = store();
    let l = layout_of(dir.path(), &[base_layer()], json!({}), "l");
    s.import(&l, Some(&Reference::parse("l:1").unwrap()))
        .unwrap();
    let run = s.resolve("l:1").unwrap();
    let rep = s.remove("l:1").unwrap();
    assert_eq!(rep.untagged, ["docker.io/library/l:1"]);
    assert_eq!(rep.in_use.len(), 1, "{rep:?}");
    assert!(
        run.layers[0].join("etc/passwd").exists(),
        "a running image keeps its layer"
    );
    let rep = s.prune().unwrap();
    assert_eq!(rep.in_use.len(), 1);
    assert!(run.layers[0].exists());
    drop(run);
    let rep = s.prune().unwrap();
    assert_eq!(rep.layers.len(), 1);
    assert_empty(&s);
}

#[test]
fn rm_keeps_what_another_image_uses() {
    need_root!();
    let (dir, s) = store();
    let l1 = layout_of(dir.path(), &[base_layer()], json!({}), "a");
    let l2 = layout_of(dir.path(), &[base_layer(), top_layer()], json!({}), "b");
    s.import(&l1, Some(&Reference::parse("a").unwrap()))
        .unwrap();
    s.import(&l2, Some(&Reference::parse("b").unwrap()))
        .unwrap();
    let rep = s.remove("b").unwrap();
    assert_eq!(rep.layers, [Digest::of(&top_layer())]);
    assert!(s.resolve("a").is_ok());
    s.remove("a").unwrap();
    assert_empty(&s);
}

#[test]
fn hostile_images_leave_nothing() {
    let (dir, s) = store();
    let mut evil = TarBuilder::new();
    evil.symlink("x", "/etc").file("x/pwned", b"");
    let cases: Vec<(Vec<Vec<u8>>, Limits, &str)> = vec![
        (
            vec![base_layer(), evil.finish()],
            Limits::default(),
            "symlink",
        ),
        (
            vec![base_layer(), base_layer(), top_layer()],
            Limits {
                image_bytes: 400_000,
                ..Limits::default()
            },
            "the limit",
        ),
        (
            vec![base_layer()],
            Limits {
                layer_inodes: 3,
                ..Limits::default()
            },
            "entries",
        ),
        (
            vec![base_layer(), top_layer()],
            Limits {
                layers: 1,
                ..Limits::default()
            },
            "more than 1 layers",
        ),
        (
            vec![base_layer()],
            Limits {
                config_bytes: 10,
                ..Limits::default()
            },
            "more than 10 bytes",
        ),
        (
            vec![base_layer()],
            Limits {
                manifest_bytes: 10,
                ..Limits::default()
            },
            "more than 10 bytes",
        ),
    ];
    for (i, (layers, limits, want)) in cases.into_iter().enumerate() {
        let l = layout_of(dir.path(), &layers, json!({}), &format!("h{i}"));
        let s = s.clone().with_limits(limits);
        let e = s.import(&l, None).unwrap_err().to_string();
        assert!(e.contains(want), "case {i}: {e}");
        assert_empty(&s);
    }
    // A blob whose content is not its digest.
    let l = layout_of(dir.path(), &[base_layer()], json!({}), "m");
    let gz = gzip(&base_layer());
    let p = l.join("blobs/sha256").join(Digest::of(&gz).hex());
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let e = s.import(&l, None).unwrap_err().to_string();
    assert!(e.contains("digest") || e.contains("gzip"), "{e}");
    assert_empty(&s);
}

#[test]
fn an_index_resolves_to_the_host_platform_and_users_resolve() {
    let (dir, s) = store();
    let l = dir.path().join("multi");
    let amd = add_image(&l, &[base_layer()], json!({"User": "nobody"}));
    let arm = add_image(&l, &[top_layer()], json!({}));
    let entry = |d: &serde_json::Value, arch: &str| {
        let mut d = d.clone();
        d["platform"] = json!({"os": "linux", "architecture": arch});
        d
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm, "arm64"), entry(&amd, "amd64")],
    }))
    .unwrap();
    let (id, is) = blob(&l, &index);
    let desc = json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": id.to_string(), "size": is});
    finish_layout(&l, &[(desc, "docker.io/t/multi:1")]);
    let done = s.import(&l, None).unwrap();
    assert_eq!(
        done[0].names,
        ["docker.io/t/multi:1"],
        "a full reference in ref.name names it"
    );
    let rec = s.find("t/multi:1").unwrap();
    assert_eq!(rec.index, Some(id.clone()));
    assert_eq!(
        rec.layers[0].diff_id,
        Digest::of(&base_layer()),
        "the amd64 image"
    );
    assert_eq!(s.find(&format!("t/multi@{id}")).unwrap().digest, rec.digest);
    // Its user is not in its /etc/passwd: recorded, and refused at run time.
    let e = s.resolve("t/multi:1").unwrap_err().to_string();
    assert!(e.contains("no user \"nobody\""), "{e}");
    let s = s.with_platform(sandbox::image::Platform {
        architecture: "s390x".into(),
        os: "linux".into(),
        ..Default::default()
    });
    assert!(
        s.import(&l, None)
            .unwrap_err()
            .to_string()
            .contains("no image for platform linux/s390x")
    );
}

#[test]
fn store_refuses_a_shared_directory() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s");
    std::fs::create_dir(&p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Store::open(&p).unwrap_err().to_string();
    assert!(e.contains("writable by group or others"), "{e}");
    assert!(Store::open(Path::new("relative")).is_err());
}
