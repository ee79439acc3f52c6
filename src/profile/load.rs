//! Loading: bundled name or path → source files → `extends` chain (with
//! cycle detection) → merged raw profile → validated [`Profile`].

use std::path::{Path, PathBuf};

use super::bundled;
use super::error::ProfileError;
use super::schema::{RawProfile, apply_adds, merge};
use super::source::SourceFile;
use super::validate::validate;
use super::Profile;

/// Maximum `extends` depth.
const MAX_DEPTH: usize = 16;

/// The files of an `extends` chain, child first, for locating keys.
pub struct Locator<'a> {
    pub files: &'a [SourceFile],
}

impl Locator<'_> {
    /// An error about the string `value` in one of the arrays `lists` (e.g.
    /// `seccomp.deny` and `seccomp.deny_add`), located at the element of the
    /// nearest file that lists it; falls back to `fallback_key`.
    pub fn error_element(&self, lists: &[&str], value: &str, fallback_key: &str, message: impl Into<String>) -> ProfileError {
        for f in self.files {
            for l in lists {
                if let Some(path) = f.find_element(l, value) {
                    return self.error(&path, message);
                }
            }
        }
        self.error(fallback_key, message)
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

/// Whether a profile reference is a path (contains '/' or ends in `.toml`)
/// rather than a bundled name.
pub fn is_path(name_or_path: &str) -> bool {
    name_or_path.contains('/') || name_or_path.ends_with(".toml")
}

/// Load a profile by bundled name (`strict`) or by path (`./my.toml`).
pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
    let mut files = Vec::new();
    let raw = if is_path(name_or_path) {
        let path = PathBuf::from(name_or_path);
        let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Io {
            path: name_or_path.to_string(),
            source,
        })?;
        load_rec(name_or_path, path_id(&path), text, parent_dir(&path), &mut Vec::new(), &mut files)?
    } else {
        let b = bundled::get(name_or_path).map_err(|e| match e {
            bundled::GetError::Unknown => ProfileError::UnknownProfile {
                name: name_or_path.to_string(),
                available: bundled::names().join(", "),
                hint: super::names::suggestion_suffix(super::names::did_you_mean(
                    name_or_path,
                    bundled::names().iter().map(String::as_str),
                )),
            },
            bundled::GetError::Io(path, source) => ProfileError::Io { path, source },
        })?;
        load_rec(&b.display, format!("bundled:{name_or_path}"), b.text, b.dir, &mut Vec::new(), &mut files)?
    };
    validate(raw, name_or_path, &Locator { files: &files })
}

/// Parse a profile from a string. `origin` is the name used in errors (and as
/// the profile's name); relative `extends` paths are resolved against
/// `origin`'s directory when it looks like a path, else the current directory.
pub fn parse_str(src: &str, origin: &str) -> Result<Profile, ProfileError> {
    let mut files = Vec::new();
    let dir = if origin.contains('/') { parent_dir(Path::new(origin)) } else { None };
    let raw = load_rec(origin, format!("str:{origin}"), src.to_string(), dir, &mut Vec::new(), &mut files)?;
    validate(raw, origin, &Locator { files: &files })
}

fn parent_dir(p: &Path) -> Option<PathBuf> {
    p.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf)
}

fn path_id(p: &Path) -> String {
    match std::fs::canonicalize(p) {
        Ok(c) => format!("path:{}", c.display()),
        Err(_) => format!("path:{}", p.display()),
    }
}

fn load_rec(
    display: &str,
    id: String,
    text: String,
    dir: Option<PathBuf>,
    stack: &mut Vec<(String, String)>,
    files: &mut Vec<SourceFile>,
) -> Result<RawProfile, ProfileError> {
    let sf = SourceFile::parse(display, text)?;
    let raw: RawProfile = sf.deserialize()?;
    check_names(&raw, &sf)?;
    stack.push((id, display.to_string()));
    let me = files.len();
    files.push(sf);
    let Some(ext) = raw.extends.clone() else {
        stack.pop();
        return Ok(apply_adds(raw));
    };
    let here = &files[me];
    let ext_err = |msg: String| here.error_at(here.offset_of("extends").unwrap_or(0), "extends", &msg);
    if stack.len() > MAX_DEPTH {
        return Err(ext_err(format!("extends chain deeper than {MAX_DEPTH} profiles")));
    }
    let (pid, pdisplay, ptext, pdir) = if is_path(&ext) {
        let p = Path::new(&ext);
        let full: PathBuf = match (&dir, p.is_absolute()) {
            (Some(d), false) => d.join(p),
            _ => p.to_path_buf(),
        }
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect();
        let pdisplay = full.display().to_string();
        let text = std::fs::read_to_string(&full)
            .map_err(|e| ext_err(format!("cannot read parent profile \"{pdisplay}\": {e}")))?;
        (path_id(&full), pdisplay, text, parent_dir(&full))
    } else {
        match bundled::get(&ext) {
            Ok(b) => (format!("bundled:{ext}"), b.display, b.text, b.dir),
            Err(bundled::GetError::Unknown) => {
                let dym = super::names::did_you_mean(&ext, bundled::names().iter().map(String::as_str));
                return Err(ext_err(format!(
                    "unknown bundled profile \"{ext}\" (available: {}{}; a path must contain '/' or end in .toml)",
                    bundled::names().join(", "),
                    dym.map(|d| format!("; did you mean \"{d}\"?")).unwrap_or_default()
                )));
            }
            Err(bundled::GetError::Io(path, e)) => {
                return Err(ext_err(format!("cannot read parent profile \"{path}\": {e}")));
            }
        }
    };
    if stack.iter().any(|(sid, _)| *sid == pid) {
        let mut chain: Vec<&str> = stack.iter().map(|(_, d)| d.as_str()).collect();
        chain.push(&pdisplay);
        return Err(ext_err(format!("extends cycle: {}", chain.join(" -> "))));
    }
    let parent = load_rec(&pdisplay, pid, ptext, pdir, stack, files)?;
    stack.pop();
    Ok(merge(parent, raw))
}

/// Check the syscall names of one file before merging, so that a bad name in
/// `allow_add`/`deny_add` (or in a parent) is reported in the file and at the
/// element that has it.
fn check_names(raw: &RawProfile, sf: &SourceFile) -> Result<(), ProfileError> {
    let Some(s) = &raw.seccomp else { return Ok(()) };
    let lists = [("allow", &s.allow), ("allow_add", &s.allow_add), ("deny", &s.deny), ("deny_add", &s.deny_add)];
    for (key, list) in lists {
        for (i, name) in list.iter().flatten().enumerate() {
            if !super::names::syscall_known(name) {
                let k = format!("seccomp.{key}[{i}]");
                let off = sf.offset_of(&k).unwrap_or(0);
                return Err(sf.error_at(off, &k, &format!("unknown syscall \"{name}\"{}", super::names::suggest_syscall(name))));
            }
        }
    }
    Ok(())
}
