//! A serializable view of a resolved [`Profile`], in the same shape and key
//! names as the TOML schema (used by `sandbox profile show`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::units::{format_duration, format_size};
use super::*;

#[derive(Serialize)]
pub struct ProfileView {
    /// Omitted (set to `None`) for TOML output, so that it is a valid profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub description: String,
    pub namespaces: NamespacesView,
    pub filesystem: FilesystemView,
    pub process: ProcessView,
    pub capabilities: CapabilitiesView,
    pub seccomp: SeccompView,
    pub limits: BTreeMap<String, toml::Value>,
    pub network: NetworkView,
}

#[derive(Serialize)]
pub struct NetworkView {
    pub mode: &'static str,
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<String>,
}

#[derive(Serialize)]
pub struct NamespacesView {
    pub user: bool,
    pub pid: bool,
    pub mount: bool,
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

#[derive(Serialize)]
pub struct FilesystemView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub system_dirs: Vec<String>,
    pub writable_layer_size: String,
    pub dev_shm_size: String,
    pub workdir: String,
    pub bind: Vec<BindView>,
    pub tmpfs: Vec<TmpfsView>,
}

#[derive(Serialize)]
pub struct BindView {
    pub source: String,
    pub dest: String,
    pub writable: bool,
    pub optional: bool,
}

#[derive(Serialize)]
pub struct TmpfsView {
    pub dest: String,
    pub size: String,
    pub mode: String,
}

#[derive(Serialize)]
pub struct ProcessView {
    pub uid: u32,
    pub gid: u32,
    pub host_uid: HostUidView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_gid: Option<u32>,
    pub hostname: String,
    pub env_passthrough: Vec<String>,
    pub no_new_privs: bool,
    pub run_as_checkout_owner: bool,
    pub env: BTreeMap<String, String>,
}

/// `process.host_uid` as written: one id, or the range table.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum HostUidView {
    Id(u32),
    Range {
        first: u32,
        count: u32,
        ids: u32,
        wait: String,
    },
}

impl HostUidView {
    /// The view of `ids`, and the `host_gid` that goes with it.
    pub fn of(ids: &HostIds) -> (HostUidView, Option<u32>) {
        match *ids {
            HostIds::Fixed { uid, gid } => (HostUidView::Id(uid), Some(gid)),
            HostIds::Range {
                first,
                count,
                ids,
                wait,
            } => (
                HostUidView::Range {
                    first,
                    count,
                    ids,
                    wait: format_duration(wait),
                },
                None,
            ),
        }
    }
}

#[derive(Serialize)]
pub struct CapabilitiesView {
    pub keep: Vec<String>,
}

#[derive(Serialize)]
pub struct SeccompView {
    pub enabled: bool,
    pub default_action: String,
    pub deny_action: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub rule: Vec<RuleView>,
}

#[derive(Serialize)]
pub struct RuleView {
    pub syscall: String,
    pub action: String,
    pub args: Vec<ArgView>,
}

#[derive(Serialize)]
pub struct ArgView {
    pub index: u8,
    pub op: &'static str,
    pub value: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<i64>,
}

/// The schema spelling of an action (`errno:EPERM`, `kill_process`, ...).
pub fn action_str(a: &SeccompAction) -> String {
    match a {
        SeccompAction::KillProcess => "kill_process".into(),
        SeccompAction::KillThread => "kill_thread".into(),
        SeccompAction::Trap => "trap".into(),
        SeccompAction::Errno(_, name) => format!("errno:{name}"),
        SeccompAction::Log => "log".into(),
        SeccompAction::Allow => "allow".into(),
    }
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

impl From<&Profile> for ProfileView {
    fn from(p: &Profile) -> Self {
        let n = &p.namespaces;
        let f = &p.filesystem;
        let l = &p.limits;
        let mut limits = BTreeMap::new();
        let mut put = |k: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                limits.insert(k.to_string(), v);
            }
        };
        let d = |v: Option<std::time::Duration>| v.map(|d| toml::Value::String(format_duration(d)));
        let s = |v: Option<u64>| v.map(|x| toml::Value::String(format_size(x)));
        let i =
            |v: Option<u64>| v.map(|x| toml::Value::Integer(i64::try_from(x).unwrap_or(i64::MAX)));
        put("cpu_time", d(l.cpu_time));
        put("wall_time", d(l.wall_time));
        put("memory", s(l.memory));
        put("output", s(l.output));
        put("file_size", s(l.file_size));
        put("stack", s(l.stack));
        put("pids", i(l.pids));
        put("open_files", i(l.open_files));
        put("cpu_quota", l.cpu_quota.map(toml::Value::Float));
        put("pending_signals", i(l.pending_signals));
        put("message_queue", s(l.message_queue));
        put("locked_memory", s(l.locked_memory));
        let (host_uid, host_gid) = HostUidView::of(&p.process.host_ids);
        ProfileView {
            name: Some(p.name.clone()),
            description: p.description.clone(),
            namespaces: NamespacesView {
                user: n.user,
                pid: n.pid,
                mount: n.mount,
                network: n.network,
                ipc: n.ipc,
                uts: n.uts,
                cgroup: n.cgroup,
            },
            filesystem: FilesystemView {
                root: match &f.root {
                    RootSource::Host => Some("host".into()),
                    RootSource::Dir(d) => Some(path(d)),
                    RootSource::Image(_) => None,
                },
                image: match &f.root {
                    RootSource::Image(r) => Some(r.clone()),
                    _ => None,
                },
                system_dirs: f.system_dirs.iter().map(|d| path(d)).collect(),
                writable_layer_size: format_size(f.writable_layer_size),
                dev_shm_size: format_size(f.dev_shm_size),
                workdir: path(&f.workdir),
                bind: f
                    .binds
                    .iter()
                    .map(|b| BindView {
                        source: path(&b.source),
                        dest: path(&b.dest),
                        writable: b.writable,
                        optional: b.optional,
                    })
                    .collect(),
                tmpfs: f
                    .tmpfs
                    .iter()
                    .map(|t| TmpfsView {
                        dest: path(&t.dest),
                        size: format_size(t.size),
                        mode: format!("{:o}", t.mode),
                    })
                    .collect(),
            },
            process: ProcessView {
                uid: p.process.uid,
                gid: p.process.gid,
                host_uid,
                host_gid,
                hostname: p.process.hostname.clone(),
                env_passthrough: p.process.env_passthrough.clone(),
                no_new_privs: p.process.no_new_privs,
                run_as_checkout_owner: p.process.run_as_checkout_owner,
                env: p.process.env.clone(),
            },
            capabilities: CapabilitiesView {
                keep: p.capabilities.keep.iter().map(|c| c.to_string()).collect(),
            },
            seccomp: SeccompView {
                enabled: p.seccomp.enabled,
                default_action: action_str(&p.seccomp.default_action),
                deny_action: action_str(&p.seccomp.deny_action),
                allow: p.seccomp.allow.clone(),
                deny: p.seccomp.deny.clone(),
                rule: p
                    .seccomp
                    .rules
                    .iter()
                    .map(|r| RuleView {
                        syscall: r.syscall.clone(),
                        action: action_str(&r.action),
                        args: r
                            .args
                            .iter()
                            .map(|a| {
                                let (op, mask) = match a.op {
                                    ArgOp::Eq => ("eq", None),
                                    ArgOp::Ne => ("ne", None),
                                    ArgOp::Lt => ("lt", None),
                                    ArgOp::Le => ("le", None),
                                    ArgOp::Gt => ("gt", None),
                                    ArgOp::Ge => ("ge", None),
                                    ArgOp::MaskedEq(m) => ("masked_eq", Some(m as i64)),
                                };
                                ArgView {
                                    index: a.index,
                                    op,
                                    value: a.value as i64,
                                    mask,
                                }
                            })
                            .collect(),
                    })
                    .collect(),
            },
            limits,
            network: NetworkView {
                mode: p.network.mode.as_str(),
                allow: p.network.allow.iter().map(|c| c.to_string()).collect(),
                bandwidth: p.network.bandwidth.map(super::network::format_rate),
            },
        }
    }
}

/// The resolved profile as a TOML profile (loading it gives the same profile).
pub fn to_toml(p: &Profile) -> Result<String, toml::ser::Error> {
    let mut v = ProfileView::from(p);
    v.name = None;
    let body = toml::to_string(&v)?;
    Ok(format!(
        "# Resolved profile \"{}\" (extends applied, defaults filled in)\n{body}",
        super::error::one_line(&p.name)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_with_a_newline_stays_in_the_comment() {
        let mut p = crate::profile::load("strict").unwrap();
        p.name = "./a\nb.toml".into();
        let shown = super::to_toml(&p).unwrap();
        let again = crate::profile::parse_str(&shown, &p.name).unwrap();
        assert_eq!(again, p);
    }
}
