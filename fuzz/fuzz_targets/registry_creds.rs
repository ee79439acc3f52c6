//! Registry credentials files (Docker's config.json) and registry names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sandbox_fuzz::registry_creds(data));
