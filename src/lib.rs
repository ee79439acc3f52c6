//! sandbox: a declarative sandbox for untrusted code.
//!
//! Layout: `profile` (schema, validation) → `security` (capabilities,
//! seccomp) + `isolation` (namespaces, mounts, rootfs) + `limits` (cgroups,
//! rlimits, accounting) → `runner` (one sandboxed process, start to verdict)
//! → `exec` (one `sandbox exec` request) and `job` (steps, files,
//! workspace) → `server` (HTTP), `helper` (resident containers for
//! `sandbox exec`) and `cli`.

pub mod cli;
pub mod exec;
pub mod helper;
pub mod image;
pub mod isolation;
pub mod job;
pub mod limits;
pub mod preset;
pub mod profile;
pub mod runner;
pub mod security;
pub mod server;
