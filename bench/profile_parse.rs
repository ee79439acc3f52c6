//! Measures loading (parse + extends + validate) and seccomp compilation of
//! each bundled profile: `cargo run --release --example profile_parse`.

use std::time::Instant;

fn main() {
    const N: u32 = 200;
    for name in sandbox::profile::bundled::names() {
        let t = Instant::now();
        let mut p = None;
        for _ in 0..N {
            p = Some(sandbox::profile::load(&name).expect("bundled profile loads"));
        }
        let load_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        let Some(p) = p else { return };
        let t = Instant::now();
        let mut filters = 0;
        for _ in 0..N {
            filters = sandbox::security::seccomp::compile(&p.seccomp)
                .expect("compiles")
                .len();
        }
        let compile_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        println!(
            "{name:<10} load+validate {load_us:8.1} us   seccomp compile {compile_us:8.1} us ({filters} filters)"
        );
    }
}
