//! Judge0 request decoder: the body of `POST /judge0/submissions` (and of a
//! batch), the `fields` query and tokens, as the server decodes them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sandbox_fuzz::judge0_request(data));
