//! Image references, parsed and normalized as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `hx/app:v1` is `docker.io/hx/app:v1`,
//! `host:5000/a/b:t` keeps its registry, and `name@sha256:...` (with or
//! without a tag) pins the content. Grammar: distribution/reference.

use std::fmt;

use super::digest::Digest;
use super::error::{ImageError, Result};

/// Docker Hub, the registry of names without one.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag of a reference that has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// A normalized reference: registry, repository path, and a tag, a digest
/// or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference. A reference without tag and
    /// digest gets `:latest`.
    pub fn parse(s: &str) -> Result<Reference> {
        let err = |reason: &str| ImageError::Reference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| err(&e.to_string()))?)),
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is
        // a registry's port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(|r| err(&r))?;
        }
        if name.is_empty() {
            return Err(err("no repository name"));
        }
        let (domain, path) = split_domain(name);
        if let Some(d) = domain {
            check_domain(d).map_err(|r| err(&r))?;
        }
        check_path(path).map_err(|r| err(&r))?;
        let mut domain = domain.unwrap_or(DEFAULT_DOMAIN).to_string();
        if domain == "index.docker.io" {
            domain = DEFAULT_DOMAIN.into();
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if domain.len() + 1 + path.len() > MAX_NAME {
            return Err(err("name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        check_tag(tag).map_err(|reason| ImageError::Reference {
            reference: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The name an image is recorded under in the store: `domain/path:tag`
    /// (a digest-only reference has none: it is found by digest).
    pub fn store_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a registry when it has a '.' or a
/// ':', is `localhost`, or has an uppercase letter (a repository cannot).
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TAG
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {t:?}: 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ))
    }
}

fn check_domain(d: &str) -> Result<(), String> {
    let bad = || Err(format!("registry {d:?}: expected HOST[:PORT]"));
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // [IPv6]:port
        let Some((ip, tail)) = rest.split_once(']') else {
            return bad();
        };
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad();
        }
        match tail {
            "" => return Ok(()),
            t => match t.strip_prefix(':') {
                Some(p) => ("x", Some(p)),
                None => return bad(),
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad();
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        bad()
    }
}

/// Path components: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn check_path(p: &str) -> Result<(), String> {
    for c in p.split('/') {
        if c.is_empty() {
            return Err("empty path component".into());
        }
        if c.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("repository {p:?} must be lowercase"));
        }
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        let mut ok = alnum(b[0]) && alnum(b[b.len() - 1]);
        let mut i = 0;
        while ok && i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            // A separator run: ".", "_", "__" or "-"+.
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        }
        if !ok {
            return Err(format!(
                "path component {c:?}: lowercase letters and digits, separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("hx/app:v1"), "docker.io/hx/app:v1");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("127.0.0.1:5000/a/b:t"),
            "127.0.0.1:5000/a/b:t",
            "a registry with a port"
        );
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("[::1]:5000/x:y"), "[::1]:5000/x:y");
        assert_eq!(norm("ghcr.io/o/r/s"), "ghcr.io/o/r/s:latest");
        assert_eq!(
            norm(&format!("busybox@{D}")),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{D}")),
            format!("docker.io/library/busybox:1@{D}")
        );
        assert_eq!(
            norm("hx/a__b.c-d---e_f"),
            "docker.io/hx/a__b.c-d---e_f:latest"
        );
        let r = Reference::parse("hx/app:v1").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("docker.io", "hx/app", Some("v1"))
        );
        assert_eq!(r.store_name().as_deref(), Some("docker.io/hx/app:v1"));
        assert_eq!(
            Reference::parse(&format!("x@{D}")).unwrap().store_name(),
            None
        );
    }

    #[test]
    fn bad_references_name_the_problem() {
        for (s, want) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("busybox:a/b", "registry"),
            ("busy//box", "empty path component"),
            ("busy box", "path component"),
            ("-x", "path component"),
            ("x-", "path component"),
            ("a..b", "path component"),
            ("a___b", "path component"),
            ("host:99999999/x", "registry"),
            ("ho_st.io/x", "registry"),
            ("x@sha256:abc", "64 lowercase hex"),
            ("x@md5:abc", "only sha256"),
            (":tag", "no repository"),
            ("x:y:z", "path component"),
        ] {
            let e = Reference::parse(s).expect_err(s).to_string();
            assert!(e.contains(want), "{s:?}: {e}");
            assert!(!e.contains('\n'));
        }
        let long = format!("{}/x", "a".repeat(300));
        assert!(Reference::parse(&long).is_err());
        assert!(Reference::parse(&format!("x:{}", "t".repeat(129))).is_err());
    }
}
