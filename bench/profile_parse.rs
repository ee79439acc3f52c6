//! Measures loading (parse + extends + validate) and seccomp compilation of
//! each bundled profile: `cargo run --release --example profile_parse`.
//! Reports the best of 20 batches (robust against a busy machine).

use std::time::Instant;

fn best_us(mut f: impl FnMut()) -> f64 {
    const BATCH: u32 = 20;
    (0..20)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    for name in sandbox::profile::bundled::names() {
        let Ok(p) = sandbox::profile::load(&name) else {
            println!("{name:<10} does not load");
            continue;
        };
        let load_us = best_us(|| {
            let _ = std::hint::black_box(sandbox::profile::load(&name));
        });
        let filters = sandbox::security::seccomp::compile(&p.seccomp)
            .map(|f| f.len())
            .unwrap_or(0);
        let compile_us = best_us(|| {
            let _ = std::hint::black_box(sandbox::security::seccomp::compile(&p.seccomp));
        });
        println!(
            "{name:<10} load+validate {load_us:7.1} us   seccomp compile {compile_us:6.1} us ({filters} filters)"
        );
    }
}
