//! Isolation: namespaces (clone flags, uid/gid maps), the host ids runs are
//! (allocated per job), the container's filesystem (throwaway overlay root,
//! /proc, /dev, binds opened by the caller, an image's idmapped layers,
//! pivot_root), a private run's network (pasta, egress policy, bandwidth
//! cap) and the raw syscalls the child side needs.

pub mod binds;
pub mod checkout;
pub mod hostids;
pub mod layers;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod sys;
