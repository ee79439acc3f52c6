//! Image manifests, indexes, configs and references (`image_manifest`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sandbox_fuzz::image_manifest(data));
