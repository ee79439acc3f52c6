//! `ProfileError`: one-line `FILE:LINE:COL: KEY.PATH: message` errors.

use std::borrow::Cow;

/// `s` with control characters (newlines, carriage returns, escapes...) and
/// Unicode line separators escaped as in Rust string literals (`\n`), so
/// that text taken from a profile (a syscall name, a key) cannot break an
/// error onto several lines or into a terminal escape sequence.
pub fn one_line(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !s.contains(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An invalid or unloadable profile. `Display` is always a single line (see
/// [`one_line`]); for problems inside a file it is
/// `FILE:LINE:COL: KEY.PATH: message`.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A problem at a known place in a profile file (syntax, unknown key,
    /// wrong type, unknown name, bad unit, contradiction, extends cycle...).
    #[error("{}:{line}:{col}: {}: {}", one_line(.file), one_line(.key), one_line(.message))]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        key: String,
        message: String,
    },
    /// The profile file could not be read.
    #[error("{}: cannot read profile: {}", one_line(.path), one_line(&.source.to_string()))]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `load("name")` with a name that is not a bundled profile.
    #[error(
        "unknown profile \"{}\" (available: {}; or give a path to a .toml file){}",
        one_line(.name), one_line(.available), one_line(.hint)
    )]
    UnknownProfile {
        name: String,
        available: String,
        hint: String,
    },
}

/// A profile that loads but is surely not what its author meant (a size
/// without a unit, an inherited list dropped by a child, a bind source that
/// does not exist). `sandbox profile check` prints these; they never refuse
/// the profile. `Display` is `FILE:LINE:COL: KEY.PATH: warning: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileWarning {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ProfileWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: warning: {}",
            one_line(&self.file),
            self.line,
            self.col,
            one_line(&self.key),
            one_line(&self.message)
        )
    }
}

impl From<ProfileError> for ProfileWarning {
    /// The place and text of a located error, as a warning.
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Invalid {
                file,
                line,
                col,
                key,
                message,
            } => ProfileWarning {
                file,
                line,
                col,
                key,
                message,
            },
            other => ProfileWarning {
                file: "(profile)".into(),
                line: 1,
                col: 1,
                key: "(profile)".into(),
                message: other.to_string(),
            },
        }
    }
}

impl ProfileError {
    /// The `KEY.PATH` of an `Invalid` error.
    pub fn key(&self) -> Option<&str> {
        match self {
            ProfileError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line() {
        // Found by fuzzing (fuzz/regressions/profile/): a syscall name with a
        // newline in it made a two-line error.
        let e = crate::profile::parse_str("[seccomp]\nallow = [\"r\\name\"]\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "x.toml:2:10: seccomp.allow[0]: unknown syscall \"r\\name\" (did you mean \"rename\"?)"
        );
        let e = crate::profile::parse_str("\"a\\rb\\u001b[2J\\u2028\" = 1\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(!e.contains(['\n', '\r', '\u{1b}', '\u{2028}']), "{e:?}");
        assert!(e.contains("a\\rb\\u{1b}[2J\\u{2028}"), "{e}");
        assert_eq!(one_line("plain: ok"), "plain: ok");
    }
}
