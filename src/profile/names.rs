//! Name tables: syscall names (checked on x86_64 and aarch64), errno names,
//! capability names, and "did you mean" suggestions.

use std::str::FromStr;

/// Errno names accepted in `errno:NAME` actions, with their Linux numbers
/// (identical on x86_64 and aarch64).
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EMLINK", libc::EMLINK),
    ("EPIPE", libc::EPIPE),
    ("ERANGE", libc::ERANGE),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ENODATA", libc::ENODATA),
    ("ENOTSUP", libc::ENOTSUP),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ENOTSOCK", libc::ENOTSOCK),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
];

pub fn errno_by_name(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Syscall number on x86_64, if the name exists there. (The crate's
/// `FromStr` is a generated `match`: no table to build on every start.)
pub fn x86_64_nr(name: &str) -> Option<i64> {
    name.parse::<syscalls::x86_64::Sysno>()
        .ok()
        .map(|s| i64::from(s.id()))
}

/// Syscall number on aarch64, if the name exists there.
pub fn aarch64_nr(name: &str) -> Option<i64> {
    name.parse::<syscalls::aarch64::Sysno>()
        .ok()
        .map(|s| i64::from(s.id()))
}

/// Whether a syscall name is known on at least one supported architecture.
pub fn syscall_known(name: &str) -> bool {
    x86_64_nr(name).is_some() || aarch64_nr(name).is_some()
}

/// Number of `name` on the architecture this binary was built for.
pub fn native_nr(name: &str) -> Option<i64> {
    #[cfg(target_arch = "x86_64")]
    {
        x86_64_nr(name)
    }
    #[cfg(target_arch = "aarch64")]
    {
        aarch64_nr(name)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = name;
        None
    }
}

fn all_syscall_names() -> impl Iterator<Item = &'static str> {
    syscalls::x86_64::Sysno::iter()
        .map(|s| s.name())
        .chain(syscalls::aarch64::Sysno::iter().map(|s| s.name()))
}

pub fn parse_capability(name: &str) -> Option<caps::Capability> {
    caps::Capability::from_str(name).ok()
}

fn all_capability_names() -> Vec<String> {
    caps::all().into_iter().map(|c| c.to_string()).collect()
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lw = word.to_ascii_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&lw, &c.to_ascii_lowercase());
        let dist = strsim::levenshtein(&lw, &c.to_ascii_lowercase());
        // Accept a small edit distance or a strong similarity.
        let ok = dist <= 2.max(word.len() / 4) || score >= 0.88;
        if ok && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// ` (did you mean "x"?)` or an empty string.
pub fn suggestion_suffix(s: Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    }
}

pub fn suggest_syscall(name: &str) -> String {
    suggestion_suffix(did_you_mean(name, all_syscall_names()))
}

pub fn suggest_capability(name: &str) -> String {
    let all = all_capability_names();
    let upper = name.to_ascii_uppercase();
    if all.contains(&upper) {
        return format!(" (capability names are upper case: \"{upper}\")");
    }
    let with_prefix = format!("CAP_{upper}");
    if all.contains(&with_prefix) {
        return format!(" (did you mean \"{with_prefix}\"?)");
    }
    suggestion_suffix(did_you_mean(name, all.iter().map(String::as_str)))
}

pub fn suggest_errno(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if errno_by_name(&upper).is_some() {
        return format!(" (errno names are upper case: \"{upper}\")");
    }
    match did_you_mean(name, ERRNOS.iter().map(|(n, _)| *n)) {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => " (known: EPERM, EACCES, ENOSYS, ENOENT, EINVAL, ...; see the profile reference in docs/profiles.md)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscalls_resolve() {
        assert_eq!(x86_64_nr("read"), Some(0));
        assert_eq!(aarch64_nr("read"), Some(63));
        assert!(x86_64_nr("open").is_some() && aarch64_nr("open").is_none());
        assert!(syscall_known("open"));
        assert!(!syscall_known("opn"));
        for s in syscalls::x86_64::Sysno::iter() {
            assert_eq!(x86_64_nr(s.name()), Some(s.id() as i64));
            assert_eq!(syscalls::x86_64::Sysno::from_str(s.name()), Ok(s));
        }
        for s in syscalls::aarch64::Sysno::iter() {
            assert_eq!(aarch64_nr(s.name()), Some(s.id() as i64));
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("opn", all_syscall_names()).as_deref(),
            Some("open")
        );
        assert_eq!(
            did_you_mean("exit_grup", all_syscall_names()).as_deref(),
            Some("exit_group")
        );
        assert_eq!(did_you_mean("zzzzzzzzzzzzzzzzz", all_syscall_names()), None);
        assert!(suggest_capability("CAP_NET_BIND_SERVIC").contains("CAP_NET_BIND_SERVICE"));
        assert!(suggest_capability("cap_chown").contains("\"CAP_CHOWN\""));
        assert!(suggest_capability("NET_ADMIN").contains("CAP_NET_ADMIN"));
        assert!(suggest_errno("EPRM").contains("EPERM"));
        assert!(suggest_errno("eperm").contains("\"EPERM\""));
        assert!(errno_by_name("ENOSYS").is_some());
        assert!(ERRNOS.len() >= 30);
    }
}
