//! Sizes and durations (`parse_size`, `parse_duration`) and their formatting.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sandbox_fuzz::units(data));
