//! Which images a server runs ([`AllowList`], `sandbox serve
//! --allow-image`). A pattern without `*` is a reference, normalized as
//! Docker does: without tag or digest it names a repository and allows
//! every tag and digest of it (`python` allows `docker.io/library/python:3.12`);
//! with one, exactly that. A pattern with `*` is matched against the
//! normalized reference (`docker.io/library/python:3.12`, with `@sha256:...`
//! when pinned), `*` standing for any run of characters, `/` included:
//! `127.0.0.1:5000/*` allows everything of that registry.

use super::error::{ImageError, Result};
use super::reference::Reference;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `domain/path`: every tag and digest.
    Repository(String),
    /// A normalized reference with its tag and/or digest.
    Exact(Reference),
    /// Pieces between `*`s.
    Glob(Vec<String>),
}

/// The images a server may run; empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<Pattern>,
}

impl AllowList {
    /// Parses `--allow-image` patterns; a pattern that is neither a
    /// reference nor a glob is an error naming it.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<AllowList> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                return Err(ImageError::Reference {
                    reference: p.to_string(),
                    reason: "an empty --allow-image pattern".into(),
                });
            }
            if p.contains('*') {
                out.push(Pattern::Glob(p.split('*').map(str::to_string).collect()));
                continue;
            }
            let r = Reference::parse(p)?;
            let bare = !p.contains('@') && !last_part_has_tag(p);
            out.push(if bare {
                Pattern::Repository(r.name())
            } else {
                Pattern::Exact(r)
            });
        }
        Ok(AllowList { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `r` may run.
    pub fn allows(&self, r: &Reference) -> bool {
        let full = r.to_string();
        self.patterns.iter().any(|p| match p {
            Pattern::Repository(name) => r.name() == *name,
            Pattern::Exact(e) => e == r,
            Pattern::Glob(parts) => glob(parts, &full),
        })
    }
}

/// Whether the reference as written names a tag (a `:` after its last `/`:
/// `host:5000/app` has a port, not a tag).
fn last_part_has_tag(s: &str) -> bool {
    s.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// `parts` (a pattern split at `*`) matches all of `s`.
fn glob(parts: &[String], s: &str) -> bool {
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return s.is_empty(),
    };
    let Some(mut s) = s.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return s.is_empty();
    };
    for p in middle {
        match s.find(p.as_str()) {
            Some(i) => s = &s[i + p.len()..],
            None => return false,
        }
    }
    s.len() >= last.len() && s.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], r: &str) -> bool {
        AllowList::parse(patterns)
            .unwrap()
            .allows(&Reference::parse(r).unwrap())
    }

    #[test]
    fn repositories_allow_every_tag() {
        assert!(allows(&["python"], "python:3.12"));
        assert!(allows(&["python"], "docker.io/library/python"));
        assert!(allows(
            &["python"],
            &format!("python@sha256:{}", "a".repeat(64))
        ));
        assert!(!allows(&["python"], "pythonx:3"));
        assert!(!allows(&["python"], "hx/python:3"));
        assert!(allows(&["127.0.0.1:5000/app"], "127.0.0.1:5000/app:v2"));
        assert!(!allows(&["127.0.0.1:5000/app"], "127.0.0.1:5001/app:v2"));
    }

    #[test]
    fn tags_and_digests_are_exact() {
        assert!(allows(&["python:3.12"], "docker.io/library/python:3.12"));
        assert!(!allows(&["python:3.12"], "python:3.11"));
        assert!(!allows(&["python:3.12"], "python"));
    }

    #[test]
    fn globs_match_the_normalized_reference() {
        assert!(allows(&["127.0.0.1:5000/*"], "127.0.0.1:5000/a/b:c"));
        assert!(!allows(&["127.0.0.1:5000/*"], "127.0.0.1:50000/a:c"));
        assert!(allows(&["docker.io/library/python:3.*"], "python:3.12"));
        assert!(!allows(&["docker.io/library/python:3.*"], "python:2.7"));
        assert!(allows(&["*"], "anything/at:all"));
        assert!(allows(&["*/busybox:*"], "busybox:1"));
        assert!(!allows(&["a*a"], "a"));
    }

    #[test]
    fn nothing_is_allowed_by_default_and_bad_patterns_are_refused() {
        assert!(!allows(&[], "busybox"));
        assert!(AllowList::parse(&["Not A Ref"]).is_err());
        assert!(AllowList::parse(&[""]).is_err());
    }
}
