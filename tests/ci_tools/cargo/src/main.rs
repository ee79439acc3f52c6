use std::thread;

fn main() {
    // The longest Collatz chain below 100000, searched by four threads.
    let best = (0..4u64)
        .map(|t| {
            thread::spawn(move || {
                (1..100_000u64)
                    .filter(|n| n % 4 == t)
                    .map(|n| (ciapp::collatz(n), n))
                    .max()
                    .unwrap_or((0, 0))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("worker"))
        .max()
        .unwrap_or((0, 0));
    println!("cargo: longest chain below 100000 starts at {} ({} steps)", best.1, best.0);
}
