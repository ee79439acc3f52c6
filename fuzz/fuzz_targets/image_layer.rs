//! Layer unpacking: tar (or gzip) bytes into a directory (`image_layer`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sandbox_fuzz::image_layer(data));
