//! Unpacking hostile and ordinary layers (crafted with `testing::TarBuilder`).
//! As root the owners and `trusted.*` xattrs are checked too.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::digest::Digest;
use super::error::ImageError;
use super::layer::{BlobSpec, LayerSource, unpack_layer};
use super::limits::Limits;
use super::testing::{TarBuilder, gzip};
use super::unpack::{UnpackOptions, UnpackStats, unpack_tar};

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn opts() -> UnpackOptions {
    UnpackOptions {
        max_entries: 1000,
        privileged: root(),
        layer: "test".into(),
    }
}

/// Unpacks into `work/layer`; `work/outside` is a sibling that must stay empty.
fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, ImageError>) {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("layer")).unwrap();
    std::fs::create_dir(work.path().join("outside")).unwrap();
    let r = unpack_tar(tar, &work.path().join("layer"), &opts());
    let outside: Vec<_> = std::fs::read_dir(work.path().join("outside"))
        .unwrap()
        .collect();
    assert!(
        outside.is_empty(),
        "something was written outside the layer"
    );
    (work, r)
}

fn err_of(tar: &[u8]) -> String {
    let (_w, r) = unpack(tar);
    let e = r.expect_err("must be refused").to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

fn lmeta(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap()
}

#[test]
fn ordinary_layer() {
    let mut t = TarBuilder::new();
    t.dir("./")
        .dir("etc/")
        .file_mode("etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644, 0, 0)
        .file_mode("bin/su", b"#!/bin/sh\n", 0o4755, 0, 0)
        .file_mode("home/app/.profile", b"x", 0o600, 1000, 1000)
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("bin/su2", "bin/su")
        .fifo("run/fifo")
        .device("dev/null", false)
        .dir_mode("ro", 0o555)
        .file("ro/inside", b"y")
        .pax(&[
            ("path", b"pax/very-long-name"),
            ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02"),
        ])
        .file("ignored-name", b"z");
    let long = format!("{}/f", "d".repeat(150));
    t.file(&long, b"long");
    let (w, r) = unpack(&t.finish());
    let s = r.unwrap();
    let l = w.path().join("layer");
    assert_eq!(s.devices_skipped, 1);
    assert!(!l.join("dev/null").exists(), "device nodes are skipped");
    assert_eq!(
        std::fs::read(l.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/:/bin/sh\n"
    );
    assert_eq!(
        lmeta(&l.join("bin/su")).mode() & 0o7777,
        0o4755,
        "set-id bits kept"
    );
    assert_eq!(lmeta(&l.join("bin/su")).nlink(), 2);
    assert_eq!(
        std::fs::read_link(l.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(lmeta(&l.join("run/fifo")).file_type().is_fifo());
    assert_eq!(lmeta(&l.join("ro")).mode() & 0o7777, 0o555);
    assert_eq!(std::fs::read(l.join("ro/inside")).unwrap(), b"y");
    assert_eq!(std::fs::read(l.join("pax/very-long-name")).unwrap(), b"z");
    assert!(!l.join("ignored-name").exists());
    assert_eq!(std::fs::read(l.join(&long)).unwrap(), b"long");
    assert_eq!(lmeta(&l.join("etc/passwd")).mtime(), 1_700_000_000);
    assert_eq!(
        lmeta(&l.join("etc")).mtime(),
        1_700_000_000,
        "directory mtimes set last"
    );
    assert_eq!(
        lmeta(&l.join("home")).mode() & 0o7777,
        0o755,
        "implicit parents: 0755"
    );
    // No xattr of the image reaches the store (file capabilities dropped).
    let mut buf = [0u8; 64];
    assert!(
        rustix::fs::lgetxattr(
            l.join("pax/very-long-name"),
            "security.capability",
            &mut buf
        )
        .is_err()
    );
    if root() {
        let m = lmeta(&l.join("home/app/.profile"));
        assert_eq!((m.uid(), m.gid()), (1000, 1000));
    }
    assert_eq!(s.content_bytes, 22 + 10 + 1 + 1 + 1 + 4);
}

#[test]
fn traversal_and_absolute_names_are_refused() {
    for name in ["../evil", "a/../../evil", "/etc/evil", "a/./../.."] {
        let mut t = TarBuilder::new();
        t.file(name, b"x");
        let e = err_of(&t.finish());
        assert!(
            e.contains("traversal") || e.contains("absolute"),
            "{name}: {e}"
        );
    }
}

#[test]
fn writing_through_a_planted_symlink_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    for target in [outside.to_str().unwrap(), "..", "../outside", "/"] {
        let mut t = TarBuilder::new();
        t.symlink("evil", target).file("evil/pwned", b"x");
        let e = err_of(&t.finish());
        assert!(e.contains("symlink"), "{target}: {e}");
        // Deeper: a symlinked directory in the middle.
        let mut t = TarBuilder::new();
        t.dir("a").symlink("a/b", target).file("a/b/c/pwned", b"x");
        assert!(err_of(&t.finish()).contains("symlink"));
    }
    // A symlink is replaced by a later entry of its name, never written through.
    let mut t = TarBuilder::new();
    t.symlink("x", "/etc/passwd").file("x", b"mine");
    let (w, r) = unpack(&t.finish());
    r.unwrap();
    assert_eq!(std::fs::read(w.path().join("layer/x")).unwrap(), b"mine");
}

#[test]
fn hard_links_stay_inside_the_layer() {
    for (target, want) in [
        ("../../../etc/passwd", "traversal"),
        ("/etc/passwd", "absolute"),
        ("etc/passwd", "not an earlier entry"),
    ] {
        let mut t = TarBuilder::new();
        t.hardlink("h", target);
        let e = err_of(&t.finish());
        assert!(e.contains(want), "{target}: {e}");
    }
    // Through a symlink to a directory outside: refused.
    let mut t = TarBuilder::new();
    t.symlink("s", "/etc").hardlink("h", "s/passwd");
    assert!(err_of(&t.finish()).contains("symlink"));
    // To a symlink: the symlink itself is linked, not what it points at.
    let mut t = TarBuilder::new();
    t.symlink("s", "/etc/passwd").hardlink("h", "s");
    let (w, r) = unpack(&t.finish());
    r.unwrap();
    assert!(lmeta(&w.path().join("layer/h")).file_type().is_symlink());
}

#[test]
fn entries_replace_earlier_ones() {
    let mut t = TarBuilder::new();
    t.file("a/f", b"1")
        .file("a", b"now a file")
        .dir("b")
        .file("b/x", b"x")
        .dir_mode("b", 0o700)
        .file("c", b"c")
        .dir("c");
    let (w, r) = unpack(&t.finish());
    r.unwrap();
    let l = w.path().join("layer");
    assert_eq!(std::fs::read(l.join("a")).unwrap(), b"now a file");
    assert!(
        l.join("b/x").exists(),
        "a directory over a directory keeps its content"
    );
    assert_eq!(lmeta(&l.join("b")).permissions().mode() & 0o777, 0o700);
    assert!(lmeta(&l.join("c")).is_dir());
    // A parent that is a file.
    let mut t = TarBuilder::new();
    t.file("f", b"").file("f/x", b"");
    assert!(err_of(&t.finish()).contains("not a directory"));
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let mut t = TarBuilder::new();
    t.file(".wh.gone", b"")
        .dir("d")
        .file("d/.wh..wh..opq", b"")
        .file("d/new", b"n")
        .file(".wh..wh.plnk", b"")
        .file("kept", b"k")
        .file(".wh.kept", b"")
        .file("sub/.wh.deep", b"");
    let (w, r) = unpack(&t.finish());
    r.unwrap();
    let l = w.path().join("layer");
    for p in ["gone", "sub/deep"] {
        let m = lmeta(&l.join(p));
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "{p}: a 0/0 character device"
        );
    }
    assert!(!l.join(".wh.gone").exists() && !l.join(".wh..wh.plnk").exists());
    assert_eq!(
        std::fs::read(l.join("kept")).unwrap(),
        b"k",
        "this layer's own file stays"
    );
    let mut buf = [0u8; 4];
    let n = rustix::fs::lgetxattr(l.join("d"), "user.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    if root() {
        let n = rustix::fs::lgetxattr(l.join("d"), "trusted.overlay.opaque", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"y");
    }
    for bad in [".wh.", "a/.wh..."] {
        let mut t = TarBuilder::new();
        t.file(bad, b"");
        let e = err_of(&t.finish());
        assert!(
            e.contains("whiteout of nothing") || e.contains("traversal"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn caps_and_broken_streams() {
    let mut t = TarBuilder::new();
    for i in 0..1001 {
        t.file(&format!("f{i}"), b"");
    }
    assert!(err_of(&t.finish()).contains("more than 1000 entries"));
    // Truncated inside a file's data.
    let mut t = TarBuilder::new();
    t.file("big", &[7u8; 4096]);
    let mut bytes = t.finish();
    bytes.truncate(512 + 1000);
    assert!(err_of(&bytes).contains("big"));
    // A long name over the cap.
    let mut t = TarBuilder::new();
    t.raw(
        b'L',
        b"././@LongLink",
        b"",
        &vec![b'a'; 70_000],
        0o644,
        0,
        0,
    );
    assert!(err_of(&t.finish()).contains("long name"));
    let mut t = TarBuilder::new();
    t.raw(b'S', b"sparse", b"", b"", 0o644, 0, 0);
    assert!(err_of(&t.finish()).contains("sparse"));
}

fn layer_unpack(blob: &[u8], src: &LayerSource, limits: &Limits) -> Result<(), ImageError> {
    let d = tempfile::tempdir().unwrap();
    unpack_layer(blob, src, d.path(), limits, root()).map(|_| ())
}

fn spec(blob: &[u8], media: &str) -> Option<BlobSpec> {
    Some(BlobSpec {
        digest: Digest::of(blob),
        size: blob.len() as u64,
        media_type: media.into(),
    })
}

#[test]
fn layer_blobs_are_verified() {
    let mut t = TarBuilder::new();
    t.file("a", &[1u8; 10_000]);
    let tar = t.finish();
    let gz = gzip(&tar);
    let gz_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    let ok = LayerSource {
        diff_id: Digest::of(&tar),
        blob: spec(&gz, gz_type),
    };
    let l = Limits::default();
    layer_unpack(&gz, &ok, &l).unwrap();
    // Uncompressed under a gzip media type: told by the magic bytes.
    layer_unpack(
        &tar,
        &LayerSource {
            diff_id: Digest::of(&tar),
            blob: spec(&tar, gz_type),
        },
        &l,
    )
    .unwrap();
    let e = layer_unpack(
        &gz,
        &LayerSource {
            diff_id: Digest::of(b"other"),
            ..ok.clone()
        },
        &l,
    )
    .unwrap_err();
    assert!(e.to_string().contains("diff_id"), "{e}");
    let mut wrong = ok.clone();
    wrong.blob.as_mut().unwrap().digest = Digest::of(b"x");
    assert!(
        layer_unpack(&gz, &wrong, &l)
            .unwrap_err()
            .to_string()
            .contains("expected digest")
    );
    let mut short = ok.clone();
    short.blob.as_mut().unwrap().size -= 1;
    assert!(
        layer_unpack(&gz, &short, &l)
            .unwrap_err()
            .to_string()
            .contains("announced size")
    );
    let mut unknown = ok.clone();
    unknown.blob.as_mut().unwrap().media_type = "application/x-evil".into();
    assert!(
        layer_unpack(&gz, &unknown, &l)
            .unwrap_err()
            .to_string()
            .contains("unsupported media type")
    );
    let cut = &gz[..gz.len() / 2];
    let e = layer_unpack(
        cut,
        &LayerSource {
            diff_id: ok.diff_id.clone(),
            blob: spec(cut, gz_type),
        },
        &l,
    )
    .unwrap_err();
    assert!(e.to_string().contains("gzip"), "truncated gzip: {e}");
}

#[test]
fn decompression_bombs_stop_at_the_cap() {
    // 64 MiB of zeros in one file: ~64 KiB of gzip.
    let mut t = TarBuilder::new();
    t.file("zeros", &vec![0u8; 64 << 20]);
    let tar = t.finish();
    let gz = gzip(&tar);
    assert!(gz.len() < 1 << 20);
    let limits = Limits {
        layer_bytes: 1 << 20,
        ..Limits::default()
    };
    let src = LayerSource {
        diff_id: Digest::of(&tar),
        blob: spec(&gz, "application/vnd.oci.image.layer.v1.tar+gzip"),
    };
    let e = layer_unpack(&gz, &src, &limits).unwrap_err();
    assert!(matches!(e, ImageError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("1048576 bytes"), "{e}");
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_layers() {
    let mut t = TarBuilder::new();
    t.file("z", b"zstd");
    let tar = t.finish();
    let z = zstd::encode_all(&tar[..], 3).unwrap();
    let src = LayerSource {
        diff_id: Digest::of(&tar),
        blob: spec(&z, "application/vnd.oci.image.layer.v1.tar+zstd"),
    };
    layer_unpack(&z, &src, &Limits::default()).unwrap();
}
