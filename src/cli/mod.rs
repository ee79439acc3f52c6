//! Command-line interface: argument parsing and the `sandbox` subcommands.

pub fn main() -> i32 {
    eprintln!("sandbox: not yet implemented");
    125
}
