/// Collatz steps of `n` down to 1.
pub fn collatz(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        assert_eq!(super::collatz(1), 0);
        assert_eq!(super::collatz(27), 111);
    }
}
