//! Profile files: reading one (bounded), its text with a key-path → span
//! index used to report errors at `FILE:LINE:COL`, the unknown-key check,
//! and the [`Locator`] that places an error in the right file of an
//! `extends` chain.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::error::{ProfileError, ProfileWarning};
use super::names::did_you_mean;
use super::schema::allowed_keys;

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    /// The value, when it is a string.
    string: Option<String>,
    key: Range<usize>,
    value: Range<usize>,
}

/// A parsed profile file: its display name, text and where each key is.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub display: String,
    pub text: String,
    /// Where each key is: only needed to locate an error, so built (by
    /// parsing the text again) on first use rather than on every load.
    entries: std::sync::OnceLock<Vec<Entry>>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut skip = false;
    for ch in path.chars() {
        match ch {
            '[' => skip = true,
            ']' => skip = false,
            c if !skip => out.push(c),
            _ => {}
        }
    }
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl SourceFile {
    /// Parse `text` (TOML syntax only) and check for unknown keys.
    pub fn parse(display: &str, text: String) -> Result<SourceFile, ProfileError> {
        Self::parse_into::<serde::de::IgnoredAny>(display, text).map(|(sf, _)| sf)
    }

    /// Parse `text` once: check for unknown keys, index the keys, and
    /// deserialize into `T` (wrong types become located errors).
    pub fn parse_into<T: serde::de::DeserializeOwned>(
        display: &str,
        text: String,
    ) -> Result<(SourceFile, T), ProfileError> {
        let mut sf = SourceFile {
            display: display.to_string(),
            text: String::new(),
            entries: std::sync::OnceLock::new(),
        };
        let (result, unknown) = {
            let table = match DeTable::parse(&text) {
                Ok(t) => t,
                Err(e) => {
                    sf.text = text.clone();
                    let off = e.span().map(|s| s.start).unwrap_or(0);
                    let msg = e.message().trim().replace('\n', " ");
                    return Err(sf.error_at(off, "(syntax)", &format!("invalid TOML: {msg}")));
                }
            };
            let mut unknown: Option<(usize, String, String)> = None;
            walk(table.get_ref(), "", None, &mut unknown);
            let result = if unknown.is_none() {
                Some(
                    T::deserialize(toml::de::Deserializer::from(table)).map_err(|e| {
                        (
                            e.span().map(|s| s.start).unwrap_or(0),
                            e.message().trim().replace('\n', " "),
                        )
                    }),
                )
            } else {
                None
            };
            (result, unknown)
        };
        sf.text = text;
        if let Some((off, key, msg)) = unknown {
            return Err(sf.error_at(off, &key, &msg));
        }
        match result {
            Some(Ok(v)) => Ok((sf, v)),
            Some(Err((off, msg))) => Err(match sf.key_at(off) {
                Some((key, key_off)) => sf.error_at(key_off, &key, &msg),
                None => sf.error_at(off, "(profile)", &msg),
            }),
            None => Err(sf.error_at(0, "(profile)", "invalid profile")),
        }
    }

    /// Error at a byte offset.
    pub fn error_at(&self, offset: usize, key: &str, message: &str) -> ProfileError {
        let (line, col) = line_col(&self.text, offset);
        ProfileError::Invalid {
            file: self.display.clone(),
            line,
            col,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn entries(&self) -> &[Entry] {
        self.entries.get_or_init(|| {
            let mut v = Vec::new();
            if let Ok(t) = DeTable::parse(&self.text) {
                walk(t.get_ref(), "", Some(&mut v), &mut None);
            }
            v
        })
    }

    /// Byte offset of the key `path` (e.g. `seccomp.allow[3]`), if this file sets it.
    pub fn offset_of(&self, path: &str) -> Option<usize> {
        self.entries()
            .iter()
            .find(|e| e.path == path)
            .map(|e| e.key.start)
    }

    /// The source text of the value of `path` (e.g. `0o1777` for
    /// `filesystem.tmpfs[0].mode`), if this file sets it.
    pub fn value_text(&self, path: &str) -> Option<&str> {
        self.entries()
            .iter()
            .find(|e| e.path == path)
            .and_then(|e| self.text.get(e.value.clone()))
    }

    /// The element of array `list` (e.g. `seccomp.deny`) whose string value is `value`.
    pub fn find_element(&self, list: &str, value: &str) -> Option<String> {
        let prefix = format!("{list}[");
        self.entries()
            .iter()
            .find(|e| {
                e.path.starts_with(&prefix)
                    && !e.path[prefix.len()..].contains('.')
                    && e.string.as_deref() == Some(value)
            })
            .map(|e| e.path.clone())
    }

    /// The innermost key whose key or value contains `offset`.
    pub fn key_at(&self, offset: usize) -> Option<(String, usize)> {
        self.entries()
            .iter()
            .filter(|e| {
                e.key.contains(&offset) || e.value.contains(&offset) || e.value.start == offset
            })
            .min_by_key(|e| e.value.len())
            .map(|e| (e.path.clone(), e.key.start))
    }
}

/// Checks for unknown keys; with `entries`, also indexes every key and
/// array element.
fn walk(
    table: &DeTable<'_>,
    prefix: &str,
    mut entries: Option<&mut Vec<Entry>>,
    unknown: &mut Option<(usize, String, String)>,
) {
    let allowed = allowed_keys(&normalize(prefix));
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        if let Some(allowed) = allowed
            && !allowed.contains(&k.get_ref().as_ref())
            && unknown.is_none()
        {
            let table_name = if prefix.is_empty() {
                "the top level".to_string()
            } else {
                format!("[{}]", normalize(prefix))
            };
            let hint = match did_you_mean(k.get_ref(), allowed.iter().copied()) {
                Some(s) => format!("did you mean \"{s}\"?"),
                None if allowed.is_empty() => "this key takes no sub-keys".to_string(),
                None => format!("valid keys: {}", allowed.join(", ")),
            };
            *unknown = Some((
                k.span().start,
                path.clone(),
                format!("unknown key \"{}\" in {table_name} ({hint})", k.get_ref()),
            ));
        }
        if let Some(e) = entries.as_deref_mut() {
            e.push(Entry {
                path: path.clone(),
                string: v.get_ref().as_str().map(str::to_string),
                key: k.span(),
                value: v.span(),
            });
        }
        walk_value(v.get_ref(), &path, entries.as_deref_mut(), unknown);
    }
}

fn walk_value(
    v: &DeValue<'_>,
    path: &str,
    mut entries: Option<&mut Vec<Entry>>,
    unknown: &mut Option<(usize, String, String)>,
) {
    match v {
        DeValue::Table(t) => walk(t, path, entries, unknown),
        DeValue::Array(a) => {
            for (i, el) in a.iter().enumerate() {
                let nested = matches!(el.get_ref(), DeValue::Table(_) | DeValue::Array(_));
                if entries.is_none() && !nested {
                    continue;
                }
                let p = format!("{path}[{i}]");
                if let Some(e) = entries.as_deref_mut() {
                    e.push(Entry {
                        path: p.clone(),
                        string: el.get_ref().as_str().map(str::to_string),
                        key: el.span(),
                        value: el.span(),
                    });
                }
                walk_value(el.get_ref(), &p, entries.as_deref_mut(), unknown);
            }
        }
        _ => {}
    }
}

/// Largest profile file read (the bundled ones are a few KiB): a path such
/// as `/dev/zero` must not make the loader allocate without bound.
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// Read a profile file as UTF-8, at most [`MAX_PROFILE_BYTES`]. A FIFO or
/// `/dev/stdin` is read like a file (`--profile <(...)`).
pub fn read_profile_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_PROFILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_PROFILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// The files of an `extends` chain, child first, for locating keys.
pub struct Locator<'a> {
    pub files: &'a [SourceFile],
}

impl Locator<'_> {
    /// An error about the string `value` in one of the arrays `lists` (e.g.
    /// `seccomp.deny` and `seccomp.deny_add`), located at the element of the
    /// nearest file that lists it; falls back to `fallback_key`.
    pub fn error_element(
        &self,
        lists: &[&str],
        value: &str,
        fallback_key: &str,
        message: impl Into<String>,
    ) -> ProfileError {
        for f in self.files {
            for l in lists {
                if let Some(path) = f.find_element(l, value) {
                    return self.error(&path, message);
                }
            }
        }
        self.error(fallback_key, message)
    }

    /// A warning about `key`, placed as [`Locator::error`] places errors.
    pub fn warning(&self, key: &str, message: impl Into<String>) -> ProfileWarning {
        self.error(key, message).into()
    }

    /// An error about `key` (e.g. `seccomp.allow[3]`), reported in the file
    /// that set it (the child first, then its parents). Falls back to the
    /// nearest enclosing key that is set, then to the top of the profile.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ProfileError {
        let message = message.into();
        let mut probe = key.to_string();
        loop {
            for f in self.files {
                if let Some(off) = f.offset_of(&probe) {
                    return f.error_at(off, key, &message);
                }
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe.truncate(i),
                None => break,
            }
        }
        match self.files.first() {
            Some(f) => f.error_at(0, key, &message),
            None => ProfileError::Invalid {
                file: "(profile)".into(),
                line: 1,
                col: 1,
                key: key.into(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_cols() {
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 5), (3, 1));
    }

    #[test]
    fn index_and_unknown_keys() {
        let sf = SourceFile::parse(
            "x.toml",
            "[seccomp]\nallow = [\"read\", \"write\"]\n".into(),
        )
        .unwrap();
        assert_eq!(sf.offset_of("seccomp.allow[1]"), Some(27));
        let e = SourceFile::parse("x.toml", "[seccomp]\nalow = []\n".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.toml:2:1: seccomp.alow: unknown key \"alow\" in [seccomp] (did you mean \"allow\"?)"
        );
    }
}
