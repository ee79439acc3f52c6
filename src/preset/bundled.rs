//! Bundled presets (`presets/*.toml`, embedded in the binary) and their
//! override directory (`$SANDBOX_PRESET_DIR/ID.toml` wins when present,
//! and adds a language when no bundled preset has that id), mirroring
//! `profile::bundled` and `$SANDBOX_PROFILE_DIR`.

use std::path::{Path, PathBuf};

/// Environment variable naming a directory whose `ID.toml` files override
/// (or add to) the bundled presets.
pub const OVERRIDE_ENV: &str = "SANDBOX_PRESET_DIR";

const BUNDLED: &[(&str, &str)] = &[
    ("bash", include_str!("../../presets/bash.toml")),
    ("c", include_str!("../../presets/c.toml")),
    ("cpp17", include_str!("../../presets/cpp17.toml")),
    ("cpp20", include_str!("../../presets/cpp20.toml")),
    ("go", include_str!("../../presets/go.toml")),
    ("java", include_str!("../../presets/java.toml")),
    ("javascript", include_str!("../../presets/javascript.toml")),
    ("pascal", include_str!("../../presets/pascal.toml")),
    ("php", include_str!("../../presets/php.toml")),
    ("python3", include_str!("../../presets/python3.toml")),
    ("ruby", include_str!("../../presets/ruby.toml")),
    ("rust", include_str!("../../presets/rust.toml")),
];

pub struct Bundled {
    /// Name used in errors: `c.toml`, or the override file's path.
    pub display: String,
    pub text: String,
}

pub enum GetError {
    Unknown,
    Io(String, std::io::Error),
}

/// An id is also a file name: letters, digits, '-' and '_' only.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The override directory, `$SANDBOX_PRESET_DIR` (unset or empty: none).
pub fn override_dir() -> Option<PathBuf> {
    std::env::var_os(OVERRIDE_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// Ids of the bundled presets plus any in the override directory, sorted.
pub fn ids() -> Vec<String> {
    ids_in(override_dir().as_deref())
}

/// [`ids`] with the override directory `dir`.
pub fn ids_in(dir: Option<&Path>) -> Vec<String> {
    let mut v: Vec<String> = BUNDLED.iter().map(|(n, _)| n.to_string()).collect();
    if let Some(dir) = dir
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".toml")
                && valid_id(stem)
                && !v.iter().any(|n| n == stem)
            {
                v.push(stem.to_string());
            }
        }
    }
    v.sort_unstable();
    v
}

/// The text of preset `id`, from the override directory if it has one.
pub fn get(id: &str) -> Result<Bundled, GetError> {
    get_in(id, override_dir().as_deref())
}

/// [`get`] with the override directory `dir`.
pub fn get_in(id: &str, dir: Option<&Path>) -> Result<Bundled, GetError> {
    if !valid_id(id) {
        return Err(GetError::Unknown);
    }
    if let Some(dir) = dir {
        let path = dir.join(format!("{id}.toml"));
        // Present but unreadable (a directory, a FIFO, no permission) is an
        // error, not a silent fall-back to the bundled preset.
        if std::fs::symlink_metadata(&path).is_ok() {
            let display = path.display().to_string();
            return match super::read_preset_file(&path) {
                Ok(text) => Ok(Bundled { display, text }),
                Err(e) => Err(GetError::Io(display, e)),
            };
        }
    }
    embedded(id)
        .map(|t| Bundled {
            display: format!("{id}.toml"),
            text: t.to_string(),
        })
        .ok_or(GetError::Unknown)
}

/// The embedded text of a bundled preset (ignores the override directory).
pub fn embedded(id: &str) -> Option<&'static str> {
    BUNDLED.iter().find(|(n, _)| *n == id).map(|(_, t)| *t)
}
