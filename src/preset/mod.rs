//! Language presets: one declarative TOML file per language (`presets/*.toml`,
//! bundled; `$SANDBOX_PRESET_DIR/ID.toml` overrides or adds), parsed and
//! checked into a [`Preset`], and turned into the descriptions of its steps
//! ([`Step`]: compile, run, version) that a front door (`sandbox exec
//! --language`, later the job API's short form) runs in a workspace bound at
//! [`WORKDIR`]. This module owns the format and its errors; it runs nothing.

pub mod bundled;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::profile::error::one_line;
use crate::profile::{LimitOverrides, Limits, units};

/// Where the source file and everything the compile step writes live inside
/// both steps (the job workspace's mount point, so a job runs them alike).
pub const WORKDIR: &str = crate::job::workspace::BOX;

/// The profile a preset runs under when it names none.
pub const DEFAULT_PROFILE: &str = "strict";

/// The largest source file `read_preset_file` accepts for a preset (a
/// preset is a few hundred bytes; a device or a huge file is a mistake).
const MAX_PRESET_BYTES: u64 = 1 << 20;

/// Placeholders an argv element or an environment value may hold, replaced
/// when a step is built. `{source}`: the source file's name; `{memory_mb}`:
/// the step's effective memory limit in MiB (for runtimes that size their
/// heap themselves: the JVM's -Xmx, Node's --max-old-space-size, Go's
/// GOMEMLIMIT).
pub const PLACEHOLDERS: &[&str] = &["source", "memory_mb"];

/// `{memory_mb}` when the step has no memory limit at all.
const UNLIMITED_MEMORY_MB: u64 = 4096;

/// An invalid or unloadable preset. `Display` is one line naming the file
/// and, for a problem inside it, `FILE:LINE:COL: KEY: message` like profiles.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("{}:{line}:{col}: {}: {}", one_line(.file), one_line(.key), one_line(.message))]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        key: String,
        message: String,
    },
    #[error("{}: cannot read preset: {}", one_line(.path), one_line(&.source.to_string()))]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown language \"{}\" (available: {})", one_line(.id), one_line(.available))]
    Unknown { id: String, available: String },
}

/// The limits a preset sets for one step, on top of its profile's
/// (`sandbox exec`'s limit flags then apply to the run step).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cpu_time: Option<toml::Spanned<String>>,
    wall_time: Option<toml::Spanned<String>>,
    memory: Option<toml::Spanned<String>>,
    output: Option<toml::Spanned<String>>,
    file_size: Option<toml::Spanned<String>>,
    stack: Option<toml::Spanned<String>>,
    pids: Option<toml::Spanned<u64>>,
    open_files: Option<toml::Spanned<u64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    id: toml::Spanned<String>,
    name: String,
    judge0_id: Option<u32>,
    version_command: toml::Spanned<Vec<String>>,
    source: toml::Spanned<String>,
    compile: Option<toml::Spanned<Vec<String>>>,
    run: toml::Spanned<Vec<String>>,
    profile: Option<String>,
    compile_profile: Option<String>,
    run_profile: Option<String>,
    image: Option<String>,
    #[serde(default)]
    compile_limits: RawLimits,
    #[serde(default)]
    run_limits: RawLimits,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    compile_env: BTreeMap<String, String>,
    #[serde(default)]
    run_env: BTreeMap<String, String>,
    notes: Option<String>,
}

/// A loaded, checked language preset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preset {
    pub id: String,
    pub name: String,
    /// Judge0 CE's `language_id` for this language (docs/languages.md).
    pub judge0_id: Option<u32>,
    /// Run inside the run step's sandbox; the first line of its output
    /// (stdout, else stderr) is the version.
    pub version_command: Vec<String>,
    /// The file name the submitted source is written to in [`WORKDIR`].
    pub source: String,
    /// `None`: an interpreted language (a syntax error shows in the run).
    pub compile: Option<Vec<String>>,
    pub run: Vec<String>,
    pub compile_profile: String,
    pub run_profile: String,
    /// OCI reference both steps run in; `None`: the host's system directories.
    pub image: Option<String>,
    #[serde(skip)]
    pub compile_limits: LimitOverrides,
    #[serde(skip)]
    pub run_limits: LimitOverrides,
    pub env: Vec<(String, String)>,
    pub compile_env: Vec<(String, String)>,
    pub run_env: Vec<(String, String)>,
    pub notes: Option<String>,
    /// Where it came from: `c.toml` (bundled) or the override file's path.
    pub origin: String,
    /// The file's text, as `sandbox language show` prints it.
    #[serde(skip)]
    pub text: String,
}

/// Which step of a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Compile,
    Run,
    Version,
}

/// One step of a preset, as a runner needs it: the profile and image to
/// open, the program, its environment and the preset's limits. The argv
/// and the environment's values may still hold `{memory_mb}`: [`Step::argv`]
/// and [`Step::env`] fill it in once the effective limits ([`Step::limits`])
/// are known.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub profile: String,
    pub image: Option<String>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// The preset's limits for this step (on top of the profile's).
    pub limits: LimitOverrides,
    /// The working directory: [`WORKDIR`].
    pub cwd: &'static str,
}

impl Step {
    /// The step's limits: the profile's, then the preset's, then the
    /// caller's (`sandbox exec`'s flags; a job's request tightens instead).
    pub fn limits(&self, profile: &Limits, caller: &LimitOverrides) -> Limits {
        let mut l = profile.clone();
        l.overlay(&self.limits);
        l.overlay(caller);
        l
    }

    /// The argv with `{memory_mb}` replaced by `limits`' memory in MiB.
    pub fn argv(&self, limits: &Limits) -> Vec<String> {
        let mb = memory_mb(limits);
        self.argv
            .iter()
            .map(|a| a.replace("{memory_mb}", &mb))
            .collect()
    }

    /// The environment (the preset's `env`, then the step's table), values
    /// with `{memory_mb}` replaced like [`Step::argv`]'s.
    pub fn env(&self, limits: &Limits) -> Vec<(String, String)> {
        let mb = memory_mb(limits);
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("{memory_mb}", &mb)))
            .collect()
    }

    /// The argv as written in the preset (placeholders but `{source}` kept).
    pub fn template(&self) -> &[String] {
        &self.argv
    }
}

impl Preset {
    /// The preset `id`: `$SANDBOX_PRESET_DIR/ID.toml` if present, else the bundled one.
    pub fn load(id: &str) -> Result<Preset, PresetError> {
        Preset::load_in(id, bundled::override_dir().as_deref())
    }

    /// [`Preset::load`] with the override directory `dir` (`None`: the
    /// bundled presets only).
    pub fn load_in(id: &str, dir: Option<&std::path::Path>) -> Result<Preset, PresetError> {
        match bundled::get_in(id, dir) {
            Ok(b) => Preset::parse(&b.text, &b.display, Some(id)),
            Err(bundled::GetError::Unknown) => Err(PresetError::Unknown {
                id: id.to_string(),
                available: bundled::ids_in(dir).join(", "),
            }),
            Err(bundled::GetError::Io(path, source)) => Err(PresetError::Io { path, source }),
        }
    }

    /// Parses and checks a preset's text. `origin` names it in errors; a
    /// preset loaded by id must declare that id (`expect_id`).
    pub fn parse(text: &str, origin: &str, expect_id: Option<&str>) -> Result<Preset, PresetError> {
        let at = |off: usize, key: &str, msg: String| {
            let (line, col) = line_col(text, off);
            PresetError::Invalid {
                file: origin.to_string(),
                line,
                col,
                key: key.to_string(),
                message: msg,
            }
        };
        let raw: RawPreset = toml::from_str(text).map_err(|e| {
            let off = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().replace('\n', " ");
            let key = unknown_field(&msg)
                .or_else(|| key_at(text, off))
                .unwrap_or_else(|| "(preset)".into());
            at(off, &key, msg)
        })?;
        let id = raw.id.get_ref().clone();
        if !bundled::valid_id(&id) {
            return Err(at(
                raw.id.span().start,
                "id",
                format!("{id:?}: only letters, digits, '-' and '_'"),
            ));
        }
        if let Some(want) = expect_id
            && want != id
        {
            return Err(at(
                raw.id.span().start,
                "id",
                format!("{id:?} differs from the file's name \"{want}\""),
            ));
        }
        let src = raw.source.get_ref().clone();
        if src.is_empty()
            || src.contains('/')
            || src == "."
            || src == ".."
            || src.contains('\0')
            || src.starts_with('-')
        {
            return Err(at(
                raw.source.span().start,
                "source",
                format!("{src:?}: a plain file name (no '/', not starting with '-')"),
            ));
        }
        let argv =
            |v: &toml::Spanned<Vec<String>>, key: &str| -> Result<Vec<String>, PresetError> {
                if v.get_ref().is_empty() || v.get_ref()[0].is_empty() {
                    return Err(at(v.span().start, key, "must name a program".into()));
                }
                for a in v.get_ref() {
                    if let Some(p) = unknown_placeholder(a) {
                        return Err(at(
                            v.span().start,
                            key,
                            format!(
                                "unknown placeholder {{{p}}} (known: {})",
                                PLACEHOLDERS
                                    .iter()
                                    .map(|p| format!("{{{p}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
                Ok(v.get_ref()
                    .iter()
                    .map(|a| a.replace("{source}", &src))
                    .collect())
            };
        let version_command = argv(&raw.version_command, "version_command")?;
        let compile = raw
            .compile
            .as_ref()
            .map(|c| argv(c, "compile"))
            .transpose()?;
        let run = argv(&raw.run, "run")?;
        let limits = |l: &RawLimits, table: &str| -> Result<LimitOverrides, PresetError> {
            let dur = |v: &Option<toml::Spanned<String>>, key: &str| {
                v.as_ref()
                    .map(|s| {
                        let k = format!("{table}.{key}");
                        match units::parse_duration(s.get_ref()) {
                            Ok(d) if d.is_zero() => {
                                Err(at(s.span().start, &k, "must be greater than zero".into()))
                            }
                            Ok(d) => Ok(d),
                            Err(e) => Err(at(s.span().start, &k, e.to_string())),
                        }
                    })
                    .transpose()
            };
            let size = |v: &Option<toml::Spanned<String>>, key: &str| {
                v.as_ref()
                    .map(|s| {
                        let k = format!("{table}.{key}");
                        match units::parse_size(s.get_ref()) {
                            Ok(0) => {
                                Err(at(s.span().start, &k, "must be greater than zero".into()))
                            }
                            Ok(n) => Ok(n),
                            Err(e) => Err(at(s.span().start, &k, e.to_string())),
                        }
                    })
                    .transpose()
            };
            let count = |v: &Option<toml::Spanned<u64>>, key: &str| match v {
                Some(n) if *n.get_ref() == 0 => Err(at(
                    n.span().start,
                    &format!("{table}.{key}"),
                    "must be at least 1".into(),
                )),
                Some(n) => Ok(Some(*n.get_ref())),
                None => Ok(None),
            };
            Ok(LimitOverrides {
                cpu_time: dur(&l.cpu_time, "cpu_time")?,
                wall_time: dur(&l.wall_time, "wall_time")?,
                memory: size(&l.memory, "memory")?,
                output: size(&l.output, "output")?,
                file_size: size(&l.file_size, "file_size")?,
                stack: size(&l.stack, "stack")?,
                pids: count(&l.pids, "pids")?,
                open_files: count(&l.open_files, "open_files")?,
            })
        };
        let compile_limits = limits(&raw.compile_limits, "compile_limits")?;
        let run_limits = limits(&raw.run_limits, "run_limits")?;
        if compile.is_none() && (raw.compile_profile.is_some() || !raw.compile_env.is_empty()) {
            return Err(at(
                0,
                if raw.compile_profile.is_some() {
                    "compile_profile"
                } else {
                    "compile_env"
                },
                "set without a compile command".into(),
            ));
        }
        let profile = raw.profile.unwrap_or_else(|| DEFAULT_PROFILE.to_string());
        let pairs = |m: BTreeMap<String, String>| {
            m.into_iter()
                .map(|(k, v)| (k, v.replace("{source}", &src)))
                .collect::<Vec<_>>()
        };
        for (table, m) in [
            ("env", &raw.env),
            ("compile_env", &raw.compile_env),
            ("run_env", &raw.run_env),
        ] {
            if let Some(k) = m
                .keys()
                .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
            {
                return Err(at(0, table, format!("{k:?} is not a variable name")));
            }
            for (k, v) in m {
                if let Some(p) = unknown_placeholder(v) {
                    return Err(at(
                        0,
                        &format!("{table}.{k}"),
                        format!("unknown placeholder {{{p}}} (known: {{source}}, {{memory_mb}})"),
                    ));
                }
            }
        }
        let (env, compile_env, run_env) =
            (pairs(raw.env), pairs(raw.compile_env), pairs(raw.run_env));
        Ok(Preset {
            id,
            name: raw.name,
            judge0_id: raw.judge0_id,
            version_command,
            source: src,
            compile,
            run,
            compile_profile: raw.compile_profile.unwrap_or_else(|| profile.clone()),
            run_profile: raw.run_profile.unwrap_or(profile),
            image: raw.image,
            compile_limits,
            run_limits,
            env,
            compile_env,
            run_env,
            notes: raw.notes,
            origin: origin.to_string(),
            text: text.to_string(),
        })
    }

    /// Every preset (bundled and overriding), sorted by id; a broken one
    /// as its error.
    pub fn all() -> Vec<(String, Result<Preset, PresetError>)> {
        bundled::ids()
            .into_iter()
            .map(|id| {
                let p = Preset::load(&id);
                (id, p)
            })
            .collect()
    }

    fn env_with(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (k, v) in extra {
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env
    }

    /// The compile step, if the language has one. It runs with the source
    /// file in [`WORKDIR`] and must leave there what the run step runs.
    pub fn compile_step(&self) -> Option<Step> {
        self.compile.as_ref().map(|argv| Step {
            kind: StepKind::Compile,
            profile: self.compile_profile.clone(),
            image: self.image.clone(),
            argv: argv.clone(),
            env: self.env_with(&self.compile_env),
            limits: self.compile_limits.clone(),
            cwd: WORKDIR,
        })
    }

    /// The run step: the judged program, fed the test's input.
    pub fn run_step(&self) -> Step {
        Step {
            kind: StepKind::Run,
            profile: self.run_profile.clone(),
            image: self.image.clone(),
            argv: self.run.clone(),
            env: self.env_with(&self.run_env),
            limits: self.run_limits.clone(),
            cwd: WORKDIR,
        }
    }

    /// The step reporting the toolchain's version: `version_command` under
    /// the compile profile (the toolchain is what it reports on), with short
    /// limits.
    pub fn version_step(&self) -> Step {
        let mut limits = self.compile_limits.clone();
        limits.cpu_time = Some(Duration::from_secs(10));
        limits.wall_time = Some(Duration::from_secs(20));
        Step {
            kind: StepKind::Version,
            profile: self.compile_profile.clone(),
            image: self.image.clone(),
            argv: self.version_command.clone(),
            env: self.env_with(&self.compile_env),
            limits,
            cwd: "/tmp",
        }
    }
}

/// The version line of a version command's output: the first non-empty
/// line of stdout, else of stderr (`java -version` writes to stderr).
pub fn version_line(stdout: &str, stderr: &str) -> Option<String> {
    [stdout, stderr]
        .iter()
        .find_map(|s| s.lines().map(str::trim).find(|l| !l.is_empty()))
        .map(str::to_string)
}

/// Reads a preset file: a regular file of at most [`MAX_PRESET_BYTES`].
pub(crate) fn read_preset_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut s = String::new();
    f.take(MAX_PRESET_BYTES + 1).read_to_string(&mut s)?;
    if s.len() as u64 > MAX_PRESET_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than 1 MiB",
        ));
    }
    Ok(s)
}

/// `{memory_mb}`: the memory limit in MiB (at least 1).
fn memory_mb(limits: &Limits) -> String {
    limits
        .memory
        .map(|b| (b >> 20).max(1))
        .unwrap_or(UNLIMITED_MEMORY_MB)
        .to_string()
}

/// A `{word}` in `a` that is not one of [`PLACEHOLDERS`].
fn unknown_placeholder(a: &str) -> Option<String> {
    let mut rest = a;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else { break };
        let word = &after[..j];
        if !word.is_empty()
            && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !PLACEHOLDERS.contains(&word)
        {
            return Some(word.to_string());
        }
        rest = &after[j..];
    }
    None
}

/// The key serde's "unknown field `x`" message names.
fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// The dotted key whose line holds byte `off`: the `[table]` above it
/// and the bare key before `=` (enough to name where a value is wrong).
fn key_at(text: &str, off: usize) -> Option<String> {
    let off = off.min(text.len());
    let before = text.get(..off)?;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .map(|t| t.trim().to_string())
    });
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
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

#[cfg(test)]
mod tests;
