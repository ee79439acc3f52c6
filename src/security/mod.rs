//! Security: capabilities and the seccomp filter.

pub mod caps;
pub mod seccomp;
