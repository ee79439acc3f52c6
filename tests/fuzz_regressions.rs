//! Fuzzing regressions: every input the fuzzers ever found a bug with
//! (`fuzz/regressions/<target>/`), and the seed corpus (`fuzz/corpus/<target>/`),
//! replayed through the same harnesses the fuzz targets run (`fuzz/src/lib.rs`).
//! See fuzz/README.md. No root needed.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Feed every file of `fuzz/regressions/TARGET` and `fuzz/corpus/TARGET` to `f`;
/// a panic names the file.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let mut n = 0;
    for dir in ["regressions", "corpus"] {
        let d = root().join(dir).join(target);
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files.iter().filter(|p| p.is_file()) {
            let data = std::fs::read(p).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data)));
            assert!(r.is_ok(), "fuzz input {} fails", p.display());
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for {target}");
}

#[test]
fn profile_inputs() {
    let dir = root().join("extends");
    replay("profile", |d| harness::profile(d, Path::new(&dir)));
}

#[test]
fn job_request_inputs() {
    replay("job_request", harness::job_request);
}

#[test]
fn judge0_request_inputs() {
    replay("judge0_request", harness::judge0_request);
}

#[test]
fn units_inputs() {
    replay("units", harness::units);
}

#[test]
fn image_manifest_inputs() {
    replay("image_manifest", harness::image_manifest);
}

#[test]
fn image_layer_inputs() {
    replay("image_layer", harness::image_layer);
}

#[test]
fn registry_creds_inputs() {
    replay("registry_creds", harness::registry_creds);
}
