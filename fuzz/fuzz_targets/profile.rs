//! Profile parser + validator (+ `extends`, `profile show` round trip, seccomp compile).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn extends_dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("extends"))
}

fuzz_target!(|data: &[u8]| sandbox_fuzz::profile(data, extends_dir()));
