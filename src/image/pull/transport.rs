//! Which scheme a registry is reached with: TLS unless the registry is on
//! loopback (`127.0.0.0/8`, `::1`, `localhost`) or named by the operator
//! (`--insecure-registry HOST[:PORT]`). Decided from the reference alone,
//! before anything is resolved or connected: a name that merely resolves to
//! a loopback address is not loopback here.

use std::net::IpAddr;

use super::PullError;

/// How a registry is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Splits an optional `http://` or `https://` off a reference: the caller
/// asks for that scheme explicitly.
pub fn split_scheme(reference: &str) -> (Option<Scheme>, &str) {
    if let Some(r) = reference.strip_prefix("http://") {
        (Some(Scheme::Http), r)
    } else if let Some(r) = reference.strip_prefix("https://") {
        (Some(Scheme::Https), r)
    } else {
        (None, reference)
    }
}

/// The host part of `host[:port]` (an IPv6 literal in brackets unwrapped).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// Whether `registry` (`host[:port]`) names a loopback address or
/// `localhost` literally.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the operator allowed plain HTTP for `registry`: an entry equal
/// to it, or to its host (any port).
pub fn is_allowed_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    insecure.iter().any(|e| {
        let e = e.trim().trim_end_matches('/');
        e.eq_ignore_ascii_case(registry) || e.eq_ignore_ascii_case(host)
    })
}

/// The scheme for `registry`: `asked` when given (plain HTTP only where it
/// is allowed), else plain HTTP for loopback and allowed registries, TLS
/// for the rest.
pub fn choose(
    registry: &str,
    asked: Option<Scheme>,
    insecure: &[String],
) -> Result<Scheme, PullError> {
    let plain_ok = is_loopback(registry) || is_allowed_insecure(registry, insecure);
    match asked {
        Some(Scheme::Https) => Ok(Scheme::Https),
        Some(Scheme::Http) if !plain_ok => Err(PullError::PlainHttpRefused {
            registry: registry.to_string(),
        }),
        Some(Scheme::Http) => Ok(Scheme::Http),
        None if plain_ok => Ok(Scheme::Http),
        None => Ok(Scheme::Https),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for r in [
            "127.0.0.1:5000",
            "127.9.8.7",
            "localhost",
            "LOCALHOST:5000",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "registry.invalid:5000",
            "10.0.0.1:5000",
            "localhost.example.com",
            "127.0.0.1.nip.io",
            "[::2]:5000",
            "docker.io",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn schemes() {
        let none: Vec<String> = vec![];
        assert_eq!(choose("127.0.0.1:5000", None, &none).unwrap(), Scheme::Http);
        assert_eq!(
            choose("127.0.0.1:5000", Some(Scheme::Https), &none).unwrap(),
            Scheme::Https
        );
        assert_eq!(choose("docker.io", None, &none).unwrap(), Scheme::Https);
        let e = choose("registry.invalid:5000", Some(Scheme::Http), &none).unwrap_err();
        assert!(
            e.to_string()
                .contains("--insecure-registry registry.invalid:5000"),
            "{e}"
        );
        let allow = vec!["registry.invalid:5000".to_string()];
        assert_eq!(
            choose("registry.invalid:5000", None, &allow).unwrap(),
            Scheme::Http
        );
        assert_eq!(
            choose("registry.invalid:5001", None, &allow).unwrap(),
            Scheme::Https
        );
        let host_only = vec!["registry.invalid".to_string()];
        assert_eq!(
            choose("registry.invalid:5001", Some(Scheme::Http), &host_only).unwrap(),
            Scheme::Http
        );
        assert_eq!(split_scheme("http://a:1/b"), (Some(Scheme::Http), "a:1/b"));
        assert_eq!(split_scheme("busybox"), (None, "busybox"));
    }
}
