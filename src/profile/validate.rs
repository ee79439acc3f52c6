//! Validation: merged raw profile → resolved [`Profile`]. Applies defaults,
//! parses units and names, and rejects contradictions, each error located
//! at the key that caused it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::error::{ProfileError, ProfileWarning};
use super::names;
use super::schema::*;
use super::source::Locator;
use super::units::{parse_duration, parse_size};
use super::*;

type R<T> = Result<T, ProfileError>;

pub const DEFAULT_SYSTEM_DIRS: &[&str] = &["/usr", "/etc", "/bin", "/lib", "/lib64", "/sbin"];
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

const MIB: u64 = 1 << 20;

fn size(loc: &Locator, key: &str, v: Option<&Scalar>) -> R<Option<u64>> {
    match v {
        None => Ok(None),
        Some(Scalar::Int(n)) if *n >= 0 => Ok(Some(*n as u64)),
        Some(Scalar::Int(n)) => Err(loc.error(key, format!("size must not be negative (got {n})"))),
        Some(Scalar::Float(f)) => Err(loc.error(
            key,
            format!("size {f} is a float; write bytes as an integer or a string with a unit (e.g. \"256M\")"),
        )),
        Some(Scalar::Str(s)) => parse_size(s).map(Some).map_err(|e| loc.error(key, e.to_string())),
    }
}

fn duration(loc: &Locator, key: &str, v: Option<&Scalar>) -> R<Option<Duration>> {
    let secs = |f: f64| {
        Duration::try_from_secs_f64(f)
            .map_err(|_| loc.error(key, format!("invalid duration {f} (a non-negative number of seconds, or a string like \"1.5s\", \"500ms\", \"2m\")")))
    };
    match v {
        None => Ok(None),
        Some(Scalar::Int(n)) => secs(*n as f64).map(Some),
        Some(Scalar::Float(f)) => secs(*f).map(Some),
        Some(Scalar::Str(s)) => parse_duration(s)
            .map(Some)
            .map_err(|e| loc.error(key, e.to_string())),
    }
}

fn nonzero<T: PartialEq + Default + Copy>(loc: &Locator, key: &str, v: Option<T>) -> R<Option<T>> {
    if v == Some(T::default()) {
        return Err(loc.error(
            key,
            "a limit of zero would make every program fail; omit the key for no limit",
        ));
    }
    Ok(v)
}

fn count(loc: &Locator, key: &str, v: Option<i64>) -> R<Option<u64>> {
    match v {
        Some(n) if n <= 0 => Err(loc.error(
            key,
            format!("must be a positive integer (got {n}); omit the key for no limit"),
        )),
        v => Ok(v.map(|n| n as u64)),
    }
}

/// `process.host_uid` / `host_gid`: one fixed id, or a range (the default).
fn host_ids(loc: &Locator, uid: Option<&RawHostUid>, gid: Option<u32>) -> R<HostIds> {
    const KEY: &str = "process.host_uid";
    let id = |k: &str, v: i64| -> R<u32> {
        match u32::try_from(v) {
            Ok(0) => Err(loc.error(
                k,
                "host id 0 would map the sandbox's user to root on the HOST; use an unprivileged id (or the default range)",
            )),
            Ok(u32::MAX) => Err(loc.error(k, "4294967295 is not a valid id (it means \"no id\" to the kernel)")),
            Ok(v) => Ok(v),
            Err(_) => Err(loc.error(k, format!("{v} is not a valid id (0 < id < 4294967295)"))),
        }
    };
    match uid {
        Some(RawHostUid::Id(u)) => {
            let uid = id(KEY, *u)?;
            if HostIds::default_span().contains(&u64::from(uid)) {
                return Err(loc.error(
                    KEY,
                    format!(
                        "{uid} lies inside the default range of job uids ({}-{}): runs of other profiles may be that uid too; use an id outside it",
                        HostIds::default_span().start,
                        HostIds::default_span().end - 1
                    ),
                ));
            }
            Ok(HostIds::Fixed {
                uid,
                gid: match gid {
                    Some(g) => id("process.host_gid", g.into())?,
                    None => 65534,
                },
            })
        }
        range => {
            if gid.is_some() {
                return Err(loc.error(
                    "process.host_gid",
                    "with a host uid range (the default) each run's host gid is its uid; set process.host_gid only together with a single process.host_uid",
                ));
            }
            let r = match range {
                Some(RawHostUid::Range(r)) => r.clone(),
                _ => RawIdRange::default(),
            };
            let first = match r.first {
                Some(f) => id(&format!("{KEY}.first"), f)?,
                None => HostIds::DEFAULT_FIRST,
            };
            let count = match r.count {
                None => HostIds::DEFAULT_COUNT,
                Some(c) if (1..=65536).contains(&c) => c as u32,
                Some(c) => {
                    return Err(loc.error(
                        &format!("{KEY}.count"),
                        format!("count must be from 1 to 65536 (got {c})"),
                    ));
                }
            };
            let ids = match r.ids {
                None => HostIds::DEFAULT_IDS,
                Some(n) if (1..=65536).contains(&n) => n as u32,
                Some(n) => {
                    return Err(loc.error(
                        &format!("{KEY}.ids"),
                        format!("ids (host uids per job) must be from 1 to 65536 (got {n})"),
                    ));
                }
            };
            let end = u64::from(first) + u64::from(count) * u64::from(ids);
            if end > u64::from(u32::MAX) {
                return Err(loc.error(
                    &format!("{KEY}.count"),
                    format!(
                        "the range {first} + {count} blocks of {ids} runs past the largest id 4294967294"
                    ),
                ));
            }
            let wait = duration(loc, &format!("{KEY}.wait"), r.wait.as_ref())?
                .unwrap_or(HostIds::DEFAULT_WAIT);
            Ok(HostIds::Range {
                first,
                count,
                ids,
                wait,
            })
        }
    }
}

/// Parse an action name: kill_process | kill_thread | trap | errno:NAME | log | allow.
pub fn parse_action(s: &str) -> Result<SeccompAction, String> {
    Ok(match s {
        "kill_process" => SeccompAction::KillProcess,
        "kill_thread" => SeccompAction::KillThread,
        "trap" => SeccompAction::Trap,
        "log" => SeccompAction::Log,
        "allow" => SeccompAction::Allow,
        _ => {
            if let Some(name) = s.strip_prefix("errno:") {
                match names::errno_by_name(name) {
                    Some(n) => SeccompAction::Errno(n, name.to_string()),
                    None => {
                        return Err(format!(
                            "unknown errno name \"{name}\"{}",
                            names::suggest_errno(name)
                        ));
                    }
                }
            } else {
                let dym = names::did_you_mean(
                    s,
                    [
                        "kill_process",
                        "kill_thread",
                        "trap",
                        "log",
                        "allow",
                        "errno:EPERM",
                    ],
                );
                return Err(format!(
                    "unknown action \"{s}\" (valid: kill_process, kill_thread, trap, errno:NAME e.g. errno:EPERM, log, allow){}",
                    names::suggestion_suffix(dym).replace(" (", "; (")
                ));
            }
        }
    })
}

fn action(
    loc: &Locator,
    key: &str,
    v: Option<&String>,
    default: SeccompAction,
) -> R<SeccompAction> {
    match v {
        None => Ok(default),
        Some(s) => parse_action(s).map_err(|m| loc.error(key, m)),
    }
}

fn check_syscall(loc: &Locator, key: &str, name: &str) -> R<()> {
    if names::syscall_known(name) {
        Ok(())
    } else {
        Err(loc.error(
            key,
            format!("unknown syscall \"{name}\"{}", names::suggest_syscall(name)),
        ))
    }
}

/// `filesystem.root`: the host's system directories, or a directory.
fn root_dir(loc: &Locator, root: Option<&str>) -> R<RootSource> {
    Ok(match root {
        None | Some("host") => RootSource::Host,
        Some(p) if p.starts_with('/') => {
            RootSource::Dir(abs_clean(loc, "filesystem.root", p, "root")?)
        }
        Some(p) => {
            return Err(loc.error(
                "filesystem.root",
                format!("invalid root \"{p}\" (valid: \"host\" or an absolute path to a root filesystem directory)"),
            ));
        }
    })
}

fn abs_clean(loc: &Locator, key: &str, p: &str, what: &str) -> R<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(loc.error(
            key,
            format!(
                "{what} \"{p}\" must be an absolute path (e.g. \"/{}\")",
                p.trim_start_matches("./")
            ),
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(loc.error(key, format!("{what} \"{p}\" must not contain \"..\"")));
    }
    Ok(path.to_path_buf())
}

fn parse_mode(loc: &Locator, key: &str, v: Option<&Scalar>) -> R<u32> {
    let m = match v {
        None => return Ok(0o1777),
        Some(Scalar::Int(n)) => u32::try_from(*n).ok(),
        Some(Scalar::Str(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        Some(Scalar::Float(_)) => None,
    };
    match m {
        Some(m) if m <= 0o7777 => Ok(m),
        _ => Err(loc.error(key, "invalid mode (valid: an octal integer like 0o1777 or an octal string like \"1777\", at most 7777)")),
    }
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty() && !k.contains('=') && !k.contains('\0')
}

/// `[network]` and the old `namespaces.network`: `mode` when set, else
/// `none` (own namespace) or `host` from `namespaces.network`. After the
/// `extends` merge both are present only when one file set both.
fn network(loc: &Locator, raw: RawNetwork, ns_network: Option<bool>) -> R<Network> {
    let mode = match raw.mode.as_deref() {
        None => match ns_network {
            Some(false) => NetworkMode::Host,
            _ => NetworkMode::None,
        },
        Some(m) => match NetworkMode::parse(m) {
            Some(mode) => mode,
            None => {
                let dym = names::did_you_mean(m, ["none", "private", "host"]);
                return Err(loc.error(
                    "network.mode",
                    format!(
                        "unknown network mode \"{m}\" (valid: \"none\", \"private\", \"host\"){}",
                        names::suggestion_suffix(dym)
                    ),
                ));
            }
        },
    };
    if let (Some(ns), Some(_)) = (ns_network, raw.mode.as_ref())
        && ns != mode.own_namespace()
    {
        return Err(loc.error(
            "network.mode",
            format!(
                "network.mode = \"{}\" contradicts namespaces.network = {ns} in the same profile (network.mode supersedes namespaces.network: remove namespaces.network)",
                mode.as_str()
            ),
        ));
    }
    let mut allow = Vec::new();
    for (i, a) in raw.allow.iter().flatten().enumerate() {
        let c: Cidr = a
            .parse()
            .map_err(|e: String| loc.error(&format!("network.allow[{i}]"), e))?;
        if !allow.contains(&c) {
            allow.push(c);
        }
    }
    let bandwidth = match &raw.bandwidth {
        None => None,
        Some(b) => {
            Some(super::network::parse_rate(b).map_err(|e| loc.error("network.bandwidth", e))?)
        }
    };
    if mode != NetworkMode::Private {
        let key = if raw.allow.as_ref().is_some_and(|a| !a.is_empty()) {
            Some("network.allow")
        } else if bandwidth.is_some() {
            Some("network.bandwidth")
        } else {
            None
        };
        if let Some(key) = key {
            return Err(loc.error(
                key,
                format!(
                    "{key} applies only to network.mode = \"private\" (the mode is \"{}\"); remove it or set the mode",
                    mode.as_str()
                ),
            ));
        }
    }
    Ok(Network {
        mode,
        allow,
        bandwidth,
    })
}

/// Below this a memory limit is surely a size written without its unit
/// (`memory = 256` is 256 bytes): no program starts in it.
pub const MIN_MEMORY: u64 = MIB;
/// Below this a tmpfs (the writable layer, `/dev/shm`, a `[[filesystem.tmpfs]]`)
/// is surely a size written without its unit.
pub const MIN_TMPFS: u64 = 64 << 10;

/// A warning for a size under `min` bytes, when warnings are collected.
fn tiny_size(loc: &Locator, lint: Option<&mut Vec<ProfileWarning>>, key: &str, n: u64, min: u64) {
    if let Some(w) = lint
        && n < min
    {
        w.push(loc.warning(
            key,
            format!(
                "{n} bytes is surely a mistake (a size without a unit is in bytes; write e.g. \"{n}M\"; at least {} is expected)",
                super::units::format_size(min)
            ),
        ));
    }
}

/// The elements of the array `key` with their keys (`key[0]`, `key[1]`...).
fn keyed<'a, T>(key: &'a str, list: Option<&'a [T]>) -> impl Iterator<Item = (String, &'a T)> + 'a {
    list.unwrap_or_default()
        .iter()
        .enumerate()
        .map(move |(i, t)| (format!("{key}[{i}]"), t))
}

/// Resolve a merged raw profile; errors are located with `loc`.
pub fn validate(raw: RawProfile, name: &str, loc: &Locator) -> R<Profile> {
    validate_linted(raw, name, loc, None)
}

/// [`validate`], collecting into `lint` (when given) the warnings of
/// `sandbox profile check`: sizes that are surely mistakes, bind sources
/// missing on this host.
pub fn validate_linted(
    raw: RawProfile,
    name: &str,
    loc: &Locator,
    mut lint: Option<&mut Vec<ProfileWarning>>,
) -> R<Profile> {
    // ---- namespaces and [network]
    let n = raw.namespaces.unwrap_or_default();
    let network = network(loc, raw.network.unwrap_or_default(), n.network)?;
    let namespaces = Namespaces {
        user: n.user.unwrap_or(true),
        pid: n.pid.unwrap_or(true),
        mount: n.mount.unwrap_or(true),
        network: network.mode.own_namespace(),
        ipc: n.ipc.unwrap_or(true),
        uts: n.uts.unwrap_or(true),
        cgroup: n.cgroup.unwrap_or(true),
    };

    // ---- filesystem
    let f = raw.filesystem.unwrap_or_default();
    let root = match (f.root.as_deref(), f.image.as_deref()) {
        (Some(r), Some(_)) if r != "host" => {
            return Err(loc.error(
                "filesystem.image",
                format!(
                    "filesystem.image and filesystem.root = \"{r}\" both name the root: keep one"
                ),
            ));
        }
        (_, Some(i)) => match crate::image::Reference::parse(i) {
            Ok(r) => RootSource::Image(r.to_string()),
            Err(e) => return Err(loc.error("filesystem.image", e.to_string())),
        },
        (r, None) => root_dir(loc, r)?,
    };
    let system_dirs = match &f.system_dirs {
        None => DEFAULT_SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
        Some(v) => v
            .iter()
            .enumerate()
            .map(|(i, d)| {
                abs_clean(
                    loc,
                    &format!("filesystem.system_dirs[{i}]"),
                    d,
                    "system dir",
                )
            })
            .collect::<R<Vec<_>>>()?,
    };
    let mut binds = Vec::new();
    let bind_list = keyed("filesystem.bind", f.bind.as_deref());
    for (k, b) in bind_list.chain(keyed("filesystem.bind_add", f.bind_add.as_deref())) {
        let Some(source) = &b.source else {
            return Err(loc.error(
                &k,
                "a bind needs `source` (host path) and `dest` (path inside)",
            ));
        };
        let Some(dest) = &b.dest else {
            return Err(loc.error(&k, "a bind needs `dest` (absolute path inside the sandbox)"));
        };
        if source.is_empty() {
            return Err(loc.error(&format!("{k}.source"), "source must not be empty"));
        }
        let optional = b.optional.unwrap_or(false);
        // Relative sources are bound per run against the run's base
        // directory, so only absolute ones can be checked here.
        if let Some(w) = lint.as_deref_mut()
            && !optional
            && source.starts_with('/')
            && std::fs::symlink_metadata(source).is_err()
        {
            w.push(loc.warning(
                &format!("{k}.source"),
                format!("bind source \"{source}\" does not exist on this host: every run will fail (create it, or set optional = true to skip the bind when it is missing)"),
            ));
        }
        binds.push(BindMount {
            source: PathBuf::from(source),
            dest: abs_clean(loc, &format!("{k}.dest"), dest, "bind dest")?,
            writable: b.writable.unwrap_or(false),
            optional,
        });
    }
    let mut tmpfs = Vec::new();
    if f.tmpfs.is_none() {
        tmpfs.push(TmpfsMount {
            dest: "/tmp".into(),
            size: 64 * MIB,
            mode: 0o1777,
        });
    }
    let tmpfs_list = keyed("filesystem.tmpfs", f.tmpfs.as_deref());
    for (k, t) in tmpfs_list.chain(keyed("filesystem.tmpfs_add", f.tmpfs_add.as_deref())) {
        let Some(dest) = &t.dest else {
            return Err(loc.error(
                &k,
                "a tmpfs needs `dest` (absolute path inside the sandbox)",
            ));
        };
        let size_key = format!("{k}.size");
        let size = nonzero(loc, &size_key, size(loc, &size_key, t.size.as_ref())?)?;
        if let Some(n) = size {
            tiny_size(loc, lint.as_deref_mut(), &size_key, n, MIN_TMPFS);
        }
        tmpfs.push(TmpfsMount {
            dest: abs_clean(loc, &format!("{k}.dest"), dest, "tmpfs dest")?,
            size: size.unwrap_or(64 * MIB),
            mode: parse_mode(loc, &format!("{k}.mode"), t.mode.as_ref())?,
        });
    }
    let wl_key = "filesystem.writable_layer_size";
    let writable_layer_size = nonzero(
        loc,
        wl_key,
        size(loc, wl_key, f.writable_layer_size.as_ref())?,
    )?;
    if let Some(n) = writable_layer_size {
        tiny_size(loc, lint.as_deref_mut(), wl_key, n, MIN_TMPFS);
    }
    let writable_layer_size = writable_layer_size.unwrap_or(64 * MIB);
    let shm_key = "filesystem.dev_shm_size";
    let dev_shm_size = nonzero(loc, shm_key, size(loc, shm_key, f.dev_shm_size.as_ref())?)?;
    if let Some(n) = dev_shm_size {
        tiny_size(loc, lint.as_deref_mut(), shm_key, n, MIN_TMPFS);
    }
    let dev_shm_size = dev_shm_size.unwrap_or(16 * MIB);
    let workdir = abs_clean(
        loc,
        "filesystem.workdir",
        f.workdir.as_deref().unwrap_or("/tmp"),
        "workdir",
    )?;
    let filesystem = Filesystem {
        root,
        system_dirs,
        binds,
        tmpfs,
        writable_layer_size,
        dev_shm_size,
        workdir,
    };

    // ---- process
    let p = raw.process.unwrap_or_default();
    let mut env: BTreeMap<String, String> = [
        ("PATH", DEFAULT_PATH),
        ("HOME", "/tmp"),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(e) = p.env {
        for (k, v) in e {
            if !valid_env_name(&k) || v.contains('\0') {
                return Err(loc.error(&format!("process.env.{k}"), "invalid environment variable (names must be non-empty without '=' or NUL; values without NUL)"));
            }
            env.insert(k, v);
        }
    }
    let env_passthrough = p.env_passthrough.unwrap_or_default();
    for (i, k) in env_passthrough.iter().enumerate() {
        if !valid_env_name(k) {
            return Err(loc.error(
                &format!("process.env_passthrough[{i}]"),
                format!("invalid variable name \"{k}\""),
            ));
        }
    }
    let hostname = p.hostname.unwrap_or_else(|| "sandbox".into());
    if hostname.is_empty()
        || hostname.len() > 64
        || !hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(loc.error(
            "process.hostname",
            format!("invalid hostname \"{hostname}\" (1-64 characters: letters, digits, '-', '.')"),
        ));
    }
    let host_ids = host_ids(loc, p.host_uid.as_ref(), p.host_gid)?;
    if !namespaces.user
        && matches!(host_ids, HostIds::Range { .. })
        && (p.uid.is_some() || p.gid.is_some())
        // (uid 0 gets the sharper error of the namespace checks below)
        && p.uid != Some(0)
    {
        let k = if p.uid.is_some() {
            "process.uid"
        } else {
            "process.gid"
        };
        return Err(loc.error(
            k,
            "without a user namespace the program runs as its host uid/gid from the process.host_uid range; remove process.uid and process.gid (or set namespaces.user = true)",
        ));
    }
    let process = Process {
        uid: p.uid.unwrap_or(1000),
        gid: p.gid.unwrap_or(1000),
        host_ids,
        hostname,
        env,
        env_passthrough,
        no_new_privs: p.no_new_privs.unwrap_or(true),
        run_as_checkout_owner: p.run_as_checkout_owner.unwrap_or(false),
    };

    // ---- capabilities
    let mut keep = Vec::new();
    for (i, c) in raw
        .capabilities
        .and_then(|c| c.keep)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match names::parse_capability(c) {
            Some(cap) if !keep.contains(&cap) => keep.push(cap),
            Some(_) => {}
            None => {
                return Err(loc.error(
                    &format!("capabilities.keep[{i}]"),
                    format!("unknown capability \"{c}\"{}", names::suggest_capability(c)),
                ));
            }
        }
    }
    let capabilities = Capabilities { keep };

    // ---- seccomp
    let s = raw.seccomp.unwrap_or_default();
    let default_action = action(
        loc,
        "seccomp.default_action",
        s.default_action.as_ref(),
        SeccompAction::KillProcess,
    )?;
    let deny_action = action(
        loc,
        "seccomp.deny_action",
        s.deny_action.as_ref(),
        SeccompAction::Errno(libc::EPERM, "EPERM".into()),
    )?;
    let allow = s.allow.unwrap_or_default();
    for (i, sc) in allow.iter().enumerate() {
        check_syscall(loc, &format!("seccomp.allow[{i}]"), sc)?;
    }
    let deny = s.deny.unwrap_or_default();
    for (i, sc) in deny.iter().enumerate() {
        check_syscall(loc, &format!("seccomp.deny[{i}]"), sc)?;
        if allow.contains(sc) {
            return Err(loc.error_element(
                &["seccomp.deny", "seccomp.deny_add", "seccomp.allow", "seccomp.allow_add"],
                sc,
                &format!("seccomp.deny[{i}]"),
                format!("syscall \"{sc}\" is in both seccomp.allow and seccomp.deny (remove it from one; to allow it only with some arguments use a [[seccomp.rule]])"),
            ));
        }
    }
    let mut rules = Vec::new();
    for (i, r) in s.rule.iter().flatten().enumerate() {
        let k = format!("seccomp.rule[{i}]");
        let Some(sc) = &r.syscall else {
            return Err(loc.error(&k, "a rule needs `syscall`"));
        };
        check_syscall(loc, &format!("{k}.syscall"), sc)?;
        let mut args = Vec::new();
        for (j, a) in r.args.iter().flatten().enumerate() {
            let ak = format!("{k}.args[{j}]");
            let index = match a.index {
                Some(ix @ 0..=5) => ix as u8,
                Some(ix) => {
                    return Err(loc.error(
                        &format!("{ak}.index"),
                        format!("argument index {ix} out of range (valid: 0 to 5)"),
                    ));
                }
                None => {
                    return Err(loc.error(
                        &ak,
                        "an argument condition needs `index` (0-5), `op` and `value`",
                    ));
                }
            };
            let Some(value) = a.value else {
                return Err(loc.error(&ak, "an argument condition needs `value` (an integer; negative values are taken as two's complement)"));
            };
            let opk = format!("{ak}.op");
            let op = match (a.op.as_deref(), a.mask) {
                (Some("masked_eq"), Some(m)) => ArgOp::MaskedEq(m as u64),
                (Some("masked_eq"), None) => {
                    return Err(loc.error(
                        &opk,
                        "op \"masked_eq\" needs `mask` (the condition is (arg & mask) == value)",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(loc.error(
                        &format!("{ak}.mask"),
                        "`mask` is only valid with op = \"masked_eq\"",
                    ));
                }
                (Some("eq"), None) => ArgOp::Eq,
                (Some("ne"), None) => ArgOp::Ne,
                (Some("lt"), None) => ArgOp::Lt,
                (Some("le"), None) => ArgOp::Le,
                (Some("gt"), None) => ArgOp::Gt,
                (Some("ge"), None) => ArgOp::Ge,
                (Some(o), None) => {
                    let dym =
                        names::did_you_mean(o, ["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"]);
                    return Err(loc.error(
                        &opk,
                        format!(
                            "unknown op \"{o}\" (valid: eq, ne, lt, le, gt, ge, masked_eq){}",
                            names::suggestion_suffix(dym)
                        ),
                    ));
                }
                (None, _) => {
                    return Err(loc.error(
                        &ak,
                        "an argument condition needs `op` (eq, ne, lt, le, gt, ge, masked_eq)",
                    ));
                }
            };
            args.push(ArgCond {
                index,
                op,
                value: value as u64,
            });
        }
        let act = action(
            loc,
            &format!("{k}.action"),
            r.action.as_ref(),
            SeccompAction::Allow,
        )?;
        rules.push(SeccompRule {
            syscall: sc.clone(),
            args,
            action: act,
        });
    }
    let seccomp = Seccomp {
        enabled: s.enabled.unwrap_or(true),
        default_action,
        allow,
        deny,
        deny_action,
        rules,
    };

    // ---- limits
    let l = raw.limits.unwrap_or_default();
    let dur = |k: &str, v: Option<&Scalar>| -> R<Option<Duration>> {
        let key = format!("limits.{k}");
        nonzero(loc, &key, duration(loc, &key, v)?)
    };
    let sz = |k: &str, v: Option<&Scalar>| -> R<Option<u64>> {
        let key = format!("limits.{k}");
        nonzero(loc, &key, size(loc, &key, v)?)
    };
    let cpu_quota = match l.cpu_quota {
        Some(q) if !(q.is_finite() && q > 0.0) => {
            return Err(loc.error(
                "limits.cpu_quota",
                format!("cpu_quota must be a positive number of CPUs, e.g. 1.0 or 0.5 (got {q})"),
            ));
        }
        q => q,
    };
    let memory = sz("memory", l.memory.as_ref())?;
    if let Some(n) = memory {
        tiny_size(loc, lint, "limits.memory", n, MIN_MEMORY);
    }
    let limits = Limits {
        cpu_time: dur("cpu_time", l.cpu_time.as_ref())?,
        wall_time: dur("wall_time", l.wall_time.as_ref())?,
        memory,
        pids: count(loc, "limits.pids", l.pids)?,
        output: sz("output", l.output.as_ref())?,
        file_size: sz("file_size", l.file_size.as_ref())?,
        open_files: count(loc, "limits.open_files", l.open_files)?,
        stack: sz("stack", l.stack.as_ref())?,
        cpu_quota,
        pending_signals: Some(
            count(loc, "limits.pending_signals", l.pending_signals)?
                .unwrap_or(Limits::DEFAULT_PENDING_SIGNALS),
        ),
        message_queue: Some(
            size(loc, "limits.message_queue", l.message_queue.as_ref())?
                .unwrap_or(Limits::DEFAULT_MESSAGE_QUEUE),
        ),
        locked_memory: Some(
            size(loc, "limits.locked_memory", l.locked_memory.as_ref())?
                .unwrap_or(Limits::DEFAULT_LOCKED_MEMORY),
        ),
    };

    let profile = Profile {
        name: name.to_string(),
        description: raw.description.unwrap_or_default(),
        namespaces,
        filesystem,
        process,
        capabilities,
        seccomp,
        limits,
        network,
    };
    check_contradictions(&profile, loc)?;
    Ok(profile)
}

fn permits(s: &Seccomp, sc: &str) -> bool {
    matches!(s.default_action, SeccompAction::Allow | SeccompAction::Log)
        && !s.deny.iter().any(|d| d == sc)
        || s.allow.iter().any(|a| a == sc)
        || s.rules
            .iter()
            .any(|r| r.syscall == sc && r.action == SeccompAction::Allow)
}

fn check_contradictions(p: &Profile, loc: &Locator) -> R<()> {
    let ns = &p.namespaces;
    let fs = &p.filesystem;
    // An image's files have the image's owners (0 and up): only a user
    // namespace maps them onto the job's unprivileged host ids.
    if matches!(fs.root, RootSource::Image(_)) && !ns.user {
        return Err(loc.error(
            "namespaces.user",
            "filesystem.image needs a user namespace (its files' owners are mapped onto the job's host ids): set namespaces.user = true".to_string(),
        ));
    }
    if !ns.mount {
        let what = if matches!(fs.root, RootSource::Image(_)) {
            Some("filesystem.image")
        } else if fs.root != RootSource::Host {
            Some("filesystem.root")
        } else if !fs.system_dirs.is_empty() {
            Some("filesystem.system_dirs")
        } else if !fs.binds.is_empty() {
            Some("filesystem.bind")
        } else if !fs.tmpfs.is_empty() {
            Some("filesystem.tmpfs")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(loc.error(
                "namespaces.mount",
                format!("{what} needs a mount namespace (set namespaces.mount = true, or set {what} to empty / root = \"host\")"),
            ));
        }
        if ns.pid {
            return Err(loc.error(
                "namespaces.pid",
                "a PID namespace needs a mount namespace for its own /proc (otherwise /proc shows the host's processes); set namespaces.mount = true or namespaces.pid = false",
            ));
        }
    }
    if p.process.run_as_checkout_owner && !(ns.user && ns.mount && ns.pid) {
        return Err(loc.error(
            "process.run_as_checkout_owner",
            "acting as the checkout's owner maps the program's uid inside a user namespace onto the owner's, the checkout is a bind, and nothing may outlive the run as the owner: it needs namespaces.user, namespaces.mount and namespaces.pid = true",
        ));
    }
    if !ns.user {
        if p.process.uid == 0 {
            return Err(loc.error(
                "process.uid",
                "uid 0 without a user namespace would run the program as real root on the host (set namespaces.user = true or use a non-zero uid)",
            ));
        }
        if let HostIds::Fixed { uid, gid } = p.process.host_ids
            && (p.process.uid != uid || p.process.gid != gid)
        {
            return Err(loc.error(
                "process.uid",
                format!(
                    "without a user namespace the program runs as host_uid/host_gid ({uid}:{gid}), so uid/gid ({}:{}) must be equal to them",
                    p.process.uid, p.process.gid
                ),
            ));
        }
        if let Some(c) = p.capabilities.keep.first() {
            return Err(loc.error(
                "capabilities.keep[0]",
                format!("keeping {c} without a user namespace would grant it over the HOST (set namespaces.user = true or remove it)"),
            ));
        }
    }
    if p.network.mode == NetworkMode::Private {
        if !ns.user {
            return Err(loc.error(
                "network.mode",
                "network.mode = \"private\" needs a user namespace (namespaces.user = true): the NAT helper joins the run's user namespace, never the host's",
            ));
        }
        for (i, c) in p.capabilities.keep.iter().enumerate() {
            let s = c.to_string();
            if matches!(
                s.as_str(),
                "CAP_NET_ADMIN" | "CAP_NET_RAW" | "CAP_SYS_ADMIN"
            ) {
                return Err(loc.error(
                    &format!("capabilities.keep[{i}]"),
                    format!("keeping {s} with network.mode = \"private\" would let the program remove its egress policy and bandwidth cap (or bypass them with packet sockets)"),
                ));
            }
        }
    }
    if !ns.network {
        for (i, c) in p.capabilities.keep.iter().enumerate() {
            if c.to_string().starts_with("CAP_NET_") {
                return Err(loc.error(
                    &format!("capabilities.keep[{i}]"),
                    format!("keeping {c} without a network namespace would grant power over the HOST network (set network.mode = \"none\" or \"private\")"),
                ));
            }
        }
    }
    let s = &p.seccomp;
    if s.enabled {
        if !p.process.no_new_privs {
            return Err(loc.error(
                "process.no_new_privs",
                "seccomp is enabled but no_new_privs = false: installing a filter after capabilities are dropped requires no_new_privs (set it to true, or disable seccomp)",
            ));
        }
        if s.default_action == SeccompAction::Allow && !s.allow.is_empty() {
            return Err(loc.error(
                "seccomp.allow",
                "an allow list has no effect with default_action = \"allow\" (use a restrictive default_action, or list syscalls to refuse in seccomp.deny)",
            ));
        }
        if !s.deny.is_empty() && s.deny_action == SeccompAction::Allow {
            return Err(loc.error("seccomp.deny_action", "deny_action = \"allow\" contradicts seccomp.deny (use errno:EPERM, kill_process, ...)"));
        }
        if !s.deny.is_empty() && !s.allow.is_empty() && s.deny_action == s.default_action {
            return Err(loc.error(
                "seccomp.deny",
                "with an allow list, syscalls not allowed already get default_action, which equals deny_action: the deny list is redundant (remove it or use a different deny_action)",
            ));
        }
        if !permits(s, "execve") && !permits(s, "execveat") {
            return Err(loc.error(
                "seccomp.allow",
                "the filter does not permit execve, so no program could start (add \"execve\" to seccomp.allow, or extend \"strict\")",
            ));
        }
    }
    Ok(())
}
