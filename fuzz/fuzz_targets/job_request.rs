//! Job request decoder: the body of `POST /v1/jobs`, as the server decodes it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sandbox_fuzz::job_request(data));
