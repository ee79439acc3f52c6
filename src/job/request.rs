//! The job request: parsing a JSON value into a validated [`JobSpec`], with
//! every error naming the offending field (`steps[1].limits.memory`).

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};

use crate::profile::{self, Limits};

/// A request error: what is wrong and where (`files[2].path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field in the request, empty for the body itself.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Caps on the shape of a request and the engine's own maxima.
#[derive(Debug, Clone)]
pub struct Caps {
    pub max_files: usize,
    pub max_steps: usize,
    pub max_tests: usize,
    pub max_argv: usize,
    /// Bytes per argument, name, path.
    pub max_arg_len: usize,
    pub max_outputs: usize,
    /// Server maxima applied on top of the profile's limits (`None` = the
    /// profile decides). A step may only go lower than min(profile, server).
    pub max_limits: Limits,
    /// Workspace size limit, bytes (all files of the job, checked after each step).
    pub workspace_size: u64,
    /// Largest file returned by `outputs`, bytes.
    pub max_output_file: u64,
    /// Captured stdout+stderr kept for the whole job, bytes: once spent,
    /// later runs keep no output bodies (they are still compared).
    pub max_job_output: u64,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            max_files: 256,
            max_steps: 16,
            max_tests: 256,
            max_argv: 1024,
            max_arg_len: 64 * 1024,
            max_outputs: 64,
            max_limits: Limits {
                cpu_time: Some(Duration::from_secs(60)),
                wall_time: Some(Duration::from_secs(120)),
                output: Some(1 << 20),
                ..Default::default()
            },
            workspace_size: 256 << 20,
            max_output_file: 8 << 20,
            max_job_output: 16 << 20,
        }
    }
}

/// A validated job.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    pub profile: String,
    /// `"image"`, normalized: the job's runs have it as their root.
    pub image: Option<String>,
    pub files: Vec<InputFile>,
    pub steps: Vec<StepSpec>,
    /// Workspace-relative paths returned after the last step.
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct InputFile {
    /// Workspace-relative, normalised (`src/main.c`).
    pub path: String,
    pub content: Vec<u8>,
    pub executable: bool,
}

/// Per-step limit overrides: each may only tighten ([`Limits::tighten`]).
pub use crate::profile::LimitOverrides;

#[derive(Debug, Clone, Default)]
pub struct StepSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    pub limits: LimitOverrides,
    pub expected_stdout: Option<Vec<u8>>,
    pub continue_on_failure: bool,
    pub tests: Vec<TestSpec>,
}

#[derive(Debug, Clone, Default)]
pub struct TestSpec {
    pub stdin: Vec<u8>,
    pub expected_stdout: Option<Vec<u8>>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn want(v: &Value, field: &str, what: &str) -> FieldError {
    FieldError::new(field, format!("expected {what}, got {}", type_name(v)))
}

fn obj<'a>(
    v: &'a Value,
    field: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, FieldError> {
    let m = v.as_object().ok_or_else(|| want(v, field, "an object"))?;
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            let f = if field.is_empty() {
                k.clone()
            } else {
                format!("{field}.{k}")
            };
            return Err(FieldError::new(
                f,
                format!("unknown field (allowed: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(m)
}

fn sub(field: &str, k: &str) -> String {
    if field.is_empty() {
        k.to_string()
    } else {
        format!("{field}.{k}")
    }
}

fn string(v: &Value, field: &str, caps: &Caps) -> Result<String, FieldError> {
    let s = v.as_str().ok_or_else(|| want(v, field, "a string"))?;
    if s.contains('\0') {
        return Err(FieldError::new(field, "contains a NUL byte"));
    }
    if s.len() > caps.max_arg_len {
        return Err(FieldError::new(
            field,
            format!("longer than {} bytes", caps.max_arg_len),
        ));
    }
    Ok(s.to_string())
}

fn boolean(v: Option<&Value>, field: &str) -> Result<bool, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(want(v, field, "a boolean")),
    }
}

fn array<'a>(v: &'a Value, field: &str, max: usize) -> Result<&'a Vec<Value>, FieldError> {
    let a = v.as_array().ok_or_else(|| want(v, field, "an array"))?;
    if a.len() > max {
        return Err(FieldError::new(field, format!("more than {max} entries")));
    }
    Ok(a)
}

/// Bytes from `content` + optional `encoding` ("utf8", the default, or "base64").
fn bytes(
    m: &Map<String, Value>,
    key: &str,
    enc_key: &str,
    field: &str,
) -> Result<Vec<u8>, FieldError> {
    let f = sub(field, key);
    let Some(v) = m.get(key) else {
        return Ok(Vec::new());
    };
    let s = v.as_str().ok_or_else(|| want(v, &f, "a string"))?;
    let enc = match m.get(enc_key) {
        None | Some(Value::Null) => "utf8",
        Some(Value::String(e)) => e.as_str(),
        Some(v) => return Err(want(v, &sub(field, enc_key), "a string")),
    };
    match enc {
        "utf8" => Ok(s.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| FieldError::new(f, format!("invalid base64: {e}"))),
        other => Err(FieldError::new(
            sub(field, enc_key),
            format!("unknown encoding {other:?} (expected \"utf8\" or \"base64\")"),
        )),
    }
}

/// A workspace-relative path: non-empty, relative, no `.`/`..`/empty
/// components, no NUL. Returned normalised.
pub fn check_rel_path(s: &str, field: &str) -> Result<String, FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, "empty path"));
    }
    if s.contains('\0') {
        return Err(FieldError::new(field, "contains a NUL byte"));
    }
    if s.starts_with('/') {
        return Err(FieldError::new(
            field,
            "absolute paths are not allowed (paths are relative to the workspace /box)",
        ));
    }
    if s.len() > 4096 {
        return Err(FieldError::new(field, "path longer than 4096 bytes"));
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" => {} // "a//b" and a trailing slash
            "." | ".." => {
                return Err(FieldError::new(
                    field,
                    "'.' and '..' components are not allowed",
                ));
            }
            c if c.len() > 255 => {
                return Err(FieldError::new(
                    field,
                    "a path component is longer than 255 bytes",
                ));
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(FieldError::new(field, "empty path"));
    }
    Ok(parts.join("/"))
}

fn size(v: &Value, field: &str) -> Result<u64, FieldError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| FieldError::new(field, "expected a non-negative whole number of bytes")),
        Value::String(s) => {
            profile::units::parse_size(s).map_err(|e| FieldError::new(field, e.to_string()))
        }
        v => Err(want(v, field, "a size (\"64M\" or a number of bytes)")),
    }
}

fn duration(v: &Value, field: &str) -> Result<Duration, FieldError> {
    let d = match v {
        Value::String(s) => {
            profile::units::parse_duration(s).map_err(|e| FieldError::new(field, e.to_string()))?
        }
        v => return Err(want(v, field, "a duration string (\"1s\", \"500ms\")")),
    };
    if d.is_zero() {
        return Err(FieldError::new(field, "must be greater than zero"));
    }
    Ok(d)
}

fn count(v: &Value, field: &str) -> Result<u64, FieldError> {
    match v.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(FieldError::new(
            field,
            "expected a whole number greater than zero",
        )),
    }
}

const LIMIT_KEYS: &[&str] = &[
    "cpu_time",
    "wall_time",
    "memory",
    "pids",
    "output",
    "file_size",
    "open_files",
    "stack",
];

fn limit_overrides(v: Option<&Value>, field: &str) -> Result<LimitOverrides, FieldError> {
    let mut l = LimitOverrides::default();
    let Some(v) = v else { return Ok(l) };
    if v.is_null() {
        return Ok(l);
    }
    let m = obj(v, field, LIMIT_KEYS)?;
    for (k, v) in m {
        let f = sub(field, k);
        match k.as_str() {
            "cpu_time" => l.cpu_time = Some(duration(v, &f)?),
            "wall_time" => l.wall_time = Some(duration(v, &f)?),
            "memory" => l.memory = Some(size(v, &f)?),
            "output" => l.output = Some(size(v, &f)?),
            "file_size" => l.file_size = Some(size(v, &f)?),
            "stack" => l.stack = Some(size(v, &f)?),
            "pids" => {
                let n = count(v, &f)?;
                if n < 2 {
                    return Err(FieldError::new(
                        &f,
                        "must be at least 2 (the sandbox's init and the program)",
                    ));
                }
                l.pids = Some(n);
            }
            "open_files" => l.open_files = Some(count(v, &f)?),
            _ => {}
        }
    }
    Ok(l)
}

/// The limits a step runs with: min(profile, server maxima), then the
/// step's overrides, each of which must not exceed that ceiling.
/// `field` is the step's limits field (`steps[1].limits`).
pub fn effective_limits(
    profile: &Limits,
    server: &Limits,
    o: &LimitOverrides,
    field: &str,
) -> Result<Limits, FieldError> {
    let mut l = profile.clone();
    l.cap(server);
    l.tighten(o)
        .map_err(|e| FieldError::new(sub(field, e.key), e.to_string()))?;
    Ok(l)
}

fn parse_test(v: &Value, field: &str) -> Result<TestSpec, FieldError> {
    let m = obj(
        v,
        field,
        &[
            "stdin",
            "stdin_encoding",
            "expected_stdout",
            "expected_stdout_encoding",
        ],
    )?;
    let stdin = bytes(m, "stdin", "stdin_encoding", field)?;
    let expected_stdout = match m.get("expected_stdout") {
        None | Some(Value::Null) => None,
        Some(_) => Some(bytes(
            m,
            "expected_stdout",
            "expected_stdout_encoding",
            field,
        )?),
    };
    Ok(TestSpec {
        stdin,
        expected_stdout,
    })
}

fn parse_step(v: &Value, i: usize, field: &str, caps: &Caps) -> Result<StepSpec, FieldError> {
    let m = obj(
        v,
        field,
        &[
            "name",
            "command",
            "env",
            "stdin",
            "stdin_encoding",
            "limits",
            "expected_stdout",
            "expected_stdout_encoding",
            "continue_on_failure",
            "tests",
        ],
    )?;
    let name = match m.get("name") {
        None | Some(Value::Null) => format!("step{}", i + 1),
        Some(v) => string(v, &sub(field, "name"), caps)?,
    };
    let cf = sub(field, "command");
    let cmd = m.get("command").ok_or_else(|| {
        FieldError::new(
            &cf,
            "required (an array of strings: the program and its arguments)",
        )
    })?;
    let arr = array(cmd, &cf, caps.max_argv)?;
    if arr.is_empty() {
        return Err(FieldError::new(&cf, "must name a program"));
    }
    let argv = arr
        .iter()
        .enumerate()
        .map(|(j, a)| string(a, &format!("{cf}[{j}]"), caps))
        .collect::<Result<Vec<_>, _>>()?;
    if argv[0].is_empty() {
        return Err(FieldError::new(format!("{cf}[0]"), "empty program name"));
    }
    let mut env = Vec::new();
    if let Some(e) = m.get("env").filter(|v| !v.is_null()) {
        let ef = sub(field, "env");
        let em = e
            .as_object()
            .ok_or_else(|| want(e, &ef, "an object of strings"))?;
        if em.len() > caps.max_argv {
            return Err(FieldError::new(
                &ef,
                format!("more than {} entries", caps.max_argv),
            ));
        }
        for (k, v) in em {
            let f = sub(&ef, k);
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(FieldError::new(
                    &f,
                    "variable names must be non-empty, without '=' or NUL",
                ));
            }
            env.push((k.clone(), string(v, &f, caps)?));
        }
    }
    let stdin = bytes(m, "stdin", "stdin_encoding", field)?;
    let expected_stdout = match m.get("expected_stdout") {
        None | Some(Value::Null) => None,
        Some(_) => Some(bytes(
            m,
            "expected_stdout",
            "expected_stdout_encoding",
            field,
        )?),
    };
    let limits = limit_overrides(m.get("limits"), &sub(field, "limits"))?;
    let continue_on_failure = boolean(
        m.get("continue_on_failure"),
        &sub(field, "continue_on_failure"),
    )?;
    let mut tests = Vec::new();
    if let Some(t) = m.get("tests").filter(|v| !v.is_null()) {
        let tf = sub(field, "tests");
        for (j, t) in array(t, &tf, caps.max_tests)?.iter().enumerate() {
            tests.push(parse_test(t, &format!("{tf}[{j}]"))?);
        }
        if !tests.is_empty() && (expected_stdout.is_some() || m.contains_key("stdin")) {
            return Err(FieldError::new(
                &tf,
                "a step with tests takes stdin and expected_stdout from each test, not from the step",
            ));
        }
    }
    Ok(StepSpec {
        name,
        argv,
        env,
        stdin,
        limits,
        expected_stdout,
        continue_on_failure,
        tests,
    })
}

/// Parse and validate a job request body (already decoded as JSON).
/// Profile-dependent checks (limits) are done by [`effective_limits`].
pub fn parse_request(v: &Value, caps: &Caps) -> Result<JobSpec, FieldError> {
    let m = obj(v, "", &["profile", "image", "files", "steps", "outputs"])?;
    let profile = match m.get("profile") {
        None | Some(Value::Null) => "strict".to_string(),
        Some(v) => string(v, "profile", caps)?,
    };
    let image = match m.get("image") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let s = string(v, "image", caps)?;
            let r = crate::image::Reference::parse(&s)
                .map_err(|e| FieldError::new("image", e.to_string()))?;
            Some(r.to_string())
        }
    };
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    if let Some(f) = m.get("files").filter(|v| !v.is_null()) {
        for (i, fv) in array(f, "files", caps.max_files)?.iter().enumerate() {
            let field = format!("files[{i}]");
            let fm = obj(fv, &field, &["path", "content", "encoding", "executable"])?;
            let pf = sub(&field, "path");
            let pv = fm
                .get("path")
                .ok_or_else(|| FieldError::new(&pf, "required"))?;
            let ps = pv.as_str().ok_or_else(|| want(pv, &pf, "a string"))?;
            let path = check_rel_path(ps, &pf)?;
            if !seen.insert(path.clone()) {
                return Err(FieldError::new(&pf, format!("duplicate path {path:?}")));
            }
            let content = bytes(fm, "content", "encoding", &field)?;
            let executable = boolean(fm.get("executable"), &sub(&field, "executable"))?;
            files.push(InputFile {
                path,
                content,
                executable,
            });
        }
    }
    // A file may not also be a directory of another ("a" and "a/b").
    for (i, f) in files.iter().enumerate() {
        let prefix = format!("{}/", f.path);
        if seen
            .range(prefix.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
        {
            return Err(FieldError::new(
                format!("files[{i}].path"),
                format!("{:?} is also used as a directory by another file", f.path),
            ));
        }
    }
    let sv = m
        .get("steps")
        .ok_or_else(|| FieldError::new("steps", "required (at least one step)"))?;
    let sa = array(sv, "steps", caps.max_steps)?;
    if sa.is_empty() {
        return Err(FieldError::new("steps", "at least one step is required"));
    }
    let steps = sa
        .iter()
        .enumerate()
        .map(|(i, s)| parse_step(s, i, &format!("steps[{i}]"), caps))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outputs = Vec::new();
    if let Some(o) = m.get("outputs").filter(|v| !v.is_null()) {
        let mut seen = BTreeSet::new();
        for (i, p) in array(o, "outputs", caps.max_outputs)?.iter().enumerate() {
            let f = format!("outputs[{i}]");
            let s = p.as_str().ok_or_else(|| want(p, &f, "a string"))?;
            let path = check_rel_path(s, &f)?;
            if !seen.insert(path.clone()) {
                return Err(FieldError::new(f, format!("duplicate path {path:?}")));
            }
            outputs.push(path);
        }
    }
    Ok(JobSpec {
        profile,
        image,
        files,
        steps,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> FieldError {
        parse_request(&v, &Caps::default()).unwrap_err()
    }

    #[test]
    fn fields_are_named() {
        let e = err(
            json!({"steps":[{"command":["a"]}],"files":[{"path":"a"},{"path":"b"},{"path":"../x"}]}),
        );
        assert_eq!(e.field, "files[2].path");
        let e = err(json!({"steps":[{"command":["a"]}],"files":[{"path":"a"},{"path":"a"}]}));
        assert_eq!(e.field, "files[1].path");
        let e = err(json!({"steps":[{"command":["a", 3]}]}));
        assert_eq!(e.field, "steps[0].command[1]");
        let e = err(json!({"steps":[{"command":["a\u{0}b"]}]}));
        assert_eq!(e.field, "steps[0].command[0]");
        let e = err(json!({"steps":[{"command":["a"], "bogus": 1}]}));
        assert_eq!(e.field, "steps[0].bogus");
        let e = err(json!({"steps":[{"command":["a"],"limits":{"memory":"x"}}]}));
        assert_eq!(e.field, "steps[0].limits.memory");
        let e = err(json!({"steps":[]}));
        assert_eq!(e.field, "steps");
        let e = err(json!({"steps":[{"command":["a"]}],"files":[{"path":"/etc/x"}]}));
        assert_eq!(e.field, "files[0].path");
        let e = err(json!({"steps":[{"command":["a"]}],"files":[{"path":"d"},{"path":"d/x"}]}));
        assert_eq!(e.field, "files[0].path");
    }

    #[test]
    fn limits_only_tighten() {
        let p = Limits {
            memory: Some(512 << 20),
            ..Default::default()
        };
        let s = Caps::default().max_limits;
        let o = LimitOverrides {
            memory: Some(1 << 30),
            ..Default::default()
        };
        let e = effective_limits(&p, &s, &o, "steps[0].limits").unwrap_err();
        assert_eq!(e.field, "steps[0].limits.memory");
        let o = LimitOverrides {
            memory: Some(64 << 20),
            cpu_time: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let l = effective_limits(&p, &s, &o, "x").unwrap();
        assert_eq!(l.memory, Some(64 << 20));
        assert_eq!(l.wall_time, s.wall_time);
        assert_eq!(l.cpu_time, Some(Duration::from_secs(1)));
    }
}
