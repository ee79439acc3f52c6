//! Bundled profiles (`profiles/*.toml`, embedded in the binary) and their
//! override directory (`$SANDBOX_PROFILE_DIR/NAME.toml` wins when present).

use std::path::PathBuf;

/// Environment variable naming a directory whose `NAME.toml` files override
/// (or add to) the bundled profiles.
pub const OVERRIDE_ENV: &str = "SANDBOX_PROFILE_DIR";

const BUNDLED: &[(&str, &str)] = &[
    ("strict", include_str!("../../profiles/strict.toml")),
    ("ci", include_str!("../../profiles/ci.toml")),
    ("net-bind", include_str!("../../profiles/net-bind.toml")),
];

pub struct Bundled {
    /// File name used in errors: `strict.toml`, or the override file's path.
    pub display: String,
    pub text: String,
    /// Directory for resolving relative `extends` paths (the override dir).
    pub dir: Option<PathBuf>,
}

pub enum GetError {
    Unknown,
    Io(String, std::io::Error),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Names of the bundled profiles plus any in the override directory, sorted.
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = BUNDLED.iter().map(|(n, _)| n.to_string()).collect();
    if let Some(dir) = std::env::var_os(OVERRIDE_ENV)
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".toml")
                && valid_name(stem)
                && !v.iter().any(|n| n == stem)
            {
                v.push(stem.to_string());
            }
        }
    }
    v.sort_unstable();
    v
}

/// The text of bundled profile `name`, from the override directory if it has one.
pub fn get(name: &str) -> Result<Bundled, GetError> {
    if !valid_name(name) {
        return Err(GetError::Unknown);
    }
    if let Some(dir) = std::env::var_os(OVERRIDE_ENV) {
        let dir = PathBuf::from(dir);
        let path = dir.join(format!("{name}.toml"));
        if path.is_file() {
            let display = path.display().to_string();
            return match super::source::read_profile_file(&path) {
                Ok(text) => Ok(Bundled {
                    display,
                    text,
                    dir: Some(dir),
                }),
                Err(e) => Err(GetError::Io(display, e)),
            };
        }
    }
    BUNDLED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, t)| Bundled {
            display: format!("{n}.toml"),
            text: (*t).to_string(),
            dir: None,
        })
        .ok_or(GetError::Unknown)
}

/// The embedded text of a bundled profile (ignores the override directory).
pub fn embedded(name: &str) -> Option<&'static str> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
