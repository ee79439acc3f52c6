//! The raw TOML schema (serde structs, every key optional) and the
//! `extends` merge of two raw profiles. Keys here are a public contract.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// A scalar that may be written as a TOML integer, float or string
/// (`memory = 1048576`, `memory = "256M"`, `mode = 0o1777`, `mode = "1777"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string with a unit (e.g. \"64M\", \"1.5s\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub extends: Option<String>,
    pub description: Option<String>,
    pub namespaces: Option<RawNamespaces>,
    pub filesystem: Option<RawFilesystem>,
    pub process: Option<RawProcess>,
    pub capabilities: Option<RawCapabilities>,
    pub seccomp: Option<RawSeccomp>,
    pub limits: Option<RawLimits>,
    pub network: Option<RawNetwork>,
}

/// `[network]`: `mode` ("none" | "private" | "host"), `allow` (CIDRs a
/// private run may reach inside the default-denied ranges), `bandwidth`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub mode: Option<String>,
    pub allow: Option<Vec<String>>,
    pub bandwidth: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamespaces {
    pub user: Option<bool>,
    pub pid: Option<bool>,
    pub mount: Option<bool>,
    pub network: Option<bool>,
    pub ipc: Option<bool>,
    pub uts: Option<bool>,
    pub cgroup: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilesystem {
    pub root: Option<String>,
    pub image: Option<String>,
    pub system_dirs: Option<Vec<String>>,
    pub bind: Option<Vec<RawBind>>,
    pub tmpfs: Option<Vec<RawTmpfs>>,
    /// Appended to the inherited `bind` list (or this file's own). Kept
    /// apart until validation, which appends them to `bind`.
    pub bind_add: Option<Vec<RawBind>>,
    /// Appended to the inherited `tmpfs` list (or to the default `/tmp`
    /// when no file sets `tmpfs`), at validation.
    pub tmpfs_add: Option<Vec<RawTmpfs>>,
    pub writable_layer_size: Option<Scalar>,
    pub dev_shm_size: Option<Scalar>,
    pub workdir: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBind {
    pub source: Option<String>,
    pub dest: Option<String>,
    pub writable: Option<bool>,
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTmpfs {
    pub dest: Option<String>,
    pub size: Option<Scalar>,
    pub mode: Option<Scalar>,
}

/// `process.host_uid`: one id (`65534`) or a range
/// (`{ first = 1879048192, count = 256, ids = 65536, wait = "10s" }`).
#[derive(Debug, Clone, PartialEq)]
pub enum RawHostUid {
    Id(i64),
    Range(RawIdRange),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdRange {
    pub first: Option<i64>,
    pub count: Option<i64>,
    pub ids: Option<i64>,
    pub wait: Option<Scalar>,
}

impl<'de> Deserialize<'de> for RawHostUid {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHostUid;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a host uid (e.g. 65534) or a range table { first = 1879048192, count = 256 }",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawHostUid, E> {
                Ok(RawHostUid::Id(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawHostUid, E> {
                i64::try_from(v)
                    .map(RawHostUid::Id)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, m: A) -> Result<RawHostUid, A::Error> {
                RawIdRange::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(RawHostUid::Range)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub host_uid: Option<RawHostUid>,
    pub host_gid: Option<u32>,
    pub hostname: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub env_passthrough: Option<Vec<String>>,
    pub no_new_privs: Option<bool>,
    pub run_as_checkout_owner: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapabilities {
    pub keep: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeccomp {
    pub enabled: Option<bool>,
    pub default_action: Option<String>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub deny_action: Option<String>,
    pub rule: Option<Vec<RawRule>>,
    /// Appended to the inherited `allow` (applied when merging `extends`).
    pub allow_add: Option<Vec<String>>,
    /// Appended to the inherited `deny`.
    pub deny_add: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub syscall: Option<String>,
    pub args: Option<Vec<RawArg>>,
    pub action: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArg {
    pub index: Option<i64>,
    pub op: Option<String>,
    pub value: Option<i64>,
    pub mask: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub cpu_time: Option<Scalar>,
    pub wall_time: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub output: Option<Scalar>,
    pub file_size: Option<Scalar>,
    pub stack: Option<Scalar>,
    pub pids: Option<i64>,
    pub open_files: Option<i64>,
    pub cpu_quota: Option<f64>,
    pub pending_signals: Option<i64>,
    pub message_queue: Option<Scalar>,
    pub locked_memory: Option<Scalar>,
}

/// Allowed keys of each table, by normalized path (array indices removed).
/// `None` means "any key" (free-form tables such as `process.env`).
pub fn allowed_keys(table_path: &str) -> Option<&'static [&'static str]> {
    Some(match table_path {
        "" => &[
            "extends",
            "description",
            "namespaces",
            "filesystem",
            "process",
            "capabilities",
            "seccomp",
            "limits",
            "network",
        ],
        "network" => &["mode", "allow", "bandwidth"],
        "namespaces" => &["user", "pid", "mount", "network", "ipc", "uts", "cgroup"],
        "filesystem" => &[
            "root",
            "image",
            "system_dirs",
            "bind",
            "bind_add",
            "tmpfs",
            "tmpfs_add",
            "writable_layer_size",
            "dev_shm_size",
            "workdir",
        ],
        "filesystem.bind" | "filesystem.bind_add" => &["source", "dest", "writable", "optional"],
        "filesystem.tmpfs" | "filesystem.tmpfs_add" => &["dest", "size", "mode"],
        "process" => &[
            "uid",
            "gid",
            "host_uid",
            "host_gid",
            "hostname",
            "env",
            "env_passthrough",
            "no_new_privs",
            "run_as_checkout_owner",
        ],
        "process.host_uid" => &["first", "count", "ids", "wait"],
        "process.env" => return None,
        "capabilities" => &["keep"],
        "seccomp" => &[
            "enabled",
            "default_action",
            "allow",
            "allow_add",
            "deny",
            "deny_add",
            "deny_action",
            "rule",
        ],
        "seccomp.rule" => &["syscall", "args", "action"],
        "seccomp.rule.args" => &["index", "op", "value", "mask"],
        "limits" => &[
            "cpu_time",
            "wall_time",
            "memory",
            "output",
            "file_size",
            "stack",
            "pids",
            "open_files",
            "cpu_quota",
            "pending_signals",
            "message_queue",
            "locked_memory",
        ],
        _ => &[],
    })
}

/// `Type { f: child.f.or(parent.f), ..., k: v, ... }`: child fields win,
/// absent child fields fall back to the parent; `k: v` are set as given.
macro_rules! merged {
    ($ty:ident, $p:expr, $c:expr; $($f:ident),* $(; $($k:ident: $v:expr),*)?) => {{
        let (p, c) = ($p, $c);
        $ty { $($f: c.$f.or(p.$f),)* $($($k: $v,)*)? }
    }};
}

fn merge_opt<T>(p: Option<T>, c: Option<T>, f: impl FnOnce(T, T) -> T) -> Option<T> {
    match (p, c) {
        (Some(p), Some(c)) => Some(f(p, c)),
        (p, c) => c.or(p),
    }
}

/// The pending `*_add` list after a merge: the child's own adds go with a
/// list the child sets; otherwise they follow the parent's pending adds.
fn pending_adds<T>(
    child_sets_list: bool,
    parent: Option<Vec<T>>,
    child: Option<Vec<T>>,
) -> Option<Vec<T>> {
    if child_sets_list {
        return child;
    }
    merge_opt(parent, child, |mut p, c| {
        p.extend(c);
        p
    })
}

fn append(list: &mut Option<Vec<String>>, add: Option<Vec<String>>) {
    if let Some(add) = add {
        let l = list.get_or_insert_with(Vec::new);
        for a in add {
            if !l.contains(&a) {
                l.push(a);
            }
        }
    }
}

/// Resolve `allow_add`/`deny_add` of a profile without `extends`.
pub fn apply_adds(mut p: RawProfile) -> RawProfile {
    if let Some(s) = p.seccomp.as_mut() {
        let (a, d) = (s.allow_add.take(), s.deny_add.take());
        append(&mut s.allow, a);
        append(&mut s.deny, d);
    }
    p
}

/// Apply `child` on top of `parent`: tables merge key by key (recursively),
/// arrays and scalars in the child replace the parent's; `*_add` lists are
/// appended to the inherited ones. `extends` is not inherited.
///
/// `namespaces.network` (the old key) and `network.mode` (the new one) say
/// the same thing: the nearer file wins, so a child setting one of them
/// drops what its parents set for the other (a profile extending `strict`
/// may say `namespaces.network = false` as before, or `mode = "host"`).
/// Only one file setting both can contradict itself (an error in validation).
pub fn merge(mut parent: RawProfile, child: RawProfile) -> RawProfile {
    let child_ns = child.namespaces.as_ref().and_then(|n| n.network).is_some();
    let child_mode = child
        .network
        .as_ref()
        .and_then(|n| n.mode.as_ref())
        .is_some();
    if child_ns && !child_mode {
        if let Some(n) = parent.network.as_mut() {
            n.mode = None;
        }
    } else if child_mode
        && !child_ns
        && let Some(n) = parent.namespaces.as_mut()
    {
        n.network = None;
    }
    RawProfile {
        extends: child.extends,
        description: child.description.or(parent.description),
        namespaces: merge_opt(
            parent.namespaces,
            child.namespaces,
            |p, c| merged!(RawNamespaces, p, c; user, pid, mount, network, ipc, uts, cgroup),
        ),
        filesystem: merge_opt(parent.filesystem, child.filesystem, |mut p, mut c| {
            let bind_add = pending_adds(c.bind.is_some(), p.bind_add.take(), c.bind_add.take());
            let tmpfs_add = pending_adds(c.tmpfs.is_some(), p.tmpfs_add.take(), c.tmpfs_add.take());
            merged!(RawFilesystem, p, c;
                root, image, system_dirs, bind, tmpfs, writable_layer_size, dev_shm_size, workdir;
                bind_add: bind_add, tmpfs_add: tmpfs_add)
        }),
        process: merge_opt(parent.process, child.process, |mut p, mut c| {
            let env = merge_opt(p.env.take(), c.env.take(), |mut pe, ce| {
                pe.extend(ce);
                pe
            });
            merged!(RawProcess, p, c;
                uid, gid, host_uid, host_gid, hostname, env_passthrough, no_new_privs,
                run_as_checkout_owner;
                env: env)
        }),
        capabilities: merge_opt(
            parent.capabilities,
            child.capabilities,
            |p, c| merged!(RawCapabilities, p, c; keep),
        ),
        seccomp: merge_opt(parent.seccomp, child.seccomp, |p, c| {
            let (allow_add, deny_add) = (c.allow_add.clone(), c.deny_add.clone());
            let mut s = merged!(RawSeccomp, p, c;
                enabled, default_action, allow, deny, deny_action, rule;
                allow_add: None, deny_add: None);
            append(&mut s.allow, allow_add);
            append(&mut s.deny, deny_add);
            s
        }),
        limits: merge_opt(parent.limits, child.limits, |p, c| {
            merged!(RawLimits, p, c;
                cpu_time, wall_time, memory, output, file_size, stack, pids, open_files,
                cpu_quota, pending_signals, message_queue, locked_memory)
        }),
        network: merge_opt(
            parent.network,
            child.network,
            |p, c| merged!(RawNetwork, p, c; mode, allow, bandwidth),
        ),
    }
}
