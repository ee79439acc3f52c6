// A Rust program using threads and a child process, run under the strict filter.
fn main() {
    let hs: Vec<_> = (0..4).map(|i| std::thread::spawn(move || i * 2)).collect();
    let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let st = std::process::Command::new("true").status().unwrap();
    println!("rust threads {sum} {}", st.success());
}
