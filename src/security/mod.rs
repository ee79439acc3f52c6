//! Security: capabilities and the seccomp filter.

pub mod seccomp;
