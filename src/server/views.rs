//! JSON views of types that have no Serialize of their own.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::job::queue::JobSnapshot;
use crate::profile::{Limits, Profile, RootSource, SeccompAction};

fn ts(t: Option<SystemTime>) -> Value {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => json!(d.as_secs_f64()),
        None => Value::Null,
    }
}

/// A job as `GET /v1/jobs/{id}` shows it.
pub fn job_json(j: &JobSnapshot) -> Value {
    let mut v = json!({
        "id": j.id,
        "status": j.status.as_str(),
        "profile": j.profile,
        "image": j.image,
        "created_at": ts(Some(j.created_at)),
        "started_at": ts(j.started_at),
        "finished_at": ts(j.finished_at),
        "steps": j.outcome.steps_json(),
        "outputs": j.outcome.outputs_json(),
    });
    if let Some(d) = j.duration() {
        v["duration_ms"] = json!(d.as_secs_f64() * 1e3);
    }
    v["queue_ms"] = json!(j.queue_time().as_secs_f64() * 1e3);
    if let Some(e) = &j.error {
        v["error"] = json!(e);
    }
    v
}

fn action(a: &SeccompAction) -> Value {
    match a {
        SeccompAction::KillProcess => json!("kill_process"),
        SeccompAction::KillThread => json!("kill_thread"),
        SeccompAction::Trap => json!("trap"),
        SeccompAction::Errno(n, name) => json!({"errno": name, "value": n}),
        SeccompAction::Log => json!("log"),
        SeccompAction::Allow => json!("allow"),
    }
}

/// Limits as the request spells them: durations as "1.5s", sizes in bytes.
pub fn limits_json(l: &Limits) -> Value {
    let d = |d: Option<std::time::Duration>| d.map(|d| format!("{}ms", d.as_millis()));
    json!({
        "cpu_time": d(l.cpu_time),
        "wall_time": d(l.wall_time),
        "memory": l.memory,
        "pids": l.pids,
        "output": l.output,
        "file_size": l.file_size,
        "open_files": l.open_files,
        "stack": l.stack,
        "cpu_quota": l.cpu_quota,
    })
}

/// The resolved profile.
pub fn profile_json(p: &Profile) -> Value {
    let ns = &p.namespaces;
    let fs = &p.filesystem;
    let pr = &p.process;
    let (host_uid, host_gid) = crate::profile::view::HostUidView::of(&pr.host_ids);
    json!({
        "name": p.name,
        "description": p.description,
        "namespaces": {
            "user": ns.user, "pid": ns.pid, "mount": ns.mount, "network": ns.network,
            "ipc": ns.ipc, "uts": ns.uts, "cgroup": ns.cgroup,
        },
        "filesystem": {
            "root": match &fs.root {
                RootSource::Host => json!("host"),
                RootSource::Dir(d) => json!(d),
                RootSource::Image(_) => json!("image"),
            },
            "image": match &fs.root { RootSource::Image(r) => json!(r), _ => Value::Null },
            "system_dirs": fs.system_dirs,
            "binds": fs.binds.iter().map(|b| json!({
                "source": b.source, "dest": b.dest, "writable": b.writable, "optional": b.optional,
            })).collect::<Vec<_>>(),
            "tmpfs": fs.tmpfs.iter().map(|t| json!({
                "dest": t.dest, "size": t.size, "mode": format!("{:o}", t.mode),
            })).collect::<Vec<_>>(),
            "writable_layer_size": fs.writable_layer_size,
            "dev_shm_size": fs.dev_shm_size,
            "workdir": fs.workdir,
        },
        "process": {
            "uid": pr.uid, "gid": pr.gid, "host_uid": host_uid, "host_gid": host_gid,
            "hostname": pr.hostname, "env": pr.env, "env_passthrough": pr.env_passthrough,
            "no_new_privs": pr.no_new_privs,
            "run_as_checkout_owner": pr.run_as_checkout_owner,
        },
        "capabilities": {"keep": p.capabilities.keep.iter().map(|c| c.to_string()).collect::<Vec<_>>()},
        "seccomp": {
            "enabled": p.seccomp.enabled,
            "default_action": action(&p.seccomp.default_action),
            "allow": p.seccomp.allow,
            "deny": p.seccomp.deny,
            "deny_action": action(&p.seccomp.deny_action),
            "rules": p.seccomp.rules.iter().map(|r| json!({
                "syscall": r.syscall,
                "args": r.args.iter().map(|a| json!({
                    "index": a.index, "op": format!("{:?}", a.op), "value": a.value,
                })).collect::<Vec<_>>(),
                "action": action(&r.action),
            })).collect::<Vec<_>>(),
        },
        "limits": limits_json(&p.limits),
    })
}
