//! `ProfileError`: one-line `FILE:LINE:COL: KEY.PATH: message` errors.

/// An invalid or unloadable profile. `Display` is always a single line; for
/// problems inside a file it is `FILE:LINE:COL: KEY.PATH: message`.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A problem at a known place in a profile file (syntax, unknown key,
    /// wrong type, unknown name, bad unit, contradiction, extends cycle...).
    #[error("{file}:{line}:{col}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        key: String,
        message: String,
    },
    /// The profile file could not be read.
    #[error("{path}: cannot read profile: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `load("name")` with a name that is not a bundled profile.
    #[error(
        "unknown profile \"{name}\" (available: {available}; or give a path to a .toml file){hint}"
    )]
    UnknownProfile {
        name: String,
        available: String,
        hint: String,
    },
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
